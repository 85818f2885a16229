"""What an adversarial client found, each against a real `bentoml serve`: /metrics that grew with every path, lists
partly applied when shed, one corrupt record failing its batch-mates, a traceback per 400, unbounded work per
request, racing closes, and a Redis that evicts or refuses writes unseen."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import bentoml_serve, metric, redis_server, wait_until
from service.records import SessionRecord
from service.routes import ROUTES
from tests.service.bodies import history_body, observe_body, series

pytestmark = pytest.mark.timeout(600)

KEY = "a-key-of-the-tests"
AUTH = {"X-API-Key": KEY}


def samples(url: str) -> list[tuple[str, dict[str, str]]]:
    text = httpx.get(url + "/metrics", timeout=30).text
    return [(s.name, s.labels) for family in text_string_to_metric_families(text) for s in family.samples]


def _abuse(url: str, rng: random.Random, requests: int) -> None:
    """Random paths and methods, with and without the key, some with bodies over the limit."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(requests):
            route = rng.choice([f"/{rng.getrandbits(64):x}", f"/forecast/{rng.getrandbits(32):x}", "/forecast"])
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
            headers = AUTH if rng.random() < 0.5 else {}
            body = b"x" * (2_000 if rng.random() < 0.3 else 10)
            client.request(method, route, content=body, headers=headers)


def test_random_paths_methods_and_oversized_bodies_add_no_metric_series(model_home: Path, tmp_path: Path) -> None:
    with bentoml_serve(model_home, tmp_path / "serve.log", api_key=KEY, max_body_bytes=1_000) as running:
        rng = random.Random(0)
        _abuse(running.url, rng, 400)  # every kind of refusal once at least: its series exist from then on
        before = samples(running.url)
        _abuse(running.url, rng, 2_000)
        after = samples(running.url)
    assert len(after) == len(before)
    endpoints = {labels["endpoint"] for _, labels in after if "endpoint" in labels}
    assert "other" in endpoints
    assert endpoints <= ROUTES | {"other", "forecast", "open", "observe", "close", "noop", "info"}


def _stored_seq(client: httpx.Client, session: str) -> int:
    """The session's seq, as a 409 for an impossible seq reports it."""
    answer = client.post("/observe", json=observe_body(session, 10**9, [1.0], [[15.0]]))
    assert answer.status_code == 409, answer.text
    return int(answer.json()["seq"])


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_list_is_applied_whole_or_not_at_all_and_a_long_one_is_refused(
    model_home: Path, redis_url: str, tmp_path: Path, store: str
) -> None:
    """Clients send lists of 24 observes (of one session, or 6 each of 4) while a 2 ms bound sheds much of the
    load: a shed list must have applied nothing, an answered one everything. Lists of 24 do not fill a pass of
    64 evenly, so BentoML's own dispatcher would split every third across two passes."""
    values, temps = series(200)
    settings: dict[str, Any] = {"max_latency_ms": 2}
    if store == "redis":
        settings["session_store"] = redis_url
    with bentoml_serve(model_home, tmp_path / "serve.log", **settings) as running:
        client = httpx.Client(base_url=running.url, timeout=60)
        opened = [client.post("/open", json=history_body(values[:48], temps[:48])).json() for _ in range(64)]
        sessions = [o["session_id"] for o in opened]
        seqs = dict.fromkeys(sessions, 48)
        long = [observe_body(sessions[0], 48 + k, [values[k % 100]], [temps[k % 100]]) for k in range(3_000)]
        refused = client.post("/observe", json=long)
        assert refused.status_code == 400 and refused.json()["field"] == "body"
        assert "at most 64" in refused.json()["error"] and "max_batch_size" in refused.json()["error"]
        assert _stored_seq(client, sessions[0]) == 48

        def drive(worker: int) -> list[int]:
            own = sessions[worker * 4 : worker * 4 + 4]
            statuses = []
            with httpx.Client(base_url=running.url, timeout=60) as http:
                for round_ in range(12):
                    if round_ % 2:  # 24 observes of one session
                        sid = own[round_ % 4]
                        body = [observe_body(sid, seqs[sid] + k, [values[k]], [temps[k]]) for k in range(24)]
                    else:  # 6 observes each of 4 sessions, interleaved
                        body = [
                            observe_body(sid, seqs[sid] + k, [values[k]], [temps[k]]) for k in range(6) for sid in own
                        ]
                    answer = http.post("/observe", json=body)
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        assert all("status" not in item for item in answer.json()), answer.text
                        for item in body:
                            seqs[item["session_id"]] += 1
            return statuses

        with ThreadPoolExecutor(16) as pool:
            statuses = [s for worker in pool.map(drive, range(16)) for s in worker]
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) > 0, "nothing was shed: the test did not test shedding"
        assert statuses.count(200) > 0
        assert {sid: _stored_seq(client, sid) for sid in sessions} == seqs


def _corrupt(redis_url: str, sessions: list[str]) -> None:
    """A record of the wrong state shape, one whose tag is not UTF-8, and keys of two other types."""
    store = redis.Redis.from_url(redis_url)
    key = "seqcast:session:"
    record = SessionRecord.from_bytes(store.hget(key + sessions[0], "record"))  # type: ignore[arg-type]
    wrong_shape = SessionRecord(
        record.model, record.seq, record.next_time, np.zeros((1, 3), "f4"), bytes(16), record.last_forecast
    )
    store.hset(key + sessions[0], "record", wrong_shape.to_bytes())
    blob = record.to_bytes()
    tag = record.model.encode()
    store.hset(key + sessions[1], "record", blob.replace(tag, b"\xff" * len(tag), 1))
    store.delete(key + sessions[2], key + sessions[3])
    store.set(key + sessions[2], b"a string")
    store.rpush(key + sessions[3], b"a", b"list")


def test_a_corrupt_record_refuses_its_own_session_only_and_closes(
    model_home: Path, redis_url: str, tmp_path: Path
) -> None:
    values, temps = series(100)
    log = tmp_path / "serve.log"
    with (
        bentoml_serve(model_home, log, session_store=redis_url) as running,
        httpx.Client(base_url=running.url, timeout=60) as client,
    ):
        sessions = [
            client.post("/open", json=history_body(values[:48], temps[:48])).json()["session_id"] for _ in range(19)
        ]
        _corrupt(redis_url, sessions)
        answer = client.post("/observe", json=[observe_body(sid, 48, [values[48]], [temps[48]]) for sid in sessions])
        assert answer.status_code == 200
        items = answer.json()
        for item in items[:4]:
            assert item["status"] == 409 and item["field"] == "session_id", item
            assert "cannot be read" in item["error"]
        assert all("status" not in item and item["seq"] == 49 for item in items[4:]), items[4:]
        for sid in sessions[:4]:
            closed = client.post("/close", json={"session_id": sid})
            assert closed.status_code == 200 and closed.json()["closed"] is True, closed.text
            assert client.post("/close", json={"session_id": sid}).status_code == 404
    assert "Traceback" not in log.read_text()


def test_refused_bodies_log_nothing_and_are_counted(service: Any) -> None:
    size = service.log.stat().st_size
    before = metric(service.url, "seqcast_rejected_requests", "_total", endpoint="forecast", reason="bad_input")
    bodies = [{"history": ["abc"]}, {"history": ["30000"]}, {"history": [True]}, {"history": [1.0, "x"]}]
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for k in range(1_000):
            answer = client.post("/forecast", json=bodies[k % len(bodies)])
            assert answer.status_code == 400 and answer.json()["field"] == "history", answer.text
    assert answer.json()["error"] == "history[1]: Input should be a valid number"
    after = metric(service.url, "seqcast_rejected_requests", "_total", endpoint="forecast", reason="bad_input")
    assert after - before == 1_000
    assert service.log.stat().st_size - size < 200


def test_the_work_one_request_asks_for_is_bounded(client: httpx.Client) -> None:
    values, temps = series(20_000)
    body = history_body(values, temps)
    bare = {"history": values, "start": body["start"]}
    answer = client.post("/forecast", json=[bare] * 3)  # 60,000 values: each history within max_history
    assert answer.status_code == 400 and answer.json()["field"] == "body"
    assert "60000 values" in answer.json()["error"] and "max_request_values" in answer.json()["error"]
    assert client.post("/forecast", json=[history_body(values[:100], temps[:100])] * 65).status_code == 400
    # Far more numbers than the limits allow are refused before they are parsed (parsing holds the GIL).
    unread = client.post("/forecast", json=[{"history": [1.5] * 50_000}] * 3)
    assert unread.status_code == 400 and "refused unread" in unread.json()["error"], unread.text
    assert client.post("/forecast", json=[body, history_body(values[:100], temps[:100])]).status_code == 200


def test_concurrent_closes_of_one_session_close_it_once(model_home: Path, redis_url: str, tmp_path: Path) -> None:
    values, temps = series(60)
    with bentoml_serve(model_home, tmp_path / "serve.log", session_store=redis_url) as running:
        for _ in range(5):
            sid = httpx.post(running.url + "/open", json=history_body(values, temps), timeout=30).json()["session_id"]
            before = metric(running.url, "seqcast_sessions", "_total", event="closed")
            bodies = [{"session_id": sid}] * 16
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda body: httpx.post(running.url + "/close", json=body, timeout=30), bodies))
            assert sorted(a.status_code for a in answers) == [200] + [404] * 15
            assert metric(running.url, "seqcast_sessions", "_total", event="closed") - before == 1


def test_a_redis_that_evicts_or_refuses_writes_is_seen(model_home: Path, tmp_path: Path) -> None:
    values, temps = series(60)
    with (
        redis_server(tmp_path / "redis") as url,
        bentoml_serve(model_home, tmp_path / "serve.log", session_store=url) as running,
    ):
        store = redis.Redis.from_url(url)
        used = int(store.info("memory")["used_memory"])
        store.config_set("maxmemory", used + 400_000)
        store.config_set("maxmemory-policy", "allkeys-lru")
        with httpx.Client(base_url=running.url, timeout=30) as client:
            for _ in range(600):
                client.post("/open", json=history_body(values, temps))
            evicted = int(store.info("stats")["evicted_keys"])
            assert evicted > 0
            time.sleep(1.1)  # the store's counts are read at most once a second
            client.post("/open", json=history_body(values, temps))
            assert metric(running.url, "seqcast_session_store_evicted_keys") >= evicted
            assert metric(running.url, "seqcast_session_store_memory_bytes", kind="max") == used + 400_000

            # A limit well below what Redis holds: filling up to the limit instead leaves it at the edge, where a
            # few freed bytes (the probe key expiring, a client buffer) let the next write in.
            store.config_set("maxmemory-policy", "noeviction")
            store.config_set("maxmemory", int(store.info("memory")["used_memory"]) // 2)
            with pytest.raises(redis.ResponseError, match="used memory > 'maxmemory'"):
                store.set("filler", b"x")
            wait_until(lambda: client.get("/readyz").status_code != 200, 10, "readiness to fail")
            refused = client.post("/open", json=history_body(values, temps))
            assert refused.status_code == 503 and refused.json()["field"] == "session_store"
            store.config_set("maxmemory", 0)
            wait_until(lambda: client.get("/readyz").status_code == 200, 10, "readiness to return")
