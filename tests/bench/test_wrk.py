"""wrk as the serve and streaming benchmarks' load generator, against a real `bentoml serve`."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bench import wrk
from bench.servers import Service, bentoml_serve, in_progress, metric, wait_until, wait_until_idle
from bench.workload import SMALL, history_body, publish

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess


def _answered(url: str, endpoint: str) -> float:
    """Requests of ``endpoint`` the service answered with 200, from its own /metrics."""
    return metric(url, "bentoml_service_request", "_total", endpoint=f"/{endpoint}", http_response_code="200")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("wrk")
    # The leftover test queues about a second of long forecasts; on a slow machine BentoML's batcher would shed
    # the last of them (503) at the default 2 s bound, which is load shedding, not what these tests are about.
    tag = publish(home, SMALL)
    with bentoml_serve(home, home / "serve.log", model_tag=tag, max_latency_ms=60_000) as running:
        yield running


@pytest.mark.parametrize("endpoint", ["observe", "forecast"])
def test_every_request_is_answered_and_each_session_keeps_its_seq(served: Service, endpoint: str) -> None:
    """An observe with a stale seq is refused with 409, so no errors means the script carried every session's
    seq from answer to next request, over 4 connections sharing the pool."""
    measured = wrk.measure(served.url, endpoint, concurrency=4, seconds=2, history=SMALL.history)
    answered = _answered(served.url, endpoint)
    assert measured["errors"] == 0, measured["error_kinds"]
    assert measured["requests"] > 20
    # The warm-up's and the measured run's requests, all answered 200 as the service counts them.
    assert answered >= measured["requests"]
    assert 0 < measured["p50"] <= measured["p95"] <= measured["p99"]


def test_a_measurement_waits_for_what_the_last_one_left_behind(served: Service) -> None:
    """wrk stops with requests still being served; the next measurement starts once they are done."""
    body = history_body(16_000)  # as long as elecdemand allows, with a day of future covariates after it
    with ThreadPoolExecutor(24) as pool:  # about a second of work
        answers = [pool.submit(httpx.post, f"{served.url}/forecast", json=body, timeout=60) for _ in range(24)]
        wait_until(lambda: in_progress(served.url) > 0, 30, "a forecast in progress")
        wait_until_idle(served.url)
        assert in_progress(served.url) == 0
        assert sum(answer.done() for answer in answers) >= 23  # the last may still be reading its answer
    refused = [answer.result().text[:300] for answer in answers if answer.result().status_code != 200]
    assert not refused
