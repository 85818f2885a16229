"""What a feature costs a served /observe: one worker, the small model, wrk at 64 clients, with the feature off and
on in turn (off-on, on-off), in one run. ``seqcast-bench scoring``: live scoring (service/scoring.py;
SEQCAST_LIVE_SCORING). ``seqcast-bench shadow``: a candidate following every session (SEQCAST_SHADOW_MODEL_TAG)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.report import Table, progress
from bench.servers import bentoml_serve
from bench.workload import SMALL, publish, publish_retrained
from bench.wrk import measure as load


def _off_on(
    table: Table, home: Path, settings: dict[bool, dict[str, Any]], clients: int, seconds: float, rounds: int
) -> float:
    """Adds a row per server run to ``table`` and returns the median req/s with the feature on over off."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(1, rounds + 1):
        # Off-on, then on-off (ABBA): a drift of the machine over the run, or whatever the last server of a run
        # suffers, weighs on both alike.
        for on in (False, True) if round_ % 2 else (True, False):
            with bentoml_serve(home, home / "serve.log", **settings[on]) as running:
                measured = load(running.url, "observe", clients, seconds, SMALL.history)
            rates[on].append(measured["rps"])
            row = [round(measured["rps"]), measured["p50"], measured["p99"], measured["errors"]]
            table.add("on" if on else "off", round_, clients, *row)
            progress(f"{table.name}: round {round_}, {'on' if on else 'off'}")
    return statistics.median(rates[True]) / statistics.median(rates[False])


def run(clients: int, seconds: float, rounds: int, out: Path) -> Table:
    table = Table("scoring", ["live scoring", "round", "clients", "req/s", "p50 ms", "p99 ms", "errors"])
    with tempfile.TemporaryDirectory() as workdir:
        home = Path(workdir)
        tag = publish(home, SMALL)
        settings = {on: {"model_tag": tag, "live_scoring": on} for on in (False, True)}
        ratio = _off_on(table, home, settings, clients, seconds, rounds)
    table.notes.append(
        f"/observe req/s with live scoring on / off, median over the rounds: {ratio:.1%}; one server's rate "
        "differs from the next one's by up to a quarter here, whichever comes first. One value per observe from "
        f"wrk on loopback (sessions step half-hourly, so each passes a midnight origin every 48 observes and "
        f"nearly every value is scored); {SMALL.label}, one worker, {seconds:g} s per row."
    )
    return table


def run_shadow(clients: int, seconds: float, rounds: int, out: Path) -> Table:
    table = Table("shadow", ["shadow", "round", "clients", "req/s", "p50 ms", "p99 ms", "errors"])
    with tempfile.TemporaryDirectory() as workdir:
        home = Path(workdir)
        publish(home, SMALL)
        served, candidate = publish_retrained(home)
        settings = {False: {"model_tag": served}, True: {"model_tag": served, "shadow_model_tag": candidate}}
        ratio = _off_on(table, home, settings, clients, seconds, rounds)
    table.notes.append(
        f"/observe req/s with a shadow / without, median over the rounds: {ratio:.1%}. The shadow is the same "
        f"model with other weights, scored live as the served one is; {SMALL.label}, one worker, one value per "
        f"observe from wrk on loopback, {seconds:g} s per row."
    )
    return table
