"""The forecasting core of the service: requests in, model inputs checked, ragged batches run.

It knows nothing of HTTP or BentoML, so the service's exactness can be tested by calling it directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import torch

from models.checkpoint import Checkpoint
from models.features import RowScaling, Scaling, encode_future, encode_inputs
from models.forecaster import state_rows
from service.clock import Clock
from service.migration import what_it_reads
from service.records import NO_TIME
from service.schemas import ForecastFields, Reason, RejectedRequest, Rejection, Rows

# A pass that reads more steps than this would stall everything else the worker's event loop serves, health
# checks included: 64 small-model histories of 336 steps take ~30 ms, one large-model history of 1,000 ~40 ms,
# 64 of them ~1.2 s. It runs on a thread of its own while the loop goes on. Shorter passes, such as a batch of
# one-value observes (~1 ms), stay on the loop: a thread handoff would cost about as much as it frees.
OFF_LOOP_STEPS = 512

# Scaled inputs this many training standard deviations out are a client's mistake (wrong units, a sentinel
# value), and would drive the recurrence to saturation or overflow; they are refused where they enter.
MAX_SCALED = 1e6


@dataclass(frozen=True)
class RunResult:
    forecasts: np.ndarray  # (B, horizon, outputs per step) in the target's units
    states: np.ndarray  # (B, state rows, hidden): the model's state tensors stacked along their first axis
    finite: np.ndarray  # (B,) whether each forecast is finite; a non-finite one must not be stored or sent

    @staticmethod
    def rejection() -> Rejection:
        return Rejection(
            Reason.NON_FINITE_FORECAST, "the model's forecast for these inputs is not finite; nothing was stored"
        )


@dataclass(frozen=True)
class Prepared:
    """One request's model inputs."""

    inputs: np.ndarray  # (T, input_dim)
    future: np.ndarray  # (horizon, future_dim)
    next_time: int  # clock ticks (service/clock.py) of the step after the last input, or NO_TIME
    series: str | None  # the training series whose statistics scaled it, for a model scaled per series
    scaling: Scaling  # those statistics, which also unscale its forecast
    target: np.ndarray  # (T,) the raw target values, which live scoring compares with forecasts
    covariates: np.ndarray  # (T, covariates) the raw covariates, which a session keeps in its tail with the target
    warnings: tuple[str, ...] = ()  # values far outside the training data's range, applied all the same


def _bad(field: str, message: str) -> RejectedRequest:
    return RejectedRequest(Rejection(Reason.BAD_INPUT, f"{field}: {message}", field=field))


def _rows(field: str, rows: Rows | None, count: int, names: tuple[str, ...], per: str) -> np.ndarray:
    """Checks a (count, len(names)) table the client sent."""
    width = len(names)
    if width == 0:
        if rows:
            raise _bad(field, "the model reads no such values; leave the field out")
        return np.zeros((count, 0))
    if rows is None:
        raise _bad(field, f"required: one row of {width} values ({', '.join(names)}) per {per}")
    if len(rows) != count:
        raise _bad(field, f"has {len(rows)} rows; expected {count}, one per {per}")
    try:
        table = np.asarray(rows, dtype=float)
        if table.shape == (count, width) or count == 0:
            return table.reshape(count, width)
    except ValueError:  # rows of different lengths: found and named below
        pass
    index, row = next((i, row) for i, row in enumerate(rows) if len(row) != width)
    raise _bad(field, f"row {index} has {len(row)} values; expected {width} ({', '.join(names)})")


def _beyond_range(scaled: np.ndarray, limit: float = MAX_SCALED) -> np.ndarray:
    return ~(np.abs(scaled) <= limit)  # also catches values that overflowed float32


def _out_of_range(scaled: np.ndarray, ends: np.ndarray, limit: float = MAX_SCALED) -> np.ndarray:
    """Which requests, whose rows of ``scaled`` end at ``ends``, hold a value beyond ``limit``."""
    flagged = np.zeros(len(ends), dtype=bool)
    bad = _beyond_range(scaled, limit)
    if bad.any():
        flagged[np.searchsorted(ends, np.flatnonzero(bad.any(axis=1)), side="right")] = True
    return flagged


def _check_range(field: str, scaled: np.ndarray, raw: np.ndarray) -> None:
    bad = _beyond_range(scaled)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _bad(field, f"value {raw[at]:g} at {list(at)} is far outside the training data's range")


def _far(field: str, scaled: np.ndarray, raw: np.ndarray, limit: float) -> list[str]:
    """A warning naming how many values of ``field`` lie over ``limit`` training deviations out, and the first."""
    far = _beyond_range(scaled, limit)
    if not far.any():
        return []
    at = tuple(int(i) for i in np.argwhere(far)[0])
    return [
        f"{field}: {int(far.sum())} values lie over {limit:g} training standard deviations from the training "
        f"mean, first {raw[at]:g} at {list(at)}: are they in the units the model was trained on?"
    ]


def _by_row(scalings: list[Scaling], rows: np.ndarray) -> Scaling | RowScaling:
    """What scales ``rows[k]`` rows by ``scalings[k]``: the one Scaling itself when all share it (every
    request to a model scaled alike), else statistics repeated per row."""
    first = scalings[0]
    if all(s is first for s in scalings):
        return first
    return RowScaling.repeat(scalings, rows)


FORMATTED_TIMES = 100_000  # formatted timestamps an engine keeps (~16 MB): 5.7 years of half-hours


@dataclass(frozen=True)
class Checked:
    """One request's raw values, of the shapes and sizes the model accepts; ``Engine.encode`` scales them."""

    field: str  # where the target values came from: named if one is out of range
    target: np.ndarray  # (T,)
    past: np.ndarray  # (T, covariates)
    future: np.ndarray  # (horizon, future covariates)
    first_time: int  # clock ticks of the first value, or NO_TIME
    series: str | None  # as in Prepared
    scaling: Scaling  # the statistics that will scale it


def _only(outcomes: list[Prepared | Rejection]) -> Prepared:
    if isinstance(outcomes[0], Rejection):
        raise RejectedRequest(outcomes[0])
    return outcomes[0]


class Engine:
    def __init__(
        self,
        checkpoint: Checkpoint,
        tag: str,
        max_history: int = 20_000,
        max_observe: int = 2_000,
        warn_beyond_std: float = 10.0,
    ) -> None:
        self.checkpoint = checkpoint
        self.tag = tag
        self.max_history = max_history
        self.max_observe = max_observe
        self.warn_beyond_std = warn_beyond_std
        self.spec = checkpoint.features
        self.config = checkpoint.config
        self.model = checkpoint.build_model()
        self.reads = what_it_reads(self.spec, bool(checkpoint.series_scaling))  # kept in each session
        # Answers' timestamps follow a series step by step: nanoseconds for a fixed step, a step count for months.
        self.clock = Clock(self.spec.freq)
        self.step_ns = self.clock.fixed_ns  # what live scoring reads: 0 for a calendar step, or none known
        self._formatted: dict[int, str] = {}  # ISO 8601 of times answers carried (see timestamps)
        # Fewer values than this give statistics that swing with every value; two horizons, so that a
        # seasonal model sees its season at least twice when the horizon is one season.
        self.min_own_history = 2 * self.config.horizon
        # One thread: long passes queue up behind each other rather than contend for the worker's cores. It
        # takes the torch thread count the worker set: a new thread's kernels would otherwise spread over every
        # core (measured here: a matmul on a fresh thread ran 2x faster than on the worker's one thread).
        self._pass_thread = ThreadPoolExecutor(
            1, "seqcast-pass", initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)
        )

    def _training_scaling(self, series: str | None) -> Scaling | None:
        """The training statistics that scale requests for ``series``; None for a series a model scaled per
        series did not train on (no ``series`` given), which is scaled by its own history instead."""
        if series is None and self.checkpoint.series_scaling:
            return None
        try:
            return self.checkpoint.scaling_for(series)
        except LookupError as error:
            raise _bad("series", str(error)) from None

    def _check(
        self,
        field: str,
        values: list[float],
        limit: int,
        covariates: Rows | None,
        first_time: int,
        future: Rows | None,
        series: str | None,
        scaling: Scaling | None,
    ) -> Checked:
        """``scaling`` None: fitted on these values, as training fitted each series' on its training part."""
        n, horizon = len(values), self.config.horizon
        if n > limit:
            raise _bad(field, f"has {n} values; at most {limit} are accepted")
        if scaling is None and n < self.min_own_history:
            raise _bad(
                field,
                f"has {n} values; a series the model did not train on is scaled by its own history, which needs at "
                f"least {self.min_own_history} values (or name a training series in `series`)",
            )
        past = _rows("covariates", covariates, n, self.spec.covariates, "value")
        if first_time != NO_TIME and first_time + self.clock.step * (n + horizon) > self.clock.latest:
            raise _bad(field, f"its timestamps and the forecast's would pass {pd.Timestamp.max:%Y-%m-%d}")
        ahead = _rows("future_covariates", future, horizon, self.spec.future_covariates, "forecast step")
        target = np.asarray(values, dtype=float)
        if self.spec.log_target and (target < 0).any():
            first = int(np.flatnonzero(target < 0)[0])
            raise _bad(
                field, f"[{first}] is {target[first]:g}; this model forecasts log(1 + value): values must be >= 0"
            )
        if scaling is None:
            scaling = Scaling.fit(np.column_stack([self.spec.model_target(target), past]))
        return Checked(field, target, past, ahead, first_time, series, scaling)

    def check_history(
        self,
        history: list[float],
        covariates: Rows | None,
        start: datetime | None,
        future: Rows | None,
        series: str | None = None,
    ) -> Checked:
        scaling = self._training_scaling(series)
        first_time = NO_TIME
        if self.spec.calendar and start is None:
            raise _bad("start", f"required: the model derives {', '.join(self.spec.calendar)} from timestamps")
        if start is not None and self.clock.timed:  # then answers carry the timestamps of the forecast's steps
            try:
                first_time = self.clock.ticks(start)
            except ValueError as error:
                raise _bad("start", str(error)) from None
        return self._check("history", history, self.max_history, covariates, first_time, future, series, scaling)

    def check_observe(
        self,
        values: list[float],
        covariates: Rows | None,
        next_time: int,
        future: Rows | None,
        series: str | None = None,
        own_scaling: Scaling | None = None,
    ) -> Checked:
        """Checks a session's new values; ``series`` and ``own_scaling`` are the session's (see own_scaling)."""
        scaling = own_scaling if own_scaling is not None else self._training_scaling(series)
        if scaling is None:
            raise RuntimeError("a session of a model scaled per series holds neither a series nor statistics")
        return self._check("values", values, self.max_observe, covariates, next_time, future, series, scaling)

    def after_tail(self, checked: Checked, tail: np.ndarray, next_time: int) -> Checked:
        """A session's new values read after the raw inputs it kept (``tail``), so that a pass from a zero state
        rebuilds its state under this model; ``next_time`` is the first new value's timestamp."""
        first_time = NO_TIME if next_time == NO_TIME else next_time - self.clock.step * len(tail)
        target = np.concatenate([tail[:, 0], checked.target])
        past = np.concatenate([tail[:, 1:], checked.past])
        return Checked(checked.field, target, past, checked.future, first_time, checked.series, checked.scaling)

    def own_scaling(self, prepared: Prepared) -> Scaling | None:
        """The statistics fitted on a request's own history (a series the model did not train on), which a
        session opened from it keeps to scale its later values; None when training statistics scaled it."""
        return prepared.scaling if prepared.series is None and self.checkpoint.series_scaling else None

    def encode(self, requests: Sequence[Checked | Rejection]) -> list[Prepared | Rejection]:
        """Scales every request's rows and derives their calendar features in one numpy pass: for one-value
        observes, a pass over a batch costs about what one request alone would. A request holding a value far
        outside the training data's range is refused alone; refused requests pass through."""
        checked = [r for r in requests if isinstance(r, Checked)]
        if not checked:
            return [r for r in requests if isinstance(r, Rejection)]
        horizon, spec = self.config.horizon, self.spec
        lengths = np.array([len(c.target) for c in checked])
        ends = np.cumsum(lengths)  # each request's rows end here in the joined rows
        stamps = ahead_stamps = None
        firsts = np.array([c.first_time for c in checked], dtype=np.int64)
        next_times = np.where(firsts == NO_TIME, NO_TIME, firsts + self.clock.step * lengths)
        if spec.calendar:
            row_in_request = np.arange(ends[-1]) - np.repeat(ends - lengths, lengths)
            # Calendar features need a fixed step (FeatureSpec): these ticks are nanosecond timestamps.
            stamps = np.repeat(firsts, lengths) + self.clock.step * row_in_request
            next_times = firsts + self.clock.step * lengths
            ahead_stamps = (next_times[:, None] + self.clock.step * np.arange(horizon)).ravel()  # (B * horizon,)
        past = np.concatenate([c.past for c in checked])  # (sum T, covariates)
        ahead = np.concatenate([c.future for c in checked])  # (B * horizon, future covariates)
        scalings = [c.scaling for c in checked]
        scaling, ahead_scaling = _by_row(scalings, lengths), _by_row(scalings, np.full(len(checked), horizon))
        with np.errstate(over="ignore"):  # an overflow to inf is caught and named below
            inputs = encode_inputs(spec, scaling, np.concatenate([c.target for c in checked]), past, stamps)
            futures = encode_future(spec, ahead_scaling, ahead, ahead_stamps)
        futures = futures.reshape(len(checked), horizon, spec.future_dim)
        observed = inputs[:, : 1 + past.shape[1]]
        ahead_scaled = futures[:, :, : ahead.shape[1]].reshape(len(ahead), ahead.shape[1])
        ahead_ends = horizon * np.arange(1, len(checked) + 1)
        out_of_range = _out_of_range(observed, ends) | _out_of_range(ahead_scaled, ahead_ends)
        far = _out_of_range(observed, ends, self.warn_beyond_std) | _out_of_range(
            ahead_scaled, ahead_ends, self.warn_beyond_std
        )
        rows = [inputs[end - n : end] for n, end in zip(lengths.tolist(), ends.tolist(), strict=True)]
        encoded = zip(rows, futures, next_times.tolist(), out_of_range.tolist(), far.tolist(), strict=True)
        return [self._prepared(r, *next(encoded)) if isinstance(r, Checked) else r for r in requests]

    def _prepared(
        self, request: Checked, inputs: np.ndarray, future: np.ndarray, next_time: int, out_of_range: bool, far: bool
    ) -> Prepared | Rejection:
        if not out_of_range:
            warnings = (self._warnings(request, inputs, future) if far else ()) + self._short_of_season(request)
            return Prepared(
                inputs, future, next_time, request.series, request.scaling, request.target, request.past, warnings
            )
        try:  # name the first value out of range, in field order
            _check_range(request.field, inputs[:, :1], request.target[:, None])
            _check_range("covariates", inputs[:, 1 : 1 + request.past.shape[1]], request.past)
            _check_range("future_covariates", future[:, : request.future.shape[1]], request.future)
        except RejectedRequest as rejected:
            return rejected.rejection
        raise RuntimeError("a request was flagged out of range, yet none of its values is")

    def _short_of_season(self, request: Checked) -> tuple[str, ...]:
        """A history too short for a seasonal model's season and one step: the forecast reads zeros (the mean it
        is scaled by) for the values a season before it, applied all the same."""
        season, n = self.config.seasonal_lag, len(request.target)
        if request.field != "history" or not season or n > season:
            return ()
        reads = (
            "no learnt change for the steps of the season it has not seen"
            if self.config.smoothed_seasons
            else "the mean for the values before them"
        )
        return (
            f"history: {n} values, fewer than the model's season and one step ({season + 1}): the forecast reads "
            f"{reads}; send more history for a seasonal forecast",
        )

    def _warnings(self, request: Checked, inputs: np.ndarray, future: np.ndarray) -> tuple[str, ...]:
        """What lies far outside the training data, field by field: flagged in the answer, never refused."""
        covariates = request.past.shape[1]
        limit = self.warn_beyond_std
        return (
            *_far(request.field, inputs[:, :1], request.target[:, None], limit),
            *_far("covariates", inputs[:, 1 : 1 + covariates], request.past, limit),
            *_far("future_covariates", future[:, : request.future.shape[1]], request.future, limit),
        )

    def prepare(self, checked: Checked) -> Prepared:
        """Encodes one checked request; raises RejectedRequest naming the field at fault."""
        return _only(self.encode([checked]))

    @torch.inference_mode()
    def run(self, prepared: list[Prepared], states: list[np.ndarray | None]) -> RunResult:
        """Runs every request from its state (None: from zero) in one ragged pass."""
        zero = np.zeros(self.state_shape, dtype=np.float32)
        initial = torch.from_numpy(np.stack([zero if s is None else s for s in states]))  # (B, rows, hidden)
        parts = initial.split(state_rows(self.config), dim=1)
        state = tuple(part.transpose(0, 1).contiguous() for part in parts)
        sequences = [torch.from_numpy(p.inputs) for p in prepared]
        future = torch.from_numpy(np.stack([p.future for p in prepared]))
        forecast, new_state = self.model.forward_ragged(sequences, state, future)
        after = torch.cat([s.transpose(0, 1) for s in new_state], dim=1).numpy()  # (B, rows, hidden)
        target = _by_row([p.scaling for p in prepared], np.ones(len(prepared), dtype=int))
        forecasts = self.spec.in_target_units(target.unscale_target(forecast.numpy()).astype(np.float32))
        finite = np.isfinite(forecasts).all(axis=(1, 2)) & np.isfinite(after).all(axis=(1, 2))
        return RunResult(forecasts, after, np.asarray(finite, dtype=bool))

    async def run_async(self, prepared: list[Prepared], states: list[np.ndarray | None]) -> RunResult:
        """``run`` for the service's event loop: a long pass of histories runs on the pass thread (see
        OFF_LOOP_STEPS). One-step passes always stay on the loop, the only thread that switches kernels for
        them (``models.forecaster._single_step_kernels``)."""
        lengths = [len(p.inputs) for p in prepared]
        if max(lengths) == 1 or sum(lengths) <= OFF_LOOP_STEPS:
            return self.run(prepared, states)
        return await asyncio.get_running_loop().run_in_executor(self._pass_thread, self.run, prepared, states)

    def misfit(
        self, state: tuple[int, ...], forecast: tuple[int, ...], series: str | None, scaling: Scaling | None
    ) -> str | None:
        """What makes a stored session unusable by this model, or None when it fits: its arrays' shapes, and
        statistics to scale its values by (its own, or its training series')."""
        if state != self.state_shape:
            return f"its state is {state}, the model's is {self.state_shape}"
        if forecast != self.forecast_shape:
            return f"its forecast is {forecast}, the model's is {self.forecast_shape}"
        return self.scaling_misfit(series, scaling)

    def scaling_misfit(self, series: str | None, scaling: Scaling | None) -> str | None:
        """Why this model cannot scale a session's values by the statistics it names, or None when it can."""
        columns = 1 + len(self.spec.covariates)
        if scaling is not None:
            if len(scaling.mean) != columns:
                return f"its statistics cover {len(scaling.mean)} columns, the model reads {columns}"
            return None
        try:
            if self._training_scaling(series) is None:
                return "it holds neither a training series nor statistics of its own"
        except RejectedRequest:
            return f"its series {series!r} is not one the model trained on"
        return None

    @property
    def state_shape(self) -> tuple[int, int]:
        return (sum(state_rows(self.config)), self.config.hidden_size)

    @property
    def forecast_shape(self) -> tuple[int, int]:
        return (self.config.horizon, self.config.outputs_per_step)

    def answer(
        self, forecast: np.ndarray, next_time: int, warnings: tuple[str, ...] = (), model: str | None = None
    ) -> ForecastFields:
        """Response fields for one (horizon, outputs) forecast whose first step is at ``next_time``, made by this
        model or by ``model``, one of the same outputs that a session was last stepped by."""
        quantiles = self.config.quantiles
        by_quantile = {f"{q:g}": forecast[:, i].tolist() for i, q in enumerate(quantiles)} if quantiles else None
        point = forecast[:, self.config.point_index].tolist()
        return {
            "forecast": point,
            "quantiles": by_quantile,
            "timestamps": self.timestamps(next_time),
            "warnings": list(warnings) or None,
            "model": model or self.tag,
        }

    def timestamps(self, next_time: int) -> list[str] | None:
        """ISO 8601 times of the forecast's steps from ``next_time``; None where the time is not known."""
        if next_time == NO_TIME or not self.clock.timed:
            return None
        step = self.clock.step
        times = range(next_time, next_time + step * self.config.horizon, step)
        # Formatting cost a sixth of an observe's own work, and the sessions of a fleet step through the same
        # times, each a step past its last answer's: formatted once, a time is looked up by the next answers.
        known = self._formatted
        try:
            return [known[t] for t in times]
        except KeyError:
            pass
        missing = [t for t in times if t not in known]
        if len(known) + len(missing) > FORMATTED_TIMES:
            known = self._formatted = {}  # a new dict: a reader holding the old one still finds its times
            missing = list(times)
        for t in missing:  # most answers miss one time: the step after the last answer's
            known[t] = self.clock.format(t)
        return [known[t] for t in times]
