"""The request time limit: 504 for a request not answered in time, and nothing of an answered request kept."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.servers import bentoml_serve
from service.metrics import REJECTED
from service.request_timeout import RequestTimeout
from service.routes import endpoint_label
from tests.service.bodies import history_body, series

REQUEST = contextvars.ContextVar[object]("REQUEST")
SCOPE: Scope = {"type": "http", "path": "/forecast"}


class Marker:
    """Something a request's context holds, as an OpenTelemetry span is."""


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


async def _discard(message: Message) -> None:
    pass


def _answering(delay_before: float = 0.0, delay_within: float = 0.0, events: list[str] | None = None) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(delay_before)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await asyncio.sleep(delay_within)
            await send({"type": "http.response.body", "body": b"answered"})
        except asyncio.CancelledError:
            if events is not None:
                events.append("cancelled")
            raise

    return app


def _call(middleware: RequestTimeout) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(SCOPE, _nothing_to_receive, send))
    return sent


def test_answered_requests_do_not_outlive_their_answer() -> None:
    """BentoML's own middleware keeps every request's context until its timer fires (here 60 s), so all 1,000
    markers would be alive; asyncio drops disarmed timers in bulk, past 100 of them."""

    async def serve_many() -> int:
        middleware = RequestTimeout(_answering(), timeout=60)
        alive: list[weakref.ref[Marker]] = []

        async def one_request() -> None:
            marker = Marker()
            REQUEST.set(marker)
            alive.append(weakref.ref(marker))
            await middleware(SCOPE, _nothing_to_receive, _discard)

        for _ in range(1_000):
            await asyncio.create_task(one_request())  # each request in a task and context of its own, as uvicorn does
        gc.collect()
        return sum(ref() is not None for ref in alive)

    assert asyncio.run(serve_many()) <= 200


def test_a_request_not_begun_in_time_gets_504_and_its_work_is_cancelled() -> None:
    events: list[str] = []
    counted = REJECTED.labels(endpoint_label(SCOPE["path"]), "timeout")
    before = counted._value.get()
    sent = _call(RequestTimeout(_answering(delay_before=5, events=events), timeout=0.05))
    assert sent[0]["status"] == 504
    assert b"request_timeout_s: not answered within 0.05 s" in sent[1]["body"]
    assert events == ["cancelled"]
    assert counted._value.get() == before + 1  # counted as every refusal is


def test_a_cancelled_request_cancels_its_work() -> None:
    """As when the server shuts down: the handling of the request must not go on alone."""
    events: list[str] = []

    async def cancel_midway() -> list[str]:
        middleware = RequestTimeout(_answering(delay_before=5, events=events), timeout=60)
        call = asyncio.ensure_future(middleware(SCOPE, _nothing_to_receive, _discard))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.01)  # the app's task sees its cancellation at its next step
        return list(events)  # before asyncio.run's clean-up cancels whatever is left

    assert asyncio.run(cancel_midway()) == ["cancelled"]


def test_an_answer_begun_in_time_is_finished() -> None:
    sent = _call(RequestTimeout(_answering(delay_within=0.2), timeout=0.05))
    assert [m.get("status") for m in sent] == [200, None]
    assert sent[1]["body"] == b"answered"


def test_an_error_before_answering_is_raised_at_once_not_turned_into_a_timeout() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        _call(RequestTimeout(failing, timeout=60))


def test_the_served_app_uses_it(model_home: Path, tmp_path: Path) -> None:
    """A long forecast (parsing its body alone takes ~8 ms) outlasts a 5 ms limit: the 504 is this middleware's,
    and the worker goes on serving. The access log, asked for, shows it."""
    values, temps = series(20_000)
    with bentoml_serve(model_home, tmp_path / "serve.log", request_timeout_s=0.005, access_log=True) as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            slow = client.post("/forecast", json=history_body(values, temps))
            assert slow.status_code == 504, slow.text
            assert slow.json()["field"] == "request_timeout_s"
            assert client.get("/readyz").status_code == 200
    assert "path=/forecast" in (tmp_path / "serve.log").read_text()
