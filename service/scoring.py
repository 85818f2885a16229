"""Live accuracy: a session's forecasts scored as the actual values arrive.

A session keeps the forecast it made at its latest *scoring origin*, picked as evaluation picks test origins:
for intraday data with timestamps, each forecast whose first step is at midnight (day-ahead, as the report's
origins); otherwise every ``horizon`` observations counted from the session's first value. Each value observed
within that forecast's horizon is scored against the step it falls on: its absolute error, that error over
the model's training seasonal-naive MAE (so the live MASE is the report's test MASE, on live data), and for a
quantile model whether it fell inside each central interval. A forecast made inside a multi-value observe is
never seen, so an observe that runs past an origin scores nothing beyond the old origin's horizon until the
session ends an observe on an origin again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

DAY_NS = 86_400 * 10**9
# Horizon steps (1-based) are counted in these buckets: a fixed set of labels whatever the model's horizon.
STEP_BUCKETS = ((1, "1"), (2, "2-3"), (4, "4-7"), (8, "8-15"), (16, "16-31"), (32, "32-63"), (64, "64+"))
_BUCKET_STARTS = np.array([start for start, _ in STEP_BUCKETS])
STEP_LABELS = tuple(label for _, label in STEP_BUCKETS)


def step_bucket(steps: np.ndarray) -> np.ndarray:
    """Index into STEP_BUCKETS of each 1-based horizon step."""
    return np.searchsorted(_BUCKET_STARTS, steps, side="right") - 1


@dataclass(frozen=True)
class BucketSums:
    """Scores of the values that fell on one bucket of horizon steps."""

    count: int
    abs_error: float
    scaled_error: float
    hits: tuple[int, ...]  # values inside each central interval, widest first


@dataclass(frozen=True)
class Scored:
    """What one observe's values scored, summed by step bucket (STEP_BUCKETS index), and which of them were
    anomalous (positions in the observe's values)."""

    buckets: dict[int, BucketSums]
    anomalous: list[int]


NOTHING = Scored({}, [])


@dataclass(frozen=True)
class Scorer:
    horizon: int
    point: int  # output index of the point forecast
    quantiles: tuple[float, ...]
    naive_scale: dict[str, float]  # training seasonal-naive MAE of each training series, in its units
    test_mase: float  # the exported model's streaming test MASE
    # Point models: a value is anomalous this many times the model's usual error from its forecast: its test MASE
    # in scaled errors. Relative to the model, so that a rough model does not flag every value.
    anomaly_k: float
    origin_every_day: bool  # intraday data with timestamps: origins are midnights
    step_ns: int  # the model's step, 0 where it has none
    # For a series the model did not train on (scaled by its own statistics): the typical training naive MAE in
    # training standard deviations, multiplied by the session's own deviation.
    scale_in_std: float

    @classmethod
    def from_metadata(
        cls,
        metadata: dict[str, Any],
        horizon: int,
        point: int,
        quantiles: tuple[float, ...],
        step_ns: int,
        anomaly_k: float,
    ) -> Scorer | None:
        """The scorer a model's export metadata allows; None for a model exported before live scoring."""
        scales = metadata.get("naive_scales")
        streaming = metadata.get("test_metrics", {}).get("streaming", {})
        if not isinstance(scales, dict) or not scales or "mase" not in streaming:
            return None
        intraday = 0 < step_ns < DAY_NS and DAY_NS % step_ns == 0
        stds = metadata.get("naive_scale_in_std", 1.0)
        return cls(
            horizon,
            point,
            quantiles,
            {str(k): float(v) for k, v in scales.items()},
            float(streaming["mase"]),
            anomaly_k,
            origin_every_day=intraday,
            step_ns=step_ns,
            scale_in_std=float(stds),
        )

    @cached_property
    def interval_labels(self) -> tuple[str, ...]:
        """Each central interval by its nominal coverage in percent, widest first: (0.1, 0.5, 0.9) has "80"."""
        q = self.quantiles
        return tuple(f"{round(100 * (q[-1 - i] - q[i]))}" for i in range(len(q) // 2))

    def is_origin(self, seq: int, next_time: int, timed: bool) -> bool:
        """Whether a forecast answered at ``seq`` with its first step at ``next_time`` is one to score. A session
        whose steps never fall on midnight (30-minute data from 00:15) counts its origins by steps instead."""
        if self.origin_every_day and timed and next_time % self.step_ns == 0:
            return next_time % DAY_NS == 0
        return seq % self.horizon == 0

    def scale_for(self, series: str | None, own_spread: float | None) -> float:
        """``own_spread``: for a session scaled by its own history, its ``FeatureSpec.target_spread``."""
        if series is not None and series in self.naive_scale:
            return self.naive_scale[series]
        if own_spread is not None:
            return self.scale_in_std * own_spread
        return self.pooled_scale

    @cached_property
    def pooled_scale(self) -> float:
        """All series scaled alike: a session names none, so it is scored by the mean of their scales."""
        return float(np.mean(list(self.naive_scale.values())))

    def score(self, origin: np.ndarray, since: int, values: np.ndarray, scale: float) -> Scored:
        """Values observed ``since`` steps after the origin, against its forecast (horizon, outputs). Nothing
        is scored by a scale that is not positive (a series constant in training has no naive error)."""
        if since >= self.horizon or not scale > 0:
            return NOTHING
        if len(values) == 1:  # most observes: plain floats, where numpy's per-call cost would dominate
            return self._score_one(origin[since].tolist(), since, float(values[0]), scale)
        steps = since + np.arange(len(values))
        inside = steps < self.horizon
        k = steps[inside]
        actual = values[inside]
        forecast = origin[k].astype(np.float64)
        abs_error = np.abs(actual - forecast[:, self.point])
        scaled = abs_error / scale
        pairs = len(self.quantiles) // 2
        hits = np.zeros((len(k), pairs), dtype=bool)
        for i in range(pairs):
            hits[:, i] = (actual >= forecast[:, i]) & (actual <= forecast[:, -1 - i])
        outside = ~hits[:, 0] if pairs else scaled > self.anomaly_k * self.test_mase
        bucket = step_bucket(k + 1)
        buckets = {}
        for b in np.unique(bucket).tolist():
            at = bucket == b
            counts = tuple(int(n) for n in hits[at].sum(axis=0))
            buckets[b] = BucketSums(int(at.sum()), float(abs_error[at].sum()), float(scaled[at].sum()), counts)
        return Scored(buckets, np.flatnonzero(inside)[outside].tolist())

    def _score_one(self, forecast: list[float], since: int, actual: float, scale: float) -> Scored:
        abs_error = abs(actual - forecast[self.point])
        scaled = abs_error / scale
        pairs = len(self.quantiles) // 2
        hits = tuple(int(forecast[i] <= actual <= forecast[-1 - i]) for i in range(pairs))
        outside = not hits[0] if pairs else scaled > self.anomaly_k * self.test_mase
        bucket = int(step_bucket(np.array([since + 1]))[0]) if since >= 63 else _SMALL_BUCKETS[since]
        return Scored({bucket: BucketSums(1, abs_error, scaled, hits)}, [0] if outside else [])


# The bucket of each of the first 63 steps, looked up rather than searched for one value.
_SMALL_BUCKETS = step_bucket(np.arange(1, 64)).tolist()
