"""A bounded soak: many clients observing their sessions for minutes against a real `bentoml serve` over Redis,
while the service's resident memory is sampled. Passes when no request failed and memory stayed flat.

Clients are paced (one observe every ``interval`` seconds each), as meters and sensors are: a soak asks whether
a steady load can be carried for long without errors or leaks. Overload is the closed-loop ``serve`` bench's
business; ``--interval 0`` turns this into one."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench.report import Table, figure, progress, save_figure
from bench.servers import bentoml_serve, redis_server
from bench.workload import SMALL, publish


def _resident_mib(pid: int) -> float:
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


def run(clients: int, seconds: float, workers: int, interval: float, out: Path) -> Table:
    table = Table("soak", ["elapsed (s)", "service memory (MiB)"])
    with tempfile.TemporaryDirectory() as workdir, ExitStack() as stack:
        home = Path(workdir)
        redis_url = stack.enter_context(redis_server(home / "redis"))
        tag = publish(home, SMALL)
        running = stack.enter_context(
            bentoml_serve(home, home / "serve.log", model_tag=tag, session_store=redis_url, workers=workers)
        )
        command = [sys.executable, "-m", "bench.load", running.url, "observe", "--concurrency", str(clients)]
        command += ["--seconds", str(seconds), "--interval", str(interval)]
        load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        began = time.monotonic()
        samples: list[tuple[float, float]] = []
        while load.poll() is None:
            samples.append((time.monotonic() - began, _resident_mib(running.process.pid)))
            if len(samples) % 6 == 0:
                progress(f"soak: {samples[-1][0]:.0f} s, service {samples[-1][1]:.0f} MiB")
            time.sleep(5)
        measured = json.loads((load.stdout.read() if load.stdout else "").strip().splitlines()[-1])
    for elapsed, mib in samples[:: max(1, len(samples) // 12)]:
        table.add(round(elapsed), mib)
    # Memory is flat when the second half of the run grew it by less than 5%.
    half = samples[len(samples) // 2][1]
    pace = f"one observe every {interval:g} s each" if interval else "closed loop"
    growth = (samples[-1][1] - half) / half
    table.notes.append(
        f"{clients} clients ({pace}), {workers} workers over Redis, {seconds:g} s: {measured['requests']} observes, "
        f"{measured['errors']} errors {measured['error_kinds']}, {measured['rps']:.0f} req/s, p50 "
        f"{measured['p50']:.1f} ms, p99 {measured['p99']:.1f} ms; memory in the "
        f"second half {growth:+.1%} ({'flat' if abs(growth) < 0.05 else 'NOT flat'})."
    )
    _plot(samples, out / "soak.png")
    return table


def _plot(samples: list[tuple[float, float]], path: Path) -> None:
    fig, ax = figure(figsize=(6, 3.5))
    ax.plot([s[0] for s in samples], [s[1] for s in samples])
    ax.set(xlabel="seconds", ylabel="service resident memory (MiB)", title="Soak: memory under steady load")
    ax.set_ylim(bottom=0)
    save_figure(fig, path)
