from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.accuracy import _verdict, statistical
from bench.field_data import write_daily_departures, write_departures, write_temperature
from tests.conftest import synthetic_frame
from training.sizing import size


def test_statistical_baseline_is_scored_on_the_test_origins(tmp_path: Path) -> None:
    synthetic_frame(points=2000).to_csv(tmp_path / "series.csv", index=False)
    data = {"path": str(tmp_path / "series.csv"), "input_size": 96, "horizon": 48, "val_size": 336, "test_size": 336}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    name, scores = statistical(config)
    assert name == "MSTL-ETS (statsforecast)"
    # A daily cycle plus noise: repeating yesterday scores about 1.05 here (MASE is 1 in sample); MSTL, which
    # averages the cycle over weeks, does better, and a forecast a step out of line with its actuals would not.
    assert scores["mase"] < 0.95
    assert 0 < scores["smape"] < 5


def test_monthly_data_gets_autoets_with_a_yearly_season(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    months = np.arange(300)
    y = 100 + 0.5 * months + 10 * np.sin(2 * np.pi * months / 12) + rng.normal(0, 1, len(months))
    frame = pd.DataFrame({"ds": pd.date_range("1990-01-01", periods=len(months), freq="MS"), "y": y})
    frame.to_csv(tmp_path / "monthly.csv", index=False)
    data = {
        "path": str(tmp_path / "monthly.csv"),
        "input_size": 36,
        "horizon": 12,
        "val_size": 24,
        "test_size": 36,
        "chunk_length": 120,
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    name, scores = statistical(config)
    assert name == "AutoETS (statsforecast)"
    # Same month last year misses a year of trend (6 units); a trended, seasonal ETS does not.
    assert scores["mase"] < 0.5


def test_the_field_sets_are_series_per_airport_that_init_sizes_for_a_week(tmp_path: Path) -> None:
    """Departures: counts with hours missing (none departed), zero-filled; temperature: a level with readings
    missing, interpolated; both get a day ahead and a weekly season from `seqcast-train init`. Daily departures,
    a whole number far from zero every day, are a level with no gaps, a week ahead and a weekly season."""
    for write, fill in [(write_departures, "zero"), (write_temperature, "interpolate")]:
        sizing = size(str(write(tmp_path / f"{write.__name__}.csv")))
        assert (sizing.series, sizing.freq, sizing.horizon, sizing.season, sizing.fill) == (3, "h", 24, 168, fill)
        assert sizing.shortest > 8700  # a year of hours
    daily = size(str(write_daily_departures(tmp_path / "daily.csv")))
    assert (daily.series, daily.freq, daily.shortest, daily.horizon, daily.season) == (3, "D", 365, 7, 7)
    assert (daily.fill, daily.level_free, daily.calendar) == ("error", True, ["day_of_week"])  # a year only


def test_the_verdict_measures_against_the_strongest_naive_the_last_value_included() -> None:
    rows = {
        "seqcast gru": {"mase": 0.9, "range": (0.85, 0.95)},
        "naive (the last value)": {"mase": 1.0},  # hourly temperature: the last reading beats yesterday's
        "seasonal naive, 24 steps (1 day)": {"mase": 1.2},
        "MSTL-ETS (statsforecast)": {"mase": 0.8},
    }
    verdict = _verdict("temperature", rows)
    assert "10% below naive (the last value) (1.000)" in verdict
    assert "12% above MSTL-ETS (statsforecast) (0.800)" in verdict
    assert "worst seed 0.950" in verdict
