"""Forecast accuracy metrics over arrays of origins × horizon steps."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd

from models.features import fixed_step


class Scores(TypedDict):
    mae: float
    rmse: float
    mape: float | None  # undefined where an actual value is zero (counts, quiet hours)
    smape: float
    mase: float
    coverage: NotRequired[float]  # quantile models: share of actual values inside the widest interval
    nominal_coverage: NotRequired[float]


def point_metrics(actual: np.ndarray, forecast: np.ndarray, mase_scale: np.ndarray) -> Scores:
    """actual, forecast: (N, H); mase_scale: (N,) in-sample seasonal-naive MAE of each origin's series."""
    error = forecast - actual
    denominator = np.abs(actual) + np.abs(forecast)
    zero = actual == 0
    return {  # sMAPE and MASE stay defined where MAPE is not
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "mape": None if zero.any() else float(100 * (np.abs(error) / np.abs(actual)).mean()),
        "smape": float(200 * np.mean(np.abs(error) / np.where(denominator == 0, 1, denominator))),
        "mase": float((np.abs(error).mean(axis=1) / mase_scale).mean()),
    }


def interval_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper]; all (N, H)."""
    return float(((actual >= lower) & (actual <= upper)).mean())


def seasonal_naive_scale(train_target: np.ndarray, season: int) -> float:
    """MASE denominator: mean absolute seasonal difference over the training part."""
    return float(np.abs(train_target[season:] - train_target[:-season]).mean())


def naive_seasons(freq: str) -> list[int]:
    """Seasons a seasonal naive is tried at, shortest first: a day and a week for intraday data, a week for
    daily, a year for weekly, monthly and quarterly data. Patterns longer than the series leave theirs out."""
    season = season_length(freq)
    step = fixed_step(freq)
    if step is not None and step < pd.Timedelta(days=1) and season > 1:
        return [season, 7 * season]
    if step == pd.Timedelta(days=7):
        return [52]
    return [season] if season > 1 else []


def season_length(freq: str) -> int:
    """Steps per day for intraday data, 7 for daily, 5 for business days, 12 for monthly, 4 for quarterly, else 1
    (none assumed)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if isinstance(offset, pd.offsets.MonthBegin | pd.offsets.MonthEnd) and 12 % offset.n == 0:
        return 12 // offset.n
    if isinstance(offset, pd.offsets.QuarterBegin | pd.offsets.QuarterEnd) and offset.n == 1:
        return 4
    if isinstance(offset, pd.offsets.BusinessDay) and offset.n == 1:
        return 5  # a working week
    step, day = fixed_step(freq), pd.Timedelta(days=1)
    if step is None:  # other calendar-based steps: years, weeks anchored on a weekday
        return 1
    if step < day and day % step == pd.Timedelta(0):
        return int(day / step)
    return 7 if step == day else 1
