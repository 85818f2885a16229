"""The statistical part of a seasonal forecaster (``ForecasterConfig.seasonal_lag``), fitted before training."""

from __future__ import annotations

import numpy as np


def seasonal_carry(targets: list[np.ndarray], season: int, horizon: int) -> np.ndarray:
    """(horizon,): for each step k ahead, the least-squares coefficient of a series' change from a season before
    at step t + k on that change at step t, pooled over ``targets`` (each series' scaled training part).

    Near 1 where a week's shift from the last persists (a warm week stays warm), near 0 where it is noise (counts).
    The network starts from this forecast and learns what it misses, the coefficients with it.
    """
    num, den = np.zeros(horizon), np.zeros(horizon)
    for z in targets:
        origins = np.arange(season, len(z) - horizon)
        if not len(origins):
            continue
        change = z[origins] - z[origins - season]
        for k in range(1, horizon + 1):
            num[k - 1] += change @ (z[origins + k] - z[origins + k - season])
            den[k - 1] += change @ change
    return num / np.maximum(den, 1e-12)  # a constant series (no change at all) leaves its steps at 0
