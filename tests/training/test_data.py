from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_frame
from training.data import DataError, read_frame, split_series


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
        ("unsorted", r"series 's1': timestamps are not sorted \(2024-01-01 01:30:00 follows 2024-01-01 02:00:00\)"),
        ("duplicate", r"series 's1': duplicate timestamp 2024-01-01 02:00:00"),
        ("irregular", r"series 's1': irregular frequency, 0 days 00:40:00 between 2024-01-01 04:30:00"),
        ("nan", r"series 's1': 2 NaN values in 'y', first at 2024-01-01 03:30:00; set data.fill"),
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
