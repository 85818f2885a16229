"""Closed-loop load from wrk (Debian's `wrk`, in C): ``concurrency`` connections each send a request, wait for
its answer and send the next, until time is up. A Python client spends about as long per request as BentoML
does, so on two cores it would measure itself; wrk's own cost is a small fraction of that.

The bodies are the ones bench/workload.py cuts from elecdemand; bench/wrk_clients.lua sends them and keeps
each session's seq. Sessions are opened here, over HTTP, before wrk starts.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.servers import wait_until_idle
from bench.workload import history_body, observe_body

SCRIPT = Path(__file__).with_name("wrk_clients.lua")
OBSERVATIONS = 500  # distinct observe bodies, cycled by each session's seq
ERRORS = ("connect", "read", "write", "status", "timeout")


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _observation(seq: int) -> str:
    """An observe body after its session_id and seq, closing brace included, for the Lua script to complete."""
    body = observe_body("", seq, 0)
    del body["session_id"], body["seq"]
    return _compact(body)[1:]


def _open_sessions(url: str, count: int, history: int) -> list[tuple[str, int]]:
    with httpx.Client(base_url=url, timeout=60) as client:
        opened = [client.post("/open", json=history_body(history, 7 * k)).raise_for_status() for k in range(count)]
    return [(session.json()["session_id"], session.json()["seq"]) for session in opened]


def _wrk(
    url: str, kind: str, concurrency: int, seconds: int, workdir: Path, history: int, body: Any, items: int
) -> dict[str, Any]:
    bodies = workdir / "bodies.txt"
    arguments = [kind, str(items), str(bodies)]
    if body is not None:
        bodies.write_text(_compact(body) + "\n")
    elif kind == "forecast":
        count = max(concurrency * items, 8)
        bodies.write_text("".join(_compact(history_body(history, 7 * k)) + "\n" for k in range(count)))
    else:
        bodies.write_text("".join(_observation(seq) + "\n" for seq in range(OBSERVATIONS)))
        sessions = workdir / "sessions.txt"
        # One request's more than connections: wrk calls request() once before it connects, to check the script.
        opened = _open_sessions(url, (concurrency + 1) * items, history)
        sessions.write_text("".join(f"{id_} {seq}\n" for id_, seq in opened))
        arguments.append(str(sessions))
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (make install puts it there)")
    # One thread: the load generator stays on one core, and the pool of sessions stays in one Lua state.
    command = [binary, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s", "-s", str(SCRIPT), url]
    done = subprocess.run([*command, "--", *arguments], capture_output=True, text=True, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][4:])  # type: ignore[no-any-return]


def measure(
    url: str,
    kind: str,
    concurrency: int,
    seconds: float,
    history: int,
    body: Any = None,
    items: int = 1,
    idle: Callable[[str], None] = wait_until_idle,
) -> dict[str, Any]:
    """Requests, errors by kind, requests/s, items/s and latency percentiles in ms, after a 1 s warm-up of its
    own. ``body``: one /forecast body every request sends instead of elecdemand's histories. ``items`` > 1 sends
    lists of that many. ``idle`` waits for the server to finish what wrk left (seqcast's way reads /metrics)."""
    with tempfile.TemporaryDirectory() as workdir:
        # Warm-up outside the measurement: connections, first-call allocations, the batcher's estimates.
        _wrk(url, kind, concurrency, 1, Path(workdir), history, body, items)
        idle(url)
        summary = _wrk(url, kind, concurrency, math.ceil(seconds), Path(workdir), history, body, items)
        idle(url)
    failures = {error: summary[error] for error in ERRORS if summary[error]}
    seconds_run = summary["duration_us"] / 1e6
    return {
        "requests": summary["requests"],
        "errors": sum(failures.values()),
        "error_kinds": failures,
        "refused_items": summary["refused_items"],
        "rps": summary["requests"] / seconds_run,
        # Items answered 200: a refused request (a whole list shed, say) serves none of its items.
        "items_per_s": ((summary["requests"] - summary["status"]) * items - summary["refused_items"]) / seconds_run,
        "p50": summary["p50_us"] / 1000,
        "p95": summary["p95_us"] / 1000,
        "p99": summary["p99_us"] / 1000,
    }
