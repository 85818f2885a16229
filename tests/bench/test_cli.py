from __future__ import annotations

import importlib.util

import pytest

from bench.cli import main


@pytest.mark.parametrize(
    ("argv", "missing"),
    [(["train", "--peers", "darts-rnn,nf-lstm"], "darts"), (["serve", "--peers", "rayserve"], "ray")],
)
def test_a_benchmark_whose_peers_are_not_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], missing: str
) -> None:
    """Ray's serve module is looked for by its package: asking for ``ray.serve`` without Ray raises."""
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == missing else found(name))
    with pytest.raises(SystemExit):
        main(argv)
    assert f"needs {missing}: pip install -e '.[peers]'" in capsys.readouterr().err


def test_serve_peers_names_the_peers_it_knows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--peers", "starlette,nginx"])
    assert "--peers: unknown ['nginx']; choose from starlette, litserve, rayserve" in capsys.readouterr().err
