"""How raw observations become the forecaster's inputs, shared by training and serving.

Keeping this in one place is what makes a served forecast match the evaluated one: the same scaling
statistics and the same calendar encoding are applied to a session's values as to the training data.

Two kinds of covariate: *past* ones are observed alongside the target and read as inputs; *future* ones are
also known over the forecast horizon (a weather forecast, a holiday calendar), so the head reads their
horizon values too. Calendar features come from timestamps and are future-known by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

# Each calendar feature is a (sin, cos) pair, so midnight sits next to 23:30 and Sunday next to Monday.
CALENDAR_PERIODS = {
    "time_of_day": 86_400.0,  # seconds per day
    "day_of_week": 7 * 86_400.0,
    "day_of_year": 365.25 * 86_400.0,
}


def fixed_step(freq: str) -> pd.Timedelta | None:
    """The time between steps of ``freq``; None where it varies with the calendar (months, quarters, years)."""
    try:
        return pd.to_timedelta(pd.tseries.frequencies.to_offset(freq).nanos, unit="ns")
    except ValueError:
        return None


def mean_step(freq: str) -> pd.Timedelta:
    """The time between steps of ``freq``; for calendar frequencies their mean over 100 steps (a month's is 30.4
    days, a business day's 1.4: weekends are skipped)."""
    step = fixed_step(freq)
    if step is not None:
        return step
    start = pd.Timestamp("2000-01-03")  # a Monday
    return (start + 100 * pd.tseries.frequencies.to_offset(freq) - start) / 100


def input_width(past: tuple[str, ...], future: tuple[str, ...], calendar: tuple[str, ...]) -> int:
    """Inputs per step: the scaled target, every covariate, and a sin/cos pair per calendar feature."""
    return 1 + len(past) + len(future) + 2 * len(calendar)


def future_width(future: tuple[str, ...], calendar: tuple[str, ...]) -> int:
    """Known-ahead features per horizon step: future covariates and the calendar pairs."""
    return len(future) + 2 * len(calendar)


@dataclass(frozen=True)
class FeatureSpec:
    target: str  # name of the forecast column in the training data
    past_covariates: tuple[str, ...] = ()  # observed with the target, unknown ahead
    future_covariates: tuple[str, ...] = ()  # observed with the target and known over the horizon
    calendar: tuple[str, ...] = ()  # names from CALENDAR_PERIODS, derived from timestamps
    freq: str | None = None  # pandas offset alias of the series, e.g. "30min"; needed for calendar features
    nonnegative: bool = False  # the target is never below zero (counts, demand): forecasts are clipped at zero
    # The model reads and forecasts log(1 + target), so a season that grows with the level (sales) is a constant
    # pattern to it. Needs a target of zero or more; forecasts are mapped back and are never below zero.
    log_target: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "past_covariates", tuple(self.past_covariates))
        object.__setattr__(self, "future_covariates", tuple(self.future_covariates))
        object.__setattr__(self, "calendar", tuple(self.calendar))
        unknown = [name for name in self.calendar if name not in CALENDAR_PERIODS]
        if unknown:
            raise ValueError(f"calendar features {unknown} are unknown; choose from {sorted(CALENDAR_PERIODS)}")
        if self.calendar and self.freq is None:
            raise ValueError("calendar features need the series frequency (freq)")
        if self.calendar and self.freq is not None and fixed_step(self.freq) is None:
            # Sessions continue timestamps by adding a fixed step; months and quarters have none.
            raise ValueError(f"calendar features need a fixed step (seconds to days), got freq {self.freq!r}")
        both = set(self.past_covariates) & set(self.future_covariates)
        if both or self.target in self.covariates:
            raise ValueError(f"a column is declared twice among target, past and future covariates: {sorted(both)}")

    @property
    def covariates(self) -> tuple[str, ...]:
        """Every covariate observed at each step, in input order."""
        return self.past_covariates + self.future_covariates

    @property
    def input_dim(self) -> int:
        return input_width(self.past_covariates, self.future_covariates, self.calendar)

    @property
    def future_dim(self) -> int:
        return future_width(self.future_covariates, self.calendar)

    @property
    def known_ahead_columns(self) -> list[int]:
        """Input columns that are also known over the horizon: future covariates, then calendar."""
        first_future = 1 + len(self.past_covariates)
        return list(range(first_future, self.input_dim))

    @property
    def step(self) -> pd.Timedelta:
        step = None if self.freq is None else fixed_step(self.freq)
        if step is None:
            raise ValueError(f"the series frequency {self.freq!r} has no fixed step")
        return step

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "past_covariates": list(self.past_covariates),
            "future_covariates": list(self.future_covariates),
            "calendar": list(self.calendar),
            "freq": self.freq,
            "nonnegative": self.nonnegative,
            # Only when set: a reader from before log targets refuses fields it does not know, and still loads
            # every model in units this version writes.
            **({"log_target": True} if self.log_target else {}),
        }

    def model_target(self, target: np.ndarray) -> np.ndarray:
        """Raw target values as the model reads them, before scaling: log(1 + y) with ``log_target``."""
        return np.log1p(target) if self.log_target else target

    def in_target_units(self, forecast: np.ndarray) -> np.ndarray:
        """An unscaled forecast back in the target's units, as the target can be: at least zero for a nonnegative
        one. Only the answer is mapped and clipped, never the state, so a session stays exactly the forecast of
        its whole history."""
        if self.log_target:
            with np.errstate(over="ignore"):  # an overflow is an infinite forecast, refused where it is checked
                forecast = np.expm1(forecast)
        if self.nonnegative or self.log_target:
            return np.maximum(forecast, 0, dtype=forecast.dtype)
        return forecast

    def target_spread(self, scaling: Scaling) -> float:
        """How far the target typically moves, in its own units: the standard deviation it was scaled by. With
        ``log_target`` that deviation is of log(1 + y), which near the series' typical level stretches by
        exp(mean) (the derivative of exp), a first-order answer that keeps live scores in the target's units."""
        return scaling.std[0] * (float(np.exp(scaling.mean[0])) if self.log_target else 1.0)


@dataclass(frozen=True)
class Scaling:
    """Standardisation statistics, fitted on the training part only; index 0 is the target, then covariates."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaling:
        """values: (N, 1 + covariates) raw training rows."""
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        # A constant column (a flag that never changes in training) would divide by zero.
        std = np.where(std > 1e-8, std, 1.0)
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def scale(self, values: np.ndarray, columns: slice = slice(None)) -> np.ndarray:
        return (values - np.asarray(self.mean)[columns]) / np.asarray(self.std)[columns]

    def scale_target(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean[0]) / self.std[0]

    def unscale_target(self, z: np.ndarray) -> np.ndarray:
        return z * self.std[0] + self.mean[0]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, stored: dict[str, list[float]]) -> Scaling:
        return cls(tuple(stored["mean"]), tuple(stored["std"]))


@dataclass(frozen=True)
class RowScaling:
    """Statistics per row, for rows of several series scaled in one pass: row i by ``mean[i]`` and ``std[i]``."""

    mean: np.ndarray  # (N, 1 + covariates)
    std: np.ndarray  # (N, 1 + covariates)

    @classmethod
    def repeat(cls, scalings: list[Scaling], counts: np.ndarray) -> RowScaling:
        """``counts[k]`` rows scaled by ``scalings[k]``, in order."""
        mean = np.array([s.mean for s in scalings])  # (K, D)
        std = np.array([s.std for s in scalings])
        return cls(np.repeat(mean, counts, axis=0), np.repeat(std, counts, axis=0))

    def scale(self, values: np.ndarray, columns: slice = slice(None)) -> np.ndarray:
        return (values - self.mean[:, columns]) / self.std[:, columns]

    def unscale_target(self, z: np.ndarray) -> np.ndarray:
        """z: (N, ...), whatever follows the row axis shares that row's statistics."""
        shape = (-1,) + (1,) * (z.ndim - 1)
        return z * self.std[:, 0].reshape(shape) + self.mean[:, 0].reshape(shape)


# Calendar phases are measured from a Monday, so day_of_week starts there.
MONDAY_NS = pd.Timestamp("1970-01-05").value


def calendar_features(timestamps: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(T, 2 * len(names)) sin/cos encodings of (T,) int64 timestamps in nanoseconds since the epoch.

    Plain integers rather than a DatetimeIndex: building one and subtracting in pandas cost the service more
    than the small model's forward pass for each request.
    """
    seconds = (timestamps - MONDAY_NS) / 1e9
    periods = _periods(names)
    phase = 2 * np.pi * (seconds[:, None] % periods) / periods  # (T, len(names))
    pairs = np.empty((len(timestamps), len(names), 2))
    np.sin(phase, out=pairs[..., 0])
    np.cos(phase, out=pairs[..., 1])
    return pairs.reshape(len(timestamps), 2 * len(names))


@cache
def _periods(names: tuple[str, ...]) -> np.ndarray:
    periods = np.array([CALENDAR_PERIODS[name] for name in names], dtype=float)
    periods.flags.writeable = False  # shared by every call
    return periods


def _with_calendar(spec: FeatureSpec, scaled: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    parts = [scaled]
    if spec.calendar:
        if timestamps is None or len(timestamps) != len(scaled):
            got = None if timestamps is None else len(timestamps)
            raise ValueError(f"calendar features need {len(scaled)} timestamps, got {got}")
        parts.append(calendar_features(timestamps, spec.calendar))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _check_width(name: str, values: np.ndarray | None, rows: int, width: int) -> np.ndarray:
    if width == 0:
        return np.zeros((rows, 0))
    if values is None or values.shape != (rows, width):
        got = None if values is None else values.shape
        raise ValueError(f"{name} must be ({rows}, {width}), got {got}")
    return values


def encode_inputs(
    spec: FeatureSpec,
    scaling: Scaling | RowScaling,
    target: np.ndarray,
    covariates: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
) -> np.ndarray:
    """Builds model inputs (T, spec.input_dim) as float32 from raw values.

    target: (T,) raw values; covariates: (T, len(spec.covariates)), past then future ones; timestamps: T stamps when
    spec.calendar is set.
    """
    n = len(target)
    covariates = _check_width("covariates", covariates, n, len(spec.covariates))
    rows = np.column_stack([spec.model_target(target), covariates])
    return _with_calendar(spec, scaling.scale(rows), timestamps)


def encode_future(
    spec: FeatureSpec, scaling: Scaling | RowScaling, future: np.ndarray | None, timestamps: np.ndarray | None
) -> np.ndarray:
    """Known-ahead features (H, spec.future_dim) of the horizon, equal to the ``known_ahead_columns`` that
    ``encode_inputs`` gives for the same steps.

    future: (H, len(spec.future_covariates)) raw values; timestamps: (H,) int64 ns of the horizon's steps.
    """
    rows = len(timestamps) if timestamps is not None else (0 if future is None else len(future))
    future = _check_width("future_covariates", future, rows, len(spec.future_covariates))
    first_future = 1 + len(spec.past_covariates)
    return _with_calendar(spec, scaling.scale(future, slice(first_future, None)), timestamps)
