"""What a kept session saves: one new observation (/observe) against re-sending the whole history (/forecast),
at growing history lengths, in-process and over HTTP."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.report import Table, figure, progress, save_figure
from bench.servers import bentoml_serve
from bench.workload import SMALL, history_body, observe_body, one_torch_thread, publish, random_checkpoint
from bench.wrk import measure as load
from service.engine import Engine


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: first calls allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def in_process(engine: Engine, length: int, repeats: int) -> tuple[float, float]:
    body = history_body(length)
    start = pd.Timestamp(body["start"]).to_pydatetime()

    def whole() -> object:
        prepared = engine.prepare(
            engine.check_history(body["history"], body["covariates"], start, body["future_covariates"])
        )
        return engine.run([prepared], [None])

    prepared = engine.prepare(
        engine.check_history(body["history"], body["covariates"], start, body["future_covariates"])
    )
    state = engine.run([prepared], [None]).states[0]
    step = observe_body("", length, 0)

    def one() -> object:
        new = engine.prepare(
            engine.check_observe(step["values"], step["covariates"], prepared.next_time, step["future_covariates"])
        )
        return engine.run([new], [state])

    return median_ms(whole, repeats), median_ms(one, repeats)


def over_http(url: str, length: int, seconds: float) -> tuple[float, float]:
    """Median ms of /forecast with the whole history and of /observe with one value, one wrk connection each."""
    whole = load(url, "forecast", 1, seconds, length)["p50"]
    return whole, load(url, "observe", 1, seconds, length)["p50"]


def run(lengths: list[int], repeats: int, seconds: float, out: Path) -> Table:
    table = Table(
        "streaming",
        ["history", "path", "/forecast whole history (ms)", "/observe one value (ms)", "observe is cheaper by"],
    )
    engine = Engine(random_checkpoint(SMALL), "bench", max_history=max(lengths))
    for length in lengths:
        with one_torch_thread():
            whole, one = in_process(engine, length, repeats)
        table.add(length, "in-process", whole, one, f"{whole / one:.1f}x")
        progress(f"streaming: in-process, history {length}")
    with tempfile.TemporaryDirectory() as home:
        publish(Path(home), SMALL)
        with bentoml_serve(Path(home), Path(home) / "serve.log", max_history=max(lengths)) as running:
            for length in lengths:
                whole, one = over_http(running.url, length, seconds)
                table.add(length, "HTTP", whole, one, f"{whole / one:.1f}x")
                progress(f"streaming: HTTP, history {length}")
    table.notes.append(
        f"Model: {SMALL.label}, LSTM, horizon 48, elecdemand features. In-process: medians of {repeats} calls on one "
        "torch thread, as the worker. "
        f"HTTP: median latency over {seconds:g} s of one wrk connection, after a 1 s warm-up."
    )
    _plot(table, out / "streaming.png")
    return table


def _plot(table: Table, path: Path) -> None:
    fig, ax = figure(figsize=(6, 4))
    for where, style in (("in-process", "--"), ("HTTP", "-")):
        rows = [r for r in table.rows if r[1] == where]
        ax.plot([r[0] for r in rows], [r[2] for r in rows], style, marker="o", label=f"/forecast, {where}")
        ax.plot([r[0] for r in rows], [r[3] for r in rows], style, marker="s", label=f"/observe, {where}")
    ax.set(xscale="log", yscale="log", xlabel="history length", ylabel="ms per request (median)")
    ax.set_title("Re-reading the history vs one step of a kept session")
    ax.legend()
    save_figure(fig, path)
