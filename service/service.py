"""seqcast's BentoML service: batched stateless forecasts, and sessions that keep the recurrent state.

``bentoml serve service.service:Seqcast`` starts it; ``SEQCAST_*`` environment variables configure it
(``service/settings.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bentoml
import torch
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from models.checkpoint import PUBLISHED_FILE, Checkpoint, load_checkpoint
from service import refusals
from service.abandoned import WatchDeparture
from service.api_key import ApiKey
from service.bentoml_compat import Hooks, parse_bodies_with
from service.bentoml_compat import install as install_bentoml_workarounds
from service.body_limit import BodyLimit
from service.engine import Checked, Engine, Prepared
from service.metrics import (
    BATCH_SIZE,
    BATCH_WAIT,
    FORWARD,
    MODEL_ROLE,
    REJECTED,
    SESSIONS,
    TEST_MASE,
    active_sessions_gauge,
    timed,
)
from service.migration import differences
from service.model_choice import chosen_tag
from service.routes import route_label
from service.schemas import (
    CloseRequest,
    CloseResponse,
    ForecastRequest,
    ForecastResponse,
    HistoryRequest,
    InfoResponse,
    ObserveRequest,
    OpenRequest,
    Reason,
    RejectedRequest,
    Rejection,
    SessionResponse,
    one_or_many,
)
from service.scoring import Scorer
from service.sessions import Sessions
from service.settings import Settings, unknown_variables
from service.stepper import Stepper
from service.store import StoreUnavailable, open_store
from service.validation import BodyLimits, ItemParser, invalid_body, parse_items

settings = Settings()  # read at import, so a bad setting stops `bentoml serve` before it listens
for _warning in unknown_variables(os.environ):
    logging.getLogger("seqcast").warning(_warning)
ACTIVE_SESSIONS = active_sessions_gauge(shared_store=settings.session_store != "memory")
BATCHED: dict[str, Any] = {
    "batchable": settings.batching,
    "max_batch_size": settings.max_batch_size,
    "max_latency_ms": settings.max_latency_ms,
}

DEFAULT_INPUT_SIZE = 336  # training.datamodule's default window

# What one request may hold; Seqcast.__init__ adds the served model's widths (a worker serves one model).
limits = BodyLimits(max_items=settings.max_batch_size, max_values=settings.max_request_values)

# Off, every URL is excluded from OpenTelemetry (the pattern is a regex each URL matches).
TRACING: dict[str, Any] = {} if settings.tracing else {"tracing": {"excluded_urls": ["."]}}


@dataclass(frozen=True)
class Answer:
    """One item's outcome and whether its request came as a bare object (then answered as one)."""

    body: BaseModel | Rejection
    single: bool = True


# Shed before it reached the endpoint, so an observe was not applied and its retry is safe.
SHED = Answer(
    Rejection(
        Reason.SHED,
        f"max_latency_ms: shed under load, it would have waited over {settings.max_latency_ms} ms for a batch; "
        "nothing was applied, retry shortly",
        "max_latency_ms",
    )
)


# A forecast whose client closed its connection while it waited for a batch is left out of the pass.
ABANDONED = Rejection(Reason.ABANDONED, "the client closed its connection before the forecast was computed")


def _render(item: Answer) -> tuple[int, bytes]:
    if isinstance(item.body, Rejection):
        return refusals.render(item.body)
    return 200, item.body.model_dump_json().encode()


def render(obj: Any, endpoint: str) -> Response:
    """One request's answer: a bare object keeps its own status; a list is answered item by item with 200."""
    items: list[Answer] = obj if isinstance(obj, list) else [obj]
    for item in items:
        if isinstance(item.body, Rejection):
            REJECTED.labels(endpoint, item.body.reason).inc()
    if len(items) == 1 and items[0].single:
        status, body = _render(items[0])
        retry = refusals.headers(items[0].body) if isinstance(items[0].body, Rejection) else None
        return Response(body, status_code=status, headers=retry, media_type="application/json")
    parts = []
    for item in items:
        status, body = _render(item)
        parts.append(body if status == 200 else body[:-1] + b', "status": ' + str(status).encode() + b"}")
    return Response(b"[" + b",".join(parts) + b"]", media_type="application/json")


# BentoML names an endpoint by its method; /close's method is close_session.
ENDPOINTS = {"close_session": "close"}


def answer_refused(method: str, error: Exception) -> Response:
    """A body refused while it was parsed: a bad value or type, malformed JSON, a list over the limits."""
    rejection = error.rejection if isinstance(error, RejectedRequest) else invalid_body(error)  # type: ignore[arg-type]
    return render(Answer(rejection), ENDPOINTS.get(method, method))


# Before BentoML builds the app, which is after it imports this module.
install_bentoml_workarounds(
    Hooks(
        shed_answer=lambda: SHED,
        answer_refused=answer_refused,
        route_label=route_label,
    )
)


def _answer_spec(model: type[BaseModel], endpoint: str) -> type[bentoml.IODescriptor]:
    """An output spec documented as ``model`` that renders rejections with their own HTTP status."""

    async def to_http_response(cls: type, obj: Any, serde: Any) -> Response:
        return render(obj, endpoint)

    return type(  # type: ignore[return-value]
        f"{model.__name__}Answer",
        (model, bentoml.IODescriptor),
        {"to_http_response": classmethod(to_http_response), "__module__": __name__},
    )


def _unavailable(error: StoreUnavailable) -> Rejection:
    # 503 tells clients and load balancers to retry; a retried observe is never applied twice (see sessions).
    return Rejection(Reason.STORE_UNAVAILABLE, f"session_store: unavailable, retry shortly ({error})", "session_store")


def tail_length(checkpoint: Checkpoint) -> int:
    """Raw inputs a session keeps: the setting, else the window the model was trained to read (a model exported
    before checkpoints recorded it read the training default, 336)."""
    if settings.session_tail is not None:
        return settings.session_tail
    return int(checkpoint.metadata.get("input_size", DEFAULT_INPUT_SIZE))


def _follower(stored: bentoml.Model, role: str) -> Stepper:
    """A stored model, ready to step sessions: its engine and, with what live scoring needs, its scorer."""
    checkpoint = load_checkpoint(stored.path_of(PUBLISHED_FILE))
    engine = Engine(checkpoint, str(stored.tag), settings.max_history, settings.max_observe, settings.warn_beyond_std)
    config = engine.config
    metadata = dict(stored.info.metadata)
    scorer = (
        Scorer.from_metadata(
            metadata, config.horizon, config.point_index, config.quantiles, engine.step_ns, settings.anomaly_k
        )
        if settings.live_scoring
        else None
    )
    if scorer is not None:
        TEST_MASE.labels(engine.tag).set(scorer.test_mase)
    MODEL_ROLE.labels(engine.tag, role).set(1)
    return Stepper(engine, scorer)


def _check_shadow(served: Engine, shadow: Engine) -> None:
    """A shadow model follows sessions on the values the served one reads: it must read the same inputs."""
    if shadow.tag == served.tag:
        raise ValueError(f"shadow_model_tag: {shadow.tag} is the served model itself; name a candidate")
    if shadow.config.horizon != served.config.horizon and served.spec.future_covariates:
        raise ValueError(
            f"shadow_model_tag: {shadow.tag} forecasts {shadow.config.horizon} steps, the served {served.tag} "
            f"{served.config.horizon}: the future covariates clients send would fit only one of them"
        )
    differ = differences(served.reads, shadow.reads)
    if differ:
        raise ValueError(
            f"shadow_model_tag: {shadow.tag} reads other inputs than the served {served.tag} ({'; '.join(differ)}), "
            "so it cannot follow its sessions"
        )
    if served.checkpoint.series_scaling and served.spec.log_target != shadow.spec.log_target:
        raise ValueError(
            f"shadow_model_tag: {shadow.tag} and the served {served.tag} disagree on data.log_target, so the "
            "statistics a session of an untrained series fitted under one would mis-scale it under the other"
        )


def _answered(outcome: BaseModel | Rejection | None) -> BaseModel | Rejection:
    """Every batch item is refused before the pass or answered by it; a gap is a bug, not a client's fault."""
    if outcome is None:
        raise RuntimeError("a batch item was neither refused nor answered")
    return outcome


@bentoml.service(
    name="seqcast",
    workers=settings.workers,
    traffic={"timeout": settings.request_timeout_s},
    logging={"access": {"enabled": settings.access_log}},
    **TRACING,
)
class Seqcast:
    model_ref = bentoml.models.BentoModel(chosen_tag(settings.model_tag))
    # A candidate that follows every session in shadow: scored live beside the served model, never answering.
    shadow_ref = bentoml.models.BentoModel(settings.shadow_model_tag) if settings.shadow_model_tag else None

    def __init__(self) -> None:
        # One thread per worker: with more, small batches contend for the two cores under concurrent load.
        torch.set_num_threads(1)
        stored: bentoml.Model = self.model_ref  # type: ignore[assignment]  # BentoML resolves it per instance
        served = _follower(stored, "served")
        self.engine, self.scorer = served.engine, served.scorer
        self.shadow = _follower(self.shadow_ref, "shadow") if self.shadow_ref is not None else None  # type: ignore[arg-type]
        if self.shadow is not None:
            _check_shadow(self.engine, self.shadow.engine)
        tag = self.engine.tag
        global limits  # read by every body's parser, which BentoML calls as a classmethod of the input spec
        spec = self.engine.spec
        limits = limits.for_model(len(spec.covariates), self.engine.config.horizon * len(spec.future_covariates))

        def dropped(reason: str, count: int) -> None:
            SESSIONS.labels(reason, tag).inc(count)

        self.store = open_store(settings.session_store, settings.session_ttl_s, settings.max_sessions, dropped)
        self.metadata: dict[str, Any] = dict(stored.info.metadata)
        self.sessions = Sessions(
            self.engine,
            self.store,
            ACTIVE_SESSIONS.labels(tag).set,
            self.scorer,
            tail_length(self.engine.checkpoint),
            self.shadow,
        )
        # What is alive now (torch, BentoML, pandas, the model: ~230k objects) lives as long as the worker, and a
        # full collection that walks it takes ~100 ms, during which no request is answered.
        gc.collect()
        gc.freeze()

    @bentoml.on_startup
    async def _count_sessions(self) -> None:
        # Kept on the service: the event loop holds tasks only weakly.
        self._counting = asyncio.create_task(self.sessions.keep_counting())

    async def __is_ready__(self) -> bool:
        return await self.store.ping()

    def _record_batch(self, endpoint: str, requests: list[ForecastRequest] | list[ObserveRequest]) -> None:
        now = time.perf_counter()
        BATCH_SIZE.labels(endpoint, self.engine.tag).observe(len(requests))
        wait = BATCH_WAIT.labels(endpoint, self.engine.tag)
        for request in requests:
            wait.observe(now - request._received)

    def _check(self, request: HistoryRequest, engine: Engine | None = None) -> Checked | Rejection:
        """A history checked for the served model, or for ``engine`` (the shadow)."""
        if request.abandoned:
            return ABANDONED
        try:
            return (engine or self.engine).check_history(
                request.history, request.covariates, request.start, request.future_covariates, request.series
            )
        except RejectedRequest as rejected:
            return rejected.rejection

    def _shadowed(self, request: OpenRequest) -> Prepared | None:
        """The opening history as the shadow model reads it; None without one, or if it refuses it (a series it
        did not train on): the session then goes on without it."""
        if self.shadow is None:
            return None
        try:
            prepared = self.shadow.engine.encode([self._check(request, self.shadow.engine)])[0]
        except Exception as error:  # a candidate's fault is logged; the served answer stands
            logging.getLogger("seqcast").warning(
                "shadow model %s could not prepare an open: %s", self.shadow.tag, error
            )
            return None
        return None if isinstance(prepared, Rejection) else prepared

    @bentoml.api(output_spec=_answer_spec(ForecastResponse, "forecast"), **BATCHED)
    async def forecast(self, requests: one_or_many(ForecastRequest), /) -> list[Answer]:  # type: ignore[valid-type]
        """Forecasts from each given history, read from a zero state. Concurrent requests share one pass."""
        self._record_batch("forecast", requests)
        outcomes: list[ForecastResponse | Rejection | None] = [None] * len(requests)
        ready: list[tuple[int, Prepared]] = []
        for index, prepared in enumerate(self.engine.encode([self._check(request) for request in requests])):
            if isinstance(prepared, Rejection):
                outcomes[index] = prepared
            else:
                ready.append((index, prepared))
        if ready:
            with timed(FORWARD, "forecast", self.engine.tag):
                result = await self.engine.run_async([p for _, p in ready], [None] * len(ready))
            for k, (index, prepared) in enumerate(ready):
                answer = self.engine.answer(result.forecasts[k], prepared.next_time, prepared.warnings)
                outcomes[index] = ForecastResponse.model_construct(**answer) if result.finite[k] else result.rejection()
        return [Answer(_answered(o), request._single) for o, request in zip(outcomes, requests, strict=True)]

    @bentoml.api(output_spec=_answer_spec(SessionResponse, "open"))
    async def open(self, request: OpenRequest, /) -> Answer:
        """Reads the history once and keeps the recurrent state; later observations go to /observe."""
        prepared = self.engine.encode([self._check(request)])[0]
        if isinstance(prepared, Rejection):
            return Answer(prepared)
        try:
            return Answer(await self.sessions.open(prepared, self._shadowed(request)))
        except StoreUnavailable as error:
            return Answer(_unavailable(error))

    @bentoml.api(output_spec=_answer_spec(SessionResponse, "observe"), **BATCHED)
    async def observe(self, requests: one_or_many(ObserveRequest), /) -> list[Answer]:  # type: ignore[valid-type]
        """Advances each session by its new values only. Observes of different sessions share one pass; several
        of one session in a batch are applied in arrival order."""
        self._record_batch("observe", requests)
        try:
            outcomes = await self.sessions.observe(requests)
        except StoreUnavailable as error:
            outcomes = [_unavailable(error)] * len(requests)
        return [Answer(outcome, request._single) for outcome, request in zip(outcomes, requests, strict=True)]

    # Not named `close`: BentoML's in-process client of the service has a close() of its own.
    @bentoml.api(route="/close", output_spec=_answer_spec(CloseResponse, "close"))
    async def close_session(self, request: CloseRequest, /) -> Answer:
        """Ends a session and forgets its state."""
        try:
            return Answer(await self.sessions.close(request.session_id))
        except StoreUnavailable as error:
            return Answer(_unavailable(error))

    if settings.noop_endpoint:

        @bentoml.api(output_spec=_answer_spec(CloseResponse, "noop"), **BATCHED)
        async def noop(self, requests: one_or_many(ObserveRequest), /) -> list[Answer]:  # type: ignore[valid-type]
            """Parses and batches like /observe, then answers without touching model or store."""
            return [
                Answer(CloseResponse(session_id=r.session_id, seq=r.seq, closed=False), r._single) for r in requests
            ]

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
            nonnegative=spec.nonnegative,
            log_target=spec.log_target,
            scaled_series=len(self.engine.checkpoint.series_scaling),
            min_own_history=self.engine.min_own_history if self.engine.checkpoint.series_scaling else None,
            max_history=settings.max_history,
            max_observe=settings.max_observe,
            test_metrics=self.metadata.get("test_metrics", {}),
            live_scoring=self.scorer is not None,
            session_tail=self.sessions.tail_length,
            shadow_model=self.shadow.tag if self.shadow is not None else None,
        )


def _root_parser(spec: type[bentoml.IODescriptor]) -> Callable[[bytes], object]:
    """A batchable endpoint's body (one request or a list, wrapped by BentoML in a model with one ``root`` field),
    validated by pydantic's own JSON parser and bounded by ``limits``."""
    [item] = typing.get_args(spec.model_fields["root"].annotation)  # list[item]
    items = ItemParser(item)
    return lambda body: spec.model_construct(root=parse_items(items, body, limits))


REFUSED = (ValidationError, RejectedRequest)  # what a parser raises for a body at fault
for _api in Seqcast.apis.values():  # type: ignore[attr-defined]
    _spec = _api.input_spec
    if getattr(_spec, "__root_input__", False) and "root" in _spec.model_fields:
        parse_bodies_with(_spec, _root_parser(_spec), REFUSED)
    else:  # a model of its own (/open, /close); malformed JSON is a validation error too
        parse_bodies_with(_spec, _spec.model_validate_json, REFUSED)

# The first middleware added is the outermost: a request without the key is refused before its body is read.
if settings.api_key is not None:
    Seqcast.add_asgi_middleware(ApiKey, key=settings.api_key.get_secret_value())  # type: ignore[attr-defined]
Seqcast.add_asgi_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # type: ignore[attr-defined]
# Only /forecast: an abandoned observe is better applied (the client's retry then gets the stored answer), and
# /open runs as soon as its body is in.
Seqcast.add_asgi_middleware(WatchDeparture, paths=("/forecast",))  # type: ignore[attr-defined]
