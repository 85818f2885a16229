"""What `seqcast-train` offers, in-process: only commands that work."""

from __future__ import annotations

import pytest

from training.cli import main


def test_only_the_commands_that_work_are_offered(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--help"])
    usage = capsys.readouterr().out
    for command in ("fit", "validate", "check", "backtest", "models"):
        assert f"\n  {command} " in usage
    for gone in ("test", "predict"):  # the task has no steps for them; every fit evaluates the test part
        with pytest.raises(SystemExit):
            main([gone])
        assert "invalid choice" in capsys.readouterr().err
