"""``seqcast-train init``: a training config sized from what the data shows, for a user's own series.

The rules (each value's reason is written beside it in the config):
- the season is the longest pattern the frequency suggests (a week for hourly and half-hourly data, a week of
  days for daily, a year of months) that fits the shortest series five times over; the model forecasts what
  exponential smoothing of the changes over that season and each shorter one the frequency suggests (a day)
  misses (``ForecasterConfig.smoothed_seasons``);
- the horizon is a day for intraday data, else a season (12 steps where none is known), unless given; where
  the shortest series cannot hold it, the longest horizon it holds (a horizon given is kept or refused);
- a training chunk warms up over three seasons and a horizon, so that the smoothing has settled before the
  loss starts, then trains on two more; windows read as much as the warmup; validation and test take two
  seasons (or two horizons, if longer) each;
- where the shortest series cannot hold that with one training origin, validation and test take one season
  each, then the warmup shrinks to two rounds, then one, before the season is given up; series shorter than a
  chunk are trained on as one chunk, so the longest series sets its length;
- calendar features that vary within the season (the day of year only with two years to train on); each
  series scaled and weighted by its own statistics where there are several; zero filling and no negative
  forecasts for counts;
- the network reads changes only (``level_free``) unless the data are counts, whose level it uses; counts are
  whole numbers that come near zero (see ``_counts``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.features import fixed_step, mean_step
from training.data import DataError, FillPolicy, check_series, read_frame
from training.datamodule import chunk_starts
from training.evaluate import duration
from training.metrics import naive_seasons, season_length

SEASONS_PER_SERIES = 5  # the shortest series must hold this many seasons
EPOCHS = 40  # validations a run may make
BATCH_SIZE = 32
STEPS_PER_VALIDATION = 10  # a few short series make epochs of one batch: the run validates every few epochs
WARMUP_SEASONS = 3  # rounds of each season the smoothing reads before a loss or a windowed forecast
DAYS_PER_YEAR = 365


@dataclass(frozen=True)
class Sizing:
    path: str
    target: str
    freq: str
    series: int
    shortest: int
    folds: int  # backtest folds the shortest series holds, up to backtest's default of 3
    season: int  # 0: none fits
    smoothed: list[int]  # the seasons smoothed: the season and each shorter one at least the horizon
    horizon: int
    preferred_horizon: int  # the season, or 12 steps; longer than horizon where the shortest series is too short
    input_size: int
    warmup: int
    chunk_length: int
    held_out: int  # val_size and test_size
    calendar: list[str]
    fill: FillPolicy
    nonnegative: bool
    # Whether the network sees changes only (ForecasterConfig.level_free): for levels (temperature, demand) the
    # level is where the weather or the business happens to be; for counts it says how noisy a step is and how
    # near zero, which the network uses.
    level_free: bool
    # Whether forecasts start from a smoothed level (ForecasterConfig.smoothed_level): for steps longer than a
    # day, where one month's value is noisy. Within a day the last value is the level; for daily departures
    # the level made the smoothing alone better but the network worse (see docs/training.md).
    smoothed_level: bool
    # Whether the model works in log(1 + y) (FeatureSpec.log_target): for positive series of steps longer than a
    # day, whose seasonal swings tend to grow with the level (sales, passengers). On the monthly field set it
    # cut the smoothing's test MASE from 2.26 to 1.25; on us_employment it changed it by 1% (docs/training.md).
    log_target: bool
    epochs_per_validation: int

    @property
    def chunk_stride(self) -> int:
        return _chunk_stride(self.horizon)

    @property
    def origin_stride(self) -> int:
        return max(1, self.horizon // 6)

    def span(self, steps: int) -> str:
        step = fixed_step(self.freq)
        return f" ({duration(step * steps)})" if step is not None else ""


def _chunk_stride(horizon: int) -> int:
    return max(1, horizon // 2)


def _epochs_per_validation(lengths: list[int], held_out: int, chunk: int, horizon: int) -> int:
    """Epochs between validations, so that at least STEPS_PER_VALIDATION batches train between them: the
    chunks the data module cuts from each training part (one where the part is shorter than a chunk)."""
    chunks = sum(len(chunk_starts(n - 2 * held_out, chunk, _chunk_stride(horizon))) for n in lengths)
    return -(-STEPS_PER_VALIDATION // -(-chunks // BATCH_SIZE))


def _calendar(freq: str, training_steps: int) -> list[str]:
    """Calendar features that vary within the season: for intraday steps, time of day and day of week; for
    daily, day of week, and day of year where training holds two years (``training_steps``); none for calendar
    steps (months, quarters)."""
    step, day = fixed_step(freq), pd.Timedelta(days=1)
    if step is not None and step < day:
        return ["time_of_day", "day_of_week"]
    if step != day:
        return []
    # In a single year each date is seen once: the network learns the date, not the time of year, and the
    # held-out dates at the end were never seen (a year of daily departures, 3 folds, seeds 1-2: MASE 3.71
    # without, 4.04 with).
    return ["day_of_week", "day_of_year"] if training_steps >= 2 * DAYS_PER_YEAR else ["day_of_week"]


def _counts(values: np.ndarray) -> bool:
    """Whether non-negative ``values`` look like events per step: whole numbers that reach 1 or a tenth of their
    median, as quiet hours do. Levels recorded in whole units (demand in MW, temperatures in whole degrees) are
    whole numbers too, but stay far from zero: their gaps are interpolated and their level hidden."""
    whole = bool((values == np.round(values)).all())
    return whole and float(values.min()) <= max(1.0, float(np.median(values)) / 10)


def size(path: str, target: str = "y", horizon: int | None = None) -> Sizing:
    """Reads the data and sizes a config for it; raises DataError where the data is too short for any."""
    frame = read_frame(path)
    if target not in frame.columns:
        raise DataError(f"data.target: no column {target!r} (columns: {list(frame.columns)})")
    values = frame[target].dropna().to_numpy(float)
    nonnegative = bool(len(values)) and bool((values >= 0).all())
    counts = nonnegative and _counts(values)
    fill: FillPolicy
    try:
        check_series(frame, target, (), "error")
        fill = "error"
    except DataError:  # gaps, or worse: filled, or listed again below
        fill = "zero" if counts else "interpolate"
    checked = check_series(frame, target, (), fill)
    lengths = [len(s) for s in checked.series]
    freq, shortest, longest = checked.freq, min(lengths), max(lengths)
    preferred = horizon or (season_length(freq) if season_length(freq) > 1 else 12)  # 12 where no season is known
    chosen, (season, held_out, warmup, needed) = _fitting_horizon(freq, preferred, shortest, given=horizon is not None)
    longer_than_a_day = _longer_than_a_day(freq)
    unit = season or chosen
    window = max(warmup, 2 * unit, 5 * chosen)
    # Longer than every training part, a chunk would be padding only; shorter series are padded to it.
    chunk = min(warmup + max(2 * unit, 8 * chosen), longest - 2 * held_out)
    return Sizing(
        path=path,
        target=target,
        freq=freq,
        series=len(checked.series),
        shortest=shortest,
        folds=min(3, 1 + (shortest - needed) // held_out),  # each further fold ends a test part earlier
        season=season,
        smoothed=[m for m in sorted(naive_seasons(freq)) if chosen <= m <= season] if season else [],
        horizon=chosen,
        preferred_horizon=preferred,
        input_size=window,
        warmup=warmup,
        chunk_length=chunk,
        held_out=held_out,
        calendar=_calendar(freq, shortest - 2 * held_out),
        fill=fill,
        nonnegative=nonnegative,
        level_free=bool(season) and not counts,
        smoothed_level=bool(season) and longer_than_a_day,
        log_target=longer_than_a_day and bool(len(values)) and bool((values > 0).all()),
        epochs_per_validation=_epochs_per_validation(lengths, held_out, chunk, chosen),
    )


def _longer_than_a_day(freq: str) -> bool:
    """Steps of a week, a month or more. Calendar steps by their mean length over 100 of them: a business day's
    is 1.4 days (weekends skipped), but its values are days, so the line is drawn at two."""
    step = fixed_step(freq)
    if step is not None:
        return step > pd.Timedelta(days=1)
    return mean_step(freq) > pd.Timedelta(days=2)


def _fitting_horizon(freq: str, preferred: int, shortest: int, given: bool) -> tuple[int, tuple[int, int, int, int]]:
    """The preferred horizon and its sizes (see _fit); where it does not fit and was not given, the longest shorter
    one that does (24 years of airline miles hold five years ahead, not twelve)."""
    for horizon in [preferred] if given else range(preferred, 0, -1):
        sizes = _fit(freq, horizon, shortest)
        if sizes[3] <= shortest:
            return horizon, sizes
    steps = f"{horizon} step{'s' if horizon > 1 else ''}"
    advice = "give a shorter horizon (--data.horizon) or longer series" if horizon > 1 else "give longer series"
    raise DataError(
        f"the shortest series has {shortest} points; a config for {steps} ahead needs {sizes[3]} (a training "
        f"origin past a warmup, validation and test): {advice}"
    )


def _fit(freq: str, horizon: int, shortest: int) -> tuple[int, int, int, int]:
    """(season, held_out, warmup, points needed) for the longest season the shortest series holds: 0 where
    none. Where the preferred sizes do not fit, validation and test shrink to one season (or horizon) each,
    then the warmup to two rounds, then one (a season's first round is averaged, so a fresh state is usable
    after it); a season is dropped only after all of these. Where nothing fits, the smallest sizes and the
    points they need, more than ``shortest``."""
    for season in [*sorted(naive_seasons(freq), reverse=True), 0]:  # the longest first; 0: none
        if season and (season < horizon or shortest < SEASONS_PER_SERIES * season):
            continue
        unit = max(season, horizon)
        for held_out, rounds in ((2 * unit, WARMUP_SEASONS), (unit, WARMUP_SEASONS), (unit, 2), (unit, 1)):
            warmup = rounds * season + horizon
            needed = 2 * held_out + warmup + horizon + 1  # one training origin past the warmup, then its horizon
            if shortest >= needed:
                return season, held_out, warmup, needed
    return season, held_out, warmup, needed


def render(sizing: Sizing, name: str) -> str:
    """The config as YAML, each choice with its reason."""
    s = sizing
    seasonal = (
        f"seasonal_lag: {s.season}".ljust(25) + f"# forecasts what seasonal statistics miss: a season of {s.season}"
        f"{s.span(s.season)}"
        if s.season
        else "change_from_last: true   # no season fits five times over: forecasts are changes from the last value"
    )
    lines = [
        f"# Sized by `seqcast-train init` for {s.path}: {s.series} series of {s.target!r} at frequency {s.freq},",
        f"# the shortest {s.shortest} points. Check, compare and train:",
        f"#   seqcast-train check --config {name}.yaml",
        f"#   seqcast-train backtest --config {name}.yaml" + ("" if s.folds == 3 else f" --folds {s.folds}"),
        f"#   seqcast-train fit --config {name}.yaml       # exports seqcast-{name} if it beats the naive forecasts",
        "seed_everything: 42",
        "trainer:",
        f"  max_epochs: {EPOCHS * s.epochs_per_validation}",
        *(
            [
                f"  check_val_every_n_epoch: {s.epochs_per_validation}".ljust(32)
                + f" # {STEPS_PER_VALIDATION}+ batches between validations"
            ]
            if s.epochs_per_validation > 1
            else []
        ),
        '  max_time: "00:00:10:00"',
        "  accelerator: auto",
        "  devices: 1",
        "  precision: 32-true",
        "  gradient_clip_val: 1.0",
        "  gradient_clip_algorithm: norm",
        "  log_every_n_steps: 10",
        "  logger:",
        "    class_path: lightning.pytorch.loggers.CSVLogger",
        f"    init_args: {{save_dir: runs, name: {name}}}",
        "checkpoint:",
        f"  dirpath: runs/{name}/checkpoints",
        "early_stopping:",
        "  patience: 6",
        "model:",
        "  network:",
        "    class_path: models.Forecaster",
        "    init_args:",
        "      config:",
        "        cell: gru                # the better of GRU and LSTM on every built-in set",
        "        hidden_size: 64",
        "        num_layers: 2",
        "        dropout: 0.1",
        "        head_hidden: 64",
        "        context_size: 16",
        "        lagged_outputs: true     # each step ahead also reads the output a horizon before it",
        f"        {seasonal}",
        *(
            [
                f"        smoothed_seasons: [{', '.join(map(str, s.smoothed))}]"
                + "  # ...namely exponential smoothing of the changes over each of these",
                "        level_free: true         # a level: the network reads changes only, so holds at levels unseen"
                if s.level_free
                else "        level_free: false        # counts: their level says how noisy and how near zero",
                "        smoothed_level: true     # one step's value is noisy: forecasts start from a smoothed level"
                if s.smoothed_level
                else "        smoothed_level: false    # forecasts start from the last value",
            ]
            if s.season
            else []
        ),
        "  lr: 0.003",
        "  weight_decay: 0.01",
        "  schedule: cosine",
        "  point_loss: mae",
        f"  origin_stride: {s.origin_stride}",
        "data:",
        *_data_lines(s),
    ]
    return "\n".join(lines) + "\n"


FILLS = {
    "error": "no gaps found: a later one is listed, not filled",
    "zero": "counts: a step without a row had no event",
    "interpolate": "a level: a missing step lies between its neighbours",
}


def _data_lines(s: Sizing) -> list[str]:
    many = str(s.series > 1).lower()
    rows = [
        ("path", json.dumps(s.path), ""),  # quoted: a path or a name may hold what YAML reads otherwise
        ("target", json.dumps(s.target), ""),
        ("fill", s.fill, FILLS[str(s.fill)]),
        ("nonnegative", str(s.nonnegative).lower(), "no forecast below zero" if s.nonnegative else ""),
        ("log_target", str(s.log_target).lower(), "swings that grow with the level" if s.log_target else ""),
        ("calendar", f"[{', '.join(s.calendar)}]", "known ahead, varying within the season" if s.calendar else ""),
        ("per_series_scaling", many, "each series by its own statistics" if s.series > 1 else ""),
        ("mase_weights", many, "each series weighs in the loss as in its MASE" if s.series > 1 else ""),
        ("input_size", s.input_size, f"what a windowed forecast reads{s.span(s.input_size)}"),
        ("horizon", s.horizon, f"steps ahead{s.span(s.horizon)}{_shortened(s)}"),
        ("val_size", s.held_out, f"per series{s.span(s.held_out)}"),
        ("test_size", s.held_out, f"per series, its last steps{s.span(s.held_out)}"),
        ("chunk_length", s.chunk_length, "steps per training chunk: the warmup, then the steps trained on"),
        ("chunk_stride", s.chunk_stride, ""),
        ("warmup", s.warmup, f"{_rounds(s)} and a horizon: the smoothing settles" if s.season else ""),
        ("batch_size", BATCH_SIZE, ""),
    ]
    return [(f"  {key}: {value}".ljust(32) + f" # {why}") if why else f"  {key}: {value}" for key, value, why in rows]


def _shortened(s: Sizing) -> str:
    if s.horizon == s.preferred_horizon:
        return ""
    return f": the most the shortest series holds ({s.preferred_horizon} would need more)"


def _rounds(s: Sizing) -> str:
    rounds = (s.warmup - s.horizon) // s.season
    return f"{rounds} season" + ("" if rounds == 1 else "s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="seqcast-train init", description="Write a training config sized from the data to standard output."
    )
    parser.add_argument("--data.path", dest="path", required=True, help="a CSV or Parquet file, or builtin:<name>")
    parser.add_argument("--data.target", dest="target", default="y", help="the column to forecast (default y)")
    parser.add_argument("--data.horizon", dest="horizon", type=int, default=None, help="steps ahead")
    parser.add_argument("--name", default=None, help="the run's and the exported model's name (default: the file's)")
    options = parser.parse_args(argv)
    if options.horizon is not None and options.horizon < 1:
        parser.error("--data.horizon must be at least 1")
    name = options.name or Path(options.path.removeprefix("builtin:")).stem.replace("_", "-")
    print(render(size(options.path, options.target, options.horizon), name), end="")  # noqa: T201
