"""``seqcast-bench serve --peers``: seqcast next to the servers a user would pick instead (bench/peers/), the
same forecaster on one worker and one torch thread each, loaded by wrk the same way, in one run. Three questions:
(a) a stateless /forecast of a window; (b) what one new observation costs a client: seqcast's /observe against
each peer's only option, sending the window again; (c) the gateway pattern, lists of observes and forecasts in
one request, against the engine alone serving passes of the same size."""

from __future__ import annotations

import gc
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.peers.serving import peer_serve, settle
from bench.report import Table, figure, progress, save_figure
from bench.serve import in_process_rps
from bench.servers import bentoml_serve, metric
from bench.workload import SMALL, history_body, observe_body, publish, random_checkpoint
from bench.wrk import measure as load
from models import save_checkpoint
from service.schemas import ForecastRequest, ObserveRequest
from service.validation import ItemParser

COLUMNS = ["question", "server", "endpoint", "clients", "items", "req/s", "items/s", "p50 ms", "p99 ms", "errors"]
MAX_PASS = 64  # seqcast's max_batch_size, and the peers' batch limit


def _passes(url: str, endpoint: str) -> tuple[float, float, float]:
    """Items, requests and passes seqcast has served on ``endpoint`` so far: its own histogram counts items per
    pass, BentoML's dispatcher's counts the requests it merged (a list is one)."""
    items = metric(url, "seqcast_batch_size", "_sum", endpoint=endpoint)
    family = "bentoml_service_adaptive_batch_size"
    requests = metric(url, family, "_sum", method_name=endpoint)
    return items, requests, metric(url, family, "_count", method_name=endpoint)


@cache
def parse_rate(kind: str, items: int, seconds: float) -> float:
    """Items/s a worker would reach if it only parsed the bodies wrk sends, as seqcast parses them (the peers
    parse the same pydantic models): a ceiling of its own beside the engine's."""
    model = ObserveRequest if kind == "observe" else ForecastRequest
    one = observe_body("a-session", 7, 0) if kind == "observe" else history_body(SMALL.history)
    body = json.dumps([one] * items if items > 1 else one).encode()
    parser = ItemParser(model)
    # Without collections: this process holds every object the benchmark made, which a worker freezes out of
    # its collections (service.service), and walking them would be most of what this measures.
    gc.disable()
    try:
        parsed, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            parser(body, items > 1)
            parsed += items
        return parsed / (time.perf_counter() - began)
    finally:
        gc.enable()


class Rows:
    """The table and what the plot draws: items/s by server and question."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        extra = ["items/pass in requests", "engine items/s", "vs engine", "parse items/s"]
        self.table = Table("serve-peers", COLUMNS + extra)

    def measure(
        self,
        question: str,
        server: str,
        url: str,
        kind: str,
        clients: int,
        items: int = 1,
        idle: Callable[[str], None] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        before = _passes(url, kind) if idle is None else None
        extra = {"idle": idle} if idle is not None else {}
        measured = load(url, kind, clients, self.seconds, SMALL.history, items=items, **extra)
        per_pass = None
        if before is not None:  # seqcast: what the dispatcher formed, warm-up included
            items_, requests, passes = (now - then for now, then in zip(_passes(url, kind), before, strict=True))
            per_pass = (items_ / max(passes, 1), requests / max(passes, 1))
        self.add(question, server, endpoint or f"/{kind}", clients, items, measured, per_pass, kind)
        return measured

    def add(
        self,
        question: str,
        server: str,
        endpoint: str,
        clients: int,
        items: int,
        measured: dict[str, Any],
        per_pass: tuple[float, float] | None,
        kind: str,
    ) -> None:
        # The engine alone at the largest pass this load allows: what any server of this model could reach.
        pass_size = min(clients * items, MAX_PASS)
        engine = in_process_rps(SMALL, kind, pass_size, self.seconds / 2)
        self.table.add(
            question,
            server,
            endpoint,
            clients,
            items,
            round(measured["rps"]),
            round(measured["items_per_s"]),
            measured["p50"],
            measured["p99"],
            measured["errors"] + measured["refused_items"],
            f"{per_pass[0]:.1f} in {per_pass[1]:.1f}" if per_pass is not None else "",
            round(engine),
            f"{measured['items_per_s'] / engine:.0%}",
            round(parse_rate(kind, items, self.seconds / 4)),
        )


def run(clients: list[int], lists: list[int], list_clients: int, seconds: float, peers: list[str], out: Path) -> Table:
    rows = Rows(seconds)
    with tempfile.TemporaryDirectory() as workdir, ExitStack() as stack:
        home = Path(workdir)
        running = stack.enter_context(bentoml_serve(home, home / "serve.log", model_tag=publish(home, SMALL)))
        reference = _forecast(running.url)
        for count in clients:
            rows.measure("a: forecast a window", "seqcast", running.url, "forecast", count)
            rows.measure("b: one new observation", "seqcast", running.url, "observe", count)
            progress(f"serve --peers: seqcast, {count} clients")
        for items in lists:
            for kind in ("observe", "forecast"):
                rows.measure("c: lists", "seqcast", running.url, kind, list_clients, items)
            progress(f"serve --peers: seqcast, lists of {items}")
        stack.close()
        checkpoint = home / "peer.pt"
        save_checkpoint(random_checkpoint(SMALL), checkpoint)
        for peer in peers:
            with peer_serve(peer, checkpoint, home, SMALL.history) as url:
                _same_forecaster(peer, _forecast(url), reference)
                for count in clients:
                    measured = rows.measure("a: forecast a window", peer, url, "forecast", count, idle=settle)
                    # The same request: a peer keeps no state, so a new value costs the window again.
                    window = "/forecast, the window again (= a)"
                    rows.add("b: one new observation", peer, window, count, 1, measured, None, "forecast")
                    progress(f"serve --peers: {peer}, {count} clients")
    table = rows.table
    table.notes.append(
        f"{SMALL.label}, randomly initialised (speed does not depend on the weights). Every server: one worker, one "
        f"torch thread, the same engine (service/engine.py) behind it; a window is {SMALL.history} half-hours with "
        "their covariates, an observation one. wrk closed-loop on loopback (one thread, sharing the 2 cores), "
        f"{seconds:g} s per row after a 1 s warm-up. Peers: Starlette on uvicorn (no batching), LitServe (batches "
        f"of up to {MAX_PASS}, 5 ms timeout), Ray Serve (@serve.batch up to {MAX_PASS}, its default 10 ms wait). "
        "parse items/s: the bodies' pydantic parse alone, in process. items/pass: the mean pass seqcast formed, "
        "in items, and in how many requests (lists) BentoML merged. "
        "engine items/s: the engine alone in passes of "
        f"clients x items (at most {MAX_PASS}); vs engine: items/s over it. errors: failed requests and refused "
        "items."
    )
    _plot(table, out / "serve-peers.png")
    return table


def _forecast(url: str) -> list[float]:
    answer = httpx.post(url + "/forecast", json=history_body(SMALL.history), timeout=60).raise_for_status()
    return list(answer.json()["forecast"])


def _same_forecaster(peer: str, forecast: list[float], reference: list[float]) -> None:
    """A table of servers compares servers only if each answers as seqcast does."""
    if not np.allclose(forecast, reference, rtol=0, atol=1e-5):
        raise RuntimeError(f"{peer} forecasts otherwise than seqcast: {forecast[:3]} against {reference[:3]}")


def _plot(table: Table, path: Path) -> None:
    """Items/s by clients, one line per server and question: where seqcast's kept state pays and where the floor
    of a server shows."""
    index = {name: i for i, name in enumerate(table.columns)}
    fig, axes = figure(1, 2, figsize=(11, 4), squeeze=False)
    for ax, question in zip(axes[0], ("a: forecast a window", "b: one new observation"), strict=True):
        for server in dict.fromkeys(row[index["server"]] for row in table.rows):
            points = [
                (row[index["clients"]], row[index["items/s"]])
                for row in table.rows
                if row[index["question"]] == question and row[index["server"]] == server
            ]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=server)
        ax.set(title=question, xlabel="clients", ylabel="answers/s", xscale="log")
        counts = sorted({row[index["clients"]] for row in table.rows})
        ax.set_xticks(counts, [str(count) for count in counts])
        ax.legend()
    save_figure(fig, path)
