"""The service serving the tiny trained model, with its defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.servers import Service, bentoml_serve


@pytest.fixture(scope="session")
def service(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with its defaults: in-memory sessions, one worker."""
    with bentoml_serve(model_home, tmp_path_factory.mktemp("logs") / "serve.log") as running:
        yield running


@pytest.fixture
def client(service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http
