"""What docker-compose would start, started natively: the train job's command, then the API's command
against Redis, with the compose file's environment, checked by the compose healthcheck's own command."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from bench.servers import bentoml_serve, free_port
from tests.conftest import ROOT, SMALL, run_module, synthetic_frame

# Data and size overrides appended to the train command, so the job fits in a test (one epoch does not beat
# seasonal naive, hence the forced export).
TINY = ["--trainer.max_epochs", "1", "--trainer.max_time", "null", "--force_export", "true", *SMALL]


def _expand(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default}, with defaults unless the test sets the variable."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), value)


def _service(name: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][name]  # type: ignore[no-any-return]


def test_train_then_serve_as_compose_would(tmp_path: Path, redis_url: str) -> None:
    models = tmp_path / "bentoml"  # the `models` volume
    train = _service("train")
    command = [_expand(part, {}) for part in train["command"]]
    assert command[:3] == ["seqcast-train", "fit", "--config"]
    data = tmp_path / "series.csv"
    synthetic_frame(points=1500).to_csv(data, index=False)
    env = {**os.environ, **train["environment"], "BENTOML_HOME": str(models), "PYTHONPATH": str(ROOT)}
    runs = ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--checkpoint.dirpath", str(tmp_path / "ck")]
    run_module("training.cli", *command[1:], "--data.path", str(data), *runs, *TINY, env=env)
    assert (models / "models" / "seqcast-forecaster" / "latest").exists()

    api = _service("api")
    assert api["command"][:3] == ["bentoml", "serve", "service.service:Seqcast"]
    settings = {
        key.removeprefix("SEQCAST_").lower(): _expand(str(value), {})
        for key, value in api["environment"].items()
        if key.startswith("SEQCAST_")
    }
    settings["session_store"] = redis_url  # compose's redis://redis:6379/0, here on loopback
    port = free_port()
    with bentoml_serve(models, tmp_path / "api.log", port=port, **settings) as running:
        probe = [part.replace("3000", str(port)) for part in api["healthcheck"]["test"][1:]]
        health = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        assert health.returncode == 0, health.stderr
        assert settings["workers"] == "2" and running.process.poll() is None
