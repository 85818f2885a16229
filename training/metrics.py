"""Forecast accuracy metrics over arrays of origins × horizon steps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.features import fixed_step


def point_metrics(actual: np.ndarray, forecast: np.ndarray, mase_scale: np.ndarray) -> dict[str, float]:
    """actual, forecast: (N, H); mase_scale: (N,) in-sample seasonal-naive MAE of each origin's series."""
    error = forecast - actual
    denominator = np.abs(actual) + np.abs(forecast)
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "mape": float(100 * (np.abs(error) / np.abs(actual)).mean()),
        "smape": float(200 * np.mean(np.abs(error) / np.where(denominator == 0, 1, denominator))),
        "mase": float((np.abs(error).mean(axis=1) / mase_scale).mean()),
    }


def interval_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper]; all (N, H)."""
    return float(((actual >= lower) & (actual <= upper)).mean())


def seasonal_naive_scale(train_target: np.ndarray, season: int) -> float:
    """MASE denominator: mean absolute seasonal difference over the training part."""
    return float(np.abs(train_target[season:] - train_target[:-season]).mean())


def season_length(freq: str) -> int:
    """Steps per day for intraday data, 7 for daily, 12 for monthly, 4 for quarterly, else 1 (none assumed)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if isinstance(offset, pd.offsets.MonthBegin | pd.offsets.MonthEnd) and 12 % offset.n == 0:
        return 12 // offset.n
    if isinstance(offset, pd.offsets.QuarterBegin | pd.offsets.QuarterEnd) and offset.n == 1:
        return 4
    step, day = fixed_step(freq), pd.Timedelta(days=1)
    if step is None:  # other calendar-based steps: years, business days
        return 1
    if step < day and day % step == pd.Timedelta(0):
        return int(day / step)
    return 7 if step == day else 1
