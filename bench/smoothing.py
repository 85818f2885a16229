"""Variants of the smoothed-seasons forecast (``ForecasterConfig.smoothed_seasons``) on taylor, with no network,
scored on the accuracy bench's test origins: what one would try next to close the gap to MSTL-ETS.

Every variant with a choice to make (rates, a coefficient) makes it on the validation part's origins, or fits
it on the training part, as ``fit`` would; the test part only scores. The series is standardised by its
training part, which leaves MASE as it is.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
import yaml

from bench.accuracy import CONFIGS, statistical
from bench.report import Table, progress
from models import Forecaster, ForecasterConfig
from training.datamodule import SeriesDataModule
from training.evaluate import scored_origins, test_origins
from training.metrics import seasonal_naive_scale
from training.seasonal import RATES, fit_season_rates

DAY, WEEK, HORIZON = 48, 336, 48
PHIS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)  # how much of the last deviation from the pattern persists a step
DRIFT_RATES = (0.01, 0.02, 0.05, 0.1, 0.2)
LAGS = (1, 4, 12, 48)  # innovations read by the least-squares correction
TAIL_WEEKS = (2, 4, 6)  # 4: configs/taylor.yaml's input_size, the tail a session keeps by default


class Scorer:
    """MASE of forecasts (T, H), one per origin of the standardised series, at validation or test origins."""

    def __init__(self, z: np.ndarray, val_origins: np.ndarray, test: np.ndarray, scale: float) -> None:
        self.z, self.scale, self.origins = z, scale, {"val": val_origins, "test": test}

    def __call__(self, forecasts: np.ndarray, part: str) -> float:
        origins = self.origins[part]
        actual = self.z[origins[:, None] + 1 + np.arange(HORIZON)]
        return float(np.abs(actual - forecasts[origins]).mean() / self.scale)


def smoothed(z: np.ndarray, rates: tuple[float, ...]) -> np.ndarray:
    """(T, H): the shipped smoothed forecast at every step, from the model's own code."""
    model = _model()
    model.season_rates.copy_(torch.tensor(rates))
    return model.smoothed_forecasts(torch.from_numpy(z.astype(np.float32)).unsqueeze(0))[0].double().numpy()


def _model() -> Forecaster:
    config = ForecasterConfig(input_dim=1, horizon=HORIZON, seasonal_lag=WEEK, smoothed_seasons=(DAY, WEEK))
    return Forecaster(config)


def rebuilt(z: np.ndarray, rates: tuple[float, ...], origins: np.ndarray, tail: int) -> np.ndarray:
    """(T, H), NaN but at ``origins``: the shipped forecast of only the last ``tail`` values at each origin, what a
    session rebuilt from a tail of that length answers right after a model upgrade (service/migration.py)."""
    if origins.min() + 1 < tail:
        raise ValueError(f"an origin at {origins.min()} has fewer than {tail} values before it")
    forecasts = np.full((len(z), HORIZON), np.nan)
    for origin in origins:
        forecasts[origin] = smoothed(z[origin + 1 - tail : origin + 1], rates)[-1]
    return forecasts


def innovations(z: np.ndarray, forecasts: np.ndarray) -> np.ndarray:
    """(T,): each step's error against the one-step forecast before it (0 at the first)."""
    return np.concatenate([[0.0], z[1:] - forecasts[:-1, 0]])


def decaying(forecasts: np.ndarray, errors: np.ndarray, phi: float) -> np.ndarray:
    """The last value's deviation from the pattern (errors summed with decay ``phi``) fades as phi^k ahead,
    Taylor's AR(1) error correction; phi 1 is the shipped forecast."""
    deviation = np.zeros_like(errors)
    for t in range(1, len(errors)):
        deviation[t] = phi * deviation[t - 1] + errors[t]
    return forecasts + (phi ** np.arange(1, HORIZON + 1) - 1) * deviation[:, None]


def drifting(forecasts: np.ndarray, errors: np.ndarray, rate: float, phi: float) -> np.ndarray:
    """Plus a damped drift: the innovations' exponentially smoothed mean, carried ahead with damping ``phi``."""
    drift = np.zeros_like(errors)
    for t in range(1, len(errors)):
        drift[t] = (1 - rate) * drift[t - 1] + rate * errors[t]
    return forecasts + np.cumsum(phi ** np.arange(1, HORIZON + 1))[None, :] * drift[:, None]


def corrected(forecasts: np.ndarray, errors: np.ndarray, z: np.ndarray, lags: int, fit: np.ndarray) -> np.ndarray:
    """Plus least squares, per step ahead, of the forecast's error on the last ``lags`` innovations, fitted at
    the origins ``fit``."""
    steps = np.arange(len(z))
    read = np.stack([errors[np.maximum(steps - j, 0)] for j in range(lags)] + [np.ones(len(z))], axis=1)
    actual = z[fit[:, None] + 1 + np.arange(HORIZON)]
    coefficients = np.linalg.lstsq(read[fit], actual - forecasts[fit], rcond=None)[0]
    return forecasts + read @ coefficients


def holt_winters(z: np.ndarray, alpha: float, delta: float, omega: float) -> np.ndarray:
    """(T, H): additive double-seasonal Holt-Winters in levels (Taylor 2003), started from two weeks' means;
    NaN before then."""
    start = 2 * WEEK
    level = z[:start].mean()
    week = z[:start].reshape(2, WEEK).mean(0) - level
    day = week.reshape(7, DAY).mean(0)
    daily, weekly = np.zeros(len(z)), np.zeros(len(z))
    daily[:start], weekly[:start] = np.tile(day, start // DAY), np.tile(week - np.tile(day, 7), 2)
    forecasts = np.full((len(z), HORIZON), np.nan)
    ahead = np.arange(1, HORIZON + 1)
    for t in range(start, len(z)):
        error = z[t] - (level + daily[t - DAY] + weekly[t - WEEK])
        level += alpha * error
        daily[t], weekly[t] = daily[t - DAY] + delta * error, weekly[t - WEEK] + omega * error
        forecasts[t] = level + daily[t + ahead - DAY] + weekly[t + ahead - WEEK]
    return forecasts


def run(out: Path) -> Table:
    options = yaml.safe_load(CONFIGS["taylor"].read_text())["data"]
    data = SeriesDataModule(**options)
    data.setup()
    series = data.series[0]
    train_end, val = data.train_part(series).end, data.val_part(series)
    y = series.target.astype(float)
    z = (y - y[:train_end].mean()) / y[:train_end].std()
    test, _, _ = scored_origins(data, series, HORIZON, DAY)
    val_origins = test_origins(series, val.start, HORIZON, DAY)
    val_origins = val_origins[val_origins + HORIZON < val.end]
    score = Scorer(z, val_origins, test, seasonal_naive_scale(z[:train_end], DAY))
    fit_origins = np.arange(2 * WEEK, train_end - HORIZON, 8)  # the training part's, as fit_season_rates reads
    table = Table("smoothing", ["variant", "chosen on", "validation MASE", "test MASE"])

    def add(name: str, chosen: str, forecasts: np.ndarray) -> None:
        table.add(name, chosen, score(forecasts, "val"), score(forecasts, "test"))

    progress("smoothing: every pair of rates on taylor")
    shipped_rates = fit_season_rates(_model(), [z[:train_end]])
    pairs = {rates: smoothed(z, rates) for rates in itertools.product(RATES, repeat=2)}
    shipped = pairs[shipped_rates]
    add(f"shipped: rates {shipped_rates} (a day, a week)", "training part", shipped)
    best_val = min(pairs, key=lambda rates: score(pairs[rates], "val"))
    add(f"rates {best_val}", "validation", pairs[best_val])
    best_test = min(pairs, key=lambda rates: score(pairs[rates], "test"))
    add(f"rates {best_test}, for reference", "test", pairs[best_test])
    add(f"the mean forecast of all {len(pairs)} pairs", "-", np.mean(list(pairs.values()), axis=0))

    progress("smoothing: sessions rebuilt from a tail")
    scored = np.concatenate([val_origins, test])
    for weeks in TAIL_WEEKS:
        forecasts = rebuilt(z, shipped_rates, scored, weeks * WEEK)
        add(f"shipped, from the last {weeks} weeks only (a session rebuilt after an upgrade)", "-", forecasts)

    progress("smoothing: corrections of the shipped forecast")
    errors = innovations(z, shipped)
    candidates = {f"phi {phi}": decaying(shipped, errors, phi) for phi in PHIS}
    name = min(candidates, key=lambda key: score(candidates[key], "val"))
    add(f"the last deviation fading as AR(1), {name}", "validation", candidates[name])
    candidates = {
        f"rate {rate}, phi {phi}": drifting(shipped, errors, rate, phi)
        for rate, phi in itertools.product(DRIFT_RATES, (0.8, 0.9, 0.95))
    }
    name = min(candidates, key=lambda key: score(candidates[key], "val"))
    add(f"plus a damped drift of the innovations, {name}", "validation", candidates[name])
    candidates = {f"{lags} lags": corrected(shipped, errors, z, lags, fit_origins) for lags in LAGS}
    name = min(candidates, key=lambda key: score(candidates[key], "val"))
    add(f"plus least squares on the last innovations, {name}", "validation", candidates[name])

    progress("smoothing: double-seasonal Holt-Winters in levels")
    actual = z[fit_origins[:, None] + 1 + np.arange(HORIZON)]
    grid = itertools.product((0.01, 0.02, 0.05, 0.1), (0.0, 0.1, 0.3), (0.1, 0.3, 0.5))
    levels = min(
        (holt_winters(z, *params) for params in grid),
        key=lambda forecasts: float(np.abs(actual - forecasts[fit_origins]).mean()),
    )
    add("double-seasonal Holt-Winters in levels", "training part", levels)
    add("... its mean with the shipped forecast", "-", (levels + shipped) / 2)

    progress("smoothing: MSTL-ETS at every test origin")
    name, mstl = statistical(CONFIGS["taylor"])
    table.add(name, "refitted at each origin", "", mstl["mase"])
    table.notes.append(
        f"taylor, {len(val_origins)} validation and {len(test)} test origins (midnights), horizon {HORIZON}; "
        "validation and test disagree by more than the gap to MSTL-ETS."
    )
    return table
