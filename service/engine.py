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
from models.forecaster import state_rows
from service.records import NO_TIME
from service.schemas import ForecastFields, RejectedRequest, Rejection, Rows

# Scaled inputs this many training standard deviations out are a client's mistake (wrong units, a sentinel
# value), and would drive the recurrence to saturation or overflow; they are refused where they enter.
MAX_SCALED = 1e6


@dataclass(frozen=True)
class RunResult:
    forecasts: np.ndarray  # (B, horizon, outputs per step) in the target's units
    states: np.ndarray  # (B, state rows, hidden): the model's state tensors stacked along their first axis
    finite: np.ndarray  # (B,) whether each forecast is finite; a non-finite one must not be stored or sent

    @staticmethod
    def rejection() -> Rejection:
        return Rejection(422, "the model's forecast for these inputs is not finite; nothing was stored")


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
    try:
        table = np.asarray(rows, dtype=float)
        if table.shape == (count, width) or count == 0:
            return table.reshape(count, width)
    except ValueError:  # rows of different lengths: found and named below
        pass
    index, row = next((i, row) for i, row in enumerate(rows) if len(row) != width)
    raise _bad(field, f"row {index} has {len(row)} values; expected {width} ({', '.join(names)})")


def _check_range(field: str, scaled: np.ndarray, raw: np.ndarray) -> None:
    bad = ~(np.abs(scaled) <= MAX_SCALED)  # also catches values that overflowed float32
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _bad(field, f"value {raw[at]:g} at {list(at)} is far outside the training data's range")


# Calendar features come from nanosecond timestamps, which end in April 2262.
LATEST_NS = pd.Timestamp.max.value


def _nanoseconds(start: datetime) -> int:
    stamp = pd.Timestamp(start)
    try:
        return int((stamp.tz_localize(None) if stamp.tzinfo else stamp).as_unit("ns").value)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        raise _bad("start", f"must lie between {pd.Timestamp.min:%Y-%m-%d} and {pd.Timestamp.max:%Y-%m-%d}") from None


class Engine:
    def __init__(self, checkpoint: Checkpoint, tag: str, max_history: int = 20_000, max_observe: int = 2_000) -> None:
        self.checkpoint = checkpoint
        self.tag = tag
        self.max_history = max_history
        self.max_observe = max_observe
        self.spec = checkpoint.features
        self.config = checkpoint.config
        self.model = checkpoint.build_model()
        self.step_ns = self.spec.step.value if self.spec.calendar else 0

    def _future(self, rows: Rows | None, next_time: int) -> np.ndarray:
        future = _rows("future_covariates", rows, self.config.horizon, self.spec.future_covariates, "forecast step")
        stamps = None
        if self.spec.calendar:
            stamps = next_time + self.step_ns * np.arange(self.config.horizon)
        encoded = encode_future(self.spec, self.checkpoint.scaling, future, stamps)
        _check_range("future_covariates", encoded[:, : future.shape[1]], future)
        return encoded

    def _encode(
        self, field: str, values: list[float], limit: int, covariates: Rows | None, first_time: int, future: Rows | None
    ) -> Prepared:
        if len(values) > limit:
            raise _bad(field, f"has {len(values)} values; at most {limit} are accepted")
        target = np.asarray(values, dtype=float)
        n = len(target)
        past = _rows("covariates", covariates, n, self.spec.covariates, "value")
        stamps = None
        if self.spec.calendar:
            if first_time + self.step_ns * (n + self.config.horizon) > LATEST_NS:
                raise _bad(field, f"its timestamps and the forecast's would pass {pd.Timestamp.max:%Y-%m-%d}")
            stamps = first_time + self.step_ns * np.arange(n)
        with np.errstate(over="ignore"):  # an overflow to inf is caught and named just below
            inputs = encode_inputs(self.spec, self.checkpoint.scaling, target, past, stamps)
        _check_range(field, inputs[:, :1], target[:, None])
        _check_range("covariates", inputs[:, 1 : 1 + past.shape[1]], past)
        next_time = first_time + self.step_ns * n if self.spec.calendar else NO_TIME
        return Prepared(inputs, self._future(future, next_time), next_time)

    def prepare_history(
        self, history: list[float], covariates: Rows | None, start: datetime | None, future: Rows | None
    ) -> Prepared:
        first_time = NO_TIME
        if self.spec.calendar:
            if start is None:
                raise _bad("start", f"required: the model derives {', '.join(self.spec.calendar)} from timestamps")
            first_time = _nanoseconds(start)
        return self._encode("history", history, self.max_history, covariates, first_time, future)

    def prepare_observe(
        self, values: list[float], covariates: Rows | None, next_time: int, future: Rows | None
    ) -> Prepared:
        return self._encode("values", values, self.max_observe, covariates, next_time, future)

    @torch.inference_mode()
    def run(self, prepared: list[Prepared], states: list[np.ndarray | None]) -> RunResult:
        """Runs every request from its state (None: from zero) in one ragged pass."""
        zero = np.zeros(self.state_shape, dtype=np.float32)
        initial = torch.from_numpy(np.stack([zero if s is None else s for s in states]))  # (B, rows, hidden)
        parts = initial.split(state_rows(self.config), dim=1)
        state = tuple(part.transpose(0, 1).contiguous() for part in parts)
        sequences = [torch.from_numpy(p.inputs) for p in prepared]
        future = torch.from_numpy(np.stack([p.future for p in prepared]))
        forecast, new_state = self.model.forward_ragged(sequences, state, future)
        after = torch.cat([s.transpose(0, 1) for s in new_state], dim=1).numpy()  # (B, rows, hidden)
        forecasts = self.checkpoint.scaling.unscale_target(forecast.numpy()).astype(np.float32)
        finite = np.isfinite(forecasts).all(axis=(1, 2)) & np.isfinite(after).all(axis=(1, 2))
        return RunResult(forecasts, after, np.asarray(finite, dtype=bool))

    @property
    def state_shape(self) -> tuple[int, int]:
        return (sum(state_rows(self.config)), self.config.hidden_size)

    def answer(self, forecast: np.ndarray) -> ForecastFields:
        """Response fields for one (horizon, outputs) forecast."""
        quantiles = self.config.quantiles
        by_quantile = {f"{q:g}": forecast[:, i].tolist() for i, q in enumerate(quantiles)} if quantiles else None
        point = forecast[:, self.config.point_index].tolist()
        return {"forecast": point, "quantiles": by_quantile, "model": self.tag}
