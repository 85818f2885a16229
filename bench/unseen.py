"""Forecasts for series a model scaled per series never trained on, as the service makes them: a request
without ``series`` is scaled by its own history. One network is trained on three in four of a many-series data
set's series; the held-out quarter is forecast at its test origins two ways, through the service's engine, and
scored as the accuracy bench scores (same origins, same MASE scale):

- *window*: each origin a /forecast of the last ``input_size`` values, scaled by their own statistics;
- *session*: an /open with everything before the test part, whose statistics the session keeps, then one
  /observe per month, forecasting at each origin.

Beside them: the same network on the series it trained on (its training report), and the naive baselines on the
held-out series.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import yaml

from bench.accuracy import train
from bench.report import Table, figure, progress, save_figure
from models.checkpoint import load_checkpoint
from service.engine import Engine
from training.data import Series, read_frame
from training.datamodule import SeriesDataModule
from training.evaluate import scored_origins, seasonal_naive_forecasts
from training.metrics import Scores, point_metrics, season_length

HELD_OUT_EVERY = 4  # every fourth series, in id order, is held out of training


def _split(path: str, workdir: Path) -> tuple[Path, Path]:
    """The data set as two Parquet files: the series trained on, and those held out."""
    frame = read_frame(path)
    ids = sorted(frame.unique_id.unique())
    held_out = set(ids[HELD_OUT_EVERY - 1 :: HELD_OUT_EVERY])
    trained, unseen = workdir / "trained.parquet", workdir / "unseen.parquet"
    frame[~frame.unique_id.isin(held_out)].to_parquet(trained)
    frame[frame.unique_id.isin(held_out)].to_parquet(unseen)
    return trained, unseen


def _window(engine: Engine, series: Series, origins: np.ndarray, input_size: int) -> np.ndarray:
    """(N, H): at each origin, a /forecast of the ``input_size`` values up to it."""
    y = series.target
    requests = [
        engine.prepare(engine.check_history(y[o + 1 - input_size : o + 1].tolist(), None, None, None)) for o in origins
    ]
    return engine.run(requests, [None] * len(requests)).forecasts[..., engine.config.point_index]


def _session(engine: Engine, series: Series, origins: np.ndarray) -> np.ndarray:
    """(N, H): a session opened with every value up to the first origin, observing up to each later one."""
    y = series.target
    step = engine.prepare(engine.check_history(y[: origins[0] + 1].tolist(), None, None, None))
    own = step.scaling  # kept by the session, as its record would
    result = engine.run([step], [None])
    forecasts = [result.forecasts[0]]
    for before, origin in zip(origins[:-1], origins[1:], strict=True):
        values = y[before + 1 : origin + 1].tolist()
        step = engine.prepare(engine.check_observe(values, None, step.next_time, None, None, own))
        result = engine.run([step], [result.states[0]])
        forecasts.append(result.forecasts[0])
    return np.stack(forecasts)[..., engine.config.point_index]


def run(config: Path, max_minutes: float, out: Path) -> Table:
    """config: a many-series data set's, scaled per series, whose target has no covariates."""
    name = config.stem
    settings = yaml.safe_load(config.read_text())["data"]
    table = Table("unseen", ["series", "method", "MASE", "sMAPE (%)", "MAPE (%)"])
    with tempfile.TemporaryDirectory() as workdir:
        trained, unseen = _split(settings["path"], Path(workdir))
        progress(f"unseen: training LSTM on {HELD_OUT_EVERY - 1} in {HELD_OUT_EVERY} {name} series")
        report = train(config, "lstm", Path(workdir), max_minutes, "--data.path", str(trained))
        checkpoint = load_checkpoint(next(Path(workdir).glob("*/version_*/checkpoint.pt")))
        data = SeriesDataModule(**{**settings, "path": str(unseen)})
        data.setup()
    engine = Engine(checkpoint, "bench")
    season, horizon = season_length(str(data.features.freq)), data.horizon
    progress(f"unseen: forecasting the {len(data.series)} held-out series at their test origins")
    scored: dict[str, list[np.ndarray]] = {"window": [], "session": [], "naive": [], "seasonal naive": []}
    actual, scale = [], []
    for series in data.series:
        origins, series_actual, series_scale = scored_origins(data, series, horizon, season)
        y = series.target
        scored["window"].append(_window(engine, series, origins, data.input_size))
        scored["session"].append(_session(engine, series, origins))
        scored["naive"].append(np.repeat(y[origins][:, None], horizon, axis=1))
        scored["seasonal naive"].append(seasonal_naive_forecasts(y, origins, horizon, season))
        actual.append(series_actual)
        scale += [series_scale] * len(origins)
    table.add(
        f"series it trained on ({len(checkpoint.series_scaling)})",
        "seqcast LSTM",
        *_scores(report["metrics"]["streaming"]),
    )
    for method, forecasts in scored.items():
        label = f"seqcast LSTM, {method}" if method in ("window", "session") else method
        scores = point_metrics(np.concatenate(actual), np.concatenate(forecasts), np.asarray(scale))
        table.add(f"held out ({len(data.series)})", label, *_scores(scores))
    table.notes.append(
        f"{name}: one LSTM trained by `seqcast-train fit --config {config}` on the series other than every "
        f"{HELD_OUT_EVERY}th (in id order). Held-out series are forecast through the service's engine without "
        "`series`: window = the last input_size values, scaled by their own statistics; session = opened with "
        "everything before the test part, whose statistics it keeps, then observing."
    )
    _plot(table, out / "unseen.png")
    return table


def _scores(metrics: Scores) -> tuple[float | None, float | None, float | None]:
    return metrics["mase"], metrics["smape"], metrics["mape"]


def _plot(table: Table, path: Path) -> None:
    fig, ax = figure(figsize=(8, 3.5))
    ax.barh([f"{method}, {series}" for series, method, *_ in table.rows], [row[2] for row in table.rows])
    ax.set(xlabel="test MASE (lower is better)", title="series the network never trained on")
    ax.invert_yaxis()
    save_figure(fig, path)
