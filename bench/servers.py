"""Real servers for tests and benchmarks: redis-server and `bentoml serve`, each on a free loopback port, stopped
afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 (connection errors are OSErrors, which ``wait_until`` waits out)."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def metric(url: str, family: str, suffix: str = "", **labels: str) -> float:
    """The sum of a metric family's samples on the service's /metrics, those whose names end in ``suffix`` and
    whose labels include ``labels``."""
    return sum(
        sample.value
        for found in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text)
        if found.name == family
        for sample in found.samples
        if sample.name.endswith(suffix) and labels.items() <= sample.labels.items()
    )


def batches_by_worker(url: str, method: str) -> dict[str, float]:
    """Batches of ``method`` each worker has run, by BentoML's worker index (its request metrics carry none)."""
    counts: dict[str, float] = {}
    for found in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        if found.name == "bentoml_service_adaptive_batch_size":
            for sample in found.samples:
                if sample.name.endswith("_count") and sample.labels.get("method_name") == method:
                    worker = sample.labels["worker_index"]
                    counts[worker] = counts.get(worker, 0) + sample.value
    return counts


def wait_for_workers(url: str, workers: int, forecast: Callable[[], object], timeout: float = 60) -> None:
    """Calls ``forecast`` until ``workers`` workers have each run a /forecast batch. /readyz answers once one
    worker is up, and until another accepts connections too, the kernel hands every connection to the first:
    a test that needs all of them must wait."""

    def all_serve() -> bool:
        forecast()
        return len(batches_by_worker(url, "forecast")) == workers

    wait_until(all_serve, timeout, f"{workers} workers serving")


def in_progress(url: str) -> float:
    """Requests the service is handling now (its /metrics does not count itself)."""
    return metric(url, "bentoml_service_request_in_progress")


def wait_until_idle(url: str, timeout: float = 300.0) -> None:
    """Waits for the service to finish what a load generator left behind. Closing connections when time is up
    does not stop the service answering every request it had read (64 large forecasts are seconds of work),
    which would otherwise be charged to the next measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if in_progress(url) == 0:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the service at {url} was still busy after {timeout:g} s")


def accepts(port: int) -> bool:
    """Whether something listens on ``port`` of 127.0.0.1 (a refusal is an OSError, which ``wait_until`` waits
    out)."""
    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    return True


@contextmanager
def redis_server(workdir: Path, appendonly: bool = False, port: int | None = None) -> Iterator[str]:
    """A redis-server of its own; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make install puts it there)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    command += ["--appendonly", "yes" if appendonly else "no", "--protected-mode", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: accepts(port), 10, "redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Service:
    """A running `bentoml serve` of seqcast's service."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM shuts down gracefully; SIGKILL kills every process of the service at once, workers included
        (BentoML starts each worker in a session of its own, so signalling the process group misses them)."""
        if self.process.poll() is not None:
            return
        if sig == signal.SIGKILL:
            self._kill_all()
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._kill_all()

    def _kill_all(self) -> None:
        root = psutil.Process(self.process.pid)
        for process in [root, *root.children(recursive=True)]:
            process.kill()
        self.process.wait(timeout=10)


def _own_home(bentoml_home: Path, near: Path) -> Path:
    """A BENTOML_HOME of the server's own that reads ``bentoml_home``'s models and bentos. BentoML keeps its
    Prometheus multiprocess files in BENTOML_HOME and empties that folder when a server starts, so two servers
    sharing a home would silently zero each other's /metrics."""
    home = Path(tempfile.mkdtemp(prefix="bentoml-home-", dir=near))
    for store in ("models", "bentos"):
        (bentoml_home / store).mkdir(parents=True, exist_ok=True)
        (home / store).symlink_to((bentoml_home / store).resolve(), target_is_directory=True)
    return home


@contextmanager
def bentoml_serve(
    bentoml_home: Path,
    log: Path,
    port: int | None = None,
    target: str = "service.service:Seqcast",
    cwd: Path = ROOT,
    command: list[str] | None = None,
    base_env: dict[str, str] | None = None,
    **settings: object,
) -> Iterator[Service]:
    """Serves ``target`` (the service in this checkout, or a bento tag) with SEQCAST_* settings from keyword
    arguments; waits until /readyz answers. ``command`` and ``base_env`` replace this environment's
    `bentoml serve` and its environment (an image's, say); the command must listen on ``port``."""
    port = port or free_port()
    home = _own_home(bentoml_home, log.parent)
    env = {**(base_env or {**os.environ, "PYTHONPATH": str(ROOT)}), "BENTOML_HOME": str(home)}
    env.update({f"SEQCAST_{key.upper()}": str(value) for key, value in settings.items()})
    if command is None:
        command = [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port), "--host", "127.0.0.1"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = Service(process, f"http://127.0.0.1:{port}", log)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited:\n{log.read_text()[-3000:]}")
            return answers(service.url + "/readyz")

        wait_until(ready, 90, "bentoml serve")
        yield service
    finally:
        service.stop()
