"""Starts a peer server on a free loopback port and stops it with every process it started (Ray's cluster,
LitServe's workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psutil

from bench.servers import ROOT, free_port, wait_until
from bench.workload import history_body


def _forecasts(url: str, history: int) -> bool:
    try:
        return httpx.post(url + "/forecast", json=history_body(history), timeout=30).status_code == 200
    except httpx.TransportError:  # not yet listening
        return False


def settle(url: str, history: int = 24) -> None:
    """Waits out what wrk left queued: a forecast sent now is answered after them (each peer answers in order)."""
    _forecasts(url, history)


@contextmanager
def peer_serve(name: str, checkpoint: Path, workdir: Path, history: int) -> Iterator[str]:
    """Serves ``checkpoint`` by the peer ``name``; yields its URL once a forecast of ``history`` values answers."""
    port = free_port()
    log = workdir / f"{name}.log"
    # Ray keeps its session files (sockets, logs) under RAY_TMPDIR; a folder of the run's keeps them apart.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(workdir / "ray")}
    command = [sys.executable, "-m", f"bench.peers.{name}_app", str(checkpoint), str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text()[-3000:]}")
            return _forecasts(url, history)

        wait_until(ready, 120, name)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the peer's process group, then SIGKILL to whatever of its tree is left (Ray's raylet and
    workers start sessions of their own). psutil's Process objects check that a pid is still theirs before they
    signal it, so a pid reused meanwhile is left alone."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:  # it exited already (a peer that failed to start): its log says why
        tree = []
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    for member in tree:
        with suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait(timeout=10)
