"""Health checks under load: how long `/readyz` takes while closed-loop clients keep the worker busy with
`/forecast` (whose passes over long histories run beside the event loop), `/observe` (whose one-step passes
run on it), or abuse: bodies just under the size limit that ask for far more work than a request may (each is
refused, on a count of its numbers before it is parsed). An orchestrator's probe that times out (Kubernetes:
after 1 s by default) takes a loaded replica out of service, or restarts it."""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from bench.report import Table, progress
from bench.servers import bentoml_serve
from bench.workload import LARGE, SMALL, publish
from bench.wrk import measure as load

PROBE_EVERY_S = 0.1
PROBE_TIMEOUT_S = 1.0  # Kubernetes' default timeoutSeconds
ABUSERS = 8
# 45 histories of 20,000 values, 3.6 MB: inside the body limit (4 MiB), 18 times the values one request may hold.
ABUSE = [{"history": [1.5] * 20_000, "start": "2014-01-01T00:00:00"}] * 45


def _probe(url: str, seconds: float) -> np.ndarray:
    """Latencies (ms) of `/readyz` polled every PROBE_EVERY_S for ``seconds``."""
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            client.get("/readyz").raise_for_status()
            latencies.append(time.perf_counter() - began)
            time.sleep(PROBE_EVERY_S)
    return 1000 * np.asarray(latencies)


def run(clients: int, seconds: float) -> Table:
    table = Table(
        "probes", ["model", "load", "clients", "load req/s", "/readyz p50 ms", "p99 ms", "max ms", "over 1 s"]
    )
    with tempfile.TemporaryDirectory() as workdir:
        home = Path(workdir)
        for size in (SMALL, LARGE):
            tag = publish(home, size)
            with bentoml_serve(home, home / "serve.log", model_tag=tag) as running:
                for kind in ("forecast", "observe", "abuse"):
                    if kind == "abuse" and size is LARGE:
                        continue  # refused before any pass: the model plays no part
                    body, load_clients = (ABUSE, ABUSERS) if kind == "abuse" else (None, clients)
                    path = "forecast" if kind == "abuse" else kind
                    with ThreadPoolExecutor(1) as pool:
                        # wrk's own warm-up takes its first second; the probes start after it, end before wrk does.
                        loading = pool.submit(load, running.url, path, load_clients, seconds + 3, size.history, body)
                        time.sleep(2.5)
                        latencies = _probe(running.url, seconds)
                        measured = loading.result()
                    table.add(
                        size.name,
                        "3.6 MB bodies refused" if kind == "abuse" else f"/{kind}",
                        load_clients,
                        round(measured["rps"]),
                        float(np.median(latencies)),
                        float(np.percentile(latencies, 99)),
                        float(latencies.max()),
                        f"{(latencies > 1000 * PROBE_TIMEOUT_S).mean():.0%}",
                    )
                    progress(f"probes: {size.name} model under /{kind}")
    table.notes.append(
        f"`/readyz` polled every {PROBE_EVERY_S:g} s for {seconds:g} s from another process while wrk's {clients} "
        f"closed-loop clients keep one worker busy; models: {SMALL.label}, {LARGE.label}. over 1 s: the share of "
        "probes that Kubernetes' default timeout would count as failed."
    )
    return table
