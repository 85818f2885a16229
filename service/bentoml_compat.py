"""Every behaviour of BentoML that seqcast replaces, installed by one call before BentoML builds its app.

BentoML 1.4 offers no public extension point for any of these. Each workaround names the upstream behaviour it
replaces. ``install()`` first checks that every attribute it touches exists and stops start-up with the name of
a missing one, so an upgrade of the ``bentoml`` pin that moves one fails at once, not at the first request.
Upgrading the pin means reading this file and running ``tests/service/test_bentoml_compat.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import version
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.request_timeout import RequestTimeout

TESTED_VERSION = "1.4.39"
logger = logging.getLogger("seqcast")

# (module, attribute path) of everything patched or read below.
TOUCHED = (
    ("bentoml._internal.server.http.traffic", "TimeoutMiddleware"),
    ("bentoml._internal.server.http.instruments", "RunnerTrafficMetricsMiddleware"),
    ("_bentoml_impl.server.app", "ServiceAppFactory.__init__"),
    ("_bentoml_impl.server.app", "ServiceAppFactory.api_endpoint"),
    ("bentoml._internal.marshal.dispatcher", "CorkDispatcher._get_inputs"),
    ("bentoml._internal.marshal.dispatcher", "Optimizer.log_outbound"),
    ("_bentoml_sdk.io_models", "IODescriptor.from_http_request"),
)

# A body longer than this is parsed on a thread of its own: pydantic holds the GIL while it parses, but the
# event loop gets it back every switch interval (5 ms) instead of waiting out a 4 MB parse (~40 ms).
OFF_LOOP_BYTES = 64 * 1024


class IncompatibleBentoML(RuntimeError):
    """The installed BentoML lacks something a workaround here needs."""


def _resolve(module: str, path: str) -> object:
    found: object = import_module(module)
    for part in path.split("."):
        if not hasattr(found, part):
            raise IncompatibleBentoML(
                f"bentoml {version('bentoml')}: {module}.{path} is missing ({part!r}); seqcast's workarounds were "
                f"written for {TESTED_VERSION}, see service/bentoml_compat.py"
            )
        found = getattr(found, part)
    return found


def check() -> None:
    """Raises IncompatibleBentoML naming the first attribute a workaround needs that BentoML does not have."""
    for module, path in TOUCHED:
        _resolve(module, path)
    if version("bentoml") != TESTED_VERSION:
        logger.warning("bentoml %s: seqcast's workarounds were tested on %s", version("bentoml"), TESTED_VERSION)


@dataclass(frozen=True)
class Hooks:
    """What the service decides; this module only puts it where BentoML will call it."""

    shed_answer: Callable[[], object]  # the answer to a request adaptive batching sheds, rendered by its endpoint
    # The answer to a body its parser refused (BodyRefused's cause), by endpoint name; nothing is logged.
    answer_refused: Callable[[str, Exception], Response]
    route_label: Callable[[str], str]  # the bounded label of a request path


_installed = False


def install(hooks: Hooks) -> None:
    """Installs every workaround once; later calls do nothing (the module is imported once per worker)."""
    global _installed
    check()
    if _installed:
        return
    _installed = True
    _request_timeout()
    _bounded_metric_labels(hooks.route_label)
    _shed_answer(hooks.shed_answer)
    _whole_requests_per_batch()
    _no_wait_learnt_from_lone_requests()
    _quiet_refusals(hooks.answer_refused)


def _request_timeout() -> None:
    """Replaces ``traffic.TimeoutMiddleware``, whose timer outlived every request (service/request_timeout.py).
    BentoML looks the class up when it builds an app."""
    traffic = import_module("bentoml._internal.server.http.traffic")
    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[attr-defined]


def _bounded_metric_labels(route_label: Callable[[str], str]) -> None:
    """Replaces ``RunnerTrafficMetricsMiddleware``'s ``endpoint`` label, the raw request path, with a route from a
    fixed set. The middleware reads ``scope["path"]`` as it enters, so it is given the label as the path, and
    the app inside it gets the real path back."""
    instruments = import_module("bentoml._internal.server.http.instruments")
    upstream = instruments.RunnerTrafficMetricsMiddleware

    def with_real_path(app: ASGIApp) -> ASGIApp:
        async def restore(scope: Scope, receive: Receive, send: Send) -> None:
            real = scope.get("seqcast.path")
            await app({**scope, "path": real} if real is not None else scope, receive, send)

        return restore

    class BoundedLabels(upstream):  # type: ignore[misc, valid-type]
        def __init__(self, app: ASGIApp, **options: Any) -> None:
            super().__init__(with_real_path(app), **options)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path")
            label = route_label(path) if isinstance(path, str) else path
            if label != path:  # a route the service has passes as it is (~all traffic): no copies of the scope
                scope = {**scope, "path": label, "seqcast.path": path}
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = BoundedLabels  # type: ignore[attr-defined]


def _shed_answer(shed_answer: Callable[[], object]) -> None:
    """Replaces what a batching endpoint answers for a request its dispatcher sheds: BentoML's 503 "an unexpected
    error has occurred", with two chained tracebacks logged for each, becomes the endpoint's own answer."""
    factory = import_module("_bentoml_impl.server.app").ServiceAppFactory
    build = factory.__init__

    def build_then_answer_shed(self: Any, *args: object, **kwargs: object) -> None:
        build(self, *args, **kwargs)
        for dispatcher in self.dispatchers.values():
            dispatcher.fallback = shed_answer

    factory.__init__ = build_then_answer_shed


def whole_inputs(dispatcher: Any, num_batches: int | None = None) -> Iterator[Any]:
    """The queued requests of the next pass, in order, as long as each fits whole (see below)."""
    limit = dispatcher.max_batch_size if num_batches is None else num_batches
    taken = 0
    while dispatcher._queue:
        try:
            size = dispatcher.get_batch_size(dispatcher._queue[0].data)
        except Exception:  # as upstream: a request whose size cannot be told counts as one
            size = 1
        if taken and taken + size > limit:
            return
        taken += size
        yield dispatcher._queue.popleft()


def _whole_requests_per_batch() -> None:
    """Replaces ``CorkDispatcher._get_inputs``, which splits a request's list across two passes when it does not
    fit in the batch being formed. The second part can then be shed after the first was applied, and the client,
    answered 503, cannot tell which observes took. Here a request that does not fit waits for the next pass; the
    service refuses lists longer than ``max_batch_size``, so every request fits in a pass of its own."""
    import_module("bentoml._internal.marshal.dispatcher").CorkDispatcher._get_inputs = whole_inputs


def without_lone_waits(log_outbound: Callable[..., None]) -> Callable[..., None]:
    """``Optimizer.log_outbound`` that learns no wait from a pass of one request (see below)."""

    @functools.wraps(log_outbound)
    def log(self: Any, n: int, wait: float, duration: float) -> None:
        if n > 1:
            log_outbound(self, n, wait, duration)
            return
        log_outbound(self, n, 0.0, duration)
        # Nothing else came while it waited: halve the wait now rather than at the next refresh (up to 5 s off),
        # and the waits it will be refreshed from, so that the refresh does not bring the burst's back.
        self.wait /= 2
        self.o_stat = collections.deque(((k, took, held / 2) for k, took, held in self.o_stat), self.o_stat.maxlen)

    return log


def _no_wait_learnt_from_lone_requests() -> None:
    """Wraps ``Optimizer.log_outbound``. The dispatcher holds a request while the queue is short and its wait is
    under the mean wait of its last 50 passes, refreshed every 5 s, and each pass logs its own wait into that
    mean. After a burst the mean is the burst's; a lone client's request is then held about that long, logs
    about that, and the mean falls by some 5% a refresh. A pass of one request gained nothing by waiting, so
    here it teaches no wait, and halves the wait at once. Measured here (/noop, one worker, 5 s of 64 clients,
    then one client in 2 s windows): p50 1.0 ms fresh, then 30, 29, 28, 27 ms upstream; 1.8, 1.3, 1.7, 1.4 ms
    (1.2 fresh) with this."""
    optimizer = import_module("bentoml._internal.marshal.dispatcher").Optimizer
    optimizer.log_outbound = without_lone_waits(optimizer.log_outbound)


class BodyRefused(Exception):
    """A request body its parser refused (parse_bodies_with); ``cause`` is the parser's own exception."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _quiet_refusals(answer: Callable[[str, Exception], Response]) -> None:
    """Wraps ``ServiceAppFactory.api_endpoint``: BentoML answers a body that fails validation with a 400 of its own
    format and logs the whole traceback, echoing the client's input (1,000 bad bodies wrote 2.1 MB of ERROR
    log). Here the service answers it in its own format and logs nothing; /metrics counts it. Only a refused
    body is caught: an error later in the request is the service's own and goes on to BentoML's 500."""
    factory = import_module("_bentoml_impl.server.app").ServiceAppFactory
    endpoint = factory.api_endpoint

    async def answering_refusals(self: Any, name: str, request: Request) -> Response:
        try:
            return await endpoint(self, name, request)  # type: ignore[no-any-return]
        except BodyRefused as refused:
            return answer(name, refused.cause)

    factory.api_endpoint = answering_refusals


_parse_thread = ThreadPoolExecutor(1, "seqcast-parse")


def parse_bodies_with(spec: type, parse: Callable[[bytes], object], refused: tuple[type[Exception], ...]) -> None:
    """Replaces how BentoML reads an endpoint's input (``IODescriptor.from_http_request``): its JSON serde builds
    the input's JSON schema on every request only to learn that the body is text, then validates. ``parse`` turns
    the body into the input, raising one of ``refused`` for a body at fault; a long body is parsed off the event
    loop (see OFF_LOOP_BYTES), in a copy of the request's context (its items read contextvars as they parse)."""

    def parse_or_refuse(body: bytes) -> object:
        try:
            return parse(body)
        except refused as error:
            raise BodyRefused(error) from None

    async def from_http_request(cls: type, request: Request, serde: object) -> object:
        body = await request.body() or b"{}"  # as BentoML reads an empty body (/info takes none)
        if len(body) <= OFF_LOOP_BYTES:
            return parse_or_refuse(body)
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(_parse_thread, context.run, parse_or_refuse, body)

    spec.from_http_request = classmethod(from_http_request)  # type: ignore[attr-defined]
