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
import secrets
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
from service.stepper import Stepper
from service.store import MemoryStore, Put
from training.data import Series
from training.datamodule import SeriesDataModule

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "lstm.yaml"
BATCH = 64  # observes per batch, as adaptive batching merges them at most


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


@dataclasses.dataclass
class _Fleet:
    """Sessions opened on one stretch of the series and stepped a value per observe, in batches."""

    series: Series
    horizon: int
    seqs: dict[str, int] = dataclasses.field(default_factory=dict)

    async def open(self, sessions: Sessions, count: int, history: int, at: int = 2_000) -> None:
        engine, series = sessions.engine, self.series
        start = series.timestamps[at - history].to_pydatetime()
        ahead = series.covariates[at : at + self.horizon].tolist()
        values, covariates = series.target[at - history : at].tolist(), series.covariates[at - history : at].tolist()
        prepared = engine.prepare(engine.check_history(values, covariates, start, ahead))
        for done in range(count):
            opened = await sessions.open(prepared)
            assert isinstance(opened, SessionResponse)
            self.seqs[opened.session_id] = at
            if done and done % 2_000 == 0:
                progress(f"migration: {done} sessions open")

    async def clone(self, store: MemoryStore, count: int) -> None:
        """``count`` more sessions, each a copy of the first: opening thousands one by one would take minutes."""
        first = next(iter(self.seqs))
        blob = (await store.get_many([first]))[0]
        assert blob is not None
        ids = [secrets.token_urlsafe(16) for _ in range(count)]
        assert all(await store.put_many_if([Put(sid, blob, self.seqs[first], None) for sid in ids]))
        self.seqs.update(dict.fromkeys(ids, self.seqs[first]))

    async def step(self, sessions: Sessions, ids: list[str]) -> float:
        """Seconds one observe of a value each for ``ids`` takes, in one batch."""
        requests = [
            ObserveRequest(
                session_id=sid,
                seq=self.seqs[sid],
                values=[float(self.series.target[self.seqs[sid]])],
                covariates=[self.series.covariates[self.seqs[sid]].tolist()],
                future_covariates=self.series.covariates[self.seqs[sid] + 1 :][: self.horizon].tolist(),
            )
            for sid in ids
        ]
        began = time.perf_counter()
        answers = await sessions.observe(requests)
        took = time.perf_counter() - began
        assert all(isinstance(a, SessionResponse) for a in answers), answers[0]
        for sid in ids:
            self.seqs[sid] += 1
        return took


def _us_per_observe(seconds: list[float]) -> float:
    return round(1e6 * statistics.median(seconds) / BATCH, 1)


async def _observe_cost(old: Engine, new: Engine, series: Series, tail: int, rounds: int = 20) -> tuple[float, float]:
    """Median microseconds per observe of one value, in batches of BATCH sessions: ordinary ones, and ones that
    each rebuild their session under the other model."""
    store = MemoryStore(ttl_s=3600, max_sessions=BATCH + 1)
    by_model = {m.tag: Sessions(m, store, tail_length=tail) for m in (old, new)}
    fleet = _Fleet(series, old.config.horizon)
    await fleet.open(by_model[old.tag], BATCH, 2_000)
    ids = list(fleet.seqs)
    await fleet.step(by_model[old.tag], ids)  # the first pass pays for one-off allocations
    # Interleaved, so that whatever else the machine does weighs on both alike: an ordinary observe under the
    # model that holds the sessions, then one under the other model, which rebuilds them all.
    ordinary, migrating, holder = [], [], old
    for _ in range(rounds):
        ordinary.append(await fleet.step(by_model[holder.tag], ids))
        holder = new if holder is old else old
        migrating.append(await fleet.step(by_model[holder.tag], ids))
    return _us_per_observe(ordinary), _us_per_observe(migrating)


async def _shadow_cost(old: Engine, new: Engine, series: Series, tail: int, rounds: int = 20) -> tuple[float, float]:
    """Median microseconds per observe without a shadow and with one following every session, interleaved."""
    store = MemoryStore(ttl_s=3600, max_sessions=2 * BATCH + 1)
    alone = Sessions(old, store, tail_length=tail)
    shadowed = Sessions(old, store, tail_length=tail, shadow=Stepper(new, None))
    fleets = {alone: _Fleet(series, old.config.horizon), shadowed: _Fleet(series, old.config.horizon)}
    for sessions, fleet in fleets.items():
        await fleet.open(sessions, BATCH, 2_000)
        await fleet.step(sessions, list(fleet.seqs))  # the shadow's first observe rebuilds it from the tail
    times: dict[Sessions, list[float]] = {alone: [], shadowed: []}
    for _ in range(rounds):
        for sessions, fleet in fleets.items():
            times[sessions].append(await fleet.step(sessions, list(fleet.seqs)))
    return _us_per_observe(times[alone]), _us_per_observe(times[shadowed])


async def _wave(old: Engine, new: Engine, series: Series, tail: int, count: int) -> dict[str, float]:
    """``count`` sessions opened under ``old``, then each observed once under ``new`` in batches of BATCH (all
    rebuild), then once more (none does): the seconds each round took and its batches' p50 and p99."""
    store = MemoryStore(ttl_s=3600, max_sessions=count + 1)
    fleet = _Fleet(series, old.config.horizon)
    await fleet.open(Sessions(old, store, tail_length=tail), 1, 2_000)
    await fleet.clone(store, count - 1)
    served = Sessions(new, store, tail_length=tail)
    ids = list(fleet.seqs)
    batches = [ids[k : k + BATCH] for k in range(0, len(ids), BATCH)]
    found = {}
    for round_name in ("migrating", "ordinary"):
        progress(f"migration: {count} sessions observed once more, {round_name}")
        took = [await fleet.step(served, batch) for batch in batches]
        found[f"{round_name} s"] = sum(took)
        found[f"{round_name} p50 ms"] = 1e3 * float(np.percentile(took, 50))
        found[f"{round_name} p99 ms"] = 1e3 * float(np.percentile(took, 99))
    return found


def run(epochs: int, tails: list[int], wave: int, out: Path) -> Table:
    torch.set_num_threads(1)  # as a service worker runs
    with tempfile.TemporaryDirectory() as workdir:
        progress(f"migration: training the elecdemand LSTM for {epochs} epochs")
        path, report = train_checkpoint(CONFIG, Path(workdir), epochs)
        checkpoint = load_checkpoint(path)
    data = SeriesDataModule(**data_options(CONFIG))
    data.setup()
    series = data.series[0]
    engine = Engine(checkpoint, "seqcast-lstm:old")
    new = _retrained(engine, "seqcast-lstm:new")
    horizon = engine.config.horizon
    test = data.test_part(series)
    origins = list(range(test.start, test.end - horizon + 1, horizon))
    actual = np.stack([series.target[t : t + horizon] for t in origins])
    scale = next(iter(report["naive_scales"].values()))  # the MASE's denominator, from training
    progress(f"migration: forecasts of the whole history at {len(origins)} origins")
    full = _forecasts(engine, series, origins, None)
    mae = np.abs(full - actual).mean()
    columns = ["tail N", "mean |tail - full| / MAE", "max |tail - full| (GW)", "test MASE, tail", "test MASE, full"]
    table = Table("migration", [*columns, "observe us, ordinary", "observe us, migrating"])
    for tail in tails:
        progress(f"migration: tail {tail}")
        rebuilt = _forecasts(engine, series, origins, tail)
        gap = np.abs(rebuilt - full)
        mase = float(np.abs(rebuilt - actual).mean() / scale)
        costs = asyncio.run(_observe_cost(engine, new, series, tail))
        table.add(tail, float(gap.mean() / mae), float(gap.max()), mase, float(mae / scale), *costs)
    alone, shadowed = asyncio.run(_shadow_cost(engine, new, series, max(tails)))
    waved = asyncio.run(_wave(engine, new, series, max(tails), wave))
    table.notes += [
        f"configs/lstm.yaml trained {epochs} epochs; {len(origins)} day-ahead origins over the test part (the last 28 "
        f"days). full: the forecast of the whole history from the series' start ({origins[0]:,} values or more); "
        "tail: of the last N values only, what a session rebuilt from a tail of N answers right after its migration "
        "(it then follows its values exactly). MAE: the full forecasts' test MAE.",
        f"Observe cost: one value per observe, batches of {BATCH} sessions through the service's sessions in process "
        "(one torch thread, in-process store), median of 20 batches; migrating: each observe rebuilds its session "
        f"from its tail under the other model. With a shadow following every session (tail {max(tails)}): "
        f"{shadowed:.0f} us per observe against {alone:.0f} us without, {shadowed / alone:.2f}x.",
        f"A wave of {wave:,} sessions (tail {max(tails)}), each observed once under a new model in batches of {BATCH}: "
        f"{waved['migrating s']:.1f} s of one worker's time, batch p50 {waved['migrating p50 ms']:.1f} ms and p99 "
        f"{waved['migrating p99 ms']:.1f} ms; observed once more, after it: {waved['ordinary s']:.1f} s, p50 "
        f"{waved['ordinary p50 ms']:.1f} ms, p99 {waved['ordinary p99 ms']:.1f} ms. Lazily, the wave lasts one "
        "observe interval of the clients, and costs this much more work within it.",
    ]
    _plot(table, out / "migration.png")
    return table


def _plot(table: Table, path: Path) -> None:
    tails = [row[0] for row in table.rows]
    fig, ax = figure(figsize=(7, 3.5))
    ax.plot(range(len(tails)), [100 * row[1] for row in table.rows], marker="o")
    ax.set_yscale("log")  # the gap falls by orders of magnitude once the tail covers the state's memory
    ax.set_xticks(range(len(tails)), [str(t) for t in tails])
    ax.axhline(1, color="tab:gray", ls=":", label="1% of the test MAE")
    ax.set_xlabel("tail kept (values)")
    ax.set_ylabel("|tail - full|, % of test MAE")
    ax.set_title("A session rebuilt from its tail vs the whole history, elecdemand LSTM")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
