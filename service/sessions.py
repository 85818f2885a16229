"""Sessions: open, observe in batches, close, each observation applied exactly once.

A session's ``seq`` counts the observations it has consumed. A new state is written only after a
successful forward pass, and only if the stored session is still at the ``seq`` the pass started from, so
no failure or concurrent writer can apply an observation twice or lose one. A session stepped last by another
model that reads the same inputs is rebuilt from its tail on its next observe (``service/migration.py``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    count_scores,
    timed,
)
from service.migration import differences, kept
from service.records import NO_TIME, RecordError, SessionRecord
from service.schemas import CloseResponse, ObserveRequest, Reason, RejectedRequest, Rejection, SessionResponse
from service.scoring import NOTHING, Scored, Scorer
from service.store import Put, SessionStore, StoreUnavailable

COUNT_EVERY_S = 1.0  # how often the active-session count is refreshed, at most
NO_DIGEST = bytes(16)  # a fresh session has applied no observe yet


def _digest(request: ObserveRequest) -> bytes:
    return hashlib.blake2b(request.model_dump_json().encode(), digest_size=16).digest()


@dataclass(frozen=True)
class Step:
    """An observe admitted to a round: where it came from and what it will run."""

    session_id: str
    index: int  # position in the batch
    record: SessionRecord  # the session as the round found it
    prepared: Prepared
    digest: bytes
    observed: int  # new values; fewer than the prepared inputs when the session is rebuilt from its tail
    migrated: bool  # the record is another model's: the pass reads the tail and new values from a zero state


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
    ) -> None:
        self.engine = engine
        self.store = store
        self.report_count = report_count
        self.scorer = scorer  # None: live scoring off (a model exported before it)
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

    def _origin(
        self, seq: int, next_time: int, forecast: np.ndarray, before: SessionRecord | None, observed: int
    ) -> tuple[np.ndarray | None, int]:
        """The scoring origin a session holds after a forecast at ``seq``: the one before while its horizon lasts
        (``observed`` values on), else this forecast if it is an origin's, else none. A horizon longer than a
        day is thus scored whole, from every other midnight or so, rather than cut short by the next one."""
        if self.scorer is None:
            return None, 0
        if before is not None and before.origin_forecast is not None:
            since = before.since_origin + observed
            if since < self.engine.config.horizon:
                return before.origin_forecast, since
        if self.scorer.is_origin(seq, next_time, next_time != NO_TIME):
            return forecast, 0
        return None, 0

    def _score(self, record: SessionRecord, prepared: Prepared) -> Scored:
        if self.scorer is None or record.origin_forecast is None:
            return NOTHING
        scale = self.scorer.scale_for(record.series, record.scaling)
        return self.scorer.score(record.origin_forecast, record.since_origin, prepared.target, scale)

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
        if record.model != self.engine.tag:
            problem = self._unmigratable(record)
            if problem is None:
                return record  # rebuilt under this model by its next observe
            return Rejection(
                Reason.STALE_SESSION,
                f"session_id: the session was stepped last by model {record.model}, this service runs "
                f"{self.engine.tag}, and {problem}; open a new session",
                "session_id",
            )
        problem = self.engine.misfit(record.state.shape, record.last_forecast.shape, record.series, record.scaling)
        return self._unreadable(problem) if problem else record

    def _unmigratable(self, record: SessionRecord) -> str | None:
        """Why this model cannot rebuild another model's session from its tail, or None when it can."""
        if record.tail is None or not record.inputs:
            return "the session kept no inputs to rebuild it from (opened by an earlier release, or session_tail 0)"
        differ = differences(record.inputs, self.engine.inputs)
        if differ:
            return f"the models read different inputs: {'; '.join(differ)}"
        return self.engine.scaling_misfit(record.series, record.scaling)

    def _record(
        self,
        seq: int,
        prepared: Prepared,
        result: tuple[np.ndarray, np.ndarray],
        digest: bytes,
        tail: np.ndarray | None,
        scaling: Scaling | None,
        origin: tuple[np.ndarray | None, int],
    ) -> SessionRecord:
        """The session after a pass over ``prepared`` gave (state, forecast) ``result``; ``tail`` is what the
        session kept before these inputs."""
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
            self.engine.inputs,
            kept(tail, prepared.target, prepared.covariates, self.tail_length),
        )

    async def open(self, prepared: Prepared) -> SessionResponse | Rejection:
        """Runs a checked history from a zero state and keeps the state under a new session id."""
        result = await self._run("open", [prepared], [None])
        if not result.finite[0]:
            return result.rejection()
        session_id = secrets.token_urlsafe(16)  # 128 random bits: a session id is its own access key
        seq = len(prepared.inputs)
        origin = self._origin(seq, prepared.next_time, result.forecasts[0], None, 0)
        outcome = (result.states[0], result.forecasts[0])
        record = self._record(seq, prepared, outcome, NO_DIGEST, None, self.engine.own_scaling(prepared), origin)
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
            admitted: list[tuple[str, int, SessionRecord, bytes, int]] = []
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
                    admitted.append((sid, index, record, digest, len(outcome.target)))
                    if record.model != self.engine.tag and record.tail is not None:
                        outcome = self.engine.after_tail(outcome, record.tail, record.next_time)
                    checked.append(outcome)
                else:
                    answers[index] = outcome
            steps: list[Step] = []
            for (sid, index, record, digest, observed), prepared in zip(
                admitted, self.engine.encode(checked), strict=True
            ):
                if isinstance(prepared, Rejection):
                    answers[index] = prepared
                else:
                    migrated = record.model != self.engine.tag
                    steps.append(Step(sid, index, record, prepared, digest, observed, migrated))
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
            return self.engine.check_observe(
                request.values,
                request.covariates,
                record.next_time,
                request.future_covariates,
                record.series,
                record.scaling,
            )
        except RejectedRequest as rejected:
            return rejected.rejection

    async def _apply(
        self,
        steps: list[Step],
        records: dict[str, SessionRecord | Rejection],
        answers: list[SessionResponse | Rejection | None],
    ) -> None:
        """Runs one round of admitted observes in one pass, then stores each new state if its session is still
        where the round found it."""
        states = [None if s.migrated else s.record.state for s in steps]
        result = await self._run("observe", [s.prepared for s in steps], states)
        writes = []
        for k, s in enumerate(steps):
            if not result.finite[k]:
                answers[s.index] = result.rejection()
                continue
            seq = s.record.seq + s.observed
            # A rebuilt session starts scoring afresh: the origin it held was another model's forecast.
            before = None if s.migrated else s.record
            origin = self._origin(seq, s.prepared.next_time, result.forecasts[k], before, s.observed)
            outcome = (result.states[k], result.forecasts[k])
            tail = None if s.migrated else s.record.tail  # a rebuilt session's inputs began with its tail
            writes.append((s, self._record(seq, s.prepared, outcome, s.digest, tail, s.record.scaling, origin)))
        stored = await self._put([(s.session_id, new, s.record.seq) for s, new in writes])
        for (step, new), done in zip(writes, stored, strict=True):
            if done:
                records[step.session_id] = new
                if step.migrated:
                    SESSIONS.labels("migrated", self.engine.tag).inc()
                # Scored once it is applied: a refused or replayed observe is never counted.
                scored = NOTHING if step.migrated else self._score(step.record, step.prepared)
                if self.scorer is not None:
                    count_scores(self.engine.tag, scored, self.scorer.interval_labels)
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
