"""A model that steps sessions: the one served, or a candidate that follows every session in shadow.

Each keeps its own part of a session record (its state and the forecast of its latest scoring origin) and
scores its own forecasts live, so two models are compared on the same live values before one is promoted; a
promoted candidate finds its state in every session it followed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine import Engine
from service.metrics import count_scores
from service.migration import differences, in_logs
from service.records import NO_TIME, SessionRecord
from service.scoring import NOTHING, Scored, Scorer


@dataclass(frozen=True)
class Stepper:
    engine: Engine
    scorer: Scorer | None  # None: live scoring off (a model exported before it, or the setting)

    @property
    def tag(self) -> str:
        return self.engine.tag

    def part(self, record: SessionRecord) -> SessionRecord | None:
        """The part of a stored session this model stepped last: the record itself or its shadow; None when
        neither is this model's, and it can only rebuild the session from its tail."""
        if record.model == self.engine.tag:
            return record
        if record.shadow is not None and record.shadow.model == self.engine.tag:
            return record.shadow
        return None

    def unrebuildable(self, record: SessionRecord) -> str | None:
        """Why this model cannot rebuild a session from its tail, or None when it can."""
        if record.tail is None or not record.reads:
            return "the session kept no inputs to rebuild it from (opened by an earlier release, or session_tail 0)"
        differ = differences(record.reads, self.engine.reads)
        if differ:
            return f"the models read different inputs: {'; '.join(differ)}"
        if self.engine.spec.log_target and (record.tail[:, 0] < 0).any():
            return "it kept values below zero, which a model of log(1 + y) cannot read"
        if record.scaling is not None and in_logs(record.reads) != self.engine.spec.log_target:
            kinds = ("in units", "of log(1 + y)") if self.engine.spec.log_target else ("of log(1 + y)", "in units")
            return f"its own statistics are {kinds[0]}, and this model reads the target {kinds[1]}"
        problem = self.tail_misfit(record)
        if problem is not None:
            return problem
        season, rows = self.engine.config.seasonal_lag, len(record.tail)
        if rows < season and rows < record.seq:  # a tail of the whole history rebuilds it exactly, however short
            return (
                f"it kept its last {rows} inputs, under the model's season of {season}, from which the season "
                "would be rebuilt with zeros"
            )
        if not np.isfinite(record.tail).all():
            return "its kept inputs are not all finite"
        first = record.next_time - self.engine.clock.step * len(record.tail)
        if record.next_time != NO_TIME and first < self.engine.clock.earliest:
            return "its kept inputs would begin before the first timestamp there is"
        calendar = self.engine.spec.calendar
        if calendar and record.next_time == NO_TIME:
            return f"it has no timestamps, which the model's calendar features ({', '.join(calendar)}) need"
        return self.engine.scaling_misfit(record.series, record.scaling)

    def tail_misfit(self, record: SessionRecord) -> str | None:
        """Why a session's tail cannot be this model's inputs, or None when it can (or it keeps none)."""
        if record.tail is None:
            return None
        rows, columns = record.tail.shape
        expected = 1 + len(self.engine.spec.covariates)
        if columns != expected or rows > min(record.seq, self.engine.max_history):
            return f"its kept inputs are {rows} rows of {columns} values, the model reads {expected} a step"
        return None

    def origin(
        self, seq: int, next_time: int, forecast: np.ndarray, before: SessionRecord | None, observed: int
    ) -> tuple[np.ndarray | None, int]:
        """The scoring origin this model's part holds after a forecast at ``seq``: the one before (``before``'s,
        ``observed`` values ago) while its horizon lasts, else this forecast if it is an origin's, else none. A
        horizon longer than a day is thus scored whole, from every other midnight or so, rather than cut short
        by the next one."""
        if self.scorer is None:
            return None, 0
        if before is not None and before.origin_forecast is not None:
            since = before.since_origin + observed
            if since < self.engine.config.horizon:
                return before.origin_forecast, since
        if self.scorer.is_origin(seq, next_time, next_time != NO_TIME):
            return forecast, 0
        return None, 0

    def score(self, part: SessionRecord | None, record: SessionRecord, target: np.ndarray) -> Scored:
        """What newly observed ``target`` values score against this model's part of ``record``, and counts it."""
        if self.scorer is None or part is None or part.origin_forecast is None:
            return NOTHING
        own = None if record.scaling is None else self.engine.spec.target_spread(record.scaling)
        scale = self.scorer.scale_for(record.series, own)
        scored = self.scorer.score(part.origin_forecast, part.since_origin, target, scale)
        count_scores(self.engine.tag, scored, self.scorer.interval_labels)
        return scored
