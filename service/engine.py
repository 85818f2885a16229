"""The forecasting core of the service: requests in, model inputs checked, ragged batches run.

It knows nothing of HTTP or BentoML, so the service's exactness can be tested by calling it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import torch

from models.checkpoint import Checkpoint
from models.features import encode_future, encode_inputs
from models.forecaster import state_tensors
from service.records import NO_TIME
from service.schemas import RejectedRequest, Rejection, Rows


@dataclass(frozen=True)
class Prepared:
    """One request's model inputs."""

    inputs: np.ndarray  # (T, input_dim)
    future: np.ndarray  # (horizon, future_dim)
    next_time: int  # ns timestamp of the step after the last input, or NO_TIME


def _bad(field: str, message: str) -> RejectedRequest:
    return RejectedRequest(Rejection(400, f"{field}: {message}", field=field))


def _rows(field: str, rows: Rows | None, count: int, names: tuple[str, ...], per: str) -> np.ndarray:
    """Checks a (count, len(names)) table the client sent."""
    width = len(names)
    if width == 0:
        if rows:
            raise _bad(field, "the model reads no such values; leave the field out")
        return np.zeros((count, 0))
    if rows is None:
        raise _bad(field, f"required: one row of {width} values ({', '.join(names)}) per {per}")
    if len(rows) != count:
        raise _bad(field, f"has {len(rows)} rows; expected {count}, one per {per}")
    for index, row in enumerate(rows):
        if len(row) != width:
            raise _bad(field, f"row {index} has {len(row)} values; expected {width} ({', '.join(names)})")
    return np.asarray(rows, dtype=float)


class Engine:
    def __init__(self, checkpoint: Checkpoint, tag: str) -> None:
        self.checkpoint = checkpoint
        self.tag = tag
        self.spec = checkpoint.features
        self.config = checkpoint.config
        self.model = checkpoint.build_model()
        self.step_ns = self.spec.step.value if self.spec.freq else 0

    def _future(self, rows: Rows | None, next_time: int) -> np.ndarray:
        future = _rows("future_covariates", rows, self.config.horizon, self.spec.future_covariates, "forecast step")
        stamps = None
        if self.spec.calendar:
            stamps = pd.DatetimeIndex(next_time + self.step_ns * np.arange(self.config.horizon))
        return encode_future(self.spec, self.checkpoint.scaling, future, stamps)

    def _encode(
        self, values: list[float], covariates: Rows | None, first_time: int, future_rows: Rows | None
    ) -> Prepared:
        target = np.asarray(values, dtype=float)
        n = len(target)
        past = _rows("covariates", covariates, n, self.spec.covariates, "value")
        stamps = None
        if self.spec.calendar:
            stamps = pd.DatetimeIndex(first_time + self.step_ns * np.arange(n))
        inputs = encode_inputs(self.spec, self.checkpoint.scaling, target, past, stamps)
        next_time = first_time + self.step_ns * n if self.spec.calendar else NO_TIME
        return Prepared(inputs, self._future(future_rows, next_time), next_time)

    def prepare_history(
        self, history: list[float], covariates: Rows | None, start: datetime | None, future: Rows | None
    ) -> Prepared:
        first_time = NO_TIME
        if self.spec.calendar:
            if start is None:
                raise _bad("start", f"required: the model derives {', '.join(self.spec.calendar)} from timestamps")
            first_time = pd.Timestamp(start).tz_localize(None).value if start.tzinfo else pd.Timestamp(start).value
        return self._encode(history, covariates, first_time, future)

    def prepare_observe(
        self, values: list[float], covariates: Rows | None, next_time: int, future: Rows | None
    ) -> Prepared:
        return self._encode(values, covariates, next_time, future)

    @torch.inference_mode()
    def run(self, prepared: list[Prepared], states: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """Runs every request from its state (None: from zero) in one ragged pass.

        Returns forecasts (B, horizon, outputs per step) in the target's units and new states
        (B, state tensors, layers, hidden).
        """
        zero = np.zeros(self.state_shape, dtype=np.float32)
        initial = np.stack([zero if s is None else s for s in states])  # (B, tensors, layers, hidden)
        state = tuple(torch.from_numpy(initial[:, k]).transpose(0, 1).contiguous() for k in range(initial.shape[1]))
        sequences = [torch.from_numpy(p.inputs) for p in prepared]
        future = torch.from_numpy(np.stack([p.future for p in prepared]))
        forecast, new_state = self.model.forward_ragged(sequences, state, future)
        if not torch.isfinite(forecast).all():
            raise FloatingPointError("the model produced a non-finite forecast")
        stacked = torch.stack([s.transpose(0, 1) for s in new_state], dim=1)  # (B, tensors, layers, hidden)
        return self.checkpoint.scaling.unscale_target(forecast.numpy()).astype(np.float32), stacked.numpy()

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return (state_tensors(self.config), self.config.num_layers, self.config.hidden_size)

    def answer(self, forecast: np.ndarray) -> dict[str, object]:
        """Response fields for one (horizon, outputs) forecast."""
        quantiles = self.config.quantiles
        if not quantiles:
            return {"forecast": forecast[:, 0].tolist(), "quantiles": None, "model": self.tag}
        mid = int(np.argmin([abs(q - 0.5) for q in quantiles]))
        by_quantile = {f"{q:g}": forecast[:, i].tolist() for i, q in enumerate(quantiles)}
        return {"forecast": forecast[:, mid].tolist(), "quantiles": by_quantile, "model": self.tag}
