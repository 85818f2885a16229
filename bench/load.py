"""A closed-loop HTTP load generator, run as its own process so it does not share an interpreter with what it
measures: ``concurrency`` clients each send one request, wait for the answer, and send the next, until time is
up. Prints one JSON line: requests, errors, requests/s and latency percentiles in ms.

    python -m bench.load URL forecast|observe|noop --concurrency 8 --seconds 5 --history 336
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np

from bench.workload import history_body, observe_body


async def _client(
    http: httpx.AsyncClient,
    kind: str,
    history: int,
    offset: int,
    deadline: float,
    latencies: list[float],
    failures: Counter[str],
) -> None:
    """One client's loop; failed requests are counted in ``failures`` by HTTP status or transport error."""
    body: dict[str, Any] = history_body(history, offset)
    session, seq = "", 0
    if kind in ("observe", "noop"):
        opened = await http.post("/open", json=body)
        while opened.status_code != 200:  # a shed or timed-out open counts as a failure and is retried
            failures[f"/open {opened.status_code}"] += 1
            if time.perf_counter() > deadline:
                return
            opened = await http.post("/open", json=body)
        session, seq = opened.json()["session_id"], opened.json()["seq"]
    while time.perf_counter() < deadline:
        if kind != "forecast":
            body = observe_body(session, seq, offset)
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
            seq = answer.json()["seq"]


async def measure(url: str, kind: str, concurrency: int, seconds: float, history: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        # A short warm-up outside the measurement: connections, first-call allocations, the batcher's estimates.
        warm_up = time.perf_counter() + 1
        await asyncio.gather(*(_client(http, kind, history, 7 * k, warm_up, [], Counter()) for k in range(concurrency)))
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(_client(http, kind, history, 7 * k, deadline, latencies, failures) for k in range(concurrency))
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
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.url, args.kind, args.concurrency, args.seconds, args.history))))  # noqa: T201


if __name__ == "__main__":
    main()
