"""Publishes a checkpoint to the BentoML model store, where the service finds it."""

from __future__ import annotations

from typing import Any

import bentoml

from models.checkpoint import FORMAT_VERSION, PUBLISHED_FILE, PUBLISHED_NAME, Checkpoint, save_checkpoint


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
