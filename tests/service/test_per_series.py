"""A model scaled per series, from ``seqcast-train fit`` to answers over HTTP: a request names the training series
it continues, or sends a series of its own, scaled by its own history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.servers import bentoml_serve
from models import load_checkpoint
from service.engine import Engine
from tests.conftest import run_training, synthetic_frame
from tests.service.bodies import START, ahead, history_body, observe_body


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.process
def test_a_model_trained_per_series_answers_each_series_in_its_own_units(tmp_path: Path) -> None:
    frame = synthetic_frame(points=1500, series=2)
    frame.loc[frame.unique_id == "s1", "y"] *= 1000  # one series a thousand times the other's level
    frame.to_csv(tmp_path / "series.csv", index=False)
    done = run_training(
        tmp_path,
        *("--trainer.max_epochs", "2", "--force_export", "true", "--data.per_series_scaling", "true"),
        config="configs/lstm.yaml",
    )
    report = json.loads((tmp_path / "runs" / "lstm" / "version_0" / "report.json").read_text())
    # Scored in each series' own units against its own MASE scale: a model that read the large series by the
    # small one's statistics would be hundreds of times off.
    assert report["metrics"]["streaming"]["mase"] < report["metrics"]["naive"]["mase"]

    tag = done.stdout.split("exported ")[-1].split()[0]
    name, version = tag.split(":")
    engine = Engine(load_checkpoint(tmp_path / "bentoml" / "models" / name / version / "checkpoint.pt"), tag)
    rows = {uid: part.tail(200) for uid, part in frame.groupby("unique_id")}
    values = {uid: part.y.tolist() for uid, part in rows.items()}
    temps = {uid: [[t] for t in part.temperature] for uid, part in rows.items()}
    with (
        bentoml_serve(tmp_path / "bentoml", tmp_path / "serve.log") as service,
        httpx.Client(base_url=service.url, timeout=30) as client,
    ):
        info = _ok(client.post("/info"))
        assert (info["scaled_series"], info["min_own_history"]) == (2, 2 * info["horizon"])
        answers = {}
        for uid in ("s0", "s1"):
            body = {**history_body(values[uid], temps[uid]), "series": uid}
            answers[uid] = np.asarray(_ok(client.post("/forecast", json=body))["forecast"])
            prepared = engine.prepare(
                engine.check_history(
                    body["history"], body["covariates"], START.to_pydatetime(), body["future_covariates"], uid
                )
            )
            np.testing.assert_allclose(
                answers[uid], engine.run([prepared], [None]).forecasts[0][:, 0], rtol=1e-4, atol=1e-4
            )
        assert answers["s1"].mean() > 100 * answers["s0"].mean()

        refused = client.post("/forecast", json={**history_body(values["s1"], temps["s1"]), "series": "s2"})
        assert refused.status_code == 400 and refused.json()["field"] == "series"

        # A series the model did not train on (no "series") is scaled by its own history: the same history in
        # other units is forecast in those units.
        new = np.asarray(values["s0"]) * 0.37 + 55.0
        unseen = [
            np.asarray(_ok(client.post("/forecast", json=history_body(v, temps["s0"])))["forecast"])
            for v in (new.tolist(), (new * 20 - 300).tolist())
        ]
        np.testing.assert_allclose(unseen[1], unseen[0] * 20 - 300, rtol=1e-3, atol=1e-2)
        opened_new = _ok(client.post("/open", json=history_body(new[:150].tolist(), temps["s0"][:150])))
        observed_new = _ok(
            client.post(
                "/observe", json=observe_body(opened_new["session_id"], 150, new[150:].tolist(), temps["s0"][150:])
            )
        )
        opening = engine.check_history(new[:150].tolist(), temps["s0"][:150], START.to_pydatetime(), ahead(0))
        whole = engine.check_observe(new.tolist(), temps["s0"], START.value, ahead(0), None, opening.scaling)
        expected = engine.run([engine.prepare(whole)], [None]).forecasts[0][:, 0]
        np.testing.assert_allclose(observed_new["forecast"], expected, rtol=1e-4, atol=1e-4)

        opened = _ok(client.post("/open", json={**history_body(values["s1"][:150], temps["s1"][:150]), "series": "s1"}))
        observed = _ok(
            client.post("/observe", json=observe_body(opened["session_id"], 150, values["s1"][150:], temps["s1"][150:]))
        )
        np.testing.assert_allclose(observed["forecast"], answers["s1"], rtol=1e-4)
