from __future__ import annotations

import numpy as np
import pytest

from models import Forecaster, ForecasterConfig
from training.seasonal import LEVEL_RATES, RATES, fit_season_rates


def _model(smoothed_level: bool = False) -> Forecaster:
    return Forecaster(
        ForecasterConfig(
            input_dim=1,
            horizon=4,
            hidden_size=8,
            seasonal_lag=28,
            smoothed_seasons=(7, 28),
            smoothed_level=smoothed_level,
        )
    )


def _pattern(rounds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.tile(rng.normal(size=28), rounds)


def test_noise_around_a_fixed_pattern_is_smoothed_over_many_rounds() -> None:
    """Where each week repeats the last one but for noise, averaging many weeks is best: the slowest rates."""
    rng = np.random.default_rng(0)
    series = [_pattern(20, seed) + 0.5 * rng.normal(size=20 * 28) for seed in (1, 2)]
    model = _model()
    assert fit_season_rates(model, series) == (min(RATES), min(RATES))
    assert model.season_rates.tolist() == pytest.approx([min(RATES)] * 2)


def test_a_pattern_that_changes_every_few_weeks_is_followed_quickly() -> None:
    """Where the weekly pattern is replaced every other week, last week's changes are the best guide."""
    series = np.concatenate([_pattern(2, seed) for seed in range(12)])
    rates = fit_season_rates(_model(), [series])
    assert rates[1] == max(RATES)


def test_series_too_short_to_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="longer than two seasons of 28 and a horizon"):
        fit_season_rates(_model(), [np.zeros(50)])


def test_a_level_is_smoothed_where_single_values_are_noise_and_kept_where_it_wanders() -> None:
    """Noise around a fixed level and pattern: the slowest level rate. A level that wanders as a random walk, with
    little noise: the last value (rate 1)."""
    rng = np.random.default_rng(3)
    noisy = [_pattern(20, seed) + 1.0 * rng.normal(size=20 * 28) for seed in (1, 2)]
    model = _model(smoothed_level=True)
    assert fit_season_rates(model, noisy)[-1] == min(LEVEL_RATES) == pytest.approx(float(model.level_rate))
    wandering = [_pattern(20, seed) + np.cumsum(rng.normal(size=20 * 28)) for seed in (1, 2)]
    assert fit_season_rates(model, wandering)[-1] == 1.0
    assert len(fit_season_rates(_model(), noisy)) == 2  # without a smoothed level: the seasons' rates alone
