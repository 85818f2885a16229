from __future__ import annotations

import importlib.util

import pytest

from bench.cli import main


def test_a_benchmark_whose_peers_are_not_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "darts" else found(name))
    with pytest.raises(SystemExit):
        main(["train", "--peers", "darts-rnn,nf-lstm"])
    assert "needs darts: pip install -e '.[peers]'" in capsys.readouterr().err
