"""Request bodies for the tiny test model (horizon 12, covariate temperature known ahead, time_of_day)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from models import Checkpoint, FeatureSpec, Forecaster, ForecasterConfig, Scaling
from service.engine import Engine
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


ENGINE_SPEC = FeatureSpec("y", ("load",), ("temperature",), ("time_of_day", "day_of_week"), "30min")
ENGINE_SCALING = Scaling((10.0, 3.0, 15.0), (2.0, 1.0, 5.0))


# Two training series of a model scaled per series: one at the pooled level, one a hundred times it.
SERIES_SCALING = {
    "small": Scaling((10.0, 3.0, 15.0), (2.0, 1.0, 5.0)),
    "large": Scaling((1000.0, 30.0, 20.0), (200.0, 4.0, 2.0)),
}


def make_engine(
    cell: str = "lstm",
    max_observe: int = 2_000,
    lagged_outputs: bool = False,
    per_series: bool = False,
    seasonal_lag: int = 0,
    smoothed_seasons: tuple[int, ...] = (),
    level_free: bool = False,
    smoothed_level: bool = False,
    spec: FeatureSpec = ENGINE_SPEC,
    scaling: Scaling = ENGINE_SCALING,
) -> Engine:
    """An engine over a randomly initialised forecaster (horizon 6, three quantiles), for in-process tests;
    ``lagged_outputs`` gives it the shared head that reads the last horizon outputs, ``per_series`` the
    statistics of two series (SERIES_SCALING), ``seasonal_lag`` a head forecasting changes from a season before,
    ``smoothed_seasons`` one forecasting changes from the smoothed seasonal forecast, ``level_free`` with a
    network that reads changes only, ``smoothed_level`` from a smoothed level (rate 0.4)."""
    torch.manual_seed(0)
    config = ForecasterConfig(
        input_dim=spec.input_dim,
        horizon=6,
        future_dim=spec.future_dim,
        cell=cell,  # type: ignore[arg-type]
        hidden_size=16,
        num_layers=2,
        quantiles=(0.1, 0.5, 0.9),
        head_hidden=8,
        context_size=4 if lagged_outputs else 0,
        lagged_outputs=lagged_outputs,
        seasonal_lag=seasonal_lag,
        smoothed_seasons=smoothed_seasons,
        level_free=level_free,
        smoothed_level=smoothed_level,
    )
    by_series = SERIES_SCALING if per_series else {}
    model = Forecaster(config)
    # Zeros (the carry, a smoothed head) would hide the seasonal part the state carries.
    if smoothed_seasons:
        for parameter in model.head.parameters():
            torch.nn.init.normal_(parameter)
        if smoothed_level:
            model.level_rate.fill_(0.4)
    elif seasonal_lag:
        torch.nn.init.normal_(model.seasonal_carry)
    checkpoint = Checkpoint(config, spec, scaling, model.state_dict(), series_scaling=by_series)
    return Engine(checkpoint, "seqcast-forecaster:test", max_observe=max_observe)
