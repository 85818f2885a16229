"""`bentoml build` from the repository, offline, and the bento it makes serving forecasts."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from bench.servers import bentoml_serve
from tests.conftest import ROOT, run_module
from tests.service.bodies import history_body, series


def test_the_built_bento_serves(model_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(model_home)}
    built = run_module("bentoml", "build", str(ROOT), "--output", "tag", env=env)
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("seqcast:")
    bundled = model_home / "bentos" / "seqcast" / tag.split(":")[1] / "src"
    assert (bundled / "service" / "service.py").exists() and not (bundled / "training").exists()

    with bentoml_serve(model_home, tmp_path / "serve.log", target=tag, cwd=tmp_path) as running:
        values, temps = series(50)
        answer = httpx.post(running.url + "/forecast", json=history_body(values, temps), timeout=30)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["forecast"]) == 12
