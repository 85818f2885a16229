"""The variants `seqcast-bench smoothing` scores: each reduces to the shipped forecast, or forecasts a clean
pattern exactly, where it should."""

from __future__ import annotations

import numpy as np
import pytest

from bench.smoothing import (
    HORIZON,
    WEEK,
    corrected,
    decaying,
    drifting,
    holt_winters,
    innovations,
    rebuilt,
    smoothed,
)


def _weeks(count: int, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.tile(rng.normal(size=WEEK), count) + noise * rng.normal(size=count * WEEK)


def test_a_pattern_that_repeats_exactly_is_forecast_exactly_by_both_smoothings() -> None:
    z = _weeks(5)
    steps = np.arange(2 * WEEK, len(z) - HORIZON)
    actual = z[steps[:, None] + 1 + np.arange(HORIZON)]
    np.testing.assert_allclose(smoothed(z, (0.3, 0.02))[steps], actual, atol=1e-4)
    np.testing.assert_allclose(holt_winters(z, 0.1, 0.1, 0.1)[steps], actual, atol=1e-9)


def test_corrections_that_persist_fully_or_read_nothing_leave_the_forecast_as_it_is() -> None:
    z = _weeks(4, noise=0.3)
    forecasts = smoothed(z, (0.3, 0.02))
    errors = innovations(z, forecasts)
    assert errors[0] == 0 and np.abs(errors[1:]).max() > 0
    np.testing.assert_allclose(decaying(forecasts, errors, 1.0), forecasts)
    np.testing.assert_allclose(drifting(forecasts, errors, 0.0, 0.9), forecasts)
    assert not np.allclose(decaying(forecasts, errors, 0.9), forecasts)
    # Least squares on the very errors it is scored on cannot do worse there than no correction.
    fit = np.arange(WEEK, len(z) - HORIZON, 8)
    actual = z[fit[:, None] + 1 + np.arange(HORIZON)]
    fitted = corrected(forecasts, errors, z, 4, fit)
    assert ((actual - fitted[fit]) ** 2).sum() <= ((actual - forecasts[fit]) ** 2).sum()


def test_a_tail_as_long_as_the_series_is_the_whole_history_and_a_shorter_one_differs() -> None:
    z = _weeks(4, noise=0.3)
    origins = np.array([3 * WEEK + 5, len(z) - 1])
    whole = smoothed(z, (0.3, 0.02))[origins]
    np.testing.assert_allclose(rebuilt(z, (0.3, 0.02), origins[1:], len(z))[origins[1:]], whole[1:], atol=1e-5)
    shorter = rebuilt(z, (0.3, 0.02), origins, 2 * WEEK)
    assert np.isnan(shorter[0]).all() and not np.allclose(shorter[origins], whole, atol=1e-3)
    with pytest.raises(ValueError, match="fewer than"):
        rebuilt(z, (0.3, 0.02), origins, len(z) + 1)
