"""seqcast's BentoML service: batched stateless forecasts, and sessions that keep the recurrent state.

``bentoml serve service.service:Seqcast`` starts it; ``SEQCAST_*`` environment variables configure it
(``service/settings.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import bentoml
import torch
from pydantic import BaseModel
from starlette.responses import Response

from models.checkpoint import PUBLISHED_FILE, load_checkpoint
from service.body_limit import BodyLimit
from service.engine import Engine, Prepared
from service.records import RecordError, SessionRecord
from service.schemas import (
    CloseRequest,
    CloseResponse,
    ForecastRequest,
    ForecastResponse,
    InfoResponse,
    ObserveRequest,
    OpenRequest,
    RejectedRequest,
    Rejection,
    SessionResponse,
    one_or_many,
)
from service.settings import Settings
from service.store import open_store

settings = Settings()  # read at import, so a bad setting stops `bentoml serve` before it listens


@dataclass(frozen=True)
class Answer:
    """One item's outcome and whether its request came as a bare object (then answered as one)."""

    body: BaseModel | Rejection
    single: bool = True


def _render(item: Answer) -> tuple[int, bytes]:
    if isinstance(item.body, Rejection):
        return item.body.status, json.dumps(item.body.body()).encode()
    return 200, item.body.model_dump_json().encode()


def render(obj: Any) -> Response:
    """One request's answer: a bare object keeps its own status; a list is answered item by item with 200."""
    items: list[Answer] = obj if isinstance(obj, list) else [obj]
    if len(items) == 1 and items[0].single:
        status, body = _render(items[0])
        return Response(body, status_code=status, media_type="application/json")
    parts = []
    for item in items:
        status, body = _render(item)
        parts.append(body if status == 200 else body[:-1] + b', "status": ' + str(status).encode() + b"}")
    return Response(b"[" + b",".join(parts) + b"]", media_type="application/json")


def _answer_spec(model: type[BaseModel]) -> type[bentoml.IODescriptor]:
    """An output spec documented as ``model`` that renders rejections with their own HTTP status."""

    async def to_http_response(cls: type, obj: Any, serde: Any) -> Response:
        return render(obj)

    return type(  # type: ignore[return-value]
        f"{model.__name__}Answer",
        (model, bentoml.IODescriptor),
        {"to_http_response": classmethod(to_http_response), "__module__": __name__},
    )


@dataclass(frozen=True)
class Step:
    """An observe admitted to this round: where it came from and what it will run."""

    session_id: str
    index: int  # position in the batch
    record: SessionRecord  # the session as the round found it
    prepared: Prepared
    digest: bytes


def _reject(status: int, error: str, field: str | None = None, seq: int | None = None) -> Rejection:
    return Rejection(status, error, field=field, seq=seq)


def _digest(request: ObserveRequest) -> bytes:
    return hashlib.blake2b(request.model_dump_json().encode(), digest_size=16).digest()


@bentoml.service(name="seqcast", workers=settings.workers, traffic={"timeout": 60})
class Seqcast:
    model_ref = bentoml.models.BentoModel(settings.model_tag)

    def __init__(self) -> None:
        # One thread per worker: with more, small batches contend for the two cores under concurrent load.
        torch.set_num_threads(1)
        stored: bentoml.Model = self.model_ref  # type: ignore[assignment]  # BentoML resolves it per instance
        self.engine = Engine(load_checkpoint(stored.path_of(PUBLISHED_FILE)), str(stored.tag))
        self.store = open_store(settings.session_store, settings.session_ttl_s, settings.max_sessions)
        self.metadata: dict[str, Any] = dict(stored.info.metadata)

    async def __is_ready__(self) -> bool:
        return await self.store.ping()

    def _check_length(self, field: str, values: list[float], limit: int) -> None:
        if len(values) > limit:
            raise RejectedRequest(
                _reject(400, f"{field}: has {len(values)} values; at most {limit} are accepted", field)
            )

    def _prepare_history(self, request: ForecastRequest | OpenRequest) -> Prepared:
        self._check_length("history", request.history, settings.max_history)
        return self.engine.prepare_history(
            request.history, request.covariates, request.start, request.future_covariates
        )

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
        output_spec=_answer_spec(ForecastResponse),
    )
    async def forecast(self, requests: one_or_many(ForecastRequest), /) -> list[Answer]:  # type: ignore[valid-type]
        """Forecasts from each given history, read from a zero state. Concurrent requests share one pass."""
        answers: list[Answer | None] = [None] * len(requests)
        ready: list[tuple[int, Prepared]] = []
        for index, request in enumerate(requests):
            try:
                ready.append((index, self._prepare_history(request)))
            except RejectedRequest as rejected:
                answers[index] = Answer(rejected.rejection, request._single)
        if ready:
            forecasts, _ = self.engine.run([p for _, p in ready], [None] * len(ready))
            for (index, _), forecast in zip(ready, forecasts, strict=True):
                body = ForecastResponse(**self.engine.answer(forecast))  # type: ignore[arg-type]
                answers[index] = Answer(body, requests[index]._single)
        return answers  # type: ignore[return-value]

    @bentoml.api(output_spec=_answer_spec(SessionResponse))
    async def open(self, request: OpenRequest, /) -> Answer:
        """Reads the history once and keeps the recurrent state; later observations go to /observe."""
        try:
            prepared = self._prepare_history(request)
        except RejectedRequest as rejected:
            return Answer(rejected.rejection)
        forecasts, states = self.engine.run([prepared], [None])
        session_id = secrets.token_urlsafe(16)  # 128 random bits: a session id is its own access key
        seq = len(request.history)
        record = SessionRecord(self.engine.tag, seq, prepared.next_time, states[0], bytes(16), forecasts[0])
        if not await self.store.put_if(session_id, record.to_bytes(), seq, None):
            raise RuntimeError("a fresh session id was already taken")
        return Answer(SessionResponse(session_id=session_id, seq=seq, **self.engine.answer(forecasts[0])))  # type: ignore[arg-type]

    def _load(self, session_id: str, blob: bytes | None) -> SessionRecord | Rejection:
        if blob is None:
            return _reject(
                404, f"session_id: no session {session_id!r} (never opened, closed or expired)", "session_id"
            )
        try:
            record = SessionRecord.from_bytes(blob)
        except RecordError as error:
            return _reject(
                409, f"session_id: the stored session cannot be read ({error}); open a new one", "session_id"
            )
        if record.model != self.engine.tag:
            return _reject(
                409,
                f"session_id: the session was opened under model {record.model}, this service now runs "
                f"{self.engine.tag}; open a new session",
                "session_id",
            )
        return record

    def _session_answer(self, session_id: str, record: SessionRecord) -> SessionResponse:
        return SessionResponse(session_id=session_id, seq=record.seq, **self.engine.answer(record.last_forecast))  # type: ignore[arg-type]

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.max_batch_size,
        max_latency_ms=settings.max_latency_ms,
        output_spec=_answer_spec(SessionResponse),
    )
    async def observe(self, requests: one_or_many(ObserveRequest), /) -> list[Answer]:  # type: ignore[valid-type]
        """Advances each session by its new values only. Observes of different sessions share one pass; several
        of one session in a batch are applied in arrival order."""
        answers: list[Answer | None] = [None] * len(requests)
        queues: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            queues.setdefault(request.session_id, []).append(index)
        blobs = await self.store.get_many(list(queues))
        records = {sid: self._load(sid, blob) for sid, blob in zip(queues, blobs, strict=True)}
        # Each round takes the next observe of every session, so one session's observes chain in order.
        while any(queues.values()):
            steps: list[Step] = []
            for sid, indices in queues.items():
                if not indices:
                    continue
                index = indices.pop(0)
                request, record = requests[index], records[sid]
                if isinstance(record, Rejection):
                    answers[index] = Answer(record, request._single)
                    continue
                digest = _digest(request)
                outcome = self._admit(request, record, digest)
                if isinstance(outcome, Prepared):
                    steps.append(Step(sid, index, record, outcome, digest))
                else:
                    answers[index] = Answer(outcome, request._single)
            if steps:
                await self._apply(steps, requests, records, answers)
        return answers  # type: ignore[return-value]

    def _admit(
        self, request: ObserveRequest, record: SessionRecord, digest: bytes
    ) -> Prepared | Rejection | SessionResponse:
        """What to do with one observe: its prepared inputs, a rejection, or the answer it already got."""
        if request.seq != record.seq:
            if digest == record.last_digest:
                return self._session_answer(request.session_id, record)  # a retry of what was just applied
            return _reject(
                409, f"seq: the session is at seq {record.seq}, the request says {request.seq}", "seq", record.seq
            )
        try:
            self._check_length("values", request.values, settings.max_observe)
            return self.engine.prepare_observe(
                request.values, request.covariates, record.next_time, request.future_covariates
            )
        except RejectedRequest as rejected:
            return rejected.rejection

    async def _apply(
        self,
        steps: list[Step],
        requests: list[ObserveRequest],
        records: dict[str, SessionRecord | Rejection],
        answers: list[Answer | None],
    ) -> None:
        """Runs one round of admitted observes together, then stores each new state if its session is still
        where the round found it."""
        forecasts, states = self.engine.run([s.prepared for s in steps], [s.record.state for s in steps])
        updated = [
            SessionRecord(
                self.engine.tag, s.record.seq + len(s.prepared.inputs), s.prepared.next_time, state, s.digest, forecast
            )
            for s, state, forecast in zip(steps, states, forecasts, strict=True)
        ]
        stored = await asyncio.gather(
            *(
                self.store.put_if(s.session_id, new.to_bytes(), new.seq, s.record.seq)
                for s, new in zip(steps, updated, strict=True)
            )
        )
        for step, new, done in zip(steps, updated, stored, strict=True):
            single = requests[step.index]._single
            if done:
                records[step.session_id] = new
                answers[step.index] = Answer(self._session_answer(step.session_id, new), single)
                continue
            # Another worker stepped the session meanwhile: nothing was written; report where it is now.
            current = self._load(step.session_id, (await self.store.get_many([step.session_id]))[0])
            records[step.session_id] = current
            seq = current.seq if isinstance(current, SessionRecord) else None
            answers[step.index] = Answer(
                _reject(409, "seq: the session changed while this request ran", "seq", seq), single
            )

    # Not named `close`: BentoML's in-process client of the service has a close() of its own.
    @bentoml.api(route="/close", output_spec=_answer_spec(CloseResponse))
    async def close_session(self, request: CloseRequest, /) -> Answer:
        """Ends a session and forgets its state."""
        blob = (await self.store.get_many([request.session_id]))[0]
        record = self._load(request.session_id, blob)
        if isinstance(record, Rejection) and blob is None:
            return Answer(record)
        await self.store.delete(request.session_id)
        seq = record.seq if isinstance(record, SessionRecord) else -1
        return Answer(CloseResponse(session_id=request.session_id, seq=seq))

    @bentoml.api
    def info(self) -> InfoResponse:
        """The served model: its tag, cell, horizon, features and test metrics."""
        spec, config = self.engine.spec, self.engine.config
        return InfoResponse(
            model=self.engine.tag,
            cell=config.cell,
            horizon=config.horizon,
            quantiles=list(config.quantiles),
            target=spec.target,
            past_covariates=list(spec.past_covariates),
            future_covariates=list(spec.future_covariates),
            calendar=list(spec.calendar),
            freq=spec.freq,
            max_history=settings.max_history,
            max_observe=settings.max_observe,
            test_metrics=self.metadata.get("test_metrics", {}),
        )


Seqcast.add_asgi_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # type: ignore[attr-defined]
