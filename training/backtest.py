"""``seqcast-train backtest``: rolling-origin evaluation of a config on its data, before anything is exported.

Fold 1 is the config's own split. Each further fold ends every series ``data.test_size`` steps earlier
(``data.drop_last``), so its test window is the one before, and trains afresh on what lies before it. Each cell
is trained and scored per fold exactly as ``fit`` scores it, next to naive and seasonal naive at every season
the frequency suggests, on the same origins. With ``--seeds``, each cell trains once per seed and fold; a
fold's score is the mean over seeds, and the spread is kept. Nothing is exported and the config's checkpoints
are left alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.evaluate import evaluate, method_label

if TYPE_CHECKING:
    from training.datamodule import SeriesDataModule

CELLS = ("lstm", "gru", "rnn")


def _options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="seqcast-train backtest",
        allow_abbrev=False,  # the config's own options pass through; none may be read as an abbreviation
        description="Train and score a config over several test windows; every other option (--config, "
        "--data.*, --trainer.*) is the config's, as for fit.",
    )
    parser.add_argument("--folds", type=int, default=3, help="test windows, the latest first (default 3)")
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated cells to compare (default lstm,gru)")
    parser.add_argument(
        "--seeds",
        default="",
        help="comma-separated seeds, each cell trained once per seed (default: the config's seed_everything)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/backtest"), help="folder for backtest.json and backtest.png"
    )
    options, rest = parser.parse_known_args(argv)
    try:
        options.seeds = [int(seed) for seed in options.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds: {options.seeds!r} is not a comma-separated list of integers")
    cells = [cell.strip() for cell in options.cells.split(",") if cell.strip()]
    unknown = [cell for cell in cells if cell not in CELLS]
    if unknown or not cells:
        parser.error(f"--cells: {unknown or 'none'} not among {list(CELLS)}")
    if options.folds < 1:
        parser.error("--folds must be at least 1")
    options.cells = cells
    return options, rest


def _fold(rest: list[str], cell: str, drop_last: int, seed: int | None, workdir: Path) -> dict[str, Any]:
    """Trains ``cell`` (from ``seed``, or the config's) on the data less its last ``drop_last`` steps and returns
    the test report, with the seconds the training took."""
    from training.cli import cli

    seeded = [] if seed is None else ["--seed_everything", str(seed)]
    run = cli(
        [
            *rest,
            *seeded,
            "--model.network.init_args.config.cell",
            cell,
            "--data.drop_last",
            str(drop_last),
            "--checkpoint.dirpath",
            str(workdir / f"{cell}-{drop_last}-{seed}"),
            "--trainer.logger",
            "false",
        ],
        run=False,
        save_config_callback=None,
    )
    run.datamodule.setup()
    run.prepare_training()
    started = time.perf_counter()
    run.trainer.fit(run.model, run.datamodule)
    train_seconds = time.perf_counter() - started
    kept, checkpoint = run.chosen_checkpoint()
    if run.untrained is not None and checkpoint is run.untrained.checkpoint:
        print(f"backtest: kept {kept}", flush=True)  # noqa: T201
    report, _ = evaluate(checkpoint, run.datamodule)
    first = run.datamodule.series[0]
    start = first.timestamps[run.datamodule.test_part(first).start]
    return {
        **report,
        "test_start": str(start),
        "test_end": str(first.timestamps[-1]),
        "train_seconds": train_seconds,
        # A model with an anchor that no epoch beat beyond chance is scored untrained, as fit would export it.
        "untrained": run.untrained is not None and checkpoint is run.untrained.checkpoint,
    }


def _test_size_that_fits(data: SeriesDataModule, folds: int) -> int:
    """The data's test size, once its shortest series is known to hold every fold: each moves the test window
    back by it, and the oldest must still leave a training origin. Refused before anything trains."""
    data.setup()
    shortest = min(len(s) for s in data.series)
    fit = 1 + (shortest - data.min_length) // data.test_size
    if folds > fit:
        raise SystemExit(
            f"backtest: --folds {folds}: the shortest series has {shortest} points, which hold {fit} test "
            f"window{'s' if fit > 1 else ''} of {data.test_size} steps before its training part gets too short; "
            f"use --folds {fit}"
        )
    return data.test_size


def backtest(rest: list[str], cells: list[str], folds: int, seeds: list[int] | None = None) -> dict[str, Any]:
    """Every cell over every fold (and seed), and the baselines of each fold. ``mase``: per method, a score per
    fold, the mean over seeds for a cell; ``mase_by_seed`` and ``train_seconds``: per cell, per fold, one per
    seed."""
    from training.cli import cli

    data = cli(rest, run=False, save_config_callback=None).datamodule
    test_size = _test_size_that_fits(data, folds)
    dropped = data.drop_last  # a --data.drop_last of the user's own: every fold starts there
    runs: list[int | None] = list(seeds) if seeds else [None]
    scores: dict[str, list[float]] = {}
    by_seed: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[list[float]]] = {}
    windows, reports = [], []
    with tempfile.TemporaryDirectory(prefix="seqcast-backtest-") as workdir:
        for fold in range(folds):
            for index, cell in enumerate(cells):
                name = f"seqcast {cell.upper()}"
                by_seed.setdefault(name, []).append([])
                seconds.setdefault(name, []).append([])
                for seed in runs:
                    also = "" if seed is None else f", seed {seed}"
                    print(f"backtest: fold {fold + 1} of {folds}, training {cell}{also}", flush=True)  # noqa: T201
                    report = _fold(rest, cell, dropped + fold * test_size, seed, Path(workdir))
                    reports.append({"fold": fold + 1, "cell": cell, "seed": seed, **report})
                    by_seed[name][-1].append(report["metrics"]["streaming"]["mase"])
                    seconds[name][-1].append(report["train_seconds"])
                scores.setdefault(name, []).append(float(np.mean(by_seed[name][-1])))
                if index == 0:  # the baselines read the data alone: the same for every cell and seed
                    windows.append((report["test_start"], report["test_end"]))
                    for method in report["metrics"]:
                        if method not in ("windowed", "streaming"):
                            label = method_label(method, report)
                            scores.setdefault(label, []).append(report["metrics"][method]["mase"])
    complete = {name: values for name, values in scores.items() if len(values) == folds}
    return {
        "folds": folds,
        "seeds": seeds or None,
        "windows": windows,
        "mase": complete,
        "mase_by_seed": by_seed,
        "train_seconds": seconds,
        "reports": reports,
    }


def summary(result: dict[str, Any]) -> list[str]:
    mase = result["mase"]
    names = sorted(mase, key=lambda name: float(np.mean(mase[name])))
    width = max(len(name) for name in names)
    folds = "  ".join(f"fold {k + 1:<3}" for k in range(result["folds"]))
    lines = [f"{'MASE':<{width}}  mean   {folds}"]
    for name in names:
        values = "  ".join(f"{value:<8.3f}" for value in mase[name])
        lines.append(f"{name:<{width}}  {np.mean(mase[name]):.3f}  {values}")
    if result.get("seeds"):
        for name, folds_seeds in result["mase_by_seed"].items():
            every = [value for fold in folds_seeds for value in fold]
            took = [value for fold in result["train_seconds"][name] for value in fold]
            lines.append(
                f"{name}: {len(result['seeds'])} seeds, MASE {min(every):.3f} to {max(every):.3f}, "
                f"{np.mean(took):.0f} s of training a run"
            )
    untrained = sum(bool(report.get("untrained")) for report in result["reports"])
    if untrained:
        kept = f"{untrained} of {len(result['reports'])} runs kept their anchor alone"
        lines.append(f"{kept} (the smoothing or the last value): no epoch beat it by more than chance")
    for k, (start, end) in enumerate(result["windows"]):
        lines.append(f"fold {k + 1}: test window {start} to {end}")
    best = names[0]
    naive = next(name for name in names if not name.startswith("seqcast"))
    lines.append(f"best: {best}; strongest naive: {naive}")
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mase = result["mase"]
    names = sorted(mase, key=lambda name: float(np.mean(mase[name])), reverse=True)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    for k in range(result["folds"]):
        ax.scatter([mase[name][k] for name in names], names, color="tab:gray", s=12, zorder=3)
    ax.barh(names, [float(np.mean(mase[name])) for name in names], color="tab:blue", alpha=0.6)
    ax.set_xlabel("test MASE (bar: mean over folds, dots: each fold); lower is better")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    options, rest = _options(argv)
    result = backtest(rest, options.cells, options.folds, options.seeds)
    for line in summary(result):
        print(line)  # noqa: T201
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "backtest.json").write_text(json.dumps(result, indent=2))
    plot(result, options.out / "backtest.png")
    print(f"written {options.out / 'backtest.json'} and {options.out / 'backtest.png'}")  # noqa: T201
