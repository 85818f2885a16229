"""`seqcast-train init`: a config sized from what the data shows, which fit then reads as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models import ForecasterConfig
from tests.conftest import hourly_counts_frame
from training.data import DataError
from training.sizing import render, size


def _monthly(path: Path, months: int) -> str:
    rng = np.random.default_rng(0)
    y = 100 + np.arange(months) + 5 * np.sin(np.arange(months) * np.pi / 6) + rng.normal(0, 1, months)
    pd.DataFrame({"ds": pd.date_range("1990-01-01", periods=months, freq="MS"), "y": y}).to_csv(path, index=False)
    return str(path)


def test_hourly_counts_with_gaps_get_a_weekly_season_a_day_ahead_and_zero_fill(tmp_path: Path) -> None:
    hourly_counts_frame(days=70).to_csv(tmp_path / "counts.csv", index=False)  # ten weeks: two backtest folds
    sizing = size(str(tmp_path / "counts.csv"))
    assert (sizing.freq, sizing.season, sizing.horizon) == ("h", 168, 24)
    assert sizing.fill == "zero" and sizing.nonnegative and sizing.series == 3
    assert sizing.warmup >= sizing.season and sizing.input_size >= sizing.season
    config = yaml.safe_load(render(sizing, "counts"))
    data = config["data"]
    assert data["calendar"] == ["time_of_day", "day_of_week"]
    assert data["per_series_scaling"] and data["mase_weights"]
    network = config["model"]["network"]["init_args"]["config"]
    assert (network["seasonal_lag"], network["smoothed_seasons"]) == (168, [24, 168])  # a day and a week
    assert network["level_free"] is False  # a count's level says how noisy it is
    assert network["smoothed_level"] is False  # within a day the last value is the level
    assert data["log_target"] is False  # hours: a season's swing does not grow with a level
    assert data["warmup"] >= 3 * 168 and data["input_size"] >= data["warmup"]  # the smoothing settles first
    # What the data module needs fits the shortest series, and so do the backtest folds the header names.
    needed = data["val_size"] + data["test_size"] + data["warmup"] + data["horizon"] + 1
    assert needed + (sizing.folds - 1) * data["test_size"] <= sizing.shortest and sizing.folds == 2
    assert "backtest --config counts.yaml --folds 2\n" in render(sizing, "counts")


def test_demand_in_whole_megawatts_is_a_level_not_counts(tmp_path: Path) -> None:
    from training.data import read_frame

    frame = read_frame("builtin:taylor")  # half-hourly demand, whole MW from 18640 up
    frame.drop(index=[100, 101]).to_csv(tmp_path / "demand.csv", index=False)  # an hour lost in the export
    sizing = size(str(tmp_path / "demand.csv"))
    assert (sizing.season, sizing.smoothed, sizing.horizon) == (336, [48, 336], 48)
    assert sizing.fill == "interpolate" and sizing.level_free  # zero-filled, demand would fall to nothing
    # The same numbers less their minimum reach zero: read as counts, whose level the network uses.
    frame.assign(y=frame["y"] - frame["y"].min()).to_csv(tmp_path / "shifted.csv", index=False)
    assert not size(str(tmp_path / "shifted.csv")).level_free


def test_monthly_levels_get_a_yearly_season_and_no_calendar(tmp_path: Path) -> None:
    sizing = size(_monthly(tmp_path / "monthly.csv", 300))
    assert (sizing.season, sizing.horizon, sizing.fill, sizing.calendar) == (12, 12, "error", [])
    assert sizing.series == 1 and not yaml.safe_load(render(sizing, "m"))["data"]["per_series_scaling"]
    assert sizing.folds == 3 and "--folds" not in render(sizing, "m")
    assert sizing.smoothed == [12]
    assert yaml.safe_load(render(sizing, "m"))["model"]["network"]["init_args"]["config"]["level_free"] is True


def test_daily_levels_read_the_day_of_year_only_with_two_years_to_train_on(tmp_path: Path) -> None:
    """In one year each date is seen once, so the day of year names a day rather than a time of year."""
    calendars = []
    for days in (365, 757, 758):  # two years to train on start at 758 days: 730 and two held-out fortnights
        rng = np.random.default_rng(days)
        y = 300 + 20 * (np.arange(days) % 7 == 5) + rng.normal(0, 5, days)
        frame = pd.DataFrame({"ds": pd.date_range("2013-01-01", periods=days, freq="D"), "y": y})
        frame.to_csv(tmp_path / f"{days}.csv", index=False)
        sizing = size(str(tmp_path / f"{days}.csv"))
        assert (sizing.season, sizing.horizon, sizing.smoothed_level) == (7, 7, False)
        calendars.append(sizing.calendar)
    assert calendars == [["day_of_week"], ["day_of_week"], ["day_of_week", "day_of_year"]]


def test_names_yaml_would_misread_are_written_quoted(tmp_path: Path) -> None:
    frame = pd.read_csv(_monthly(tmp_path / "a: b.csv", 300)).rename(columns={"y": "yes"})
    frame.to_csv(tmp_path / "a: b.csv", index=False)
    data = yaml.safe_load(render(size(str(tmp_path / "a: b.csv"), "yes"), "m"))["data"]
    assert (data["path"], data["target"]) == (str(tmp_path / "a: b.csv"), "yes")


def test_a_season_the_series_cannot_hold_five_times_is_left_out(tmp_path: Path) -> None:
    sizing = size(_monthly(tmp_path / "monthly.csv", 300), horizon=3)
    assert sizing.season == 12
    short = size(_monthly(tmp_path / "short.csv", 55), horizon=3)
    assert short.season == 0 and short.warmup == 3  # 55 months hold four years and a half


def test_series_too_short_for_any_config_are_refused_with_what_they_need(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"has 4 points; a config for 1 step ahead needs 5 .*: give longer series$"):
        size(_monthly(tmp_path / "tiny.csv", 4))
    # A horizon the user gives is kept or refused, never shortened.
    with pytest.raises(DataError, match=r"the shortest series has 20 points; a config for 12 steps ahead needs"):
        size(_monthly(tmp_path / "short.csv", 20), horizon=12)


def test_without_a_horizon_short_series_get_the_longest_they_hold(tmp_path: Path) -> None:
    path = _monthly(tmp_path / "short.csv", 20)
    sizing = size(path)
    assert sizing.preferred_horizon == 12 and 1 < sizing.horizon < 12
    with pytest.raises(DataError, match="give a shorter horizon"):
        size(path, horizon=sizing.horizon + 1)
    assert f"horizon: {sizing.horizon} " in render(sizing, "short")
    assert "the most the shortest series holds (12 would need more)" in render(sizing, "short")
    assert "would need more" not in render(size(_monthly(tmp_path / "long.csv", 300)), "long")


def test_short_monthly_series_keep_their_year_by_holding_out_less_then_warming_up_less(tmp_path: Path) -> None:
    sizes = {}
    for months in (120, 96, 84, 72, 60):
        sizing = size(_monthly(tmp_path / f"{months}.csv", months))
        sizes[months] = (sizing.season, sizing.held_out, sizing.warmup)
    assert sizes == {
        120: (12, 24, 48),  # two years held out, three rounds of warmup and a horizon
        96: (12, 12, 48),  # one year each for validation and test
        84: (12, 12, 36),  # and two rounds of warmup
        72: (12, 12, 24),  # and one
        60: (0, 12, 12),  # no year fits with a training origin: no season
    }
    # Without a season the network forecasts changes from the last value, and starts at the naive forecast.
    network = yaml.safe_load(render(size(_monthly(tmp_path / "60.csv", 60)), "short"))["model"]["network"]
    assert network["init_args"]["config"]["change_from_last"] is True
    assert "seasonal_lag" not in network["init_args"]["config"]
    ForecasterConfig(input_dim=1, horizon=12, **network["init_args"]["config"])  # a config the forecaster takes


def test_an_uneven_panel_is_sized_by_its_shortest_series_and_chunked_by_its_longest(tmp_path: Path) -> None:
    frames = [pd.read_csv(_monthly(tmp_path / f"{n}.csv", n)).assign(unique_id=f"s{n}") for n in (90, 150, 400)]
    pd.concat(frames).to_csv(tmp_path / "panel.csv", index=False)
    sizing = size(str(tmp_path / "panel.csv"))
    assert (sizing.shortest, sizing.season, sizing.held_out, sizing.warmup) == (90, 12, 12, 48)
    assert sizing.chunk_length == 48 + 8 * 12  # longer than the shortest series' training part: padded to it
    config = yaml.safe_load(render(sizing, "panel"))
    data = config["data"]
    assert data["val_size"] + data["test_size"] + data["warmup"] + data["horizon"] + 1 <= 90
    assert config["model"]["network"]["init_args"]["config"]["smoothed_level"] is True  # a month's value is noisy
    assert data["log_target"] is True  # positive months: swings that grow with the level are modelled in logs
    # 41 chunks (39 from the longest series, one each from the others) make epochs of two batches: the run
    # validates every five epochs, so that ten batches train between validations, and may make 40 of them.
    assert (config["trainer"]["check_val_every_n_epoch"], config["trainer"]["max_epochs"]) == (5, 200)


def test_months_that_reach_zero_or_below_keep_the_target_as_it_is(tmp_path: Path) -> None:
    frame = pd.read_csv(_monthly(tmp_path / "months.csv", 120))
    for low, log in ((1.0, True), (0.0, False), (-3.0, False)):
        frame.loc[50, "y"] = low
        frame.to_csv(tmp_path / "months.csv", index=False)
        assert size(str(tmp_path / "months.csv")).log_target is log, low


def test_business_days_are_days_and_weeks_are_longer(tmp_path: Path) -> None:
    """Business days skip weekends, so their mean step is 1.4 days; their values are still days'."""
    rng = np.random.default_rng(0)
    for freq, longer, inferred in (("B", False, "B"), ("W-SUN", True, "7D")):
        ds = pd.date_range("2020-01-06", periods=400, freq=freq)
        path = tmp_path / f"{freq}.csv"
        pd.DataFrame({"ds": ds, "y": 100 + rng.normal(0, 1, 400)}).to_csv(path, index=False)
        sizing = size(str(path))
        assert (sizing.freq, sizing.log_target) == (inferred, longer)
        assert not sizing.season or sizing.smoothed_level is longer
