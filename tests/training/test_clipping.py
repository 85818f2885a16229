"""Gradient clipping in an exploding setup: a relu RNN with expanding recurrent weights on long sequences."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from models import Forecaster, ForecasterConfig
from training.task import ForecastTask


class RecordingTask(ForecastTask):
    """Records the gradients the optimizer steps with, right after Lightning's clipping."""

    applied_norms: list[float]
    largest_entries: list[float]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):  # type: ignore[no-untyped-def]
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        self.applied_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        self.largest_entries.append(max(float(g.abs().max()) for g in grads))


class AppliedGradients(L.Callback):
    """Collects each step's loss and the logged (pre-clipping) gradient norm."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.largest: list[float] = []
        self.losses: list[float] = []
        self.pre_clip: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        self.losses.append(float(outputs["loss"]))
        self.pre_clip.append(float(trainer.callback_metrics["grad_norm"]))


def _exploding_run(clip_val: float | None, algorithm: str = "norm", steps: int = 6) -> AppliedGradients:
    torch.manual_seed(0)
    network = Forecaster(
        ForecasterConfig(input_dim=2, horizon=4, cell="rnn", nonlinearity="relu", hidden_size=16, num_layers=1)
    )
    with torch.no_grad():
        network.rnn.weight_hh_l0.copy_(1.05 * torch.eye(16))  # expanding recurrence: 1.05^300 ≈ 2e6
    length = 300
    x = torch.rand(8, length, 2)
    targets = torch.randn(8, length, 4)
    mask = torch.ones(8, length, 4, dtype=torch.bool)
    no_future = torch.zeros(8, length, 4, 0)
    recorder = AppliedGradients()
    trainer = L.Trainer(
        max_steps=steps,
        gradient_clip_val=clip_val,
        gradient_clip_algorithm=algorithm,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    task = RecordingTask(network, lr=1e-3, schedule="constant", point_loss="mse")
    task.applied_norms, task.largest_entries = recorder.norms, recorder.largest
    trainer.fit(task, DataLoader(TensorDataset(x, no_future, targets, mask), batch_size=8))
    return recorder


def test_without_clipping_the_applied_gradient_is_huge() -> None:
    run = _exploding_run(None, steps=1)
    assert run.norms[0] > 1e4 or not torch.isfinite(torch.tensor(run.norms[0]))


def test_norm_clipping_bounds_the_applied_gradient_and_keeps_the_loss_finite() -> None:
    run = _exploding_run(1.0)
    assert len(run.norms) == 6
    assert run.pre_clip[0] > 1e4  # the logged norm is the one before clipping
    assert max(run.norms) <= 1.0 + 1e-4
    assert all(torch.isfinite(torch.tensor(run.losses)))


def test_value_clipping_bounds_every_gradient_entry() -> None:
    run = _exploding_run(0.5, algorithm="value", steps=2)
    assert max(run.largest) <= 0.5
    assert run.pre_clip[0] > 1e4


@pytest.mark.parametrize("threshold", [0.1, 5.0])
def test_norm_threshold_is_respected_whatever_it_is(threshold: float) -> None:
    run = _exploding_run(threshold, steps=1)
    assert run.norms[0] == pytest.approx(threshold, rel=1e-3)
