"""Which model `bentoml serve` serves when SEQCAST_MODEL_TAG is unset: the store's only forecaster name, or a
refusal to start that lists the names, in a real model store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.process  # every test here starts a subprocess

STORE = """
import bentoml
for name in {names!r}:
    with bentoml.models.create(name, labels={{"data": name}}, metadata={{"format_version": 2, "features": {{}}}}):
        pass
with bentoml.models.create("someone-elses-model", metadata={{}}):  # not a seqcast forecaster
    pass
"""
CHOSEN = "from service.model_choice import chosen_tag; import os; print(chosen_tag(os.environ.get('TAG')))"


def _python(home: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)


def test_the_only_name_is_served_and_several_are_refused_by_name(tmp_path: Path) -> None:
    empty = _python(tmp_path / "empty", CHOSEN)
    assert empty.returncode != 0 and "the model store holds no seqcast forecaster" in empty.stderr
    _python(tmp_path / "one", STORE.format(names=["seqcast-taylor"])).check_returncode()
    assert _python(tmp_path / "one", CHOSEN).stdout.strip() == "seqcast-taylor:latest"

    home = tmp_path / "two"
    _python(home, STORE.format(names=["seqcast-lstm", "seqcast-taylor"])).check_returncode()
    refused = _python(home, "import service.service")  # what `bentoml serve` imports first
    assert refused.returncode != 0
    assert "model_tag: the model store holds 2 forecasters (seqcast-lstm, seqcast-taylor)" in refused.stderr
    assert "set SEQCAST_MODEL_TAG" in refused.stderr
    assert _python(home, CHOSEN, TAG="seqcast-lstm:latest").stdout.strip() == "seqcast-lstm:latest"
