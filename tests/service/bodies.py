"""Request bodies for the tiny test model (horizon 12, covariate temperature known ahead, time_of_day)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tests.conftest import synthetic_frame

HORIZON = 12
START = pd.Timestamp("2024-03-01 00:00")
STEP = pd.Timedelta("30min")


def series(points: int, seed: int = 0) -> tuple[list[float], list[list[float]]]:
    frame = synthetic_frame(points=points, seed=seed)
    return frame.y.tolist(), [[t] for t in frame.temperature]


def ahead(seed: int = 0) -> list[list[float]]:
    return [[15.0 + 0.1 * seed + 0.2 * k] for k in range(HORIZON)]


def history_body(values: list[float], temps: list[list[float]], seed: int = 0) -> dict[str, Any]:
    return {"history": values, "covariates": temps, "start": START.isoformat(), "future_covariates": ahead(seed)}


def observe_body(
    session: str, seq: int, values: list[float], temps: list[list[float]], seed: int = 0
) -> dict[str, Any]:
    return {"session_id": session, "seq": seq, "values": values, "covariates": temps, "future_covariates": ahead(seed)}
