"""Progress lines for a log: a training run whose output goes to a file, a container log or CI shows where it is.

Lightning's progress bar redraws one line with carriage returns, which a log keeps as one unreadable line
written at the end (or never, when the run is killed). Without a terminal, this prints a plain line every
``every_n_batches`` batches and one after each epoch (its val_loss where it validated), flushed at once.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, Timer


def _elapsed(since: float) -> str:
    return str(timedelta(seconds=round(time.monotonic() - since)))


class ProgressLines(Callback):
    def __init__(self, every_n_batches: int = 50, when: str = "no_terminal") -> None:
        """
        Args:
            every_n_batches: training batches between two lines.
            when: ``no_terminal`` (stdout is not a terminal, where the progress bar is off), ``always`` or
                ``never``.
        """
        if every_n_batches < 1:
            raise ValueError(f"every_n_batches must be >= 1, got {every_n_batches}")
        self.every_n_batches = every_n_batches
        self.enabled = when == "always" or (when == "no_terminal" and not sys.stdout.isatty())
        self._started = time.monotonic()
        self._validated = False

    def _print(self, trainer: L.Trainer, line: str) -> None:
        if self.enabled and trainer.is_global_zero:
            epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            print(f"epoch {trainer.current_epoch}{epochs} {line} [{_elapsed(self._started)}]", flush=True)  # noqa: T201

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % self.every_n_batches == 0:
            loss = trainer.callback_metrics.get("train_loss")
            shown = f" train_loss {float(loss):.4f}" if loss is not None else ""
            self._print(trainer, f"batch {batch_idx + 1}/{trainer.num_training_batches}{shown}")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the epoch's validation and the checkpoint it made, so that the best score includes this epoch.
        # With check_val_every_n_epoch above 1 most epochs do not validate: they show their training loss rather
        # than repeat an older val_loss as if it were new.
        validated, self._validated = self._validated, False
        if not validated:
            loss = trainer.callback_metrics.get("train_loss")  # logged per step: the epoch's last batch
            self._print(trainer, f"train_loss {float(loss):.4f} (last batch)" if loss is not None else "trained")
            return
        loss = trainer.callback_metrics.get("val_loss")
        saver = trainer.checkpoint_callback
        best = getattr(saver, "best_model_score", None)
        shown = f"val_loss {float(loss):.4f}" if loss is not None else "validated"
        self._print(trainer, shown + (f" (best {float(best):.4f})" if best is not None else ""))


def stop_reason(trainer: L.Trainer) -> str:
    """Why fit ended, and how to go on where that helps: the time limit, early stopping or the epoch limit."""
    epochs = f"after {trainer.current_epoch} of {trainer.max_epochs} epochs"
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)  # type: ignore[attr-defined]
    if timer is not None and (timer.time_remaining() or 0) <= 0:
        limit = timedelta(seconds=round(timer.time_elapsed()))
        return (
            f"stopped on its time limit {epochs} (trainer.max_time, {limit} trained): to "
            "train longer, rerun with a larger --trainer.max_time and --ckpt_path last, which goes on from the "
            "last epoch; the limit counts the time already trained"
        )
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)  # type: ignore[attr-defined]
    if stopper is not None and stopper.stopped_epoch > 0:
        return f"stopped early {epochs}: {stopper.monitor} had not improved for {stopper.patience} validations"
    return f"trained to its epoch limit ({trainer.max_epochs}, trainer.max_epochs)"
