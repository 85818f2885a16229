"""The service over HTTP, against a real `bentoml serve` with in-memory sessions."""

from __future__ import annotations

import os
import random
import re
import ssl
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.servers import bentoml_serve
from tests.conftest import ROOT
from tests.service.bodies import HORIZON, history_body, observe_body, series


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _open(client: httpx.Client, values: list[float], temps: list[list[float]], seed: int = 0) -> dict[str, Any]:
    return _ok(client.post("/open", json=history_body(values, temps, seed)))


def test_one_object_gets_one_answer_and_a_list_a_list(client: httpx.Client) -> None:
    values, temps = series(100)
    single = _ok(client.post("/forecast", json=history_body(values, temps)))
    assert len(single["forecast"]) == HORIZON and single["model"].startswith("seqcast-lstm:")
    both = _ok(client.post("/forecast", json=[history_body(values, temps), history_body(values[:50], temps[:50])]))
    # The same forecast to float32 rounding: a batch of two lengths runs other kernels than one sequence alone.
    np.testing.assert_allclose(both[0]["forecast"], single["forecast"], rtol=1e-5)
    assert both[1]["forecast"] != single["forecast"]


def test_open_then_observe_equals_forecast_of_the_whole_history(client: httpx.Client) -> None:
    rng = random.Random(3)
    values, temps = series(400, seed=5)
    for trial in range(8):
        cuts = sorted(rng.sample(range(1, 400), rng.randint(1, 3)))
        opened = _open(client, values[: cuts[0]], temps[: cuts[0]], seed=trial)
        session, seq = opened["session_id"], opened["seq"]
        for start, end in zip(cuts, [*cuts[1:], 400], strict=True):
            answer = _ok(
                client.post("/observe", json=observe_body(session, seq, values[start:end], temps[start:end], trial))
            )
            assert answer["seq"] == end
            seq = end
        whole = _ok(client.post("/forecast", json=history_body(values, temps, trial)))
        np.testing.assert_allclose(answer["forecast"], whole["forecast"], rtol=1e-4)


def _adaptive_batches(client: httpx.Client, method: str) -> tuple[float, float]:
    text = client.get("/metrics").text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_") and f'method_name="{method}"' in line:
            value = float(line.rsplit(" ", 1)[1])
            if line.startswith("bentoml_service_adaptive_batch_size_sum"):
                total += value
            elif line.startswith("bentoml_service_adaptive_batch_size_count"):
                count += value
    return total, count


def _burst(url: str, calls: list[tuple[str, Any]]) -> set[int]:
    """Posts every (path, body) at once from its own connection, and returns the status codes. Clients are built
    and connected before a barrier releases them: building an httpx client loads certificates (~50 ms here) under
    the GIL, so clients built in the threads would post ~50 ms apart, and a pass would rarely find a second."""
    tls = ssl.create_default_context()
    clients = [httpx.Client(base_url=url, timeout=30, verify=tls) for _ in calls]
    barrier = threading.Barrier(len(calls))

    def post(own: httpx.Client, path: str, body: Any) -> int:
        own.get("/livez")
        barrier.wait(timeout=30)
        return own.post(path, json=body).status_code

    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            return set(pool.map(post, clients, *zip(*calls, strict=True)))
    finally:
        for own in clients:
            own.close()


def test_concurrent_requests_share_forward_passes(client: httpx.Client, service: Any) -> None:
    values, temps = series(300)
    sessions = [_open(client, values[:100], temps[:100]) for _ in range(64)]
    before_f, before_o = _adaptive_batches(client, "forecast"), _adaptive_batches(client, "observe")
    forecasts = [("/forecast", history_body(values[: 100 + i], temps[: 100 + i])) for i in range(64)]
    observes = [("/observe", observe_body(s["session_id"], 100, values[100:110], temps[100:110])) for s in sessions]
    assert _burst(service.url, forecasts) == {200}
    assert _burst(service.url, observes) == {200}
    for method, before in (("forecast", before_f), ("observe", before_o)):
        total, count = _adaptive_batches(client, method)
        items, batches = total - before[0], count - before[1]
        assert items == 64
        assert batches < 64, f"{method}: 64 concurrent requests ran in {batches} batches, none shared"


def test_stale_or_future_seq_gets_409_with_the_current_seq(client: httpx.Client) -> None:
    values, temps = series(60)
    session = _open(client, values[:40], temps[:40])["session_id"]
    for wrong in (39, 41, 0):
        response = client.post("/observe", json=observe_body(session, wrong, values[40:42], temps[40:42]))
        assert response.status_code == 409
        assert response.json() == {
            "error": f"seq: the session is at seq 40, the request says {wrong}",
            "field": "seq",
            "seq": 40,
        }


def test_a_retried_observe_is_answered_again_but_applied_once(client: httpx.Client) -> None:
    values, temps = series(60)
    session = _open(client, values[:40], temps[:40])["session_id"]
    body = observe_body(session, 40, values[40:45], temps[40:45])
    first = _ok(client.post("/observe", json=body))
    again = _ok(client.post("/observe", json=body))
    assert again == first and first["seq"] == 45
    # A different request with the old seq is not a retry.
    changed = observe_body(session, 40, values[40:44], temps[40:44])
    assert client.post("/observe", json=changed).status_code == 409
    after = _ok(client.post("/observe", json=observe_body(session, 45, values[45:50], temps[45:50])))
    whole = _ok(client.post("/forecast", json=history_body(values[:50], temps[:50])))
    np.testing.assert_allclose(after["forecast"], whole["forecast"], rtol=1e-4)


def test_two_observes_of_one_session_in_one_batch_apply_in_order(client: httpx.Client) -> None:
    values, temps = series(60)
    session = _open(client, values[:40], temps[:40])["session_id"]
    both = _ok(
        client.post(
            "/observe",
            json=[
                observe_body(session, 40, values[40:43], temps[40:43]),
                observe_body(session, 43, values[43:47], temps[43:47]),
            ],
        )
    )
    assert [a["seq"] for a in both] == [43, 47]
    whole = _ok(client.post("/forecast", json=history_body(values[:47], temps[:47])))
    np.testing.assert_allclose(both[1]["forecast"], whole["forecast"], rtol=1e-4)


BAD_HISTORIES = [
    ({"history": []}, 400, r"history"),
    ({"history": "1,2,3"}, 400, r"history"),
    ({"history": [1.0, "x"]}, 400, r"history"),
    ({"covariates": [[1.0, 2.0]]}, 400, r"covariates: has 1 rows; expected 20"),
    ({"covariates": [[1.0, 2.0]] * 20}, 400, r"covariates: row 0 has 2 values; expected 1 \(temperature\)"),
    ({"covariates": [[1.0]] * 7 + [[]] + [[1.0]] * 12}, 400, r"covariates: row 7 has 0 values; expected 1"),
    ({"future_covariates": [[1.0]] * 3}, 400, r"future_covariates: has 3 rows; expected 12"),
    ({"future_covariates": None}, 400, r"future_covariates: required"),
    ({"start": None}, 400, r"start: required: the model derives time_of_day"),
    ({"start": "yesterday"}, 400, r"start"),
    ({"extra": 1}, 400, r"extra"),
    ({"history": [1e300] * 20}, 400, r"history: value 1e\+300 at \[0, 0\] is far outside the training data's range"),
]


@pytest.mark.parametrize(("change", "status", "message"), BAD_HISTORIES)
@pytest.mark.parametrize("endpoint", ["/forecast", "/open"])
def test_bad_histories_get_a_4xx_naming_the_field(
    client: httpx.Client, endpoint: str, change: dict[str, Any], status: int, message: str
) -> None:
    values, temps = series(20)
    response = client.post(endpoint, json={**history_body(values, temps), **change})
    assert response.status_code == status, response.text
    assert re.search(message, response.text), response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_refused(client: httpx.Client, literal: str) -> None:
    response = client.post(
        "/forecast", content=f'{{"history": [1.0, {literal}]}}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "history" in response.text and "finite" in response.text


def test_a_bad_observe_changes_nothing(client: httpx.Client) -> None:
    values, temps = series(60)
    session = _open(client, values[:40], temps[:40])["session_id"]
    bad = [
        observe_body(session, 40, values[40:42], temps[40:41]),  # covariate rows short
        {**observe_body(session, 40, values[40:42], temps[40:42]), "future_covariates": [[1.0]]},
        {**observe_body(session, 40, values[40:42], temps[40:42]), "values": [1.0, None]},
    ]
    for body in bad:
        assert client.post("/observe", json=body).status_code == 400
    unknown = client.post("/observe", json=observe_body("no-such-session", 0, [1.0], [[1.0]]))
    assert unknown.status_code == 404 and unknown.json()["field"] == "session_id"
    after = _ok(client.post("/observe", json=observe_body(session, 40, values[40:42], temps[40:42])))
    whole = _ok(client.post("/forecast", json=history_body(values[:42], temps[:42])))
    assert after["seq"] == 42
    np.testing.assert_allclose(after["forecast"], whole["forecast"], rtol=1e-4)


def test_close_ends_a_session(client: httpx.Client) -> None:
    values, temps = series(30)
    session = _open(client, values, temps)["session_id"]
    assert _ok(client.post("/close", json={"session_id": session})) == {
        "session_id": session,
        "seq": 30,
        "closed": True,
    }
    assert client.post("/close", json={"session_id": session}).status_code == 404
    assert client.post("/observe", json=observe_body(session, 30, [1.0], [[1.0]])).status_code == 404


def test_info_describes_the_model(client: httpx.Client) -> None:
    info = _ok(client.post("/info"))
    assert info["cell"] == "lstm" and info["horizon"] == HORIZON
    assert info["future_covariates"] == ["temperature"] and info["calendar"] == ["time_of_day"]
    assert set(info["test_metrics"]) == {"windowed", "streaming", "naive", "seasonal_naive", "seasonal_naive_336"}
    assert (info["scaled_series"], info["min_own_history"]) == (0, None)  # all series scaled alike
    assert (info["nonnegative"], info["log_target"]) == (False, False)


def test_health_and_metrics_stay(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert "bentoml_service_request_duration_seconds" in client.get("/metrics").text


def test_requests_are_not_logged_one_line_each_by_default(client: httpx.Client, service: Any) -> None:
    values, temps = series(30)
    assert client.post("/forecast", json=history_body(values, temps)).status_code == 200
    assert "path=/forecast" not in service.log.read_text()


def test_requests_get_opentelemetry_spans_only_when_tracing_is_on(
    client: httpx.Client, model_home: Path, tmp_path: Path
) -> None:
    # BentoML names each request by its span's id; without a span there is no id.
    values, temps = series(30)
    body = history_body(values, temps)
    assert "x-bentoml-request-id" not in client.post("/forecast", json=body).headers
    with bentoml_serve(model_home, tmp_path / "serve.log", tracing=True) as traced:
        ids = {httpx.post(traced.url + "/forecast", json=body).headers["x-bentoml-request-id"] for _ in range(2)}
    assert len(ids) == 2


@pytest.mark.parametrize("body", [b"\x00{", b"\xff"], ids=["not-json", "not-utf8"])
@pytest.mark.parametrize("path", ["/forecast", "/open", "/observe", "/close"])
def test_a_body_that_is_not_json_gets_400(client: httpx.Client, path: str, body: bytes) -> None:
    refused = client.post(path, content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["field"] == "body" and refused.json()["error"].startswith("body: Invalid JSON"), refused.text


PARSES_WITHOUT_A_SCHEMA = """
import asyncio
import pydantic
import service.service as served

def no_schema(*args, **kwargs):
    raise AssertionError("a request built a JSON schema")

class Request:
    def __init__(self, body):
        self._body = body

    async def body(self):
        return self._body

def parse(api, body):
    return asyncio.run(served.Seqcast.apis[api].input_spec.from_http_request(Request(body), None)).root

pydantic.TypeAdapter.json_schema = no_schema
[item] = parse("observe", b'{"session_id": "s", "seq": 1, "values": [1.0]}')
two = parse("forecast", b'[{"history": [1.0]}, {"history": [2.0, 3.0]}]')
long = parse("forecast", b'[{"history": [' + b",".join([b"1.5"] * 30_000) + b']}]')  # parsed off the loop
print(item.seq, [len(r.history) for r in two], len(long[0].history))
"""


def test_bodies_are_parsed_without_building_a_json_schema_per_request(model_home: Path) -> None:
    # BentoML's own parsing built the input's schema for every request: half a worker's time under load.
    env = {**os.environ, "BENTOML_HOME": str(model_home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PARSES_WITHOUT_A_SCHEMA], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "[1,", "2]", "30000"]


def test_the_session_count_follows_expiry_while_no_request_comes(model_home: Path, tmp_path: Path) -> None:
    """The count is refreshed in the background: a gauge left at a request's last count would stay stale."""
    from bench.servers import metric, wait_until

    with bentoml_serve(model_home, tmp_path / "serve.log", session_ttl_s=1) as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            _open(client, *series(100))
        assert metric(running.url, "seqcast_sessions_active") == 1
        wait_until(lambda: metric(running.url, "seqcast_sessions_active") == 0, 15, "the expired session uncounted")
