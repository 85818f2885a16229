"""The statistical part of a seasonal forecaster (``ForecasterConfig.seasonal_lag``), fitted before training."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from models.forecaster import Forecaster

RATES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # tried for each season: from a memory of ~50 rounds to ~2
LEVEL_RATES = (1.0, 0.7, 0.5, 0.3, 0.2, 0.1)  # 1: the last value; 0.1: a level of about ten steps
ORIGIN_STRIDE = 8  # neighbouring origins score nearly the same


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


@torch.no_grad()
def fit_season_rates(model: Forecaster, targets: list[np.ndarray]) -> tuple[float, ...]:
    """Sets ``model.season_rates`` (see ``ForecasterConfig.smoothed_seasons``) to the combination of ``RATES`` whose
    smoothed forecast has the least mean absolute error over the horizon on ``targets`` (each series' scaled
    training part), from origins past two rounds of the longest season; then, with ``smoothed_level``, the
    ``LEVEL_RATES`` one for those seasons (the seasons' own fit reads the last value). Returns the rates, the
    level's last."""
    horizon, longest = model.config.horizon, model.config.smoothed_seasons[-1]
    pairs = []
    for z in targets:
        origins = np.arange(2 * longest, len(z) - horizon, ORIGIN_STRIDE)
        if len(origins):
            pairs.append((torch.from_numpy(z.astype(np.float32)).unsqueeze(0), origins))  # (1, T), (N,)
    if not pairs:
        raise ValueError(f"no series' training part is longer than two seasons of {longest} and a horizon")

    def error(buffer: torch.Tensor, rates: tuple[float, ...]) -> float:
        buffer.copy_(torch.tensor(rates).reshape(buffer.shape))
        absolute = total = 0.0
        for series, origins in pairs:
            forecast = model.smoothed_forecasts(series)[0].numpy()[origins]
            actual = series[0].numpy()[origins[:, None] + 1 + np.arange(horizon)]
            absolute, total = absolute + float(np.abs(forecast - actual).sum()), total + actual.size
        return absolute / total

    if model.config.smoothed_level:
        model.level_rate.fill_(1.0)
    combinations = itertools.product(RATES, repeat=len(model.config.smoothed_seasons))
    rates = min(combinations, key=lambda rates: error(model.season_rates, rates))
    model.season_rates.copy_(torch.tensor(rates))
    if not model.config.smoothed_level:
        return rates
    level = min(LEVEL_RATES, key=lambda rate: error(model.level_rate, (rate,)))
    model.level_rate.fill_(level)
    return (*rates, level)
