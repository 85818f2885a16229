"""Shared fixtures: small synthetic series, a tiny trained model in a store of its own, a Redis server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:
    from bench.servers import Service

ROOT = Path(__file__).resolve().parent.parent

# `make test-fast` runs what starts no server and no subprocess: `-m "not process"`. A test is marked by the
# fixtures it uses (each stands for a server, a trained model or a subprocess); one that starts a process by
# itself carries `pytestmark = pytest.mark.process`. In the fast tier, starting one anyway fails the test, so a
# missing mark is found, not guessed.
PROCESS_FIXTURES = frozenset({"model_home", "service", "client", "redis_url", "image", "k8s", "small"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "process: starts a server or a subprocess (left out of make test-fast)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.process)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_tier = "not process" in (request.config.getoption("-m") or "")
    if fast_tier and request.node.get_closest_marker("process") is None:

        def refuse(*args: object, **kwargs: object) -> None:
            raise RuntimeError(f"{request.node.nodeid} starts a process: mark it with pytest.mark.process")

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def synthetic_frame(points: int = 2000, seed: int = 0, series: int = 1, freq: str = "30min") -> pd.DataFrame:
    """Half-hourly series with a daily cycle driven by a temperature-like covariate, plus noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(series):
        ds = pd.date_range("2024-01-01", periods=points, freq=freq)
        phase = 2 * np.pi * np.arange(points) / 48
        temperature = 15 + 5 * np.sin(phase - 1.0) + rng.normal(0, 0.5, points)
        y = 10 + index + 2 * np.sin(phase) + 0.3 * temperature + rng.normal(0, 0.2, points)
        frame = pd.DataFrame({"ds": ds, "y": y, "temperature": temperature})
        if series > 1:
            frame.insert(0, "unique_id", f"s{index}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def hourly_counts_frame(days: int = 84, series: int = 3, seed: int = 0) -> pd.DataFrame:
    """Hourly event counts as such data is exported: no row for an hour without an event. Busy days and quiet
    nights, weekends far quieter than weekdays (so a week back says more than a day back), and series of
    different levels."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=24 * days, freq="h")  # a Monday
    day = np.exp(-0.5 * ((ds.hour.to_numpy() - 14) / 3.5) ** 2)  # a peak mid-afternoon, nothing at night
    week = np.where(ds.dayofweek.to_numpy() >= 5, 0.25, 1.0)
    frames = []
    for index in range(series):
        counts = rng.poisson((2 + 3 * index) * day * week + 0.05)
        frame = pd.DataFrame({"unique_id": f"site{index}", "ds": ds, "y": counts})
        frames.append(frame[frame.y > 0])
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    path = tmp_path / "series.csv"
    synthetic_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def bentoml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return home


# Overrides that shrink the committed configs to a model and data set that train in seconds.
SMALL = [
    "--data.input_size",
    "48",
    "--data.horizon",
    "12",
    "--data.val_size",
    "200",
    "--data.test_size",
    "200",
    "--data.chunk_length",
    "144",
    "--data.chunk_stride",
    "48",
    "--data.warmup",
    "12",
    "--data.batch_size",
    "16",
    "--data.future_covariates",
    "[temperature]",
    "--data.calendar",
    "[time_of_day]",
    "--model.network.init_args.config.hidden_size",
    "16",
    "--model.network.init_args.config.head_hidden",
    "16",
]


# configs/gru.yaml holds what differs from the LSTM's config; LightningCLI stacks the two.
GRU = ("configs/lstm.yaml", "configs/gru.yaml")


def training_command(
    workdir: Path, *extra: str, config: str | tuple[str, ...] = GRU
) -> tuple[list[str], dict[str, str]]:
    """The `seqcast-train fit` command (and its environment) on synthetic data in ``workdir``, exporting into
    ``workdir/bentoml``."""
    data = workdir / "series.csv"
    if not data.exists():
        synthetic_frame(points=1500).to_csv(data, index=False)
    configs = (config,) if isinstance(config, str) else config
    command = [
        sys.executable,
        "-m",
        "training.cli",
        "fit",
        *(part for path in configs for part in ("--config", str(ROOT / path))),
        "--data.path",
        str(data),
        "--trainer.logger.init_args.save_dir",
        str(workdir / "runs"),
        "--checkpoint.dirpath",
        str(workdir / "checkpoints"),
        "--trainer.max_time",
        "null",
        *SMALL,
        *extra,
    ]
    return command, {**os.environ, "BENTOML_HOME": str(workdir / "bentoml"), "PYTHONPATH": str(ROOT)}


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root; asserts that it succeeded and returns it."""
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def run_training(
    workdir: Path, *extra: str, config: str | tuple[str, ...] = GRU, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs `training_command`; with ``check``, asserts that it succeeded."""
    command, env = training_command(workdir, *extra, config=config)
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BENTOML_HOME holding one seqcast-forecaster: an LSTM trained for 2 epochs on synthetic data."""
    workdir = tmp_path_factory.mktemp("model")
    # Two epochs do not beat seasonal naive; the service tests need a model, not a good one.
    run_training(workdir, "--trainer.max_epochs", "2", "--force_export", "true", config="configs/lstm.yaml")
    return workdir / "bentoml"


@pytest.fixture(scope="session")
def service(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with its defaults: in-memory sessions, one worker."""
    from bench.servers import bentoml_serve

    with bentoml_serve(model_home, tmp_path_factory.mktemp("logs") / "serve.log") as running:
        yield running


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from bench.servers import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
