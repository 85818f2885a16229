"""What docker-compose would start, started natively from the image deploy/Dockerfile builds (tests/deploy/
dockerfile.py): the train job's command, then the API's command against Redis, with the compose file's
environment, checked by the compose and Dockerfile healthchecks' own commands."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.servers import bentoml_serve, free_port
from tests.conftest import ROOT, SMALL, synthetic_frame
from tests.deploy.dockerfile import BuildFailed, Image, build

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess

DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# Data and size overrides appended to the train command, so the job fits in a test (one epoch does not beat
# seasonal naive, hence the forced export).
TINY = ["--trainer.max_epochs", "1", "--trainer.max_time", "null", "--force_export", "true", *SMALL]


def _expand(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default}, with defaults unless the test sets the variable."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), value)


def _service(name: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][name]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build(DOCKERFILE, tmp_path_factory.mktemp("image"))


def _on_loopback(argv: list[str], port: int) -> list[str]:
    """The command with its port and listening address changed for a test on this machine."""
    exact = {"3000": str(port), "0.0.0.0": "127.0.0.1"}
    return [exact.get(part, part.replace("127.0.0.1:3000", f"127.0.0.1:{port}")) for part in argv]


def _train(image: Image, tmp_path: Path) -> Path:
    models = tmp_path / "bentoml"  # the `models` volume
    train = _service("train")
    command = [_expand(part, {}) for part in train["command"]]
    assert command[:3] == ["seqcast-train", "fit", "--config"]
    data = tmp_path / "series.csv"
    synthetic_frame(points=1500).to_csv(data, index=False)
    runs = ["--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--checkpoint.dirpath", str(tmp_path / "ck")]
    env = image.env(**{**train["environment"], "BENTOML_HOME": str(models)})
    argv = image.command(command) + ["--data.path", str(data), *runs, *TINY]
    done = subprocess.run(argv, cwd=image.app, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (models / "models" / "seqcast-lstm" / "latest").exists()
    return models


def test_the_image_runs_the_train_job_then_the_api_as_compose_would(
    image: Image, tmp_path: Path, redis_url: str
) -> None:
    models = _train(image, tmp_path)
    api = _service("api")
    assert api["command"] == image.instructions.cmd  # compose runs what the image runs by default
    settings = {
        key.removeprefix("SEQCAST_").lower(): _expand(str(value), {})
        for key, value in api["environment"].items()
        if key.startswith("SEQCAST_")
    }
    settings["session_store"] = redis_url  # compose's redis://redis:6379/0, here on loopback
    port = free_port()
    command = image.command(_on_loopback(image.instructions.cmd, port))
    with bentoml_serve(
        models, tmp_path / "api.log", port, cwd=image.app, command=command, base_env=image.env(), **settings
    ) as running:
        for probe in (api["healthcheck"]["test"][1:], image.instructions.healthcheck):
            health = subprocess.run(
                image.command(_on_loopback(probe, port)), env=image.env(), capture_output=True, text=True, timeout=30
            )
            assert health.returncode == 0, health.stderr
        assert settings["workers"] == "2" and running.process.poll() is None


def test_the_image_serves_its_own_copy_not_this_clone(image: Image) -> None:
    """What runs in the image is the copied tree: a module of the clone that the COPY set leaves out (bench/) is
    not importable there, so a left-out package of the service would not be either."""
    argv = image.command(["python", "-c", "import service.settings, training.cli, models.checkpoint, bench"])
    done = subprocess.run(argv, cwd=image.app, env=image.env(), capture_output=True, text=True, timeout=120)
    assert "No module named 'bench'" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        ("COPY service ./service\n", "", "No module named 'service'"),
        ("COPY models ./models\n", "", "No module named 'models'"),
    ],
)
def test_a_dockerfile_that_leaves_out_a_path_fails(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    original = DOCKERFILE.read_text()
    assert old in original
    broken = tmp_path / "Dockerfile"
    broken.write_text(original.replace(old, new, 1))
    try:
        image = build(broken, tmp_path / "image")
    except BuildFailed as failed:
        assert complaint in str(failed)
        return
    argv = image.command(_on_loopback(image.instructions.cmd, free_port()))
    done = subprocess.run(argv, cwd=image.app, env=image.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert complaint in done.stdout + done.stderr


def test_the_image_installs_what_it_runs_and_no_benchmark_or_development_package(image: Image) -> None:
    """The installed metadata's unconditional requirements hold the training job's and the service's needs
    only; the benchmarks' peers and the tools of the test suite come with extras."""
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps([r.split(';')[0] for r in m.requires('seqcast') if 'extra ==' not in r]))"
    )
    done = subprocess.run(
        image.command(["python", "-c", script]), cwd="/", env=image.env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = {re.split(r"[<>=\[ ]", requirement)[0].lower() for requirement in json.loads(done.stdout)}
    assert {"torch", "lightning", "bentoml", "redis"} <= names
    assert not names & {"darts", "neuralforecast", "statsforecast", "pytest", "mypy", "ruff", "schemathesis"}
