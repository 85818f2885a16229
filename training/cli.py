"""``seqcast-train``: LightningCLI over the forecast task and the series data module.

``fit`` trains, keeps the best checkpoint by validation loss, then evaluates that checkpoint on the test
part, writes the report and plots into the run folder and exports it to the BentoML model store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from models.checkpoint import Checkpoint, save_checkpoint
from models.features import future_width, input_width
from training.datamodule import SeriesDataModule
from training.evaluate import evaluate
from training.metrics import season_length
from training.task import ForecastTask, NonFiniteLoss


def checkpoint_from_lightning(path: str | Path) -> Checkpoint:
    """The seqcast checkpoint that ``ForecastTask`` embeds in every Lightning checkpoint."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return Checkpoint.from_payload(payload["seqcast"])


def write_evaluation(checkpoint: Checkpoint, data: SeriesDataModule, out: Path) -> dict[str, object]:
    """Evaluates on the test part and writes report.json, forecast.png and hidden_state.png into ``out``."""
    from training.plots import plot_forecasts, plot_hidden_state  # matplotlib only when a report is made

    report, forecasts = evaluate(checkpoint, data)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_forecasts(forecasts[0], checkpoint.config, out / "forecast.png")
    plot_hidden_state(forecasts[0], season_length(str(checkpoint.features.freq)), out / "hidden_state.png")
    return report


class SeqcastCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            ("data.past_covariates", "data.future_covariates", "data.calendar"),
            "model.network.init_args.config.input_dim",
            compute_fn=lambda past, future, calendar: input_width(past or (), future or (), calendar or ()),
        )
        parser.link_arguments(
            ("data.future_covariates", "data.calendar"),
            "model.network.init_args.config.future_dim",
            compute_fn=lambda future, calendar: future_width(future or (), calendar or ()),
        )
        parser.link_arguments("data.horizon", "model.network.init_args.config.horizon")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_loss",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:02d}-{val_loss:.4f}",
                "early_stopping.monitor": "val_loss",
                "early_stopping.patience": 5,
                # Clipping on by default: recurrent nets explode now and then, and one bad step ruins a run.
                "trainer.gradient_clip_val": 1.0,
                "trainer.gradient_clip_algorithm": "norm",
            }
        )
        parser.add_argument("--export", type=bool, default=True, help="publish the best checkpoint to BentoML")
        parser.add_argument(
            "--force_export", type=bool, default=False, help="publish even if it does not beat seasonal naive"
        )

    def after_fit(self) -> None:
        trainer = self.trainer
        # log_dir is broadcast from rank 0, so every process must ask for it before the others stop here.
        out = Path(trainer.log_dir or trainer.default_root_dir)
        saver = trainer.checkpoint_callback
        if not trainer.is_global_zero or not isinstance(saver, ModelCheckpoint):
            return
        best = saver.best_model_path or saver.last_model_path
        checkpoint = checkpoint_from_lightning(best)
        report = write_evaluation(checkpoint, self.datamodule, out)
        save_checkpoint(checkpoint, out / "checkpoint.pt")
        metrics = report["metrics"]
        print(f"evaluated {best} on {report['origins']} test origins; report in {out}")  # noqa: T201
        for name, values in metrics.items():  # type: ignore[attr-defined]
            print(f"  {name:>15}: MAPE {values['mape']:6.2f}%  MASE {values['mase']:.3f}  MAE {values['mae']:.4f}")  # noqa: T201
        options = self.config[self.subcommand]
        if options["export"]:
            from training.export import ExportRefused, check_beats_seasonal_naive, export_to_bentoml

            try:
                if not options["force_export"]:
                    check_beats_seasonal_naive(report)
            except ExportRefused as refused:
                sys.exit(f"not exported: {refused}")
            print(f"exported {export_to_bentoml(checkpoint, report)}")  # noqa: T201


def _close_process_group() -> None:
    """Tears down the DDP process group, if the run made one. A gloo group still alive when the interpreter exits
    can abort a rank after a successful run ("terminate called without an active exception", exit -6)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main() -> None:
    try:
        SeqcastCLI(ForecastTask, SeriesDataModule, save_config_kwargs={"overwrite": True})
    except NonFiniteLoss as error:
        sys.exit(f"training stopped: {error}")
    finally:
        _close_process_group()


if __name__ == "__main__":
    main()
