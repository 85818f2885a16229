"""Serving throughput and latency of /forecast and /observe against a real `bentoml serve`, with adaptive
batching on and off, next to two limits taken in the same run: the model called in-process, and /noop (the
same service parsing and batching the same body, doing nothing: BentoML's own floor)."""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import Table, progress
from bench.servers import bentoml_serve, redis_server
from bench.workload import LARGE, SMALL, ModelSize, history_body, one_torch_thread, publish, random_checkpoint
from bench.wrk import measure as load
from service.engine import Engine, Prepared


@cache  # the same limit for batching on and off: measured once
def in_process_rps(size: ModelSize, kind: str, concurrency: int, seconds: float) -> float:
    """Requests/s of the engine alone, each pass serving ``concurrency`` requests as one batch would."""
    engine = Engine(random_checkpoint(size), "bench", max_history=max(size.history, 20_000))
    body = history_body(size.history)
    start = pd.Timestamp(body["start"]).to_pydatetime()
    prepared = engine.prepare(
        engine.check_history(body["history"], body["covariates"], start, body["future_covariates"])
    )
    state = engine.run([prepared], [None]).states[0]
    step: Prepared = engine.prepare(
        engine.check_observe(body["history"][:1], body["covariates"][:1], prepared.next_time, body["future_covariates"])
    )
    batch = [prepared if kind == "forecast" else step] * concurrency
    states = [None if kind == "forecast" else state] * concurrency
    with one_torch_thread():
        served, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            engine.run(batch, states)  # type: ignore[arg-type]
            served += concurrency
        return served / (time.perf_counter() - began)


def run(sizes: list[ModelSize], concurrencies: list[int], seconds: float, out: Path) -> Table:
    columns = ["model", "batching", "endpoint", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
    table = Table("serve", columns + ["vs /noop", "vs in-process"])
    with tempfile.TemporaryDirectory() as workdir, ExitStack() as stack:
        home = Path(workdir)
        redis_url = stack.enter_context(redis_server(home / "redis"))
        for size in sizes:
            tag = publish(home, size)
            for batching in (True, False):
                with bentoml_serve(
                    home, home / "serve.log", model_tag=tag, noop_endpoint=True, batching=batching, max_history=20_000
                ) as running:
                    for clients in concurrencies:
                        # The floor is measured before and after the endpoints, which are compared with the
                        # mean: one run of it varies by several percent from the next.
                        before = load(running.url, "noop", clients, seconds, size.history)
                        rows = {}
                        for kind in ("forecast", "observe"):
                            rows[kind] = load(running.url, kind, clients, seconds, size.history)
                        after = load(running.url, "noop", clients, seconds, size.history)
                        floor = (before["rps"] + after["rps"]) / 2
                        _add(table, size, batching, "/noop", clients, before, floor, None)
                        _add(table, size, batching, "/noop, again", clients, after, floor, None)
                        for kind, measured in rows.items():
                            limit = in_process_rps(size, kind, clients, seconds / 2)
                            _add(table, size, batching, f"/{kind}", clients, measured, floor, limit)
                        progress(f"serve: {size.name}, batching {'on' if batching else 'off'}, {clients} clients")
                    if len(concurrencies) > 1 and min(concurrencies) == 1:
                        _after_burst(table, size, batching, running.url, max(concurrencies), seconds)
            # The session store's cost: /observe with one client over a Redis store.
            with bentoml_serve(home, home / "serve.log", model_tag=tag, session_store=redis_url) as running:
                measured = load(running.url, "observe", 1, seconds, size.history)
                _add(table, size, True, "/observe (Redis)", 1, measured, None, None)
            progress(f"serve: {size.name} with Redis")
    table.notes.append(
        f"Closed-loop connections from wrk (one thread) on loopback, {seconds:g} s per row after a 1 s warm-up; one "
        "API worker with one torch thread; wrk shares the machine's 2 cores. vs /noop: this row's "
        "req/s over the mean of /noop's two runs (before and after the endpoints) at the same clients and "
        "batching. vs in-process: over the engine alone serving the "
        "same number of requests per pass, on one torch thread as the worker. 'after': one client as soon as the "
        "endpoints' last loads (the most clients) end, in two windows."
    )
    return table


def _after_burst(table: Table, size: ModelSize, batching: bool, url: str, burst_clients: int, seconds: float) -> None:
    """One client right after the loads of ``burst_clients``: adaptive batching must not keep waiting as if the
    burst were still on. Two windows each, so that the rows show how soon latency comes back; each endpoint's
    batches were last formed under the burst."""
    half = max(1.0, seconds / 2)
    for kind in ("noop", "forecast"):
        for window in ("first", "next"):
            measured = load(url, kind, 1, half, size.history)
            name = f"/{kind}, 1 client after {burst_clients}, {window} {half:g} s"
            _add(table, size, batching, name, 1, measured, None, None)
    progress(f"serve: {size.name}, batching {'on' if batching else 'off'}, one client after {burst_clients}")


def _add(
    table: Table,
    size: ModelSize,
    batching: bool,
    endpoint: str,
    clients: int,
    measured: dict[str, Any],
    floor: float | None,
    limit: float | None,
) -> None:
    rps = measured["rps"]
    table.add(
        size.name,
        "on" if batching else "off",
        endpoint,
        clients,
        round(rps),
        measured["p50"],
        measured["p95"],
        measured["p99"],
        measured["errors"],
        f"{rps / floor:.0%}" if floor else "",
        f"{rps / limit:.0%}" if limit else "",
    )


SIZES = {"small": SMALL, "large": LARGE}
