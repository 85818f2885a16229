"""The LightningModule: loss, optimisation and logging around a forecaster it is given."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import grad_norm

from models.checkpoint import Checkpoint
from models.forecaster import Forecaster
from training.datamodule import SeriesDataModule


def _block_sums(values: np.ndarray, length: int) -> np.ndarray:
    """Sums of ``values`` over consecutive blocks of ``length``; a shorter rest joins the last whole block."""
    starts = np.arange(0, len(values), length)
    if len(starts) > 1 and len(values) - starts[-1] < length:
        starts = starts[:-1]
    return np.add.reduceat(values, starts)


# inputs (B, L, D), known-ahead features (B, L, H, F), targets (B, L, H), mask (B, L, H)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def pinball_loss(forecast: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Elementwise quantile loss; forecast (..., Q), target (...), quantiles (Q,)."""
    error = target.unsqueeze(-1) - forecast
    return torch.maximum(quantiles * error, (quantiles - 1) * error).mean(-1)


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the run stops before any weights are updated with it."""


class ForecastTask(L.LightningModule):
    def __init__(
        self,
        network: Forecaster,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        schedule: Literal["cosine", "constant"] = "cosine",
        point_loss: Literal["mse", "mae", "mape"] = "mae",
        origin_stride: int = 1,
    ) -> None:
        """
        Args:
            network: the forecaster to train.
            lr: AdamW's peak learning rate.
            weight_decay: AdamW's decoupled weight decay.
            schedule: cosine decay to zero over the run's steps, or a constant rate.
            point_loss: loss of a point forecaster; a quantile forecaster uses the pinball loss. ``mape``
                divides each absolute error by the actual value in the target's own units, so a low-demand
                day counts as much as a peak, as it does in the MAPE reported.
            origin_stride: train on the forecasts from every n-th step of a chunk, from a random first step
                each batch. Neighbouring origins tell nearly the same thing, and the head's cost grows with
                their number (times the horizon, with a shared decoder). Validation reads every step.
        """
        if origin_stride < 1:
            raise ValueError(f"origin_stride must be >= 1, got {origin_stride}")
        super().__init__()
        # The network is a module, not a hyperparameter: its config travels in the seqcast checkpoint.
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.quantiles: torch.Tensor
        self.register_buffer("quantiles", torch.tensor(network.config.quantiles), persistent=False)

    def with_network(self, network: Forecaster) -> ForecastTask:
        """A task of the same loss and optimisation around another network."""
        options = inspect.signature(type(self)).parameters.values()
        kept = {o.name: self.hparams.get(o.name, o.default) for o in options if o.name != "network"}
        return type(self)(network, **kept)

    def masked_loss(self, batch: Batch, origin_stride: int = 1, data: SeriesDataModule | None = None) -> torch.Tensor:
        """The batch's loss; ``data``: the data module it comes from, by default the one being fitted."""
        elementwise, mask = self.weighted_errors(batch, origin_stride, data)
        return (elementwise * mask).sum() / mask.sum().clamp(min=1e-12)  # mask: 0, or its series' weight

    def weighted_errors(
        self, batch: Batch, origin_stride: int = 1, data: SeriesDataModule | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss at every origin and step ahead (B, L', H) and its mask: 0, or the series' weight."""
        x, future, targets, mask = batch
        outputs, _ = self.network.encode(x)  # (B, L, hidden)
        hidden = self.network.readout(outputs)  # (B, L, [H,] hidden)
        anchor = self.network.anchor(x)  # (B, L[, H]) what each origin's forecasts are changes from, or None
        if origin_stride > 1:
            first = int(torch.randint(origin_stride, ()))
            hidden, future, targets, mask = (part[:, first::origin_stride] for part in (hidden, future, targets, mask))
            anchor = None if anchor is None else anchor[:, first::origin_stride]
        forecast = self.network.decode(hidden, future, anchor)  # (B, L', H, Q)
        if self.network.config.quantiles:
            elementwise = pinball_loss(forecast, targets, self.quantiles)
        elif self.hparams["point_loss"] == "mse":
            elementwise = (forecast.squeeze(-1) - targets) ** 2
        elif self.hparams["point_loss"] == "mape":
            mean, std = self.target_scaling(data)
            actual = (targets * std + mean).abs().clamp(min=1e-8 * std)
            elementwise = (forecast.squeeze(-1) - targets).abs() * std / actual
        else:
            elementwise = (forecast.squeeze(-1) - targets).abs()
        return elementwise, mask

    def target_scaling(self, data: SeriesDataModule | None = None) -> tuple[float, float]:
        """The target's training mean and standard deviation in ``data``, by default the data module being fitted."""
        data = data if data is not None else self.trainer.datamodule  # type: ignore[attr-defined]
        if data.series_scaling:
            # One mean and deviation would turn a series' scaled error into another's percentage.
            raise ValueError(
                "model.point_loss 'mape' needs one scaling for all series: set data.per_series_scaling false"
            )
        if data.log_target:
            # In logs the error would be a share of log(1 + y), which is near zero for values near zero.
            raise ValueError("model.point_loss 'mape' reads the target in its units: set data.log_target false")
        scaling = data.scaling
        return scaling.mean[0], scaling.std[0]

    def on_fit_start(self) -> None:
        self._seed = torch.initial_seed()  # the run's seed (seed_everything), the same when a run resumes

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Dropout draws from the global stream; seeding it per step makes a resumed run repeat the masks an
        # uninterrupted run would have drawn, so both end with the same weights.
        torch.manual_seed(self._seed + self.global_step)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.masked_loss(batch, self.hparams["origin_stride"])
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"train_loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}: stopped "
                "before the weights took it; nothing is exported. Lower model.lr or check the data's scale."
            )
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.log("val_loss", self.masked_loss(batch), prog_bar=True, sync_dist=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning clips after this hook, so this is the norm the clipping threshold is judged against.
        self.log("grad_norm", grad_norm(self.network, norm_type=2)["grad_2.0_norm_total"])

    def configure_optimizers(self) -> Any:
        hparams = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hparams["lr"], weight_decay=hparams["weight_decay"])
        if hparams["schedule"] == "constant":
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        """The network in eval mode inside, in the mode it was in after."""
        was_training = self.network.training
        self.network.eval()
        try:
            yield
        finally:
            self.network.train(was_training)

    @torch.no_grad()
    def validation_loss(self, data: SeriesDataModule) -> float:
        """The network's loss over ``data``'s validation part as it is now, outside any trainer: each batch's
        loss weighted by its size, as Lightning averages ``val_loss`` on one device; NaN without batches."""
        total = count = 0.0
        with self._evaluating():
            for batch in data.val_dataloader():
                size = len(batch[0])
                total, count = total + float(self.masked_loss(batch, data=data)) * size, count + size
        return total / count if count else float("nan")

    @torch.no_grad()
    def validation_blocks(self, data: SeriesDataModule) -> np.ndarray:
        """(N, 3): per block of a horizon of origins in one row of ``data``'s validation part, the sum of the
        weighted errors, the number of values scored and the row's number, the network as it is now (see
        training/significance.py). A row's blocks run from its first scored origin to its last, in order; a
        shorter rest joins the last whole block. The same data gives the same blocks for every network."""
        blocks: list[np.ndarray] = []
        with self._evaluating():
            for batch in data.val_dataloader():
                elementwise, mask = self.weighted_errors(batch, data=data)
                sums, counts = (elementwise * mask).sum(-1).double(), (mask > 0).sum(-1).double()
                for row_sums, row_counts in zip(sums.cpu().numpy(), counts.cpu().numpy(), strict=True):
                    scored = np.flatnonzero(row_counts)
                    if len(scored):
                        span, horizon = slice(scored[0], scored[-1] + 1), mask.shape[-1]
                        row = [_block_sums(values[span], horizon) for values in (row_sums, row_counts)]
                        blocks.append(np.stack([*row, np.full(len(row[0]), len(blocks))], axis=1))
        return np.concatenate(blocks) if blocks else np.zeros((0, 3))

    def seqcast_checkpoint(self, data: SeriesDataModule, epoch: int, global_step: int) -> Checkpoint:
        """The network in seqcast's own format as it is now, trained on ``data``: at epoch ``epoch`` (from 0)
        after ``global_step`` steps. Its tensors are the network's own, which later steps update in place."""
        return Checkpoint(
            config=self.network.config,
            features=data.features,
            scaling=data.scaling,
            state_dict=self.network.state_dict(),
            # input_size: the window a served session keeps to be rebuilt under a later model (service/migration.py)
            metadata={
                "epoch": epoch,
                "global_step": global_step,
                "data_path": data.path,
                "input_size": data.input_size,
            },
            series_scaling=data.series_scaling,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every Lightning checkpoint (best and last) also carries seqcast's own format, so any of them can be
        # evaluated and exported without the LightningModule.
        data = self.trainer.datamodule  # type: ignore[attr-defined]
        checkpoint["seqcast"] = self.seqcast_checkpoint(data, self.current_epoch, self.global_step).to_payload()
