"""seqcast's versioned checkpoint format, the one file a trained forecaster travels in.

A checkpoint holds only tensors and JSON-like values, so it loads with ``torch.load(weights_only=True)``
and never runs code from the file. The model is rebuilt from the stored config, not from a pickled class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.features import FeatureSpec, Scaling
from models.forecaster import Forecaster, ForecasterConfig

FORMAT_VERSION = 1
# Where a published forecaster is found: its name in a model store and its file inside the stored model.
PUBLISHED_NAME = "seqcast-forecaster"
PUBLISHED_FILE = "checkpoint.pt"


class CheckpointError(ValueError):
    """The file is not a seqcast checkpoint this version can read."""


@dataclass(frozen=True)
class Checkpoint:
    config: ForecasterConfig
    features: FeatureSpec
    scaling: Scaling
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-like: metrics, data source, epochs

    def build_model(self) -> Forecaster:
        """The forecaster with these weights, in eval mode on the CPU."""
        model = Forecaster(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()

    def to_payload(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "features": self.features.to_dict(),
            "scaling": self.scaling.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "metadata": self.metadata,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Checkpoint:
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format_version {version!r} is not supported (this seqcast reads {FORMAT_VERSION})"
            )
        config = dict(payload["config"])
        config["quantiles"] = tuple(config.get("quantiles", ()))
        return cls(
            config=ForecasterConfig(**config),
            features=FeatureSpec(**payload["features"]),
            scaling=Scaling(tuple(payload["scaling"]["mean"]), tuple(payload["scaling"]["std"])),
            state_dict=dict(payload["state_dict"]),
            metadata=dict(payload.get("metadata", {})),
        )


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
