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


def test_serve_peers_names_the_peers_it_knows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--peers", "starlette,nginx"])
    assert "--peers: unknown ['nginx']; choose from starlette, litserve, rayserve" in capsys.readouterr().err


def test_a_missing_ray_names_the_extra_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "ray" else found(name))
    with pytest.raises(SystemExit):
        main(["serve", "--peers", "rayserve"])
    assert "needs ray: pip install -e '.[peers]'" in capsys.readouterr().err
