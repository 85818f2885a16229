"""Live accuracy end to end: a real `bentoml serve` over a real Redis replays the test part of the series its model
was trained on through a session, a real Prometheus scrapes it, and the live MASE it computes is the report's."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd

from bench.servers import bentoml_serve, wait_until
from tests.deploy.test_monitoring import prometheus, query

SHIFT = 20.0  # the synthetic series lies between about 10 and 16; its naive error is a fraction of one


def _replay(client: httpx.Client, frame: pd.DataFrame, start: int, horizon: int, shift_from: int | None) -> list[int]:
    """Opens a session on everything before ``start`` and observes the rest one value at a time; from
    ``shift_from`` on, every value is raised by SHIFT. Returns the positions of the values flagged anomalous."""
    y, temperature = frame.y.to_numpy(), frame.temperature.to_numpy()

    def ahead(t: int) -> list[list[float]]:
        rows = [[v] for v in temperature[t + 1 : t + 1 + horizon]]
        return rows + [[float(temperature[-1])]] * (horizon - len(rows))

    body = {"history": y[:start].tolist(), "covariates": [[v] for v in temperature[:start]]}
    body |= {"start": str(frame.ds[0]), "future_covariates": ahead(start - 1)}
    session = client.post("/open", json=body).json()["session_id"]
    flagged = []
    for t in range(start, len(y)):
        value = float(y[t]) + (SHIFT if shift_from is not None and t >= shift_from else 0.0)
        observe = {"session_id": session, "seq": t, "values": [value], "covariates": [[float(temperature[t])]]}
        answer = client.post("/observe", json={**observe, "future_covariates": ahead(t)})
        assert answer.status_code == 200, answer.text
        if answer.json()["anomalies"]:
            flagged.append(t)
    return flagged


def _value(prom: str, expr: str) -> float | None:
    result = query(prom, expr)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_computes_the_reports_mase_from_a_replay_and_a_shift_is_flagged(
    model_home: Path, redis_url: str, tmp_path: Path
) -> None:
    workdir = model_home.parent  # where the fixture trained: its data and its run's report
    frame = pd.read_csv(workdir / "series.csv", parse_dates=["ds"])
    report = json.loads(next((workdir / "runs").glob("*/version_0/report.json")).read_text())
    horizon, start = report["horizon"], len(frame) - 200  # the fixture's test_size
    with (
        bentoml_serve(model_home, tmp_path / "serve.log", session_store=redis_url) as running,
        prometheus(running.url.removeprefix("http://"), tmp_path) as prom,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        assert client.post("/info", json={}).json()["live_scoring"] is True
        assert _replay(client, frame, start, horizon, None) == []  # the series as it was: nothing anomalous

        live = "sum(seqcast_live_scaled_error_total) / sum(seqcast_live_scored_total)"
        scored = report["origins"] * horizon
        wait_until(lambda: _value(prom, "sum(seqcast_live_scored_total)") == scored, 30, "the replay scraped")
        mase = _value(prom, live)
        assert mase is not None and abs(mase / report["metrics"]["streaming"]["mase"] - 1) < 0.01
        assert _value(prom, "seqcast_model_test_mase") == report["metrics"]["streaming"]["mase"]

        # A level shift halfway through: every shifted value that falls in a scored horizon is flagged.
        shift_from = start + 100
        flagged = _replay(client, frame, start, horizon, shift_from)
        assert flagged and min(flagged) >= shift_from
        wait_until(lambda: _value(prom, "sum(seqcast_live_anomalies_total)") == len(flagged), 30, "anomalies scraped")
