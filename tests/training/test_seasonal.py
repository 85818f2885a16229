from __future__ import annotations

import numpy as np
import pytest

from models import Forecaster, ForecasterConfig
from training.seasonal import RATES, fit_season_rates


def _model() -> Forecaster:
    return Forecaster(
        ForecasterConfig(input_dim=1, horizon=4, hidden_size=8, seasonal_lag=28, smoothed_seasons=(7, 28))
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
