"""Settings that bound the service: idle timeout, session count, history and body sizes."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.servers import bentoml_serve
from tests.service.bodies import history_body, observe_body, series


@pytest.fixture(scope="module")
def small(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("small") / "serve.log"
    limits = dict(session_ttl_s=2, max_sessions=3, max_history=50, max_observe=5, max_body_bytes=20_000)
    with bentoml_serve(model_home, log, **limits) as running, httpx.Client(base_url=running.url, timeout=30) as client:
        yield client


def _open(client: httpx.Client, points: int = 20) -> str:
    values, temps = series(points)
    response = client.post("/open", json=history_body(values, temps))
    assert response.status_code == 200, response.text
    return str(response.json()["session_id"])


def test_idle_sessions_expire(small: httpx.Client) -> None:
    values, temps = series(22)
    idle, busy = _open(small), _open(small)
    time.sleep(1.2)
    assert small.post("/observe", json=observe_body(busy, 20, values[20:21], temps[20:21])).status_code == 200
    time.sleep(1.2)
    expired = small.post("/observe", json=observe_body(idle, 20, values[20:21], temps[20:21]))
    assert expired.status_code == 404 and "expired" in expired.json()["error"]
    assert small.post("/observe", json=observe_body(busy, 21, values[21:22], temps[21:22])).status_code == 200


def test_sessions_beyond_the_bound_evict_the_least_recently_used(small: httpx.Client) -> None:
    values, temps = series(21)
    first, second, third = _open(small), _open(small), _open(small)
    assert small.post("/observe", json=observe_body(first, 20, values[20:21], temps[20:21])).status_code == 200
    _open(small)  # a fourth: the least recently used (second) goes
    assert small.post("/close", json={"session_id": second}).status_code == 404
    for kept in (first, third):
        assert small.post("/close", json={"session_id": kept}).status_code == 200


def test_history_and_observe_lengths_are_bounded(small: httpx.Client) -> None:
    values, temps = series(60)
    long = small.post("/forecast", json=history_body(values[:51], temps[:51]))
    assert long.status_code == 400
    assert long.json()["error"] == "history: has 51 values; at most 50 are accepted"
    session = _open(small)
    many = small.post("/observe", json=observe_body(session, 20, values[20:26], temps[20:26]))
    assert many.status_code == 400 and many.json()["field"] == "values"
    assert small.post("/observe", json=observe_body(session, 20, values[20:25], temps[20:25])).json()["seq"] == 25


def test_oversized_bodies_get_413_whether_declared_or_chunked(small: httpx.Client) -> None:
    body = b'{"history": [' + b"1.0," * 6000 + b"1.0]}"
    declared = small.post("/forecast", content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["field"] == "body"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    chunked = small.post("/forecast", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413


def _metric(client: httpx.Client, prefix: str) -> float:
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_flood_of_opens_stays_within_the_session_bound_and_counts_evictions(small: httpx.Client) -> None:
    evicted_before = _metric(small, 'seqcast_sessions_total{event="evicted"')
    ids = {_open(small) for _ in range(60)}
    assert len(ids) == 60
    assert _metric(small, 'seqcast_sessions_total{event="evicted"') - evicted_before >= 57
    assert _metric(small, "seqcast_sessions_active{") == 3
    held = [sid for sid in ids if small.post("/close", json={"session_id": sid}).status_code == 200]
    assert len(held) == 3


def test_session_ids_carry_128_random_bits(small: httpx.Client) -> None:
    ids = [_open(small) for _ in range(20)]
    raw = [base64.urlsafe_b64decode(sid + "==") for sid in ids]
    assert {len(r) for r in raw} == {16} and len(set(raw)) == 20
    # Random bits, not a counter or a timestamp: about half of them are set.
    bits = np.unpackbits(np.frombuffer(b"".join(raw), dtype=np.uint8).reshape(20, 16), axis=1)
    assert 0.2 < bits.mean() < 0.8
