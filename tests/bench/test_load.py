"""The paced load generator the soak benchmark uses, against a real `bentoml serve`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.servers import bentoml_serve
from bench.workload import SMALL, publish

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess


def test_paced_clients_send_at_their_rate_and_every_observe_succeeds(tmp_path: Path) -> None:
    tag = publish(tmp_path, SMALL)
    with bentoml_serve(tmp_path, tmp_path / "serve.log", model_tag=tag) as running:
        command = [sys.executable, "-m", "bench.load", running.url, "observe", "--concurrency", "4"]
        done = subprocess.run(
            [*command, "--seconds", "4", "--interval", "0.5"], capture_output=True, text=True, check=True
        )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["errors"] == 0, measured["error_kinds"]
    # 4 clients, one observe each per 0.5 s, for 4 s: about 32, never more than the pace allows.
    assert 24 <= measured["requests"] <= 36
    assert measured["p50"] < 500
