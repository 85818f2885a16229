"""Redis sessions: shared by two workers, kept across a restart, refused after the model changes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.servers import batches_by_worker, bentoml_serve, free_port, wait_for_workers
from bench.workload import SMALL, publish
from tests.service.bodies import history_body, observe_body, series


def _post(client: httpx.Client, path: str, body: object) -> dict:  # type: ignore[type-arg]
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_two_workers_share_sessions_and_a_restart_keeps_them(model_home: Path, redis_url: str, tmp_path: Path) -> None:
    values, temps = series(400, seed=9)
    port = free_port()
    settings = dict(session_store=redis_url, workers=2)
    # A connection stays with one worker, so every request gets its own and they arrive together.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with bentoml_serve(model_home, tmp_path / "serve.log", port=port, **settings) as running:
        with httpx.Client(base_url=running.url, timeout=30, limits=fresh) as client, ThreadPoolExecutor(6) as pool:
            opening = history_body(values[:100], temps[:100])
            wait_for_workers(
                running.url, 2, lambda: list(pool.map(lambda _: _post(client, "/forecast", opening), range(6)))
            )
            sessions = [_post(client, "/open", opening)["session_id"] for _ in range(12)]
            for step in range(10):
                lo, hi = 100 + 10 * step, 110 + 10 * step
                bodies = [observe_body(session, lo, values[lo:hi], temps[lo:hi]) for session in sessions]
                answers = list(pool.map(lambda body: _post(client, "/observe", body), bodies))
                assert {a["seq"] for a in answers} == {hi}
            workers = batches_by_worker(running.url, "observe")
    # Both workers stepped sessions they had not opened themselves: with per-process memory this fails.
    assert len(workers) == 2 and min(workers.values()) > 0, workers

    with bentoml_serve(model_home, tmp_path / "serve.log", port=port, **settings) as restarted:
        with httpx.Client(base_url=restarted.url, timeout=30) as client:
            for session in sessions:
                stale = client.post("/observe", json=observe_body(session, 150, values[150:160], temps[150:160]))
                assert stale.status_code == 409 and stale.json()["seq"] == 200
                after = _post(client, "/observe", observe_body(session, 200, values[200:210], temps[200:210]))
                assert after["seq"] == 210
            whole = _post(client, "/forecast", history_body(values[:210], temps[:210]))
            np.testing.assert_allclose(after["forecast"], whole["forecast"], rtol=1e-4)


def test_a_session_of_a_model_that_reads_other_inputs_is_refused_by_name(
    model_home: Path, redis_url: str, tmp_path: Path
) -> None:
    """A model that reads the same inputs takes sessions over (tests/service/test_upgrade.py); one that reads
    others cannot, and says what differs."""
    values, temps = series(60)
    with bentoml_serve(model_home, tmp_path / "a.log", session_store=redis_url) as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            opened = _post(client, "/open", history_body(values[:40], temps[:40]))
    other = tmp_path / "other"
    publish(other, SMALL)  # elecdemand's inputs: Temperature and WorkDay known ahead, three calendar features
    with bentoml_serve(other, tmp_path / "b.log", session_store=redis_url) as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            refused = client.post("/observe", json=observe_body(opened["session_id"], 40, values[40:41], temps[40:41]))
            kept = client.post("/info").json()["model"]
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert f"stepped last by model {opened['model']}, this service runs {kept}" in error
    assert (
        "the models read different inputs: future_covariates ['temperature'] there, ['Temperature', 'WorkDay']" in error
    )
    assert "open a new session" in error


@pytest.mark.parametrize("url", ["postgres://x", "mem"])
def test_an_unknown_store_stops_the_service_at_start(url: str) -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="session_store must be 'memory' or a redis:// URL"):
        Settings(session_store=url)
