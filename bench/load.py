"""A closed-loop HTTP load generator, run as its own process so it does not share an interpreter with what it
measures: ``concurrency`` clients each send one request, wait for the answer, and send the next, until time is
up. With ``--interval`` each client instead starts a request every that many seconds (a paced client, as a
sensor or a meter is), waiting for the previous answer first. Prints one JSON line: requests, errors by kind,
requests/s and latency percentiles in ms. The soak bench uses it paced; closed-loop load for the serve
bench comes from wrk (bench/wrk.py), which costs the shared cores far less per request.

    python -m bench.load URL forecast|observe|noop --concurrency 8 --seconds 5 --history 336 [--interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from bench.servers import wait_until_idle
from bench.workload import history_body, observe_body

OPEN_ATTEMPTS = 10


@dataclass
class Client:
    """What one client carries from request to request: its body offset, and its session's id and seq."""

    offset: int
    session: str = ""
    seq: int = 0


async def _open(http: httpx.AsyncClient, client: Client, history: int, failures: Counter[str]) -> None:
    """Opens the client's session; a failed open is counted and retried, a few times."""
    for _ in range(OPEN_ATTEMPTS):
        try:
            opened = await http.post("/open", json=history_body(history, client.offset))
        except httpx.TransportError as error:
            failures[f"/open {type(error).__name__}"] += 1
            continue
        if opened.status_code == 200:
            client.session, client.seq = opened.json()["session_id"], opened.json()["seq"]
            return
        failures[f"/open {opened.status_code}"] += 1
    raise RuntimeError(f"no session opened in {OPEN_ATTEMPTS} attempts: {dict(failures)}")


async def _client(
    http: httpx.AsyncClient,
    kind: str,
    history: int,
    client: Client,
    deadline: float,
    interval: float,
    latencies: list[float],
    failures: Counter[str],
) -> None:
    """One client's loop; failed requests are counted in ``failures`` by HTTP status or transport error."""
    body: dict[str, Any] = history_body(history, client.offset)
    # Paced clients start at random phases so that they do not arrive in lockstep.
    due = time.perf_counter() + random.uniform(0, interval)
    while time.perf_counter() < deadline:
        if interval:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            due = max(due + interval, time.perf_counter())  # a late answer delays the next send, never bunches
        if kind != "forecast":
            body = observe_body(client.session, client.seq, client.offset)
        start = time.perf_counter()
        try:
            answer = await http.post(f"/{kind}", json=body)
        except httpx.TransportError as error:
            failures[type(error).__name__] += 1
            continue
        latencies.append(time.perf_counter() - start)
        if answer.status_code != 200:
            failures[str(answer.status_code)] += 1
        elif kind == "observe":
            client.seq = answer.json()["seq"]


async def measure(
    url: str, kind: str, concurrency: int, seconds: float, history: int, interval: float = 0.0
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [Client(7 * k) for k in range(concurrency)]
    failures: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        # Before the measurement: sessions opened, a short warm-up (connections, first-call allocations, the
        # batcher's estimates), and a wait until the service has served what both left in flight.
        if kind in ("observe", "noop"):
            await asyncio.gather(*(_open(http, client, history, failures) for client in clients))
        warm_up = time.perf_counter() + 1
        await asyncio.gather(*(_client(http, kind, history, c, warm_up, 0.0, [], Counter()) for c in clients))
        await asyncio.to_thread(wait_until_idle, url)
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(_client(http, kind, history, c, deadline, interval, latencies, failures) for c in clients)
        )
        elapsed = time.perf_counter() - started
    ms = 1000 * np.asarray(latencies)
    return {
        "requests": len(latencies),
        "errors": sum(failures.values()),
        "error_kinds": dict(failures),
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("kind", choices=["forecast", "observe", "noop"])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--history", type=int, default=336)
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between a client's sends; 0: closed loop")
    args = parser.parse_args()
    measured = measure(args.url, args.kind, args.concurrency, args.seconds, args.history, args.interval)
    print(json.dumps(asyncio.run(measured)))  # noqa: T201


if __name__ == "__main__":
    main()
