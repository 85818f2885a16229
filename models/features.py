"""How raw observations become the forecaster's inputs, shared by training and serving.

Keeping this in one place is what makes a served forecast match the evaluated one: the same scaling
statistics and the same calendar encoding are applied to a session's values as to the training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Each calendar feature is a (sin, cos) pair, so midnight sits next to 23:30 and Sunday next to Monday.
CALENDAR_PERIODS = {
    "time_of_day": 86_400.0,  # seconds per day
    "day_of_week": 7 * 86_400.0,
    "day_of_year": 365.25 * 86_400.0,
}


def input_width(covariates: tuple[str, ...] | list[str], calendar: tuple[str, ...] | list[str]) -> int:
    """Model inputs per step: the scaled target, each covariate, and a sin/cos pair per calendar feature."""
    return 1 + len(covariates) + 2 * len(calendar)


@dataclass(frozen=True)
class FeatureSpec:
    target: str  # name of the forecast column in the training data
    covariates: tuple[str, ...] = ()  # observed numeric columns, read alongside the target
    calendar: tuple[str, ...] = ()  # names from CALENDAR_PERIODS, derived from timestamps
    freq: str | None = None  # pandas offset alias of the series, e.g. "30min"; needed for calendar features

    def __post_init__(self) -> None:
        unknown = [name for name in self.calendar if name not in CALENDAR_PERIODS]
        if unknown:
            raise ValueError(f"calendar features {unknown} are unknown; choose from {sorted(CALENDAR_PERIODS)}")
        if self.calendar and self.freq is None:
            raise ValueError("calendar features need the series frequency (freq)")
        object.__setattr__(self, "covariates", tuple(self.covariates))
        object.__setattr__(self, "calendar", tuple(self.calendar))

    @property
    def input_dim(self) -> int:
        return input_width(self.covariates, self.calendar)

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "covariates": list(self.covariates),
            "calendar": list(self.calendar),
            "freq": self.freq,
        }


@dataclass(frozen=True)
class Scaling:
    """Standardisation statistics, fitted on the training part only; index 0 is the target."""

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

    def scale(self, values: np.ndarray) -> np.ndarray:
        return (values - np.asarray(self.mean)) / np.asarray(self.std)

    def unscale_target(self, z: np.ndarray) -> np.ndarray:
        return z * self.std[0] + self.mean[0]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


def calendar_features(timestamps: pd.DatetimeIndex, names: tuple[str, ...]) -> np.ndarray:
    """(T, 2 * len(names)) sin/cos encodings of the timestamps."""
    seconds = (timestamps - pd.Timestamp("1970-01-05")).total_seconds().to_numpy()  # 1970-01-05 was a Monday
    columns = []
    for name in names:
        phase = 2 * np.pi * (seconds % CALENDAR_PERIODS[name]) / CALENDAR_PERIODS[name]
        columns += [np.sin(phase), np.cos(phase)]
    return np.stack(columns, axis=-1) if columns else np.zeros((len(timestamps), 0))


def encode_inputs(
    spec: FeatureSpec,
    scaling: Scaling,
    target: np.ndarray,
    covariates: np.ndarray | None = None,
    timestamps: pd.DatetimeIndex | None = None,
) -> np.ndarray:
    """Builds model inputs (T, spec.input_dim) as float32 from raw values.

    target: (T,); covariates: (T, len(spec.covariates)); timestamps: T stamps when spec.calendar is set.
    """
    n = len(target)
    raw = target.reshape(n, 1)
    if spec.covariates:
        if covariates is None or covariates.shape != (n, len(spec.covariates)):
            got = None if covariates is None else covariates.shape
            raise ValueError(f"covariates must be ({n}, {len(spec.covariates)}), got {got}")
        raw = np.concatenate([raw, covariates], axis=1)
    parts = [scaling.scale(raw)]
    if spec.calendar:
        if timestamps is None or len(timestamps) != n:
            raise ValueError(f"calendar features need {n} timestamps")
        parts.append(calendar_features(timestamps, spec.calendar))
    return np.concatenate(parts, axis=1).astype(np.float32)
