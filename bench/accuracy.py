"""Test accuracy of seqcast's networks against naive, every seasonal naive and a statistical baseline. ``accuracy``
runs the built-in real data sets with their shipped configs; ``field`` runs data sets the bench writes, that no
config or default was tuned on (simulated counts and real hourly series), each with the config that
``seqcast-train init`` writes for it, as a user's own data would get, and the built-in sets again with init's
config in place of their tuned one. Each network is trained and scored by
``seqcast-train backtest`` from the config, exactly as a user would run it, once per seed; every method is
scored on the same test origins with the same MASE scale.

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

from bench.field_data import write_daily_departures, write_departures, write_monthly, write_temperature, write_yearly
from bench.report import Table, figure, progress, save_figure
from bench.simulated import write_counts
from models.features import fixed_step
from training.datamodule import SeriesDataModule
from training.evaluate import method_label, scored_origins
from training.metrics import Scores, point_metrics, season_length

# Each built-in data set's shipped config.
CONFIGS = {
    "elecdemand": Path("configs/lstm.yaml"),
    "taylor": Path("configs/taylor.yaml"),
    "us_employment": Path("configs/us_employment.yaml"),
}
# Data sets the bench writes. In `field` these and the built-in sets get the config `seqcast-train init` writes.
WRITTEN = {
    "counts": write_counts,
    "departures": write_departures,
    "temperature": write_temperature,
    "daily-departures": write_daily_departures,
    "monthly": write_monthly,
    "yearly": write_yearly,
}
FIELD = [*WRITTEN, "taylor", "elecdemand"]
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


def backtest(config: Path, cells: list[str], seeds: list[int], max_minutes: float, out: Path) -> Any:
    """``seqcast-train backtest`` of ``cells`` on the config's own test window, once per seed; its result."""
    command = [
        *(sys.executable, "-m", "training.cli", "backtest", "--config", str(config), "--folds", "1"),
        *("--cells", ",".join(cells), "--seeds", ",".join(map(str, seeds)), "--out", str(out)),
        *("--trainer.max_time", f"00:00:{int(max_minutes):02d}:{int(max_minutes % 1 * 60):02d}"),
        *("--trainer.enable_progress_bar", "false"),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "backtest.json").read_text())


def initialised(name: str, workdir: Path) -> Path:
    """Writes the config `seqcast-train init` sizes for the data set ``name`` (written first, unless built in);
    the config."""
    data = str(WRITTEN[name](workdir / f"{name}.csv")) if name in WRITTEN else f"builtin:{name}"
    command = [sys.executable, "-m", "training.cli", "init", "--data.path", data, "--name", name]
    config = workdir / f"{name}.yaml"
    config.write_text(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return config


def _rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method: MASE, sMAPE and MAPE (for a network, means over seeds), and for a network its MASE range over
    seeds and its mean training seconds."""
    rows: dict[str, dict[str, Any]] = {}
    reports = result["reports"]
    for cell in dict.fromkeys(r["cell"] for r in reports):
        runs = [r for r in reports if r["cell"] == cell]
        mase = [r["metrics"]["streaming"]["mase"] for r in runs]
        rows[f"seqcast {cell.upper()}"] = {
            **{key: _mean([r["metrics"]["streaming"][key] for r in runs]) for key in ("mase", "smape", "mape")},
            "range": (min(mase), max(mase)),
            "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
        }
    first = reports[0]
    for name, scores in first["metrics"].items():
        if name not in ("windowed", "streaming"):
            rows[method_label(name, first)] = {key: scores[key] for key in ("mase", "smape", "mape")}
    return rows


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if len(known) == len(values) else None  # MAPE is undefined with zeros


def run(
    datasets: list[str], cells: list[str], seeds: list[int], max_minutes: float, out: Path, kind: str = "accuracy"
) -> Table:
    """The table ``kind`` (``accuracy`` or ``field``) of every method on ``datasets``, and its plot."""
    columns = ["data set", "method", "MASE", "MASE range (seeds)", "sMAPE (%)", "MAPE (%)", "training (s)"]
    table = Table(kind, columns)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        configs = []
        for name in datasets:
            config = initialised(name, Path(workdir)) if kind == "field" else CONFIGS[name]
            configs.append(f"{config.name} (by `seqcast-train init`)" if kind == "field" else str(config))
            progress(
                f"{kind}: backtest of {','.join(cells)} on {name}, seeds {seeds} (at most {max_minutes:g} min each)"
            )
            rows = _rows(backtest(config, cells, seeds, max_minutes, Path(workdir) / name))
            progress(f"{kind}: the statistical baseline at every test origin of {name}")
            baseline, scores = statistical(config)
            rows[baseline] = dict(scores)
            results[name] = rows
            for method, row in rows.items():
                spread = f"{row['range'][0]:.3f}-{row['range'][1]:.3f}" if "range" in row else ""
                took = round(row["train_seconds"]) if "train_seconds" in row else ""
                table.add(name, method, row["mase"], spread, row["smape"], row["mape"] or "n/a", took)
            table.notes.append(_verdict(name, rows))
    table.notes.append(
        "Each network trained and scored by `seqcast-train backtest --folds 1 --seeds "
        f"{','.join(map(str, seeds))}` from {', '.join(configs)}; MASE: the mean over seeds."
    )
    _plot(results, out / f"{kind}.png")
    return table


def _verdict(name: str, rows: dict[str, dict[str, Any]]) -> str:
    """Which network did best, and by how much it beats the strongest naive (the last value or a season
    before) and the statistics."""
    networks = [m for m in rows if m.startswith("seqcast")]
    best = min(networks, key=lambda m: rows[m]["mase"])
    naive = min((m for m in rows if _is_naive(m)), key=lambda m: rows[m]["mase"])
    stats = next(m for m in rows if "statsforecast" in m)
    worst = rows[best]["range"][1]

    def versus(other: str) -> str:
        ratio = rows[best]["mase"] / rows[other]["mase"]
        return f"{abs(1 - ratio):.0%} {'below' if ratio < 1 else 'above'} {other} ({rows[other]['mase']:.3f})"

    scored = f"{name}: best {best}, MASE {rows[best]['mase']:.3f} (worst seed {worst:.3f})"
    return f"{scored}: {versus(naive)}, {versus(stats)}."


def _is_naive(method: str) -> bool:
    return method.startswith(("naive", "seasonal naive"))


def _plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    columns = min(3, len(results))  # wider than three panels, a page shrinks them past reading
    rows = -(-len(results) // columns)
    fig, axes = figure(rows, columns, figsize=(5.5 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    for ax, (name, methods) in zip(axes.flat[: len(results)], results.items(), strict=True):
        mase = [row["mase"] for row in methods.values()]
        # Networks: the bar is the mean over seeds, the whisker the range. Clamped at zero: a mean of rounded
        # scores can fall a hair outside their range, and matplotlib refuses a negative error.
        spread = [
            (max(0, m - row["range"][0]), max(0, row["range"][1] - m)) if "range" in row else (0, 0)
            for m, row in zip(mase, methods.values(), strict=True)
        ]
        ax.barh(list(methods), mase, xerr=np.array(spread).T, capsize=3)
        naive = min(row["mase"] for method, row in methods.items() if _is_naive(method))
        ax.axvline(naive, color="grey", linestyle="--", linewidth=1)
        ax.set(title=name, xlabel="test MASE (dashed: strongest naive)")
        ax.invert_yaxis()
    save_figure(fig, path)
