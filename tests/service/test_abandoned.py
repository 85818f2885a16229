"""A forecast whose client left while it waited for a batch is left out of the pass."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.servers import bentoml_serve, in_progress, metric, wait_until, wait_until_idle
from bench.workload import LARGE, history_body, publish
from service.abandoned import DEPARTURE, Departure, WatchDeparture
from service.bentoml_compat import parse_bodies_with
from service.schemas import ForecastRequest


def _watched(path: str, client_leaves: bool) -> tuple[Departure | None, bool]:
    """Serves one request to ``path`` through WatchDeparture: the app reads the body, then waits as a queued
    request does. Returns the request's Departure and whether the client had left by the time it looked."""
    seen: list[Departure | None] = []
    left: list[bool] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, object]:
        if not seen:
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await gone.wait()  # uvicorn answers with a disconnect once the client closes its connection
        return {"type": "http.disconnect"}

    async def app(scope: object, receive_: object, send: object) -> None:
        await receive_()  # type: ignore[operator]
        seen.append(DEPARTURE.get())
        if client_leaves:
            gone.set()
        await asyncio.sleep(0.05)
        left.append(seen[0] is not None and seen[0].left)

    async def discard(message: object) -> None:
        pass

    middleware = WatchDeparture(app, paths=("/forecast",))  # type: ignore[arg-type]
    asyncio.run(middleware({"type": "http", "path": path}, receive, discard))  # type: ignore[arg-type]
    return seen[0], left[0]


def test_a_request_whose_client_leaves_is_marked_and_others_are_not() -> None:
    departure, left = _watched("/forecast", client_leaves=True)
    assert departure is not None and left
    departure, left = _watched("/forecast", client_leaves=False)
    assert departure is not None and not left
    assert _watched("/observe", client_leaves=True) == (None, False)  # not watched: nothing to mark


def test_a_parsed_request_keeps_its_departure() -> None:
    departure = Departure()
    token = DEPARTURE.set(departure)
    try:
        request = ForecastRequest.model_validate({"history": [1.0, 2.0]})
    finally:
        DEPARTURE.reset(token)
    assert not request.abandoned
    departure.left = True
    assert request.abandoned
    assert not ForecastRequest.model_validate({"history": [1.0]}).abandoned  # parsed outside any request


@pytest.mark.process
def test_forecasts_abandoned_in_the_queue_are_not_computed(tmp_path: Path) -> None:
    """Long forecasts on the benchmarks' large model, two per pass, hold the worker for seconds; quick ones
    queued behind them give up after 0.1 s. Each still queued when its batch starts is answered 499 (to no one)
    and left out of the pass."""
    long_body, short_body = history_body(16_000), history_body(LARGE.history)

    def impatient(_: int) -> int | None:
        try:
            return httpx.post(running.url + "/forecast", json=short_body, timeout=0.1).status_code
        except httpx.TimeoutException:
            return None

    tag = publish(tmp_path, LARGE)
    with bentoml_serve(
        tmp_path, tmp_path / "serve.log", model_tag=tag, max_latency_ms=60_000, max_batch_size=2
    ) as running:
        with ThreadPoolExecutor(12) as pool:
            blockers = [
                pool.submit(httpx.post, running.url + "/forecast", json=long_body, timeout=120) for _ in range(4)
            ]
            wait_until(lambda: in_progress(running.url) > 0, 30, "a forecast in progress")
            quick = list(pool.map(impatient, range(8)))
        wait_until_idle(running.url)
        abandoned = metric(running.url, "seqcast_rejected_requests", "_total", endpoint="forecast", reason="abandoned")
        left = metric(running.url, "bentoml_service_request", "_total", endpoint="/forecast", http_response_code="499")
    assert all(blocker.result().status_code == 200 for blocker in blockers)
    gave_up = quick.count(None)
    assert gave_up > 0, quick
    assert 0 < abandoned <= gave_up
    assert left == abandoned


@pytest.mark.parametrize("values", [10, 30_000], ids=["on the loop", "off the loop"])
def test_a_body_parsed_on_the_parse_thread_keeps_its_departure(values: int) -> None:
    """A long body is parsed on a thread of its own, which must see the request's context: otherwise its items
    could never be found abandoned."""

    class Spec:
        pass

    class Body:
        async def body(self) -> bytes:
            return b'{"history": [' + b",".join([b"1.5"] * values) + b"]}"

    parse_bodies_with(Spec, ForecastRequest.model_validate_json, (ValueError,))

    async def parse() -> ForecastRequest:
        departure = Departure()
        DEPARTURE.set(departure)
        request: ForecastRequest = await Spec.from_http_request(Body(), None)  # type: ignore[attr-defined]
        departure.left = True
        return request

    assert asyncio.run(parse()).abandoned
