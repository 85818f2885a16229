"""seqcast's versioned checkpoint format, the one file a trained forecaster travels in.

A checkpoint holds only tensors and JSON-like values, so it loads with ``torch.load(weights_only=True)``
and never runs code from the file. The model is rebuilt from the stored config, not from a pickled class.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch

from models.features import FeatureSpec, Scaling
from models.forecaster import Forecaster, ForecasterConfig

# 2 added per-series scaling statistics; version 1 files, which have none, still load. 3 marks a seasonal
# model (ForecasterConfig.seasonal_lag): versions that read only 1 and 2 then refuse it by its version rather
# than fail on fields they do not know. A model without seasons is still written as 2, which they read. 4 marks
# a level-free model (ForecasterConfig.level_free): a version reading 3 refuses it by its version, not by a field.
# 5 marks a smoothed level (ForecasterConfig.smoothed_level), which changes what a state carries. 6 marks a log
# target (FeatureSpec.log_target): a reader that ignored it would serve forecasts of log(1 + y) as y.
FORMAT_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
# Where a published forecaster is found: its name in a model store and its file inside the stored model.
PUBLISHED_NAME = "seqcast-forecaster"
PUBLISHED_FILE = "checkpoint.pt"


T = TypeVar("T")


class CheckpointError(ValueError):
    """The file is not a seqcast checkpoint this version can read."""


@dataclass(frozen=True)
class Checkpoint:
    config: ForecasterConfig
    features: FeatureSpec
    scaling: Scaling
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-like: metrics, data source, epochs
    # Statistics of each training series by its id, where every series was scaled by its own; then ``scaling``
    # holds the pooled statistics, kept for reference only.
    series_scaling: dict[str, Scaling] = field(default_factory=dict)

    def scaling_for(self, series: str | None) -> Scaling:
        """The statistics that a series' values are scaled by; LookupError says why there are none."""
        if not self.series_scaling:
            if series is not None:
                raise LookupError("the model scales every series alike; leave the field out")
            return self.scaling
        if series is None:
            raise LookupError(
                f"required: the model scales each of its {len(self.series_scaling)} training series by its own "
                "statistics; name the series"
            )
        if series not in self.series_scaling:
            known = ", ".join(repr(uid) for uid in list(self.series_scaling)[:3])
            raise LookupError(
                f"unknown series {series!r}; the model knows {len(self.series_scaling)} series (e.g. {known})"
            )
        return self.series_scaling[series]

    def build_model(self) -> Forecaster:
        """The forecaster with these weights, in eval mode on the CPU."""
        try:
            model = Forecaster(self.config)
            model.load_state_dict(self.state_dict)
        except (TypeError, ValueError, RuntimeError) as error:  # a config or weights that are not this model's
            raise CheckpointError(f"checkpoint weights do not fit its config: {error}") from error
        return model.eval()

    @property
    def format_version(self) -> int:
        """The oldest format that describes this checkpoint, so that older readers load what they can."""
        if self.features.log_target:
            return FORMAT_VERSION
        if self.config.smoothed_level:
            return 5
        return 4 if self.config.level_free else 3 if self.config.seasonal_lag else 2

    def to_payload(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "config": self.config.to_dict(),
            "features": self.features.to_dict(),
            "scaling": self.scaling.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "metadata": self.metadata,
            "series_scaling": {uid: scaling.to_dict() for uid, scaling in self.series_scaling.items()},
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Checkpoint:
        version = payload.get("format_version")
        if version not in READABLE_VERSIONS:
            raise CheckpointError(
                f"checkpoint format_version {version!r} is not supported (this seqcast reads {READABLE_VERSIONS})"
            )
        return cls(
            config=_built(ForecasterConfig, dict(payload["config"]), "config"),
            features=_built(FeatureSpec, dict(payload["features"]), "features"),
            scaling=Scaling.from_dict(payload["scaling"]),
            state_dict=dict(payload["state_dict"]),
            metadata=dict(payload.get("metadata", {})),
            series_scaling={uid: Scaling.from_dict(s) for uid, s in payload.get("series_scaling", {}).items()},
        )


def _built(kind: type[T], stored: dict[str, Any], part: str) -> T:
    """``kind`` from a checkpoint's ``part``; CheckpointError names what this version cannot build it from."""
    unknown = sorted(set(stored) - {f.name for f in fields(kind)})  # type: ignore[arg-type]
    if unknown:
        raise CheckpointError(f"checkpoint {part} has fields this seqcast does not know: {', '.join(unknown)}")
    try:
        return kind(**stored)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {part} is not valid: {error}") from error


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    torch.save(checkpoint.to_payload(), path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or tampered files
        raise CheckpointError(f"cannot read {path} as a seqcast checkpoint: {error}") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a seqcast checkpoint")
    return Checkpoint.from_payload(payload)
