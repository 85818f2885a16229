"""Test accuracy of seqcast's LSTM and GRU against naive, seasonal naive and a statistical baseline, on built-in
real data sets. Each network is trained by ``seqcast-train fit`` from the data set's config, exactly as a user
would run it; every method is scored on the same test origins with the same MASE scale.

The statistical baseline is refitted at every origin on the history before it. For intraday data it is
statsforecast's MSTL (daily and weekly seasons removed by STL, the rest forecast by AutoETS) on the weeks
before the origin, the usual choice for half-hourly load; for daily and longer steps, AutoETS with the data's
season (12 for months) on the whole history.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.report import Table, figure, progress, save_figure
from models.features import fixed_step
from training.datamodule import SeriesDataModule
from training.evaluate import scored_origins
from training.metrics import Scores, point_metrics, season_length

CONFIGS = {
    "elecdemand": Path("configs/lstm.yaml"),
    "taylor": Path("configs/taylor.yaml"),
    "us_employment": Path("configs/us_employment.yaml"),
}
STATS_FIT_WEEKS = 8  # history each statistical fit reads: long enough for weekly seasonality, quick to refit


def train(config: Path, cell: str, workdir: Path, max_minutes: float, *overrides: str) -> dict[str, Any]:
    """Runs ``seqcast-train fit`` for one cell, with more command-line ``overrides``; returns the evaluation
    report it wrote."""
    name = f"{config.stem}_{cell}"
    command = [
        *(sys.executable, "-m", "training.cli", "fit", "--config", str(config)),
        *("--model.network.init_args.config.cell", cell, "--export", "false"),
        *("--trainer.max_time", f"00:00:{int(max_minutes):02d}:{int(max_minutes % 1 * 60):02d}"),
        *("--trainer.logger.init_args.save_dir", str(workdir), "--trainer.logger.init_args.name", name),
        *("--checkpoint.dirpath", str(workdir / name / "checkpoints"), "--trainer.enable_progress_bar", "false"),
        *overrides,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    reports = sorted((workdir / name).glob("version_*/report.json"))
    return json.loads(reports[-1].read_text())


def statistical(config: Path) -> tuple[str, Scores]:
    """The statistical baseline's name and its forecasts at the config's test origins, scored like the
    networks' reports."""
    from statsforecast.models import MSTL, AutoETS

    data = SeriesDataModule(**yaml.safe_load(config.read_text())["data"])
    data.setup()
    freq = str(data.features.freq)
    season, horizon, step = season_length(freq), data.horizon, fixed_step(freq)
    intraday = step is not None and step < pd.Timedelta(days=1)
    fit_length = STATS_FIT_WEEKS * 7 * season if intraday else None

    def model() -> Any:
        if intraday:
            return MSTL(season_length=[season, 7 * season], trend_forecaster=AutoETS(model="ZZN"))
        return AutoETS(season_length=season)

    actual, forecast, scale = [], [], []
    for series in data.series:
        origins, series_actual, series_scale = scored_origins(data, series, horizon, season)
        for origin in origins:
            first = 0 if fit_length is None else max(0, origin + 1 - fit_length)
            forecast.append(model().forecast(y=series.target[first : origin + 1], h=horizon)["mean"])
        actual.append(series_actual)
        scale += [series_scale] * len(origins)
    name = "MSTL-ETS (statsforecast)" if intraday else "AutoETS (statsforecast)"
    return name, point_metrics(np.concatenate(actual), np.stack(forecast), np.asarray(scale))


def run(datasets: list[str], cells: list[str], max_minutes: float, out: Path) -> Table:
    table = Table("accuracy", ["data set", "method", "MASE", "sMAPE (%)", "MAPE (%)"])
    results: dict[str, dict[str, Scores]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in datasets:
            config = CONFIGS[name]
            methods: dict[str, Scores] = {}
            for cell in cells:
                progress(f"accuracy: training {cell} on {name} (at most {max_minutes:g} min)")
                report = train(config, cell, Path(workdir), max_minutes)
                methods[f"seqcast {cell.upper()}"] = report["metrics"]["streaming"]
            methods["naive"] = report["metrics"]["naive"]
            methods["seasonal naive"] = report["metrics"]["seasonal_naive"]
            progress(f"accuracy: the statistical baseline at every test origin of {name}")
            baseline, scores = statistical(config)
            methods[baseline] = scores
            results[name] = methods
            for method, scores in methods.items():
                table.add(name, method, scores["mase"], scores["smape"], scores["mape"])
    for name, methods in results.items():
        beaten = [
            m for m in methods if m.startswith("seqcast") and methods[m]["mase"] < methods["seasonal naive"]["mase"]
        ]
        table.notes.append(f"{name}: {len(beaten)} of {len(cells)} seqcast networks beat seasonal naive on MASE.")
    table.notes.append(f"Each network trained by `seqcast-train fit` from {', '.join(map(str, CONFIGS.values()))}.")
    _plot(results, out / "accuracy.png")
    return table


def _plot(results: dict[str, dict[str, Scores]], path: Path) -> None:
    fig, axes = figure(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (name, methods) in zip(axes[0], results.items(), strict=True):
        ax.barh(list(methods), [scores["mase"] for scores in methods.values()])
        ax.axvline(methods["seasonal naive"]["mase"], color="grey", linestyle="--", linewidth=1)
        ax.set(title=name, xlabel="test MASE (lower is better)")
        ax.invert_yaxis()
    save_figure(fig, path)
