"""A tiny trained model in a model store of its own, and the service serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_training
from tests.servers import Service, bentoml_serve, redis_server


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BENTOML_HOME holding one seqcast-forecaster: an LSTM trained for 2 epochs on synthetic data."""
    workdir = tmp_path_factory.mktemp("model")
    run_training(workdir, "--trainer.max_epochs", "2", config="configs/lstm.yaml")
    return workdir / "bentoml"


@pytest.fixture(scope="session")
def service(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with its defaults: in-memory sessions, one worker."""
    with bentoml_serve(model_home, tmp_path_factory.mktemp("logs") / "serve.log") as running:
        yield running


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
