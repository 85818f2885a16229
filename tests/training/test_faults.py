"""Training faults: a run killed mid-epoch resumes to the same weights; a non-finite loss stops the run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_training, training_command

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess

# Long enough epochs (about 15 batches) that a kill lands inside one.
RUN = ["--trainer.max_epochs", "4", "--data.chunk_stride", "4", "--export", "false"]


def _last(workdir: Path) -> dict | None:  # type: ignore[type-arg]
    try:
        return torch.load(workdir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    except (FileNotFoundError, RuntimeError, EOFError):  # absent, or caught mid-write
        return None


def test_a_fit_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    run_training(whole, *RUN)

    command, env = training_command(killed, *RUN)
    process = subprocess.Popen(command, cwd=killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # An epoch's length is timed between the first two checkpoints: start-up time would overshoot it.
        started, seen = time.monotonic(), {}
        while (state := _last(killed)) is None or state["epoch"] < 1:
            assert process.poll() is None and time.monotonic() - started < 240, "the run ended before it was killed"
            if state is not None:
                seen.setdefault(state["epoch"], time.monotonic())
            time.sleep(0.02)
        epoch_s = time.monotonic() - seen.get(0, started)
        time.sleep(epoch_s / 2)  # into the third epoch
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    interrupted = _last(killed)
    assert interrupted is not None and interrupted["epoch"] < 3, "the kill came after the last epoch"

    run_training(killed, *RUN, "--ckpt_path", "last")
    expected, resumed = _last(whole), _last(killed)
    assert expected is not None and resumed is not None and resumed["epoch"] == expected["epoch"] == 3
    for name, tensor in expected["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, rtol=0, atol=0, msg=name)


def test_a_non_finite_loss_stops_the_run_with_a_message_and_exports_nothing(tmp_path: Path) -> None:
    # A learning rate of 1e30 takes the weights to ~1e30 in one step, and the next loss overflows.
    done = run_training(tmp_path, "--trainer.max_epochs", "3", "--model.lr", "1e30", check=False)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("training stopped: train_loss is nan") or "train_loss is inf" in message, message
    assert "nothing is exported" in message
    assert not list((tmp_path / "bentoml").glob("models/*/*/checkpoint.pt"))
