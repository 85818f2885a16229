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
from service.sessions import Sessions
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
    for done in range(count):
        await sessions.open(prepared)
        if done and done % 20_000 == 0:
            progress(f"memory: {done} sessions open")
    opened = await sessions.open(prepared)
    blob = (await sessions.store.get_many([opened.session_id]))[0]  # type: ignore[union-attr]
    await sessions.store.delete(opened.session_id)  # type: ignore[union-attr]
    return len(blob or b"")


async def _fill(
    store: SessionStore, engine: Engine, counts: list[int], history: int, measure: Callable[[], int]
) -> tuple[list[int], int]:
    """Opens sessions up to each of ``counts`` in turn; returns what ``measure()`` read at each count, and the
    size of one record."""
    sessions = Sessions(engine, store)
    readings, held, record = [], 0, 0
    for count in counts:
        if count > held:
            record = await _open(sessions, count - held, history)
            held = count
        readings.append(measure())
    return readings, record


def run(counts: list[int], history: int, out: Path) -> Table:
    engine = Engine(random_checkpoint(SMALL), "seqcast-forecaster:bench")
    table = Table("memory", ["store", "sessions", "memory (MiB)", "bytes per session", "record bytes"])
    memory_store = MemoryStore(ttl_s=3600, max_sessions=max(counts) + 1)
    resident, record = asyncio.run(_fill(memory_store, engine, counts, history, _resident))
    _rows(table, "in-process (resident memory)", counts, resident, record)
    progress("memory: in-process store done")
    with tempfile.TemporaryDirectory() as workdir, redis_server(Path(workdir)) as url:
        client = redis.Redis.from_url(url)
        used_memory = lambda: int(client.info()["used_memory"])  # noqa: E731
        used, record = asyncio.run(_fill(RedisStore(url, ttl_s=3600), engine, counts, history, used_memory))
        _rows(table, "Redis (used_memory)", counts, used, record)
    progress("memory: Redis store done")
    table.notes.append(
        f"Model: {SMALL.label}, LSTM: the state is 2 tensors x 2 layers x 64 floats = 1,024 bytes; the record adds "
        "the last forecast (48 floats), the model tag and a header. Bytes per session = growth since the row "
        "above / sessions added."
    )
    return table


def _rows(table: Table, store: str, counts: list[int], readings: list[int], record: int) -> None:
    # Growth since the previous count: the first sessions also pay for one-off allocations (buffers, pools).
    previous = (counts[0], readings[0])
    for count, reading in zip(counts, readings, strict=True):
        per = (reading - previous[1]) / (count - previous[0]) if count > previous[0] else float("nan")
        table.add(store, count, reading / 2**20, per if per != per else round(per), record)
        previous = (count, reading)
