"""Memory per session: the service's session path (engine, sessions, store) in one process, filled with open
sessions; resident memory for the in-process store, Redis's own accounting for the Redis store."""

from __future__ import annotations

import asyncio
import gc
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import redis

from bench.report import Table, progress
from bench.servers import redis_server
from bench.workload import SMALL, history_body, random_checkpoint
from service.engine import Engine
from service.scoring import Scorer
from service.sessions import Sessions
from service.stepper import Stepper
from service.store import MemoryStore, RedisStore, SessionStore


def _resident() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def _open(sessions: Sessions, count: int, history: int) -> int:
    """Opens ``count`` sessions through the service's own path; returns the size of one stored record."""
    body = history_body(history)
    start = pd.Timestamp(body["start"]).to_pydatetime()
    prepared = sessions.engine.prepare(
        sessions.engine.check_history(body["history"], body["covariates"], start, body["future_covariates"])
    )
    # The shadow reads what the served model reads, scaled alike here (random_checkpoint's statistics).
    shadowed = prepared if sessions.shadow is not None else None
    for done in range(count):
        await sessions.open(prepared, shadowed)
        if done and done % 20_000 == 0:
            progress(f"memory: {done} sessions open")
    opened = await sessions.open(prepared, shadowed)
    blob = (await sessions.store.get_many([opened.session_id]))[0]  # type: ignore[union-attr]
    await sessions.store.delete(opened.session_id)  # type: ignore[union-attr]
    return len(blob or b"")


def live_scorer(engine: Engine) -> Scorer:
    """Live scoring as an exported model enables it, with origins every horizon observations: a session opened
    with a multiple of the horizon holds the forecast of its origin, as most sessions do once they run."""
    return Scorer(
        engine.config.horizon, 0, (), {"series": 1.0}, 1.0, 6.0, origin_every_day=False, step_ns=0, scale_in_std=1.0
    )


async def _fill(
    store: SessionStore,
    engine: Engine,
    counts: list[int],
    history: int,
    measure: Callable[[], int],
    scorer: Scorer | None = None,
    tail: int = 0,
    shadow: Stepper | None = None,
) -> tuple[list[int], int]:
    """Opens sessions up to each of ``counts`` in turn; returns what ``measure()`` read at each count, and the
    size of one record."""
    sessions = Sessions(engine, store, scorer=scorer, tail_length=tail, shadow=shadow)
    readings, held, record = [], 0, 0
    for count in counts:
        if count > held:
            record = await _open(sessions, count - held, history)
            held = count
        readings.append(measure())
    return readings, record


def run(counts: list[int], history: int, out: Path, tail: int = 336) -> Table:
    engine = Engine(random_checkpoint(SMALL), "seqcast-forecaster:bench")
    table = Table("memory", ["store", "sessions", "memory (MiB)", "bytes per session", "record bytes"])
    scorer = live_scorer(engine)
    candidate = Engine(random_checkpoint(SMALL), "seqcast-forecaster:candidate")
    shadow = Stepper(candidate, live_scorer(candidate))
    # (what the rows are, live scorer, tail kept, history opened with, shadow): a tail holds at most what was
    # observed
    variants = [
        ("live scoring off, no tail", None, 0, history, None),
        ("live scoring on, no tail", scorer, 0, history, None),
        (f"live scoring on, tail {tail}", scorer, tail, max(history, tail), None),
        (f"live scoring on, tail {tail}, a shadow", scorer, tail, max(history, tail), shadow),
    ]
    for what, live, kept, opened_with, follower in variants:
        memory_store = MemoryStore(ttl_s=3600, max_sessions=max(counts) + 1)
        resident, record = asyncio.run(
            _fill(memory_store, engine, counts, opened_with, _resident, live, kept, follower)
        )
        _rows(table, f"in-process (resident memory), {what}", counts, resident, record)
        del memory_store
        progress(f"memory: in-process store, {what}, done")
        with tempfile.TemporaryDirectory() as workdir, redis_server(Path(workdir)) as url:
            client = redis.Redis.from_url(url)
            used_memory = lambda client=client: int(client.info()["used_memory"])  # type: ignore[misc]  # noqa: E731
            redis_store = RedisStore(url, ttl_s=3600)
            used, record = asyncio.run(
                _fill(redis_store, engine, counts, opened_with, used_memory, live, kept, follower)
            )
            _rows(table, f"Redis (used_memory), {what}", counts, used, record)
        progress(f"memory: Redis store, {what}, done")
    table.notes.append(
        f"Model: {SMALL.label}, LSTM: the state is 2 tensors x 2 layers x 64 floats = 1,024 bytes; the record adds "
        "the last forecast (48 floats), the model tag and a header; live scoring, the forecast of the latest "
        f"scoring origin (48 floats more); the tail, {tail} rows of target and 2 covariates as float32 "
        f"({tail * 3 * 4:,} bytes) and what the model reads (~100 bytes); a shadow, its own record of state, last "
        "forecast and origin (same model size). "
        f"Sessions opened with {history} values "
        f"({max(history, tail)} with the tail, so it is full), whole horizons: each holds an origin. "
        "Bytes per session = growth since the row above / sessions added."
    )
    return table


def _rows(table: Table, store: str, counts: list[int], readings: list[int], record: int) -> None:
    # Growth since the previous count: the first sessions also pay for one-off allocations (buffers, pools).
    previous = (counts[0], readings[0])
    for count, reading in zip(counts, readings, strict=True):
        per = (reading - previous[1]) / (count - previous[0]) if count > previous[0] else float("nan")
        table.add(store, count, reading / 2**20, per if per != per else round(per), record)
        previous = (count, reading)
