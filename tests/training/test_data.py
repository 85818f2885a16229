from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features import FeatureSpec
from tests.conftest import synthetic_frame
from training.data import DataError, check_series, read_frame, split_series
from training.metrics import season_length


def _split(frame: pd.DataFrame, fill: str = "error") -> tuple[list, str]:
    return split_series(frame, "y", ("temperature",), fill)  # type: ignore[arg-type]


def test_builtin_elecdemand_is_half_hourly_from_2014() -> None:
    frame = read_frame("builtin:elecdemand")
    assert len(frame) == 17_520
    assert list(frame.columns) == ["ds", "y", "Temperature", "WorkDay"]
    series, freq = split_series(frame, "y", ("Temperature", "WorkDay"), "error")
    assert freq == "30min"
    assert series[0].timestamps[0] == pd.Timestamp("2014-01-01 00:00")
    assert series[0].timestamps[-1] == pd.Timestamp("2014-12-31 23:30")


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    frame = synthetic_frame(points=100, series=2)
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet")
    from_csv, _ = _split(read_frame(str(tmp_path / "a.csv")))
    from_parquet, _ = _split(read_frame(str(tmp_path / "a.parquet")))
    assert [s.uid for s in from_csv] == ["s0", "s1"]
    for a, b in zip(from_csv, from_parquet, strict=True):
        np.testing.assert_allclose(a.target, b.target)
        np.testing.assert_allclose(a.covariates, b.covariates)


def _broken(kind: str) -> pd.DataFrame:
    frame = synthetic_frame(points=50, series=2)
    rows = frame.index[frame.unique_id == "s1"]
    if kind == "unsorted":
        frame.loc[rows[[3, 4]], "ds"] = frame.loc[rows[[4, 3]], "ds"].to_numpy()
    elif kind == "duplicate":
        frame.loc[rows[5], "ds"] = frame.loc[rows[4], "ds"]
    elif kind == "irregular":
        frame.loc[rows[10:], "ds"] += pd.Timedelta("10min")
    elif kind == "nan":
        frame.loc[rows[[7, 9]], "y"] = np.nan
    return frame


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unsorted", r"series 's1': timestamps are not sorted \(2024-01-01 01:30:00 follows 2024-01-01 02:00:00"),
        ("duplicate", r"series 's1': 1 duplicate timestamp: 2024-01-01 02:00:00; keep one row"),
        ("irregular", r"series 's1': irregular frequency: 40 timestamps off its 30min grid .* first 2024-01-01 05:10"),
        ("nan", r"series 's1': 2 NaN values in 'y', first at 2024-01-01 03:30:00, 2024-01-01 04:30:00; set data.fill"),
    ],
)
def test_bad_series_are_named_with_their_problem(kind: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        _split(_broken(kind))


@pytest.mark.parametrize("fill", ["ffill", "interpolate"])
def test_fill_policy_fills_nan_targets(fill: str) -> None:
    series, _ = _split(_broken("nan"), fill)
    target = series[1].target
    assert not np.isnan(target).any()
    if fill == "ffill":
        assert target[7] == target[6]
    else:
        assert target[7] == pytest.approx((target[6] + target[8]) / 2)


def test_missing_and_non_numeric_columns_are_named() -> None:
    frame = synthetic_frame(points=20)
    with pytest.raises(DataError, match=r"columns \['humidity'\] are missing"):
        split_series(frame, "y", ("humidity",), "error")
    frame["label"] = "x"
    with pytest.raises(DataError, match="column 'label' must be numeric"):
        split_series(frame, "y", ("label",), "error")


def test_unknown_builtin_and_format_are_refused() -> None:
    with pytest.raises(DataError, match="unknown built-in data set 'nope'"):
        read_frame("builtin:nope")
    with pytest.raises(DataError, match="neither builtin:<name>, .csv nor .parquet"):
        read_frame("data.xlsx")


def test_builtin_taylor_and_us_employment() -> None:
    taylor, freq = split_series(read_frame("builtin:taylor"), "y", (), "error")
    assert (len(taylor), len(taylor[0]), freq) == (1, 4032, "30min")
    assert taylor[0].timestamps[0] == pd.Timestamp("2000-06-05")  # a Monday, as the source says
    employment, freq = split_series(read_frame("builtin:us_employment"), "y", (), "error")
    assert (len(employment), freq) == (148, "MS")
    assert not any(np.isnan(s.target).any() for s in employment)
    assert min(len(s) for s in employment) == 225  # from 2001 at the latest


def test_monthly_series_are_regular_and_seasonal_by_the_calendar() -> None:
    months = pd.date_range("2001-01-01", periods=40, freq="MS")  # 28 to 31 days apart
    frame = pd.DataFrame({"ds": months, "y": np.arange(40.0), "temperature": 1.0})
    assert _split(frame)[1] == "MS"
    weekly = frame.assign(ds=pd.date_range("2001-01-07", periods=40, freq="W-SUN"))
    assert _split(weekly)[1] == "7D"  # a fixed step, so calendar features stay available
    assert season_length("MS") == 12
    gap = frame.drop(index=7)
    with pytest.raises(DataError, match=r"1 gap in its MS grid \(1 missing row\), first at 2001-08-01"):
        _split(gap)
    filled, freq = _split(gap, "interpolate")
    assert freq == "MS" and len(filled[0]) == 40 and filled[0].target[7] == 7.0
    with pytest.raises(ValueError, match="calendar features need a fixed step .* got freq 'MS'"):
        FeatureSpec("y", calendar=("day_of_year",), freq="MS")


def _hourly_counts_with_gaps() -> pd.DataFrame:
    """Three series of event counts with no row for an hour without an event, as such data is exported."""
    rng = np.random.default_rng(3)
    frames = []
    for uid in ("a", "b", "c"):
        ds = pd.date_range("2024-03-04", periods=24 * 14, freq="h")
        counts = rng.poisson(np.where(ds.hour < 7, 0.05, 3.0))
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": counts}).loc[counts > 0])
    return pd.concat(frames, ignore_index=True)


def test_every_gap_of_every_series_is_listed_with_its_fix() -> None:
    frame = _hourly_counts_with_gaps()
    with pytest.raises(DataError) as refused:
        split_series(frame, "y", (), "error")
    lines = str(refused.value).splitlines()
    assert lines[0] == "3 problems in 3 of 3 series:"
    for uid, line in zip("abc", lines[1:], strict=True):
        missing = 24 * 14 - int((frame.unique_id == uid).sum()) - _outer_missing(frame, uid)
        assert line.startswith(f"  series {uid!r}: ") and f"in its h grid ({missing} missing rows)" in line
        assert "set data.fill (zero or a number for counts" in line and line.endswith("full h grid")


def _outer_missing(frame: pd.DataFrame, uid: str) -> int:
    """Hours before a series' first row and after its last: not gaps, since the grid spans first to last."""
    stamps = frame.ds[frame.unique_id == uid]
    grid = pd.date_range("2024-03-04", periods=24 * 14, freq="h")
    return int((grid < stamps.min()).sum() + (grid > stamps.max()).sum())


@pytest.mark.parametrize(("fill", "value"), [("zero", 0.0), (-1.5, -1.5)])
def test_a_constant_fill_puts_each_series_on_its_full_grid(fill: str | float, value: float) -> None:
    frame = _hourly_counts_with_gaps()
    checked = check_series(frame, "y", (), fill)  # type: ignore[arg-type]
    assert checked.freq == "h"
    for series in checked.series:
        assert (series.timestamps[1:] - series.timestamps[:-1] == pd.Timedelta("1h")).all()
        given = frame[frame.unique_id == series.uid].set_index("ds").y
        on_grid = pd.Series(series.target, index=series.timestamps)
        assert (on_grid[given.index] == given).all()  # every given count kept where it was
        assert (on_grid.drop(given.index) == value).all()  # every missing hour filled with the constant
    assert checked.added_rows == sum(len(s) for s in checked.series) - len(frame) > 0


def test_covariates_take_a_fill_of_their_own() -> None:
    frame = _hourly_counts_with_gaps()
    frame["temperature"] = 10.0 + frame.ds.dt.hour.to_numpy()  # known for the hours that have a row only
    checked = check_series(frame, "y", ("temperature",), "zero", fill_covariates="interpolate")
    for series in checked.series:
        added = ~series.timestamps.isin(frame.ds[frame.unique_id == series.uid])
        assert (series.target[added] == 0).all()  # no event in an hour without a row
        assert (series.covariates[added, 0] > 0).all()  # the temperature interpolated, not zero
    with pytest.raises(DataError, match="NaN values in 'temperature'.*set data.fill_covariates to zero"):
        check_series(frame, "y", ("temperature",), "zero")  # a zero count, but not a zero temperature


@pytest.mark.parametrize(("month", "freq"), [(1, "QS-OCT"), (2, "QS-NOV"), (7, "QS-OCT")])
def test_quarters_with_a_gap_are_named_as_complete_ones(month: int, freq: str) -> None:
    quarters = pd.date_range(
        pd.Timestamp(2001, month, 1), periods=40, freq=pd.offsets.QuarterBegin(startingMonth=month)
    )
    complete = pd.DataFrame({"unique_id": "a", "ds": quarters, "y": np.arange(40.0), "temperature": 1.0})
    gap = complete.assign(unique_id="b").drop(index=7)
    checked = check_series(pd.concat([complete, gap]), "y", ("temperature",), "interpolate")
    assert checked.freq == freq and {len(s) for s in checked.series} == {40}


def test_business_days_with_a_holiday_missing_are_business_days() -> None:
    days = pd.bdate_range("2024-01-01", periods=60)
    complete = pd.DataFrame({"unique_id": "a", "ds": days, "y": np.arange(60.0), "temperature": 1.0})
    holiday = complete.assign(unique_id="b").drop(index=12)
    with pytest.raises(DataError, match=r"series 'b': 1 gap in its B grid \(1 missing row\)"):
        check_series(pd.concat([complete, holiday]), "y", ("temperature",), "error")
    checked = check_series(pd.concat([complete, holiday]), "y", ("temperature",), "interpolate")
    assert checked.freq == "B" and {len(s) for s in checked.series} == {60}  # no weekend filled in
