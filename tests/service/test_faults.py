"""Observations survive lost answers, duplicate sends, shedding, a killed API and a restarted or missing Redis.

Every scenario drives a careful retrying client (``tests/service/retrying.py``) against a real `bentoml serve`
over a real Redis and ends with every session equal to an offline replay of its observations.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from bench.servers import bentoml_serve, free_port, metric, redis_server
from tests.service.bodies import history_body, series
from tests.service.retrying import RetryingLoad, stored_engine

pytestmark = pytest.mark.timeout(600)


def test_retries_duplicates_and_lost_answers_apply_each_observe_once(
    model_home: Path, redis_url: str, tmp_path: Path
) -> None:
    with bentoml_serve(model_home, tmp_path / "serve.log", session_store=redis_url, workers=2) as running:
        load = RetryingLoad(running.url, sessions=200, steps=10, duplicate=0.1, drop=0.1)
        load.open()
        load.run()
        load.verify(stored_engine(model_home))
    # The chaos really happened: answers were thrown away and twins raced (one won, the other was told so).
    assert load.acknowledged == 2_000
    assert load.statuses["dropped"] > 100 and sum(v for k, v in load.statuses.items() if "duplicate" in k) > 100
    assert load.statuses["409 already applied"] > 0, load.statuses


def test_shed_requests_are_told_why_and_shed_observes_apply_once_retried(model_home: Path, tmp_path: Path) -> None:
    """A bound of 2 ms sheds much of 16 clients' load; each shed observe must have left its session untouched."""
    log = tmp_path / "serve.log"
    with bentoml_serve(model_home, log, max_latency_ms=2) as running:
        # Observes of 800 values each: a batch of them lasts well past the bound, so the queue behind it is shed.
        load = RetryingLoad(running.url, sessions=48, steps=6, chunk=800)
        load.open()
        observing = load.start()
        load.wait_for(48)
        # Forecasts sent alone can arrive one by one, each parsed only after the last was answered, and none wait;
        # sent while the observes hold the pass thread (about 4 s of them here), the queue behind the first grows.
        body = history_body(*series(2_000))
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: httpx.post(running.url + "/forecast", json=body, timeout=60), range(16)))
        assert not observing.done(), "the observes ended before the forecasts did: they did not overlap"
        observing.result()
        load.verify(stored_engine(model_home))
        shed_observes = metric(running.url, "seqcast_rejected_requests", "_total", endpoint="observe", reason="shed")
    assert load.statuses["503 max_latency_ms"] > 0, load.statuses
    assert shed_observes == load.statuses["503 max_latency_ms"]
    shed = [answer for answer in answers if answer.status_code != 200]
    assert shed, "no forecast was shed"
    for answer in shed:
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json()["field"] == "max_latency_ms" and "retry" in answer.json()["error"]
    # BentoML logs two tracebacks per shed request; a shed request is the service working as configured.
    assert "Traceback" not in log.read_text()


def test_killing_the_api_mid_load_loses_and_repeats_nothing(model_home: Path, tmp_path: Path) -> None:
    port = free_port()
    with redis_server(tmp_path / "redis") as url:
        with bentoml_serve(model_home, tmp_path / "first.log", port=port, session_store=url) as first:
            load = RetryingLoad(first.url, sessions=40, steps=15, threads=8)
            load.open()
            running = load.start()
            load.wait_for(150)
            first.stop(signal.SIGKILL)
        killed_at = load.acknowledged
        with bentoml_serve(model_home, tmp_path / "second.log", port=port, session_store=url):
            running.result()
            load.verify(stored_engine(model_home))
    assert killed_at < 600 and load.acknowledged == 600
    # While the API was down clients saw only connection errors, never an answer they could not retry.
    assert set(load.statuses) <= {"200", "ConnectError", "RemoteProtocolError", "ReadError", "503"}, load.statuses
    assert load.statuses["ConnectError"] > 0, load.statuses


def test_redis_restart_with_aof_keeps_every_session(model_home: Path, tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "redis"
    with ExitStack() as first_redis:
        url = first_redis.enter_context(redis_server(data, appendonly=True, port=port))
        with bentoml_serve(model_home, tmp_path / "serve.log", session_store=url) as running:
            load = RetryingLoad(running.url, sessions=40, steps=15, threads=8)
            load.open()
            busy = load.start()
            load.wait_for(150)
            first_redis.close()
            _check_down(running.url)
            with redis_server(data, appendonly=True, port=port):
                busy.result()
                load.verify(stored_engine(model_home))
    assert load.acknowledged == 600 and load.statuses["503 session_store"] > 0, load.statuses


def _check_down(url: str) -> None:
    """With Redis gone: session endpoints answer 503 naming the store, readiness is red, the worker lives."""
    with httpx.Client(base_url=url, timeout=30) as client:
        refused = client.post("/close", json={"session_id": "x"})
        assert refused.status_code == 503 and refused.json()["field"] == "session_store", refused.text
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200
        time.sleep(2)  # clients keep retrying into the outage for a moment
