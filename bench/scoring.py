"""What live scoring costs a served /observe: one worker, the small model, wrk at 64 clients, with scoring off and on
in turn (off-on, on-off), twice each, in one run (service/scoring.py; SEQCAST_LIVE_SCORING)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.report import Table, progress
from bench.servers import bentoml_serve
from bench.workload import SMALL, publish
from bench.wrk import measure as load


def run(clients: int, seconds: float, rounds: int, out: Path) -> Table:
    table = Table("scoring", ["live scoring", "round", "clients", "req/s", "p50 ms", "p99 ms", "errors"])
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as workdir:
        home = Path(workdir)
        tag = publish(home, SMALL)
        for round_ in range(1, rounds + 1):
            # Off-on, then on-off (ABBA): a drift of the machine over the run, or whatever the last server of a
            # run suffers, weighs on both alike.
            for scoring in (False, True) if round_ % 2 else (True, False):
                with bentoml_serve(home, home / "serve.log", model_tag=tag, live_scoring=scoring) as running:
                    measured = load(running.url, "observe", clients, seconds, SMALL.history)
                rates[scoring].append(measured["rps"])
                row = [round(measured["rps"]), measured["p50"], measured["p99"], measured["errors"]]
                table.add("on" if scoring else "off", round_, clients, *row)
                progress(f"scoring: round {round_}, live scoring {'on' if scoring else 'off'}")
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    table.notes.append(
        f"/observe req/s with live scoring on / off, median over the rounds: {ratio:.1%}; one server's rate "
        "differs from the next one's by up to a quarter here, whichever comes first. One value per observe from "
        f"wrk on loopback (sessions step half-hourly, so each passes a midnight origin every 48 observes and "
        f"nearly every value is scored); {SMALL.label}, one worker, {seconds:g} s per row."
    )
    return table
