"""Sessions rebuilt from their tail when the model changes: how far that is from reading the whole history, and
what a rebuild costs.

An LSTM trained by `seqcast-train fit` on elecdemand (configs/lstm.yaml). At each day of the test part, its
forecast of the whole history (a year and more) next to its forecast of the last N values only, which is what a
session rebuilt under it from a tail of N answers. Then the cost of observes that rebuild their session, next to
ordinary ones, through the service's sessions in process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.report import Table, figure, progress
from bench.workload import data_options, train_checkpoint
from models.checkpoint import load_checkpoint
from service.engine import Engine
from service.schemas import ObserveRequest, SessionResponse
from service.sessions import Sessions
from service.store import MemoryStore
from training.data import Series
from training.datamodule import SeriesDataModule

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "lstm.yaml"
SESSIONS_PER_BATCH = 64


def _forecasts(engine: Engine, series: Series, origins: list[int], tail: int | None) -> np.ndarray:
    """Point forecasts (origins, horizon) from the last ``tail`` values before each origin (None: all of them)."""
    horizon = engine.config.horizon
    checked = []
    for t in origins:
        lo = 0 if tail is None else t - tail
        start = series.timestamps[lo].to_pydatetime()
        future = series.covariates[t : t + horizon].tolist()
        history, covariates = series.target[lo:t].tolist(), series.covariates[lo:t].tolist()
        checked.append(engine.check_history(history, covariates, start, future))
    prepared = engine.encode(checked)
    result = engine.run(prepared, [None] * len(prepared))  # type: ignore[arg-type]  # none is refused here
    return result.forecasts[:, :, engine.config.point_index]


def _retrained(engine: Engine, tag: str) -> Engine:
    """The same model trained again: the same inputs, other weights, as an upgrade brings."""
    torch.manual_seed(1)
    weights = {k: v + 0.01 * torch.randn_like(v) for k, v in engine.checkpoint.state_dict.items()}
    return Engine(dataclasses.replace(engine.checkpoint, state_dict=weights), tag)


async def _observe_cost(
    old: Engine, new: Engine, series: Series, tail: int, batch: int, rounds: int
) -> tuple[float, float]:
    """Median microseconds per observe of one value, in batches of ``batch`` sessions: ordinary ones, and ones
    that each rebuild their session under the other model."""
    store = MemoryStore(ttl_s=3600, max_sessions=batch + 1)
    by_model = {m.tag: Sessions(m, store, tail_length=tail) for m in (old, new)}
    at = 2_000
    start = series.timestamps[0].to_pydatetime()
    ahead = series.covariates[at : at + old.config.horizon].tolist()
    opening = old.check_history(series.target[:at].tolist(), series.covariates[:at].tolist(), start, ahead)
    ids = []
    for _ in range(batch):
        opened = await by_model[old.tag].open(old.prepare(opening))
        assert isinstance(opened, SessionResponse)
        ids.append(opened.session_id)

    async def step(sessions: Sessions) -> float:
        nonlocal at
        requests = [
            ObserveRequest(
                session_id=sid,
                seq=at,
                values=[float(series.target[at])],
                covariates=[series.covariates[at].tolist()],
                future_covariates=series.covariates[at + 1 : at + 1 + old.config.horizon].tolist(),
            )
            for sid in ids
        ]
        began = time.perf_counter()
        answers = await sessions.observe(requests)
        took = time.perf_counter() - began
        assert all(isinstance(a, SessionResponse) for a in answers), answers[0]
        at += 1
        return 1e6 * took / batch

    await step(by_model[old.tag])  # the first pass pays for one-off allocations
    # Interleaved, so that whatever else the machine does weighs on both alike: an ordinary observe under the
    # model that holds the sessions, then one under the other model, which rebuilds them all.
    ordinary, migrating, holder = [], [], old
    for _ in range(rounds):
        ordinary.append(await step(by_model[holder.tag]))
        holder = new if holder is old else old
        migrating.append(await step(by_model[holder.tag]))
    return statistics.median(ordinary), statistics.median(migrating)


def run(epochs: int, tails: list[int], out: Path) -> Table:
    torch.set_num_threads(1)  # as a service worker runs
    with tempfile.TemporaryDirectory() as workdir:
        progress(f"migration: training the elecdemand LSTM for {epochs} epochs")
        path, report = train_checkpoint(CONFIG, Path(workdir), epochs)
        checkpoint = load_checkpoint(path)
    data = SeriesDataModule(**data_options(CONFIG))
    data.setup()
    series = data.series[0]
    engine = Engine(checkpoint, "seqcast-lstm:old")
    horizon = engine.config.horizon
    test = data.test_part(series)
    origins = list(range(test.start, test.end - horizon + 1, horizon))
    actual = np.stack([series.target[t : t + horizon] for t in origins])
    scale = next(iter(report["naive_scales"].values()))  # the MASE's denominator, from training
    progress(f"migration: forecasts of the whole history at {len(origins)} origins")
    full = _forecasts(engine, series, origins, None)
    full_mase = float(np.abs(full - actual).mean() / scale)
    table = Table(
        "migration",
        [
            "tail N",
            "mean |tail - full| / MAE",
            "max |tail - full| (GW)",
            "test MASE, tail",
            "test MASE, full",
            "observe us, ordinary",
            "observe us, migrating",
        ],
    )
    new = _retrained(engine, "seqcast-lstm:new")
    for tail in tails:
        progress(f"migration: tail {tail}")
        rebuilt = _forecasts(engine, series, origins, tail)
        gap = np.abs(rebuilt - full)
        mae = np.abs(full - actual).mean()
        ordinary, migrating = asyncio.run(_observe_cost(engine, new, series, tail, SESSIONS_PER_BATCH, 20))
        table.add(
            tail,
            float(gap.mean() / mae),
            float(gap.max()),
            float(np.abs(rebuilt - actual).mean() / scale),
            full_mase,
            round(ordinary, 1),
            round(migrating, 1),
        )
    table.notes.append(
        f"configs/lstm.yaml trained {epochs} epochs; {len(origins)} day-ahead origins over the test part (the last "
        f"28 days). full: the forecast of the whole history from the series' start ({origins[0]:,} values or more); "
        "tail: of the last N values only, what a session rebuilt from a tail of N answers right after its migration "
        "(it then follows its values exactly). MAE: the full forecasts' test MAE. Observe cost: one value per "
        f"observe, batches of {SESSIONS_PER_BATCH} sessions through the service's sessions in process (one torch "
        "thread, in-process store), median of 20 batches; migrating: each observe rebuilds its session from its "
        "tail under the other model."
    )
    _plot(table, out / "migration.png")
    return table


def _plot(table: Table, path: Path) -> None:
    tails = [row[0] for row in table.rows]
    fig, ax = figure(figsize=(7, 3.5))
    ax.plot(tails, [100 * row[1] for row in table.rows], marker="o")
    ax.set_xscale("log")
    ax.set_xticks(tails, [str(t) for t in tails])
    ax.set_xlabel("tail kept (values)")
    ax.set_ylabel("|tail - full| as % of test MAE")
    ax.set_title("A session rebuilt from its tail vs the whole history, elecdemand LSTM")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
