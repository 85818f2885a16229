"""Training speed and time to accuracy: seqcast's LSTM and GRU against Darts and NeuralForecast.

Every method trains on the same split of one series (a config's data section), reads the same standardised
target and covariates, has matched sizes (input length, hidden size, layers, horizon, batch size) and is
scored on the same test origins with the same MASE scale as ``seqcast-train``'s own report.

Peers train as their documentation shows: fixed-length windows from the training part, a set number of
epochs, no early stopping. seqcast trains from its config exactly as ``seqcast-train fit`` would (its own
epoch limit, early stopping, best checkpoint); its test MASE is also taken after every epoch (that
evaluation's time is not counted), which gives its accuracy after the peers' number of epochs and the time
it needs to reach each peer's final accuracy.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from bench.report import Table, figure, progress, save_figure
from models.checkpoint import Checkpoint
from training.datamodule import SeriesDataModule
from training.evaluate import evaluate, scored_origins
from training.metrics import Scores, point_metrics, season_length
from training.task import ForecastTask

PEERS = ("darts-rnn", "darts-blockrnn", "nf-lstm", "nf-gru")


@dataclass(frozen=True)
class Split:
    """One series, standardised as seqcast reads it, with the origins every method is scored on."""

    data: SeriesDataModule
    inputs: np.ndarray  # (T, D): scaled target, covariates, calendar
    train_end: int
    origins: np.ndarray  # (N,)
    actual: np.ndarray  # (N, H)
    mase_scale: float

    @classmethod
    def load(cls, data_options: dict[str, Any]) -> Split:
        data = SeriesDataModule(**data_options)
        data.setup()
        if len(data.series) != 1:
            raise ValueError(f"the train bench compares on one series; the data has {len(data.series)}")
        series = data.series[0]
        season = season_length(str(data.features.freq))
        origins, actual, scale = scored_origins(data, series, data.horizon, season)
        return cls(data, data.inputs[0], data.train_part(series).end, origins, actual, scale)

    @property
    def covariates(self) -> np.ndarray:
        return self.inputs[:, 1:]

    @property
    def known_ahead(self) -> np.ndarray:
        return self.inputs[:, self.data.features.known_ahead_columns]

    def unscale(self, forecast: np.ndarray) -> np.ndarray:
        return self.data.features.in_target_units(self.data.scaling.unscale_target(forecast))

    def score(self, forecast: np.ndarray) -> Scores:
        """forecast: (N, H) in the target's units."""
        return point_metrics(self.actual, forecast, np.full(len(self.origins), self.mase_scale))


@dataclass(frozen=True)
class Sizes:
    input_size: int
    horizon: int
    hidden_size: int
    num_layers: int
    batch_size: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sizes:
        network = config["model"]["network"]["init_args"]["config"]
        data = config["data"]
        hidden, layers = network["hidden_size"], network["num_layers"]
        return cls(data["input_size"], data["horizon"], hidden, layers, data["batch_size"])

    def windows(self, train_end: int) -> int:
        """Training windows of input_size + horizon steps in the training part."""
        return train_end - self.input_size - self.horizon + 1

    def steps_per_epoch(self, train_end: int) -> int:
        return math.ceil(self.windows(train_end) / self.batch_size)


@dataclass
class Result:
    method: str
    epochs: int
    seconds: float  # training wall time
    origins_trained: int  # forecast origins that carried a loss, over all epochs
    scores: Scores
    curve: list[tuple[float, float]] = field(default_factory=list)  # (training seconds, test MASE) per epoch


def time_to_reach(curve: list[tuple[float, float]], mase: float) -> float | None:
    """Training seconds at the first epoch whose test MASE is at most ``mase``; None if none is."""
    return next((seconds for seconds, reached in curve if reached <= mase), None)


def _peer_trainer_options(name: str, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
    # Darts and NeuralForecast build their trainers from ``pytorch_lightning``, which refuses callbacks
    # derived from ``lightning.pytorch``'s Callback.
    import pytorch_lightning

    class EpochLines(pytorch_lightning.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            if trainer.global_step % steps_per_epoch == 0:
                epoch = trainer.global_step // steps_per_epoch
                progress(f"train: {name} epoch {epoch}/{epochs}, {time.perf_counter() - self.start:.0f} s")

    return {
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "callbacks": [EpochLines()],
    }


def darts(block: bool, split: Split, sizes: Sizes, epochs: int, seed: int, workdir: Path) -> Result:
    """Darts' RNNModel (one-step LSTM over training_length windows, future covariates, recursive forecasts)
    or BlockRNNModel (LSTM encoder to a block of horizon values, past covariates only)."""
    from darts import TimeSeries
    from darts.models import BlockRNNModel, RNNModel

    name = "Darts BlockRNNModel (LSTM)" if block else "Darts RNNModel (LSTM)"
    times = split.data.series[0].timestamps
    target = TimeSeries.from_times_and_values(times, split.inputs[:, :1])
    windows, steps = sizes.windows(split.train_end), sizes.steps_per_epoch(split.train_end)
    options: dict[str, Any] = dict(
        model="LSTM",
        input_chunk_length=sizes.input_size,
        hidden_dim=sizes.hidden_size,
        n_rnn_layers=sizes.num_layers,
        batch_size=sizes.batch_size,
        n_epochs=epochs,
        random_state=seed,
        work_dir=str(workdir),
        pl_trainer_kwargs=_peer_trainer_options(name, steps, epochs),
    )
    if block:
        model: Any = BlockRNNModel(output_chunk_length=sizes.horizon, **options)
        covariates = {"past_covariates": TimeSeries.from_times_and_values(times, split.covariates)}
    else:
        model = RNNModel(training_length=sizes.input_size + sizes.horizon, **options)
        covariates = {"future_covariates": TimeSeries.from_times_and_values(times, split.known_ahead)}
    start = time.perf_counter()
    model.fit(target[: split.train_end], **covariates)
    seconds = time.perf_counter() - start
    histories = [target[: origin + 1] for origin in split.origins]
    many = {key: [value] * len(histories) for key, value in covariates.items()}
    predictions = model.predict(n=sizes.horizon, series=histories, show_warnings=False, **many)
    forecast = np.stack([p.values()[:, 0] for p in predictions])
    return Result(name, epochs, seconds, windows * epochs, split.score(split.unscale(forecast)))


def neuralforecast(cell: str, split: Split, sizes: Sizes, epochs: int, seed: int) -> Result:
    """NeuralForecast's LSTM or GRU: windows sampled from the series, an MLP decoder over the horizon that
    reads the future covariates, its default robust scaler on each window."""
    from neuralforecast import NeuralForecast
    from neuralforecast.models import GRU, LSTM

    name = f"NeuralForecast {cell.upper()}"
    future = [f"known_{index}" for index in range(split.known_ahead.shape[1])]
    frame = pd.DataFrame(split.known_ahead, columns=future)
    frame.insert(0, "y", split.inputs[:, 0])
    frame.insert(0, "ds", split.data.series[0].timestamps)
    frame.insert(0, "unique_id", "series")
    windows, steps = sizes.windows(split.train_end), sizes.steps_per_epoch(split.train_end)
    model = (LSTM if cell == "lstm" else GRU)(
        h=sizes.horizon,
        input_size=sizes.input_size,
        encoder_hidden_size=sizes.hidden_size,
        encoder_n_layers=sizes.num_layers,
        futr_exog_list=future,
        batch_size=1,  # series per batch: there is one
        windows_batch_size=sizes.batch_size,
        max_steps=steps * epochs,
        random_seed=seed,
        alias="forecast",
        **_peer_trainer_options(name, steps, epochs),
    )
    forecaster = NeuralForecast(models=[model], freq=split.data.features.freq)
    start = time.perf_counter()
    forecaster.fit(df=frame.iloc[: split.train_end])
    seconds = time.perf_counter() - start

    # One short series per origin, so a single predict call forecasts every origin.
    def rows(first: int, last: int) -> pd.DataFrame:
        return pd.concat([frame.iloc[o + first : o + last].assign(unique_id=f"{o:08d}") for o in split.origins])

    history = rows(1 - sizes.input_size, 1)
    ahead = rows(1, 1 + sizes.horizon).drop(columns="y")
    predicted = forecaster.predict(df=history, futr_df=ahead).sort_values(["unique_id", "ds"])
    forecast = predicted["forecast"].to_numpy().reshape(len(split.origins), sizes.horizon)
    return Result(name, epochs, seconds, windows * epochs, split.score(split.unscale(forecast)))


class TestCurve(Callback):
    """Test MASE after every training epoch, against training time that leaves this evaluation out."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.curve: list[tuple[float, float]] = []
        self.origins = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start, self.excluded, self.epochs = time.perf_counter(), 0.0, trainer.max_epochs

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, out: Any, batch: Any, *_: Any) -> None:
        mask = batch[3]  # (B, L, H): origins whose forecasts may carry a loss, before the task's stride
        self.origins += int(mask[..., 0].sum()) // pl_module.hparams["origin_stride"]

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        paused = time.perf_counter()
        data = trainer.datamodule  # type: ignore[attr-defined]
        assert isinstance(pl_module, ForecastTask)
        network = pl_module.network
        checkpoint = Checkpoint(network.config, data.features, data.scaling, network.state_dict(), {})
        mase = evaluate(checkpoint, data)[0]["metrics"]["streaming"]["mase"]
        self.curve.append((paused - self.start - self.excluded, mase))
        epoch = len(self.curve)
        progress(f"train: {self.name} epoch {epoch}/{self.epochs}, {self.curve[-1][0]:.0f} s, test MASE {mase:.3f}")
        self.excluded += time.perf_counter() - paused


def seqcast(config: Path, cell: str, workdir: Path, split: Split) -> Result:
    """Trains from the config exactly as ``seqcast-train fit`` does; scores the checkpoint fit keeps (the best
    by validation loss, or the untrained one of a model with an anchor), which is what would be exported."""
    from training.cli import SeqcastCLI

    name = f"seqcast {cell.upper()}"
    args = [
        *("--config", str(config), "--model.network.init_args.config.cell", cell),
        *("--trainer.logger", "false", "--trainer.enable_progress_bar", "false"),
        *("--trainer.enable_model_summary", "false", "--checkpoint.dirpath", str(workdir / cell)),
    ]
    curve = TestCurve(name)
    cli = SeqcastCLI(
        ForecastTask,
        SeriesDataModule,
        args=args,
        run=False,
        save_config_callback=None,
        trainer_defaults={"callbacks": [curve]},
    )
    cli.datamodule.setup()
    cli.prepare_training()  # a seasonal config's fitted coefficients, and the smoothing's own validation loss
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    report, _ = evaluate(cli.chosen_checkpoint()[1], split.data)
    seconds = curve.curve[-1][0] if curve.curve else 0.0
    return Result(name, len(curve.curve), seconds, curve.origins, report["metrics"]["streaming"], curve.curve)


def run(config: Path, cells: list[str], peers: list[str], epochs: int, seed: int, out: Path) -> Table:
    options = yaml.safe_load(config.read_text())
    split, sizes = Split.load(options["data"]), Sizes.from_config(options)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as workdir:
        for cell in cells:
            progress(f"train: seqcast {cell} from {config}")
            results.append(seqcast(config, cell, Path(workdir), split))
        runners: dict[str, Callable[[], Result]] = {
            "darts-rnn": lambda: darts(False, split, sizes, epochs, seed, Path(workdir)),
            "darts-blockrnn": lambda: darts(True, split, sizes, epochs, seed, Path(workdir)),
            "nf-lstm": lambda: neuralforecast("lstm", split, sizes, epochs, seed),
            "nf-gru": lambda: neuralforecast("gru", split, sizes, epochs, seed),
        }
        for peer in peers:
            progress(f"train: {peer} for {epochs} epochs")
            results.append(runners[peer]())
    table = _table(results, sizes, epochs, config)
    _plot(results, out / "train.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_curves.json").write_text(json.dumps({r.method: r.curve for r in results if r.curve}, indent=2))
    return table


def _table(results: list[Result], sizes: Sizes, epochs: int, config: Path) -> Table:
    ours = [r for r in results if r.curve]
    others = [r for r in results if not r.curve]
    best = min(others, key=lambda r: r.scores["mase"]) if others else None
    columns = ["method", "epochs", "train s", "s/epoch", "origins/s", f"MASE after {epochs} epochs"]
    columns += ["test MASE", "MAPE (%)"]
    if best:
        columns.append(f"s to MASE {best.scores['mase']:.3f}")
    table = Table("train", columns)
    for r in results:
        row = [r.method, r.epochs, r.seconds, r.seconds / max(1, r.epochs), r.origins_trained / r.seconds]
        row += [r.curve[epochs - 1][1] if len(r.curve) >= epochs else (r.scores["mase"] if not r.curve else "-")]
        row += [r.scores["mase"], r.scores["mape"]]
        if best and r.curve:
            reached = time_to_reach(r.curve, best.scores["mase"])
            row.append("never" if reached is None else reached)
        elif best:
            row.append(r.seconds if r is best else "-")
        table.add(*row)
    table.notes.append(
        f"Matched sizes: input {sizes.input_size}, hidden {sizes.hidden_size}, {sizes.num_layers} layers, horizon "
        f"{sizes.horizon}, batch {sizes.batch_size} (peers: windows; seqcast: chunks of its config, {config})."
    )
    table.notes.append(
        "origins/s: forecast origins that carried a loss per training second (peers: one per window; seqcast: "
        "every origin of a chunk after its warm-up, divided by its origin stride)."
    )
    if best:
        for r in ours:
            reached = time_to_reach(r.curve, best.scores["mase"])
            ratio = "never" if reached is None else f"{reached / best.seconds:.2f}x its time"
            table.notes.append(
                f"{r.method} reaches the best peer's MASE ({best.method}, {best.scores['mase']:.3f} after "
                f"{best.seconds:.0f} s) in: {ratio}; its final MASE {r.scores['mase']:.3f} is "
                f"{'better' if r.scores['mase'] < best.scores['mase'] else 'not better'}."
            )
    return table


def _plot(results: list[Result], path: Path) -> None:
    fig, ax = figure(figsize=(7, 4.2))
    for r in results:
        if r.curve:
            seconds, mase = zip(*r.curve, strict=True)
            ax.plot(seconds, mase, marker="o", markersize=3, label=f"{r.method} (per epoch)")
        else:
            ax.scatter([r.seconds], [r.scores["mase"]], marker="s", label=f"{r.method} ({r.epochs} epochs)")
    ax.set(xlabel="training wall time (s)", ylabel="test MASE (lower is better)", title="Time to accuracy")
    ax.legend(fontsize=7)
    save_figure(fig, path)
