"""Sessions: open, observe in batches, close, each observation applied exactly once.

A session's ``seq`` counts the observations it has consumed. A new state is written only after a
successful forward pass, and only if the stored session is still at the ``seq`` the pass started from, so
no failure or concurrent writer can apply an observation twice or lose one. A session stepped last by another
model that reads the same inputs is rebuilt from its tail on its next observe (``service/migration.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable

import numpy as np

from models.features import Scaling
from service.engine import Checked, Engine, Prepared, RunResult
from service.metrics import (
    CONFLICTS,
    FORWARD,
    REPLAYS,
    SESSIONS,
    STORE,
    STORE_EVICTED,
    STORE_MEMORY,
    timed,
)
from service.migration import empty, kept
from service.records import RecordError, SessionRecord
from service.schemas import CloseResponse, ObserveRequest, Reason, RejectedRequest, Rejection, SessionResponse
from service.scoring import NOTHING, Scored, Scorer
from service.stepper import Stepper
from service.store import Put, SessionStore, StoreUnavailable

LOG = logging.getLogger("seqcast")
# Stands for an observe the shadow model does not follow, so that its encode keeps the batch's order.
NOT_FOLLOWED = Rejection(Reason.BAD_INPUT, "not followed in shadow")
COUNT_EVERY_S = 1.0  # how often the active-session count is refreshed, at most
NO_DIGEST = bytes(16)  # a fresh session has applied no observe yet


def _digest(request: ObserveRequest) -> bytes:
    return hashlib.blake2b(request.model_dump_json().encode(), digest_size=16).digest()


@dataclasses.dataclass(frozen=True)
class ShadowRun:
    """What the shadow model runs for an admitted observe."""

    prepared: Prepared
    part: SessionRecord | None  # its own part of the record; None: it rebuilds the session from the tail


@dataclasses.dataclass(frozen=True)
class Step:
    """An observe admitted to a round: where it came from and what it will run."""

    session_id: str
    index: int  # position in the batch
    record: SessionRecord  # the session as the round found it
    prepared: Prepared
    digest: bytes
    observed: int  # new values; fewer than the prepared inputs when the session is rebuilt from its tail
    # The served model's part of the record (the record, or its shadow once the shadow is promoted); None: the
    # record is another model's, and the pass reads the tail and the new values from a zero state.
    part: SessionRecord | None
    shadow_run: ShadowRun | None = None  # what the shadow model runs; None without one, or if it cannot follow


def _checked(engine: Engine, request: ObserveRequest, record: SessionRecord) -> Checked:
    """An observe's new values checked for ``engine``, as the session's series and statistics scale them."""
    return engine.check_observe(
        request.values, request.covariates, record.next_time, request.future_covariates, record.series, record.scaling
    )


def _no_report(count: int) -> None:
    pass


class Sessions:
    def __init__(
        self,
        engine: Engine,
        store: SessionStore,
        report_count: Callable[[int], None] = _no_report,
        scorer: Scorer | None = None,
        tail_length: int = 0,
        shadow: Stepper | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.report_count = report_count
        self.served = Stepper(engine, scorer)
        self.shadow = shadow  # a candidate model that follows every session, never answering
        self.tail_length = tail_length  # raw inputs each session keeps; 0: none, so no migration
        self._counted_at = -COUNT_EVERY_S

    async def _get(self, session_ids: list[str]) -> list[bytes | None]:
        with timed(STORE, "get"):
            return await self.store.get_many(session_ids)

    async def _put(self, writes: list[tuple[str, SessionRecord, int | None]]) -> list[bool]:
        """Stores each (session id, record, expected seq) if the session is still at that seq."""
        if not writes:
            return []
        with timed(STORE, "put"):
            return await self.store.put_many_if(
                [Put(sid, record.to_bytes(), record.seq, expected) for sid, record, expected in writes]
            )

    async def _run(self, endpoint: str, prepared: list[Prepared], states: list[np.ndarray | None]) -> RunResult:
        with timed(FORWARD, endpoint, self.engine.tag):
            return await self.engine.run_async(prepared, states)

    async def keep_counting(self) -> None:
        """Refreshes the session count and the store's health every COUNT_EVERY_S, requests or none. A worker's
        refresh after a request can read the count before another worker's close and set it after; with
        nothing refreshing when traffic stops, that stale count would stay the gauge's most recent value."""
        while True:  # first at start-up, so that the store's series exist before any request
            try:
                await self._recount()
            except Exception:  # the store's failures show in readiness and its own metrics; the count goes on
                pass
            await asyncio.sleep(COUNT_EVERY_S)

    async def _recount(self, now: bool = False) -> None:
        """Refreshes the session count (``now``: after an open or close) and, once a second at most, the store's
        health. It runs after the request's work is stored, so a store that fails here fails the metrics only:
        the request's answer stands, and the gauges keep their last values."""
        periodic = time.monotonic() - self._counted_at >= COUNT_EVERY_S
        if not (now or periodic):
            return
        self._counted_at = time.monotonic()
        try:
            with timed(STORE, "count"):
                self.report_count(await self.store.count())
        except StoreUnavailable:
            return
        health = await self.store.health() if periodic else None
        if health is not None:
            STORE_EVICTED.set(health.evicted_keys)
            STORE_MEMORY.labels("used").set(health.used_bytes)
            STORE_MEMORY.labels("max").set(health.max_bytes)

    def _answer(
        self, session_id: str, record: SessionRecord, warnings: tuple[str, ...] = (), scored: Scored = NOTHING
    ) -> SessionResponse:
        # Built from the service's own values, so pydantic's validation of 48+ floats per answer is skipped.
        fields = self.engine.answer(record.last_forecast, record.next_time, warnings, record.model)
        anomalies = scored.anomalous or None
        return SessionResponse.model_construct(session_id=session_id, seq=record.seq, anomalies=anomalies, **fields)

    @staticmethod
    def _missing(session_id: str) -> Rejection:
        return Rejection(
            Reason.UNKNOWN_SESSION,
            f"session_id: no session {session_id!r} (never opened, closed or expired)",
            "session_id",
        )

    @staticmethod
    def _unreadable(problem: str) -> Rejection:
        return Rejection(
            Reason.STALE_SESSION,
            f"session_id: the stored session cannot be read ({problem}); open a new one",
            "session_id",
        )

    def _load(self, session_id: str, blob: bytes | None) -> SessionRecord | Rejection:
        """The stored session, or its own refusal: a record that is not one, or does not fit the model, must
        fail alone and never reach a pass shared with other sessions."""
        if blob is None:
            return self._missing(session_id)
        try:
            record = SessionRecord.from_bytes(blob)
        except RecordError as error:
            return self._unreadable(str(error))
        part = self.served.part(record)
        if part is None:
            problem = self.served.unrebuildable(record)
            if problem is None:
                return record  # rebuilt under this model by its next observe
            return Rejection(
                Reason.STALE_SESSION,
                f"session_id: the session was stepped last by model {record.model}, this service runs "
                f"{self.engine.tag}, and {problem}; open a new session",
                "session_id",
            )
        problem = self.engine.misfit(part.state.shape, part.last_forecast.shape, record.series, record.scaling)
        problem = problem or self.served.tail_misfit(record)
        return self._unreadable(problem) if problem else record

    def _record(
        self,
        seq: int,
        prepared: Prepared,
        result: tuple[np.ndarray, np.ndarray],
        digest: bytes,
        tail: np.ndarray | None,
        scaling: Scaling | None,
        origin: tuple[np.ndarray | None, int],
        shadow: SessionRecord | None = None,
    ) -> SessionRecord:
        """The session after a pass over ``prepared`` gave (state, forecast) ``result``; ``tail`` is what the
        session kept before these inputs (None: it kept none, and keeps none)."""
        state, forecast = result
        return SessionRecord(
            self.engine.tag,
            seq,
            prepared.next_time,
            state,
            digest,
            forecast,
            prepared.series,
            scaling,
            *origin,
            self.engine.reads,
            kept(tail, prepared.target, prepared.covariates, self.tail_length),
            shadow,
        )

    async def open(self, prepared: Prepared, shadowed: Prepared | None = None) -> SessionResponse | Rejection:
        """Runs a checked history from a zero state and keeps the state under a new session id; ``shadowed`` is
        the history as the shadow model reads it, which then follows the session from its start."""
        result = await self._run("open", [prepared], [None])
        if not result.finite[0]:
            return result.rejection()
        shadow_run = None if shadowed is None else ShadowRun(shadowed, None)
        shadow_outcome = (await self._shadow_pass([shadow_run])).get(0)
        session_id = secrets.token_urlsafe(16)  # 128 random bits: a session id is its own access key
        seq = len(prepared.inputs)
        origin = self.served.origin(seq, prepared.next_time, result.forecasts[0], None, 0)
        outcome = (result.states[0], result.forecasts[0])
        start = empty(1 + prepared.covariates.shape[1])
        record = self._record(seq, prepared, outcome, NO_DIGEST, start, self.engine.own_scaling(prepared), origin)
        shadow = self._shadow_record(shadow_run, seq, 0, NO_DIGEST, record, shadow_outcome)
        record = dataclasses.replace(record, shadow=shadow)
        if not (await self._put([(session_id, record, None)]))[0]:
            raise RuntimeError("a fresh session id was already taken")
        SESSIONS.labels("opened", self.engine.tag).inc()
        await self._recount(now=True)
        return self._answer(session_id, record, prepared.warnings)

    async def observe(self, requests: list[ObserveRequest]) -> list[SessionResponse | Rejection]:
        """Advances each session by its new values; several observes of one session apply in order."""
        answers: list[SessionResponse | Rejection | None] = [None] * len(requests)
        queues: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            queues.setdefault(request.session_id, []).append(index)
        blobs = await self._get(list(queues))
        records = {sid: self._load(sid, blob) for sid, blob in zip(queues, blobs, strict=True)}
        # Each round takes the next observe of every session, so one session's observes chain in order.
        while any(queues.values()):
            admitted: list[tuple[str, int, SessionRecord, bytes, int, SessionRecord | None]] = []
            checked: list[Checked] = []
            for sid, indices in queues.items():
                if not indices:
                    continue
                index = indices.pop(0)
                request, record = requests[index], records[sid]
                if isinstance(record, Rejection):
                    answers[index] = record
                    continue
                digest = _digest(request)
                outcome = self._admit(request, record, digest)
                if isinstance(outcome, Checked):
                    part = self.served.part(record)
                    admitted.append((sid, index, record, digest, len(outcome.target), part))
                    if part is None and record.tail is not None:
                        outcome = self.engine.after_tail(outcome, record.tail, record.next_time)
                    checked.append(outcome)
                else:
                    answers[index] = outcome
            shadow_runs = self._shadow_runs([(requests[index], record) for _, index, record, *_ in admitted])
            steps: list[Step] = []
            for (sid, index, record, digest, observed, part), prepared, shadow_run in zip(
                admitted, self.engine.encode(checked), shadow_runs, strict=True
            ):
                if isinstance(prepared, Rejection):
                    answers[index] = prepared
                else:
                    steps.append(Step(sid, index, record, prepared, digest, observed, part, shadow_run))
            if steps:
                await self._apply(steps, records, answers)
        await self._recount()
        return [answer for answer in answers if answer is not None]

    def _admit(
        self, request: ObserveRequest, record: SessionRecord, digest: bytes
    ) -> Checked | Rejection | SessionResponse:
        """What to do with one observe: its checked values, a rejection, or the answer it already got."""
        if request.seq != record.seq:
            # A retry of what was just applied gets the same answer; one applied by a model whose forecasts
            # this one cannot render is told where the session is, as a client that lost the race would be.
            if digest == record.last_digest and record.last_forecast.shape == self.engine.forecast_shape:
                REPLAYS.labels(self.engine.tag).inc()
                return self._answer(request.session_id, record)
            CONFLICTS.labels(self.engine.tag).inc()
            return Rejection(
                Reason.SEQ_CONFLICT,
                f"seq: the session is at seq {record.seq}, the request says {request.seq}",
                "seq",
                record.seq,
            )
        try:
            return _checked(self.engine, request, record)
        except RejectedRequest as rejected:
            return rejected.rejection

    def _shadow_runs(self, admitted: list[tuple[ObserveRequest, SessionRecord]]) -> list[ShadowRun | None]:
        """What the shadow model runs for each admitted observe: the same values, scaled as it scales them, from
        its own state or rebuilt from the tail. A session it cannot follow (no tail, a series it lacks, a value
        it refuses) goes on without it, and so does every session when preparing them fails."""
        if self.shadow is None:
            return [None] * len(admitted)
        try:
            runs = [self._shadow_input(request, record) for request, record in admitted]
            prepared = self.shadow.engine.encode([checked for checked, _ in runs])
        except Exception as error:  # a candidate's fault is logged; the served answers stand
            LOG.warning("shadow model %s could not prepare %d observes: %s", self.shadow.tag, len(admitted), error)
            return [None] * len(admitted)
        return [
            None if isinstance(inputs, Rejection) else ShadowRun(inputs, part)
            for inputs, (_, part) in zip(prepared, runs, strict=True)
        ]

    def _shadow_input(
        self, request: ObserveRequest, record: SessionRecord
    ) -> tuple[Checked | Rejection, SessionRecord | None]:
        """One observe's values as the shadow model reads them, and its part of the record they follow (None:
        rebuilt from the tail); NOT_FOLLOWED when it cannot follow the session."""
        shadow = self.shadow
        assert shadow is not None
        part = shadow.part(record)
        if part is not None and shadow.engine.misfit(
            part.state.shape, part.last_forecast.shape, record.series, record.scaling
        ):
            part = None
        tail = record.tail if part is None and not shadow.unrebuildable(record) else None
        if part is None and tail is None:
            return NOT_FOLLOWED, None
        try:
            values = _checked(shadow.engine, request, record)
        except RejectedRequest:
            return NOT_FOLLOWED, None
        return (values if tail is None else shadow.engine.after_tail(values, tail, record.next_time)), part

    async def _shadow_pass(self, shadow_runs: list[ShadowRun | None]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The shadow model's (state, forecast) for each observe it follows, by position. Its failure never
        fails what the served model answers: the sessions then go on without it."""
        shadow = self.shadow
        followed = [(k, f) for k, f in enumerate(shadow_runs) if f is not None]
        if shadow is None or not followed:
            return {}
        prepared = [f.prepared for _, f in followed]
        states = [None if f.part is None else f.part.state for _, f in followed]
        try:
            with timed(FORWARD, "shadow", shadow.tag):
                result = await shadow.engine.run_async(prepared, states)
        except Exception as error:  # a candidate's fault is logged; the served answers stand
            LOG.warning("shadow model %s failed a pass of %d observes: %s", shadow.tag, len(prepared), error)
            return {}
        return {k: (result.states[j], result.forecasts[j]) for j, (k, _) in enumerate(followed) if result.finite[j]}

    def _shadow_record(
        self,
        shadow_run: ShadowRun | None,
        seq: int,
        observed: int,
        digest: bytes,
        session: SessionRecord,
        outcome: tuple[np.ndarray, np.ndarray] | None,
    ) -> SessionRecord | None:
        """The shadow model's part of ``session`` (whose series and statistics it shares) after it followed
        ``observed`` more values, from ``outcome`` (state, forecast); None when it did not follow them."""
        if self.shadow is None or shadow_run is None or outcome is None:
            return None
        state, forecast = outcome
        next_time = shadow_run.prepared.next_time
        origin = self.shadow.origin(seq, next_time, forecast, shadow_run.part, observed)
        return SessionRecord(
            self.shadow.tag, seq, next_time, state, digest, forecast, session.series, session.scaling, *origin
        )

    async def _apply(
        self,
        steps: list[Step],
        records: dict[str, SessionRecord | Rejection],
        answers: list[SessionResponse | Rejection | None],
    ) -> None:
        """Runs one round of admitted observes in one pass (and the shadow model's in another), then stores each
        new state if its session is still where the round found it."""
        states = [None if s.part is None else s.part.state for s in steps]
        result = await self._run("observe", [s.prepared for s in steps], states)
        shadowed = await self._shadow_pass([s.shadow_run for s in steps])
        writes = []
        for k, s in enumerate(steps):
            if not result.finite[k]:
                answers[s.index] = result.rejection()
                continue
            seq = s.record.seq + s.observed
            # A rebuilt session starts scoring afresh: the origin it held was another model's forecast.
            origin = self.served.origin(seq, s.prepared.next_time, result.forecasts[k], s.part, s.observed)
            outcome = (result.states[k], result.forecasts[k])
            # A rebuilt session's inputs began with its tail.
            rebuilt = s.part is None and s.record.tail is not None
            tail = empty(s.record.tail.shape[1]) if rebuilt else s.record.tail  # type: ignore[union-attr]
            shadow = self._shadow_record(s.shadow_run, seq, s.observed, s.digest, s.record, shadowed.get(k))
            new = self._record(seq, s.prepared, outcome, s.digest, tail, s.record.scaling, origin, shadow)
            writes.append((s, new))
        stored = await self._put([(s.session_id, new, s.record.seq) for s, new in writes])
        for (step, new), done in zip(writes, stored, strict=True):
            if done:
                records[step.session_id] = new
                self._count_take_over(step)
                self._score_shadow(step, new)
                # Scored once it is applied: a refused or replayed observe is never counted.
                scored = self.served.score(step.part, step.record, step.prepared.target)
                answers[step.index] = self._answer(step.session_id, new, step.prepared.warnings, scored)
                continue
            # Another worker stepped the session meanwhile: nothing was written; report where it is now.
            CONFLICTS.labels(self.engine.tag).inc()
            current = self._load(step.session_id, (await self._get([step.session_id]))[0])
            records[step.session_id] = current
            now = current.seq if isinstance(current, SessionRecord) else None
            answers[step.index] = Rejection(
                Reason.SEQ_CONFLICT, "seq: the session changed while this request ran", "seq", now
            )

    def _count_take_over(self, step: Step) -> None:
        """Counts a session the served model took over from another: rebuilt from its tail, or promoted."""
        if step.part is None:
            SESSIONS.labels("migrated", self.engine.tag).inc()
        elif step.part is step.record.shadow:
            SESSIONS.labels("promoted", self.engine.tag).inc()  # the candidate's own state: nothing replayed

    def _score_shadow(self, step: Step, new: SessionRecord) -> None:
        """Scores the shadow's forecasts on a stored observe; its fault is logged, the served answers stand."""
        run = step.shadow_run
        if self.shadow is None or run is None or new.shadow is None:
            return
        try:
            self.shadow.score(run.part, step.record, run.prepared.target)
        except Exception as error:
            LOG.warning("shadow model %s could not be scored: %s", self.shadow.tag, error)

    async def close(self, session_id: str) -> CloseResponse | Rejection:
        blob = (await self._get([session_id]))[0]
        if blob is None:
            return self._missing(session_id)
        with timed(STORE, "delete"):
            deleted = await self.store.delete(session_id)
        if not deleted:  # a concurrent close took it first: one close, one answer that says so
            return self._missing(session_id)
        SESSIONS.labels("closed", self.engine.tag).inc()
        await self._recount(now=True)
        record = self._load(session_id, blob)
        # A session of another model or format can still be closed; its seq is then unknown.
        return CloseResponse(session_id=session_id, seq=record.seq if isinstance(record, SessionRecord) else -1)
