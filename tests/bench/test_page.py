from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.page import PAGE, page
from tests.conftest import ROOT


def test_the_committed_benchmarks_page_is_what_report_makes_of_the_committed_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert PAGE.read_text() == page(Path("bench/results")), "rerun `seqcast-bench report` and commit the page"


def test_a_changed_result_changes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "bench" / "results", tmp_path / "bench" / "results")
    before = page(Path("bench/results"))
    probes = tmp_path / "bench" / "results" / "probes.json"
    body = json.loads(probes.read_text())
    body["rows"][0][4] = 987.0
    probes.write_text(json.dumps(body))
    after = page(Path("bench/results"))
    assert after != before and "| 987 |" in after
    assert "![soak](../bench/results/soak.png)" in after
