"""Publishes a checkpoint to the BentoML model store, where the service finds it."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

import bentoml

from models.checkpoint import PUBLISHED_FILE, PUBLISHED_NAME, Checkpoint, save_checkpoint
from training.evaluate import method_label


class ExportRefused(Exception):
    """The evaluated model does not beat the strongest naive, so serving it would do worse than repeating the
    past."""


def check_beats_strongest_naive(report: dict[str, Any]) -> None:
    """Raises ExportRefused unless both ways of forecasting (windowed and streaming) beat the MASE of the
    strongest naive the report tried (the last value, or the value one season back at each season)."""
    metrics = report["metrics"]
    strongest = report["strongest_naive"]
    # Better by more than float32 rounding: an untrained model of changes from the last value is the naive
    # forecast, scaled and unscaled, and would otherwise pass as better about half the time.
    baseline = metrics[strongest]["mase"] * (1 - 1e-5)
    for name in ("windowed", "streaming"):
        mase = metrics[name]["mase"]
        if not math.isfinite(mase) or mase >= baseline:
            raise ExportRefused(
                f"{name} test MASE {mase:.3f} is not better than the strongest naive's, "
                f"{method_label(strongest, report)}: {metrics[strongest]['mase']:.3f}; train longer or fix the data, "
                "or pass --force_export true to publish it anyway"
            )


# BentoML's rule for a model name: lowercase letters, digits, and "-", "_" or "." inside.
MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


def model_name(name: str | None, run_name: str | None) -> str:
    """The name a run exports under: ``name`` as given, else ``seqcast-<run name>`` (the logger's name, which
    each shipped config sets), else the generic ``seqcast-forecaster``."""
    if name is None:
        if not run_name or run_name == "lightning_logs":  # Lightning's name for a logger given none
            return PUBLISHED_NAME
        name = "seqcast-" + re.sub(r"[^a-z0-9._-]+", "-", run_name.lower()).strip("-._")
    if not MODEL_NAME.match(name):
        raise ValueError(
            f"model_name {name!r}: BentoML names are lowercase letters, digits and -, _ or . inside, at most 63"
        )
    return name


def data_name(path: str) -> str:
    """``builtin:taylor`` is ``taylor``; a file is its name without folders or suffix."""
    return path.removeprefix("builtin:") if path.startswith("builtin:") else Path(path).stem


def model_labels(checkpoint: Checkpoint, report: dict[str, Any], data: str, series: int) -> dict[str, str]:
    """What ``seqcast-train models`` and ``bentoml models get`` show of a model: what it read and how it did."""
    metrics = report["metrics"]
    strongest = report["strongest_naive"]
    return {
        "cell": checkpoint.config.cell,
        "target": checkpoint.features.target,
        "data": data,
        "series": str(series),
        "freq": str(checkpoint.features.freq),
        "test_mase": f"{metrics['streaming']['mase']:.4f}",
        "strongest_naive": strongest,
        "strongest_naive_mase": f"{metrics[strongest]['mase']:.4f}",
    }


def live_scoring(checkpoint: Checkpoint, report: dict[str, Any]) -> dict[str, Any]:
    scales = report.get("naive_scales")
    if not scales:
        return {}
    in_std = [
        scale / checkpoint.features.target_spread(checkpoint.scaling_for(uid if checkpoint.series_scaling else None))
        for uid, scale in scales.items()
    ]
    return {"naive_scales": scales, "naive_scale_in_std": float(statistics.median(in_std))}


def export_to_bentoml(
    checkpoint: Checkpoint, report: dict[str, Any], name: str = PUBLISHED_NAME, labels: dict[str, str] | None = None
) -> str:
    """Stores the checkpoint as ``name`` under ``BENTOML_HOME``; returns the new tag."""
    metadata = {
        "format_version": checkpoint.format_version,
        "config": checkpoint.config.to_dict(),
        "features": checkpoint.features.to_dict(),
        # BentoML's metadata holds no null: an undefined metric (MAPE over zero actuals) is left out.
        "test_metrics": {
            method: {key: value for key, value in scores.items() if value is not None}
            for method, scores in report["metrics"].items()
        },
        "strongest_naive": report.get("strongest_naive", ""),
        # What live scoring needs (service/scoring.py): each training series' naive MAE, and their typical
        # size in training standard deviations, for a series the model did not train on.
        **live_scoring(checkpoint, report),
        "training": checkpoint.metadata,
    }
    with bentoml.models.create(name, labels=labels or {}, metadata=metadata) as stored:
        save_checkpoint(checkpoint, stored.path_of(PUBLISHED_FILE))
    return str(stored.tag)
