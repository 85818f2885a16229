"""SEQCAST_API_KEY: every route but health, metrics and the API docs needs the key; without the setting none do
(every other service test calls without a key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.servers import bentoml_serve
from tests.service.bodies import history_body, series

KEY = "k3y-" + "x" * 28


@pytest.fixture(scope="module")
def guarded(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("guarded") / "serve.log"
    with (
        bentoml_serve(model_home, log, api_key=KEY) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        yield client


def test_requests_without_the_right_key_get_401(guarded: httpx.Client) -> None:
    values, temps = series(30)
    for headers, problem in [
        ({}, "missing"),
        ({"Authorization": "Bearer nope"}, "wrong"),
        ({"X-API-Key": KEY[:-1]}, "wrong"),
    ]:
        for path, body in [("/forecast", history_body(values, temps)), ("/open", history_body(values, temps))]:
            refused = guarded.post(path, json=body, headers=headers)
            assert refused.status_code == 401, (path, headers, refused.text)
            assert refused.json()["field"] == "authorization" and problem in refused.json()["error"]
            assert refused.headers["www-authenticate"] == "Bearer"
    assert guarded.post("/info", headers={}).status_code == 401


def test_the_key_opens_every_endpoint(guarded: httpx.Client) -> None:
    values, temps = series(30)
    bearer, header = {"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}
    assert guarded.post("/forecast", json=history_body(values, temps), headers=bearer).status_code == 200
    opened = guarded.post("/open", json=history_body(values, temps), headers=header)
    assert opened.status_code == 200, opened.text
    closed = guarded.post("/close", json={"session_id": opened.json()["session_id"]}, headers=bearer)
    assert closed.status_code == 200 and closed.json()["seq"] == 30


def test_health_metrics_and_docs_need_no_key(guarded: httpx.Client) -> None:
    for path in ("/livez", "/readyz", "/metrics", "/docs.json"):
        assert guarded.get(path).status_code == 200, path
    refusals = [line for line in guarded.get("/metrics").text.splitlines() if 'reason="unauthorized"' in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in refusals) >= 7
