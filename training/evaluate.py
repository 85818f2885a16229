"""Evaluates a trained checkpoint on the test part, against naive baselines on the same origins.

Two readings of the same model: *windowed* (each origin reads its last ``input_size`` points from a zero
state, as a stateless API would) and *streaming* (one state carried through the whole series, as a service
session does). A large gap between them says the served path is not the evaluated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.checkpoint import Checkpoint
from models.features import encode_inputs, fixed_step
from models.forecaster import Forecaster
from training.data import Series
from training.datamodule import SeriesDataModule
from training.metrics import (
    Scores,
    interval_coverage,
    naive_seasons,
    point_metrics,
    season_length,
    seasonal_naive_scale,
)


@dataclass
class SeriesForecasts:
    """Everything forecast for one series at its test origins, in the target's own units."""

    series: Series
    origins: np.ndarray  # (N,) index of the last observation each forecast reads
    actual: np.ndarray  # (N, H)
    windowed: np.ndarray  # (N, H, Q)
    streaming: np.ndarray  # (N, H, Q)
    baselines: dict[str, np.ndarray]  # (N, H) by name: naive, then seasonal naive at each season it is tried at
    hidden: np.ndarray  # (T, hidden) top-layer outputs of the streaming pass
    mase_scale: float


def test_origins(series: Series, start: int, horizon: int, season: int) -> np.ndarray:
    """Origins whose forecasts lie inside the test part: each midnight for intraday data (day-ahead), else
    every ``season`` steps."""
    last = len(series) - horizon
    candidates = np.arange(start - 1, last)
    if season > 1 and series.timestamps[1] - series.timestamps[0] < pd.Timedelta(days=1):
        next_stamp = series.timestamps[candidates + 1]
        return candidates[(next_stamp.hour == 0) & (next_stamp.minute == 0)]
    return candidates[:: max(1, season)]


def scored_origins(
    data: SeriesDataModule, series: Series, horizon: int, season: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """What every method is scored on: a series' test origins (N,), the actual values over each origin's
    horizon (N, H), and the series' MASE scale."""
    origins = test_origins(series, data.test_part(series).start, horizon, season)
    actual = series.target[origins[:, None] + 1 + np.arange(horizon)]
    return origins, actual, seasonal_naive_scale(series.target[: data.train_part(series).end], season)


def baseline_name(season: int, primary: int) -> str:
    """The report's name of seasonal naive at ``season``: plain at the MASE's season, else with its length."""
    return "seasonal_naive" if season == primary else f"seasonal_naive_{season}"


def baseline_forecasts(y: np.ndarray, origins: np.ndarray, horizon: int, freq: str) -> dict[str, np.ndarray]:
    """Naive and seasonal naive at every season the frequency suggests, each (N, H). A season longer than the
    history before the first origin is left out."""
    primary = season_length(freq)
    baselines = {"naive": np.repeat(y[origins][:, None], horizon, axis=1)}
    for season in naive_seasons(freq):
        if origins.min() + 1 >= season:
            baselines[baseline_name(season, primary)] = seasonal_naive_forecasts(y, origins, horizon, season)
    return baselines


def method_label(name: str, report: dict[str, Any]) -> str:
    """A report's method in words: ``seasonal_naive_336`` of half-hourly data is "seasonal naive, 336 steps (7
    days)"."""
    if name == "naive":
        return "naive (the last value)"
    if not name.startswith("seasonal_naive"):
        return name
    season = int(name.removeprefix("seasonal_naive_")) if name != "seasonal_naive" else int(report["season"])
    step = fixed_step(str(report.get("freq")))
    span = f" ({duration(step * season)})" if step is not None else ""
    return f"seasonal naive, {season} steps{span}"


def duration(span: pd.Timedelta) -> str:
    """``7 days``, ``1 day``, or pandas' own form for what is not whole days (``0 days 12:00:00``)."""
    days = span / pd.Timedelta(days=1)
    if days == int(days):
        return f"{int(days)} day" + ("" if days == 1 else "s")
    return str(span)


def seasonal_naive_forecasts(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(N, H): at each origin, the value one season before each horizon step."""
    steps = np.arange(horizon)
    # Step k repeats the value one season before it, wrapping to the last observed season beyond it.
    lag = origins[:, None] + 1 + (steps % season) - season
    return y[lag]


@torch.no_grad()
def forecast_series(
    model: Forecaster, checkpoint: Checkpoint, data: SeriesDataModule, series: Series
) -> SeriesForecasts:
    horizon, season = model.config.horizon, season_length(str(checkpoint.features.freq))
    # Encoded with the checkpoint's statistics, so the report judges exactly what would be served.
    scaling = checkpoint.scaling_for(series.uid if checkpoint.series_scaling else None)
    inputs = encode_inputs(checkpoint.features, scaling, series.target, series.covariates, series.timestamps.asi8)
    origins, actual, mase_scale = scored_origins(data, series, horizon, season)
    ahead = inputs[:, checkpoint.features.known_ahead_columns]
    future = torch.from_numpy(np.stack([ahead[o + 1 : o + 1 + horizon] for o in origins]))  # (N, H, F)
    windowed = windowed_forecasts(model, inputs, origins, future, data.input_size)
    whole = torch.from_numpy(inputs).unsqueeze(0)  # (1, T, D)
    hidden, _ = model.encode(whole)  # (1, T, hidden)
    anchor = model.anchor(whole)  # (1, T[, H]) what each step's forecasts are changes from, or None
    streaming = model.decode(model.readout(hidden)[0, origins], future, None if anchor is None else anchor[0, origins])
    return SeriesForecasts(
        series=series,
        origins=origins,
        actual=actual,
        windowed=checkpoint.features.in_target_units(scaling.unscale_target(windowed.numpy())),
        streaming=checkpoint.features.in_target_units(scaling.unscale_target(streaming.numpy())),
        baselines=baseline_forecasts(series.target, origins, horizon, str(checkpoint.features.freq)),
        hidden=hidden[0].numpy(),
        mase_scale=mase_scale,
    )


def windowed_forecasts(
    model: Forecaster, inputs: np.ndarray, origins: np.ndarray, future: torch.Tensor, input_size: int
) -> torch.Tensor:
    """(N, H, Q): each origin forecast from its last ``input_size`` inputs, or all before it where fewer, from a
    zero state. Origins with windows of one length are forecast together."""
    starts = np.maximum(origins - input_size + 1, 0)
    lengths = origins + 1 - starts
    windowed = torch.empty(len(origins), model.config.horizon, model.config.outputs_per_step)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        windows = np.stack([inputs[starts[i] : origins[i] + 1] for i in rows])  # (n, length, D)
        windowed[rows], _ = model(torch.from_numpy(windows), future=future[rows])
    return windowed


def build_report(checkpoint: Checkpoint, forecasts: list[SeriesForecasts]) -> dict[str, Any]:
    quantiles = checkpoint.config.quantiles
    mid = checkpoint.config.point_index
    actual = np.concatenate([f.actual for f in forecasts])
    scale = np.concatenate([np.full(len(f.origins), f.mase_scale) for f in forecasts])
    methods: dict[str, Scores] = {}
    for name in ("windowed", "streaming"):
        full = np.concatenate([getattr(f, name) for f in forecasts])  # (N, H, Q)
        methods[name] = point_metrics(actual, full[..., mid], scale)
        if len(quantiles) >= 2:
            methods[name]["coverage"] = interval_coverage(actual, full[..., 0], full[..., -1])
            methods[name]["nominal_coverage"] = quantiles[-1] - quantiles[0]
    # A baseline counts where every series has it (a long season may not fit a short series' history).
    names = [name for name in forecasts[0].baselines if all(name in f.baselines for f in forecasts)]
    for name in names:
        methods[name] = point_metrics(actual, np.concatenate([f.baselines[name] for f in forecasts]), scale)
    strongest = min(names, key=lambda name: methods[name]["mase"])
    return {
        "origins": int(len(actual)),
        "horizon": checkpoint.config.horizon,
        "season": season_length(str(checkpoint.features.freq)),
        "freq": checkpoint.features.freq,
        "metrics": methods,
        "strongest_naive": strongest,
        # Each series' MASE denominator, in its units: what the service scores live errors by.
        "naive_scales": {f.series.uid: f.mase_scale for f in forecasts},
        "streaming_vs_windowed_mae": methods["streaming"]["mae"] / methods["windowed"]["mae"],
        "mase_gain_over_strongest_naive": 1 - methods["streaming"]["mase"] / methods[strongest]["mase"],
    }


def evaluate(checkpoint: Checkpoint, data: SeriesDataModule) -> tuple[dict[str, Any], list[SeriesForecasts]]:
    """Forecasts every series' test origins with the checkpoint; returns the report and the forecasts."""
    data.setup()
    model = checkpoint.build_model()
    forecasts = [forecast_series(model, checkpoint, data, series) for series in data.series]
    return build_report(checkpoint, forecasts), forecasts
