"""Publishes a checkpoint to the BentoML model store, where the service finds it."""

from __future__ import annotations

import math
from typing import Any

import bentoml

from models.checkpoint import FORMAT_VERSION, PUBLISHED_FILE, PUBLISHED_NAME, Checkpoint, save_checkpoint


class ExportRefused(Exception):
    """The evaluated model does not beat seasonal naive, so serving it would do worse than repeating the past."""


def check_beats_seasonal_naive(report: dict[str, Any]) -> None:
    """Raises ExportRefused unless both ways of forecasting (windowed and streaming) beat seasonal naive's MASE."""
    metrics = report["metrics"]
    baseline = metrics["seasonal_naive"]["mase"]
    for name in ("windowed", "streaming"):
        mase = metrics[name]["mase"]
        if not math.isfinite(mase) or mase >= baseline:
            raise ExportRefused(
                f"{name} test MASE {mase:.3f} is not better than seasonal naive's {baseline:.3f}; "
                "train longer or fix the data, or pass --force_export true to publish it anyway"
            )


def export_to_bentoml(checkpoint: Checkpoint, report: dict[str, Any]) -> str:
    """Stores the checkpoint as ``seqcast-forecaster`` under ``BENTOML_HOME``; returns the new tag."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "config": checkpoint.config.to_dict(),
        "features": checkpoint.features.to_dict(),
        "test_metrics": report["metrics"],
        "training": checkpoint.metadata,
    }
    labels = {"cell": checkpoint.config.cell, "target": checkpoint.features.target}
    with bentoml.models.create(PUBLISHED_NAME, labels=labels, metadata=metadata) as stored:
        save_checkpoint(checkpoint, stored.path_of(PUBLISHED_FILE))
    return str(stored.tag)
