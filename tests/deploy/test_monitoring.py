"""A real Prometheus, with the repository's scrape config, scrapes a real two-worker service over Redis."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.servers import Service, answers, bentoml_serve, free_port, wait_for_workers, wait_until
from tests.conftest import ROOT
from tests.deploy.test_files import dashboard_queries
from tests.service.bodies import history_body, observe_body, series

SESSIONS = 24


@contextmanager
def prometheus(target: str, workdir: Path) -> Iterator[str]:
    """Prometheus on the repository's config and rules, its service discovery swapped for ``target``."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [target]}]
    config["global"]["scrape_interval"] = "1s"
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / name) for name in config["rule_files"]]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        "prometheus",
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/-/ready"), 30, "prometheus")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def traffic(service: Service, sessions: int) -> None:
    """Opens sessions, observes each twice and once with a stale seq, and forecasts, on fresh connections so
    both workers take part."""
    values, temps = series(200)
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=service.url, timeout=30, limits=fresh) as client, ThreadPoolExecutor(8) as pool:

        def session(_: int) -> None:
            opened = client.post("/open", json=history_body(values[:100], temps[:100])).json()
            sid = opened["session_id"]
            for lo in (100, 110):
                body = observe_body(sid, lo, values[lo : lo + 10], temps[lo : lo + 10])
                assert client.post("/observe", json=body).status_code == 200
            assert client.post("/observe", json=body).status_code == 200  # a retry: replayed
            assert (
                client.post("/observe", json=observe_body(sid, 100, values[100:101], temps[100:101])).status_code == 409
            )
            assert client.post("/forecast", json=history_body(values[:150], temps[:150])).status_code == 200
            assert client.post("/close", json={"session_id": sid}).status_code == 200

        list(pool.map(session, range(sessions)))


def test_prometheus_scrapes_the_service_and_sees_what_the_traffic_did(
    model_home: Path, redis_url: str, tmp_path: Path
) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with bentoml_serve(model_home, tmp_path / "serve.log", session_store=redis_url, workers=2) as service:
        body = history_body(*series(100))

        def forecasts() -> None:  # at once, each on a connection of its own, so that any worker up takes some
            with ThreadPoolExecutor(6) as pool:
                list(pool.map(lambda _: httpx.post(service.url + "/forecast", json=body, timeout=30), range(6)))

        wait_for_workers(service.url, 2, forecasts)
        with prometheus(service.url.removeprefix("http://"), tmp_path) as url:
            # A series is born at its first observation, so a scrape must see it before the traffic whose rate
            # is asked for: one warm-up session first.
            traffic(service, 1)
            wait_until(
                lambda: bool(query(url, 'bentoml_service_request_duration_seconds_count{endpoint="/observe"}')),
                30,
                "a first scrape",
            )
            traffic(service, SESSIONS - 1)
            exported = httpx.get(service.url + "/metrics", timeout=10).text

            def scraped() -> bool:
                found = query(url, 'sum(seqcast_sessions_total{event="opened"})')
                return bool(found) and float(found[0]["value"][1]) == SESSIONS

            wait_until(scraped, 30, "a scrape with all the traffic")
            time.sleep(2.5)  # a few more scrapes, so rate() has two points after the traffic
            p99 = query(
                url, "histogram_quantile(0.99, sum by (le) (rate(bentoml_service_request_duration_seconds_bucket[1m])))"
            )
            observes = query(url, 'sum(seqcast_batch_size_count{endpoint="observe"})')
            conflicts = query(url, "sum(seqcast_seq_conflicts_total)")
            replays = query(url, "sum(seqcast_replays_total)")
            closed = query(url, 'sum(seqcast_sessions_total{event="closed"})')
            stale = query(url, 'sum(seqcast_rejected_requests_total{endpoint="observe", reason="seq_conflict"})')
            active = query(url, "seqcast_sessions_active")
            rules = httpx.get(url + "/api/v1/rules", timeout=10).json()["data"]["groups"][0]["rules"]

    assert p99 and 0 < float(p99[0]["value"][1]) < 10
    # Counters from both workers are summed: every session was opened once, wherever it landed.
    assert float(query_value(observes)) >= 1
    assert float(query_value(conflicts)) == float(query_value(stale)) == SESSIONS
    assert float(query_value(replays)) == float(query_value(closed)) == SESSIONS
    # One series for the gauge, not one per worker process; every session was closed again.
    assert len(active) == 1 and float(active[0]["value"][1]) == 0
    assert {rule["name"] for rule in rules} == {
        "SeqcastHighP99Latency",
        "SeqcastServerErrors",
        "SeqcastSessionEvictions",
        "SeqcastShedding",
        "SeqcastStoreEvicting",
        "SeqcastStoreMemoryHigh",
    }
    workers = set(re.findall(r'worker_index="(\d+)"', exported))
    assert workers == {"1", "2"}, "the traffic should have reached both workers"
    # Every metric a dashboard panel asks for is one the service exports.
    for expr in dashboard_queries():
        for name in re.findall(r"\b((?:seqcast|bentoml)_[a-z_]+)", expr):
            assert re.search(rf"^{name}[{{ ]", exported, re.M), f"{name} (dashboard) is not exported"


def query_value(result: list[dict[str, Any]]) -> str:
    assert len(result) == 1, result
    return str(result[0]["value"][1])
