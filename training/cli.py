"""``seqcast-train``: LightningCLI over the forecast task and the series data module.

``fit`` checks the data, trains, keeps the best checkpoint by validation loss (a model with an anchor, the
smoothing or the last value: the untrained one where no epoch beats it by more than chance), then evaluates
that checkpoint on the test part, writes the report and plots into the run folder and exports it to the
BentoML model store under the run's model name. ``check`` reads a config's data and lists every problem
without training; ``backtest`` compares cells and the naive baselines over several test windows; ``models``
lists the store.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from models.checkpoint import Checkpoint, save_checkpoint
from models.features import future_width, input_width
from training.data import DataError
from training.datamodule import SeriesDataModule
from training.evaluate import evaluate
from training.metrics import season_length
from training.progress import ProgressLines, stop_reason
from training.significance import beats_anchor
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
    plot_forecasts(forecasts[0], checkpoint.config, out / "forecast.png", report["strongest_naive"])
    plot_hidden_state(forecasts[0], season_length(str(checkpoint.features.freq)), out / "hidden_state.png")
    return report


@dataclass(frozen=True, eq=False)
class Untrained:
    """The untrained forecaster of a model with an anchor, with its validation loss and blocks (see
    untrained_baseline)."""

    loss: float
    blocks: np.ndarray
    checkpoint: Checkpoint


class SeqcastCLI(LightningCLI):
    untrained: Untrained | None = None

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # No test or predict: the test part is evaluated after every fit, and the task has no steps for them.
        return {key: value for key, value in LightningCLI.subcommands().items() if key in ("fit", "validate")}

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
        parser.add_lightning_class_args(ProgressLines, "progress")
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
                # A bar redrawn with carriage returns is one unreadable line in a log; ProgressLines prints there.
                "trainer.enable_progress_bar": sys.stderr.isatty(),
            }
        )
        parser.add_argument("--export", type=bool, default=True, help="publish the best checkpoint to BentoML")
        parser.add_argument(
            "--force_export", type=bool, default=False, help="publish even if it does not beat the strongest naive"
        )
        parser.add_argument(
            "--model_name",
            type=Optional[str],  # noqa: UP045  # jsonargparse reads the annotation at run time
            default=None,
            help="name in the model store; default seqcast-<trainer.logger name>, e.g. seqcast-lstm",
        )

    def before_fit(self) -> None:
        # Before the trainer makes a run folder: data that cannot be trained on leaves nothing behind, and a name
        # the model store would refuse is refused before the training, not after it.
        self.datamodule.setup()
        self.export_name()
        self.prepare_training()

    def prepare_training(self) -> None:
        """Everything fitted or measured before the first step, on a data module that is set up."""
        self.prepare_seasonal()
        self.untrained = self.untrained_baseline()

    def untrained_baseline(self) -> Untrained | None:
        """For a smoothed model (``smoothed_seasons``) or one of changes from the last value
        (``change_from_last``): the untrained forecaster, which forecasts its anchor alone (the head's last layer
        starts at zero), with its validation loss. A network that training does not make better than its own
        anchor on validation, by more than chance, is not worth serving: this is kept instead."""
        if self.anchor is None:
            return None
        loss = self.model.validation_loss(self.datamodule)
        print(f"{self.anchor} alone: val_loss {loss:.4f}", flush=True)  # noqa: T201
        untrained = self.model.seqcast_checkpoint(self.datamodule, epoch=0, global_step=0)
        # A copy of the weights: training updates the network's own tensors in place.
        weights = {name: value.clone() for name, value in untrained.state_dict.items()}
        blocks = self.model.validation_blocks(self.datamodule)
        return Untrained(loss, blocks, replace(untrained, state_dict=weights))

    @property
    def anchor(self) -> str | None:
        """What the untrained network forecasts, by name; None where it forecasts nothing in particular, or for a
        quantile model, whose untrained quantiles would all be that anchor: intervals of no width."""
        config = self.model.network.config
        if config.quantiles:
            return None
        return "the smoothing" if config.smoothed_seasons else "the last value" if config.change_from_last else None

    def chosen_checkpoint(self) -> tuple[str, Checkpoint]:
        """What a fit keeps, and where it came from: the checkpoint of the best epoch by validation loss, or the
        untrained anchor where that epoch does not beat it by more than chance (see untrained_baseline)."""
        saver = self.trainer.checkpoint_callback
        assert isinstance(saver, ModelCheckpoint)
        best = saver.best_model_path or saver.last_model_path
        trained = checkpoint_from_lightning(best)
        # Only a lower-is-better validation loss is comparable with the anchor's.
        comparable = (saver.monitor, saver.mode) == ("val_loss", "min")
        if self.untrained is None or saver.best_model_score is None or not comparable:
            return best, trained
        untrained, score = self.untrained, float(saver.best_model_score)
        alone = f"{self.anchor} alone (val_loss {untrained.loss:.4f}, the best epoch's {score:.4f}"
        if untrained.loss <= score:
            return f"{alone})", untrained.checkpoint
        network = self.model.with_network(trained.build_model())
        won, why = beats_anchor(untrained.blocks, network.validation_blocks(self.datamodule))
        return (best, trained) if won else (f"{alone}, which {why})", untrained.checkpoint)

    def prepare_seasonal(self) -> None:
        """For a seasonal model: checks that its season fits the data's windows, and fits its seasonal
        coefficients to the training parts (a resumed run then restores its own)."""
        season, data = self.model.network.config.seasonal_lag, self.datamodule
        if not season:
            return
        # The loss starts at step warmup, which has a season before it; a window's last step needs a season and
        # one step, its change from a season before.
        short = [f"data.warmup is {data.warmup}"] if data.warmup < season else []
        short += [f"data.input_size is {data.input_size}"] if data.input_size <= season else []
        if short:
            sys.exit(
                f"{' and '.join(short)}: model.network.init_args.config.seasonal_lag is {season}, and forecasts read "
                f"before a season would be changes from zeros; set warmup to at least {season} and input_size to "
                f"at least {season + 1}"
            )
        from training.seasonal import fit_season_rates, seasonal_carry

        network = self.model.network
        parts = [z[: data.train_part(s).end] for s, z in zip(data.series, data.scaled_targets, strict=True)]
        if network.config.smoothed_seasons:
            try:
                rates = fit_season_rates(network, parts)
            except ValueError as short_data:
                sys.exit(f"model.network.init_args.config.smoothed_seasons: {short_data}")
            seasons = list(network.config.smoothed_seasons)
            named = f"seasons {seasons}" + (" and the level" if network.config.smoothed_level else "")
            print(f"smoothing rates {list(rates)} for {named}", flush=True)  # noqa: T201
            return
        carry = seasonal_carry(parts, season, data.horizon)
        with torch.no_grad():
            network.seasonal_carry.copy_(torch.from_numpy(carry))

    def export_name(self) -> str:
        from training.export import model_name

        logger = self.trainer.logger
        try:
            return model_name(self.config[self.subcommand]["model_name"], logger.name if logger is not None else None)
        except ValueError as error:
            sys.exit(str(error))

    def after_fit(self) -> None:
        trainer = self.trainer
        # log_dir is broadcast from rank 0, so every process must ask for it before the others stop here.
        out = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero or not isinstance(trainer.checkpoint_callback, ModelCheckpoint):
            return
        kept, checkpoint = self.chosen_checkpoint()
        report = write_evaluation(checkpoint, self.datamodule, out)
        save_checkpoint(checkpoint, out / "checkpoint.pt")
        print(stop_reason(trainer))  # noqa: T201
        print(f"evaluated {kept} on {report['origins']} test origins; report in {out}")  # noqa: T201
        for line in score_lines(report):
            print(line)  # noqa: T201
        options = self.config[self.subcommand]
        if options["export"]:
            self.export(checkpoint, report, options)

    def export(self, checkpoint: Checkpoint, report: dict[str, object], options: Any) -> None:
        from training.export import (
            ExportRefused,
            check_beats_strongest_naive,
            data_name,
            export_to_bentoml,
            model_labels,
        )

        try:
            if not options["force_export"]:
                check_beats_strongest_naive(report)
        except ExportRefused as refused:
            sys.exit(f"not exported: {refused}")
        name = self.export_name()
        data = self.datamodule
        labels = model_labels(checkpoint, report, data_name(data.path), len(data.series))
        print(f"exported {export_to_bentoml(checkpoint, report, name, labels)}")  # noqa: T201


def score_lines(report: dict[str, Any]) -> list[str]:
    """The report's scores, a line per method; the strongest naive is marked, an undefined MAPE says so."""
    lines = []
    for name, values in report["metrics"].items():
        mape = "   n/a " if values["mape"] is None else f"{values['mape']:6.2f}%"
        mark = "  <- strongest naive" if name == report["strongest_naive"] else ""
        lines.append(
            f"  {name:>20}: MASE {values['mase']:.3f}  sMAPE {values['smape']:6.2f}%  MAPE {mape}  "
            f"MAE {values['mae']:.4f}{mark}"
        )
    return lines


def _close_process_group() -> bool:
    """Tears down the DDP process group, if the run made one; says whether it did. A gloo group still alive when
    the interpreter exits can abort a rank after a successful run ("terminate called without an active
    exception", exit -6)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        return True
    return False


def _leave_distributed_run() -> None:
    """Ends a rank of a DDP run that succeeded without the interpreter's teardown. Threads of torch's C++ side
    (the TCP store's, gloo's) can still be joinable when static objects are destroyed there, which aborts the
    process after its work is done. Lightning's launcher watches the other ranks and SIGKILLs rank 0 when one
    exits non-zero, so an abort in rank 1 while rank 0 evaluates failed a whole run now and then. Everything a
    rank writes is written by now; only its streams and log handlers need flushing."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


USAGE = """usage: seqcast-train <command> [--config FILE ...] [options]

commands:
  init      write a config sized from your data: seqcast-train init --data.path my.csv > my.yaml
  fit       check the data, train, evaluate on the test part, export if it beats the strongest naive
  validate  the validation loss of a checkpoint (--ckpt_path)
  check     read the config's data and list every problem, without training
  backtest  train and score over several test windows: cells side by side with the naive baselines
  models    the forecasters in the model store, with their data and test scores

`seqcast-train <command> --help` lists a command's options."""


def cli(args: list[str] | None = None, **kwargs: Any) -> SeqcastCLI:
    return SeqcastCLI(ForecastTask, SeriesDataModule, save_config_kwargs={"overwrite": True}, args=args, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """``argv``: the arguments after the program's name; None reads sys.argv, which fit must keep: a DDP run
    starts its other processes with the same command line. After a distributed run that succeeded it does not
    return: the process exits (see _leave_distributed_run)."""
    given, argv = argv, sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command in ("check", "backtest", "init"):
        # They hand their options to LightningCLI as args, which warns when sys.argv holds any besides.
        sys.argv[1:] = []
    try:
        if command in ("", "-h", "--help"):
            print(USAGE)  # noqa: T201
        elif command == "check":
            from training.check import describe

            print("\n".join(describe(cli(rest, run=False, save_config_callback=None).datamodule)))  # noqa: T201
        elif command == "init":
            from training.sizing import main as init

            init(rest)
        elif command == "backtest":
            from training.backtest import main as backtest

            backtest(rest)
        elif command == "models":
            from training.store import print_models

            print_models(rest)
        else:
            cli(given)
    except DataError as error:
        sys.exit(f"data: {error}")
    except NonFiniteLoss as error:
        sys.exit(f"training stopped: {error}")
    finally:
        distributed = _close_process_group()
    if distributed:  # reached only when nothing was raised: a failed rank still exits with its error
        _leave_distributed_run()


if __name__ == "__main__":
    main()
