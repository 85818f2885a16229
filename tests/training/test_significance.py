"""The test that keeps a network only where it beats its anchor on validation by more than chance."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from models import Forecaster, ForecasterConfig
from models.features import input_width
from training.cli import SeqcastCLI
from training.datamodule import SeriesDataModule
from training.significance import beats_anchor
from training.task import ForecastTask


def _blocks(errors: np.ndarray, values: int = 16, rows: int = 1) -> np.ndarray:
    """Blocks of ``values`` scored each, whose mean errors are ``errors``, in ``rows`` rows of equal length."""
    row = np.repeat(np.arange(rows), -(-len(errors) // rows))[: len(errors)]
    return np.stack([errors * values, np.full(len(errors), float(values)), row], axis=1)


def test_a_steady_small_gain_beats_the_anchor() -> None:
    rng = np.random.default_rng(0)
    anchor = 1 + rng.random(40)
    won, why = beats_anchor(_blocks(anchor), _blocks(anchor * 0.97))
    assert won and why.startswith("beats it by more than chance") and "over 40 blocks" in why


def test_a_lead_within_its_noise_is_chance() -> None:
    """A network that leads on the mean of the blocks, but by less than the blocks' spread allows, as the best of
    many epochs on four yearly series did (it led by 0.22 per value, with a standard error of 1.3)."""
    anchor = np.array([1.0, 1.2, 0.9, 1.1])
    network = anchor - np.array([0.9, -0.4, 0.3, -0.2])  # mean gain 0.15, standard error 0.28
    won, why = beats_anchor(_blocks(anchor), _blocks(network))
    assert not won and why.startswith("does not beat it by more than chance: mean gain 0.1500")
    assert beats_anchor(_blocks(anchor), _blocks(anchor - np.array([0.5, 0.1, 0.3, 0.2])))[0]  # 0.28, 0.09


def test_neighbouring_blocks_that_move_together_need_a_wider_margin() -> None:
    """Neighbouring blocks of one series share targets, so their gains move together: pairs of equal gains in
    one row are worth fewer independent blocks than the same gains in rows of their own."""
    gains = np.repeat(np.random.default_rng(2).normal(0.05, 0.1, 10), 2)
    anchor = np.full(20, 1.0)

    def needed(rows: int) -> float:
        why = beats_anchor(_blocks(anchor, rows=rows), _blocks(anchor - gains, rows=rows))[1]
        return float(why.split("standard error ")[1])

    assert needed(rows=1) > 1.3 * needed(rows=20)


def test_one_block_is_too_few_to_tell() -> None:
    won, why = beats_anchor(_blocks(np.array([2.0])), _blocks(np.array([0.1])))
    assert not won and "1 validation block" in why


def test_blocks_of_other_data_are_refused() -> None:
    with pytest.raises(ValueError, match="validation blocks differ"):
        beats_anchor(_blocks(np.ones(3)), _blocks(np.ones(3), values=8))


def _trend_run(tmp_path: Path) -> SeqcastCLI:
    """A fit's state after training, without the trainer: a model of changes from the last value on a steady
    trend with noise, whose last value falls further behind at every step ahead."""
    rng = np.random.default_rng(0)
    steps = np.arange(400)
    frame = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=400, freq="h"), "y": 0.5 * steps})
    frame["y"] += rng.normal(0, 0.3, 400)
    frame.to_csv(tmp_path / "trend.csv", index=False)
    sizes = dict(input_size=48, horizon=6, val_size=60, test_size=60, chunk_length=96, warmup=6)
    data = SeriesDataModule(path=str(tmp_path / "trend.csv"), **sizes)  # type: ignore[arg-type]
    data.setup()
    config = ForecasterConfig(input_dim=input_width((), (), ()), horizon=6, hidden_size=8, change_from_last=True)
    run = object.__new__(SeqcastCLI)  # the attributes LightningCLI would set, and nothing else
    run.model, run.datamodule = ForecastTask(Forecaster(config)), data
    run.untrained = run.untrained_baseline()
    return run


def _trained(run: SeqcastCLI, tmp_path: Path, head_bias: np.ndarray, score: float, mode: str = "min") -> None:
    """Gives ``run`` a best checkpoint whose head adds ``head_bias`` to the last value, and a checkpoint callback
    that claims it scored ``score`` on validation."""
    network = Forecaster(run.model.network.config)
    network.load_state_dict(run.model.network.state_dict())
    with torch.no_grad():
        network.head.bias.copy_(torch.from_numpy(head_bias).float())
    checkpoint = run.model.with_network(network).seqcast_checkpoint(run.datamodule, epoch=3, global_step=30)
    torch.save({"seqcast": checkpoint.to_payload()}, tmp_path / "best.ckpt")
    saver = ModelCheckpoint(monitor="val_loss", mode=mode)
    saver.best_model_path, saver.best_model_score = str(tmp_path / "best.ckpt"), torch.tensor(score)
    run.trainer = SimpleNamespace(checkpoint_callback=saver)  # type: ignore[assignment]


def test_fit_keeps_a_network_that_follows_the_trend_and_not_one_that_only_claims_a_lower_loss(
    tmp_path: Path,
) -> None:
    run = _trend_run(tmp_path)
    assert run.untrained is not None
    step = float(np.diff(run.datamodule.scaled_targets[0]).mean())  # the trend per step, scaled
    _trained(run, tmp_path, step * np.arange(1, 7), score=run.untrained.loss * 0.5)
    kept, checkpoint = run.chosen_checkpoint()
    assert kept.endswith("best.ckpt") and checkpoint.metadata["global_step"] == 30
    # Offsets that help nowhere, from an epoch said to score below the last value: the blocks say otherwise.
    _trained(run, tmp_path, np.random.default_rng(1).normal(0, 0.5, 6), score=run.untrained.loss * 0.9)
    kept, checkpoint = run.chosen_checkpoint()
    assert kept.startswith("the last value alone") and "does not beat it by more than chance" in kept
    assert checkpoint is run.untrained.checkpoint
    _trained(run, tmp_path, step * np.arange(1, 7), score=run.untrained.loss * 1.1)
    assert run.chosen_checkpoint()[1] is run.untrained.checkpoint  # no better even by its own score
    # A callback that keeps the highest score measures something the anchor's loss does not compare with.
    _trained(run, tmp_path, np.zeros(6), score=run.untrained.loss * 2, mode="max")
    assert run.chosen_checkpoint()[0].endswith("best.ckpt")
