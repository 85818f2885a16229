"""seqcast's own Prometheus metrics, next to BentoML's request and adaptive-batch histograms.

``bentoml.metrics`` stands in for prometheus_client so that BentoML's multiprocess mode sums every worker.
Labels are the endpoint, the model tag and bounded reasons; never a session id or any value a client sent.

Latency buckets run from 100 µs (one carried step of the default model takes about 0.2 ms here) to 10 s
(a long history on a large model under load), about three per decade.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import bentoml

from service.scoring import STEP_LABELS, Scored

SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)

FORWARD = bentoml.metrics.Histogram(
    "seqcast_forward_duration_seconds", "Model forward time per batch", ["endpoint", "model"], buckets=SECONDS
)
BATCH_SIZE = bentoml.metrics.Histogram(
    "seqcast_batch_size", "Requests per forward pass", ["endpoint", "model"], buckets=BATCH_SIZES
)
BATCH_WAIT = bentoml.metrics.Histogram(
    "seqcast_batch_wait_seconds",
    "Time from a request's parsing to the start of the batch that serves it",
    ["endpoint", "model"],
    buckets=SECONDS,
)
STORE = bentoml.metrics.Histogram(
    "seqcast_session_store_duration_seconds", "Session store round trip", ["operation"], buckets=SECONDS
)
SESSIONS = bentoml.metrics.Counter(
    "seqcast_sessions",
    "Sessions by what happened to them: opened, closed, expired, evicted, migrated (rebuilt from their tail under "
    "this model), promoted (this model's shadow state taken over)",
    ["event", "model"],
)
CONFLICTS = bentoml.metrics.Counter("seqcast_seq_conflicts", "Observes refused for a stale or future seq", ["model"])
REPLAYS = bentoml.metrics.Counter("seqcast_replays", "Retried observes answered again without applying them", ["model"])
REJECTED = bentoml.metrics.Counter("seqcast_rejected_requests", "Requests refused, by reason", ["endpoint", "reason"])


def active_sessions_gauge(shared_store: bool) -> bentoml.metrics.Gauge:
    # Each worker reports what its store holds: its own sessions (summed over workers) or, with a shared
    # store, everyone's, where the count a worker took last is the true one (a larger, older count from an
    # idle worker is not).
    return bentoml.metrics.Gauge(
        "seqcast_sessions_active",
        "Sessions held",
        ["model"],
        multiprocess_mode="livemostrecent" if shared_store else "livesum",
    )


@contextmanager
def timed(histogram: bentoml.metrics.Histogram, *labels: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(*labels).observe(time.perf_counter() - start)


# Redis' own counts, read with the session count: evictions it made (any rise is sessions dropped without a word)
# and its memory against `maxmemory`. Every worker reads the same Redis, so the latest reading is the true one.
STORE_EVICTED = bentoml.metrics.Gauge(
    "seqcast_session_store_evicted_keys",
    "Keys the session store evicted since it started (Redis INFO evicted_keys)",
    multiprocess_mode="livemostrecent",
)
STORE_MEMORY = bentoml.metrics.Gauge(
    "seqcast_session_store_memory_bytes",
    "Session store memory: used, and its limit (max; 0 when Redis has none)",
    ["kind"],
    multiprocess_mode="livemostrecent",
)


# Live accuracy (service/scoring.py), by model and horizon-step bucket: never by session, series or client value.
LIVE_SCORED = bentoml.metrics.Counter(
    "seqcast_live_scored", "Observed values scored against the forecast of their step", ["model", "steps"]
)
LIVE_ABS_ERROR = bentoml.metrics.Counter(
    "seqcast_live_abs_error", "Summed absolute error of scored values, in the target's units", ["model", "steps"]
)
LIVE_SCALED_ERROR = bentoml.metrics.Counter(
    "seqcast_live_scaled_error",
    "Summed absolute error over the training seasonal-naive MAE: divided by the scored count, the live MASE",
    ["model", "steps"],
)
LIVE_INTERVAL_HITS = bentoml.metrics.Counter(
    "seqcast_live_interval_hits",
    "Scored values inside a central interval, by its nominal coverage in percent",
    ["model", "steps", "interval"],
)
LIVE_ANOMALIES = bentoml.metrics.Counter(
    "seqcast_live_anomalies", "Observed values flagged anomalous (applied all the same)", ["model"]
)
# 1 for each model a worker loaded, by what it does: "served" answers, "shadow" follows every session unseen.
MODEL_ROLE = bentoml.metrics.Gauge("seqcast_model_role", "Models loaded, by role: served or shadow", ["model", "role"])
TEST_MASE = bentoml.metrics.Gauge(
    "seqcast_model_test_mase",
    "Each loaded model's streaming test MASE (served and shadow), from its report",
    ["model"],
    multiprocess_mode="livemax",
)


@cache
def _live_counters(model: str, bucket: int, intervals: tuple[str, ...]) -> tuple[Any, ...]:
    """The counters of one model's bucket, looked up once: a labels() call costs as much as the scoring."""
    steps = STEP_LABELS[bucket]
    hits = tuple(LIVE_INTERVAL_HITS.labels(model, steps, interval) for interval in intervals)
    scored, absolute, scaled = (c.labels(model, steps) for c in (LIVE_SCORED, LIVE_ABS_ERROR, LIVE_SCALED_ERROR))
    return scored, absolute, scaled, hits


def count_scores(model: str, scored: Scored, intervals: tuple[str, ...]) -> None:
    """Adds one observe's scores to the live-accuracy counters: a few increments per bucket it touched."""
    for bucket, sums in scored.buckets.items():
        count, absolute, scaled, hits = _live_counters(model, bucket, intervals)
        count.inc(sums.count)
        absolute.inc(sums.abs_error)
        scaled.inc(sums.scaled_error)
        for counter, inside in zip(hits, sums.hits, strict=True):
            counter.inc(inside)
    if scored.anomalous:
        LIVE_ANOMALIES.labels(model).inc(len(scored.anomalous))
