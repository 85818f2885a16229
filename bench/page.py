"""``seqcast-bench report``: docs/benchmarks.md made from the committed results (bench/results/*.json and their
plots), so that no number in the docs is copied by hand. A test fails when the committed page differs from
what this makes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import Table

PAGE = Path("docs/benchmarks.md")
# What each benchmark asks, in the order a reader meets them; how each one measures is in
# docs/benchmark-methods.md.
QUESTIONS = {
    "streaming": "What does one new observation cost with a kept session, against re-sending the whole history?",
    "serve": "Requests/s and latency of the endpoints against BentoML's floor (`/noop`) and the engine alone.",
    "serve-peers": "seqcast next to LitServe, Ray Serve and a plain Starlette app serving the same model, and lists.",
    "scoring": "What does live scoring cost a served `/observe`, against the same service with it off?",
    "shadow": "What does a candidate model in shadow cost a served `/observe`, against the same service without?",
    "drift": "Does live accuracy show a level shift, day by day, against the model's test MASE?",
    "migration": "Sessions rebuilt from a tail under a new model: how far from the whole history, at what cost?",
    "probes": "Do health checks stay fast while clients keep a worker busy, or abuse it?",
    "memory": "How much memory does an open session take, in process and in Redis?",
    "soak": "Do many clients observing for minutes see errors, or the service's memory grow?",
    "accuracy": "Test MASE and sMAPE of the LSTM and GRU against naive, seasonal naive and ETS.",
    "field": "The same on data no config was tuned on, each set with the config `seqcast-train init` writes for it.",
    "smoothing": "What else was tried on taylor, with no network, to close the gap to MSTL-ETS?",
    "unseen": "Accuracy on series held out of training, scaled by their own history.",
    "train": "Training speed and time to accuracy against Darts and NeuralForecast on the same split.",
}

COMMANDS = {"serve-peers": "serve --peers"}  # results named otherwise than the command that makes them


def _table(path: Path) -> Table | None:
    body = json.loads(path.read_text())
    if not isinstance(body, dict) or "columns" not in body:
        return None  # a result that is not a table (train_curves.json feeds a plot)
    return Table(body["name"], body["columns"], body["rows"], body.get("notes", []))


def page(results: Path, page_path: Path = PAGE) -> str:
    """The markdown of the benchmarks page for the results in ``results``; plot links relative to the page."""
    tables = {t.name: t for t in (_table(p) for p in sorted(results.glob("*.json"))) if t is not None}
    order = [name for name in QUESTIONS if name in tables] + sorted(set(tables) - set(QUESTIONS))
    link = Path("../" * len(page_path.parent.parts)) / results
    lines = [
        "# Benchmarks",
        "",
        "Made by `seqcast-bench report` from `bench/results/*.json`: do not edit by hand. Each table is one run of",
        "the command under it, on this project's 2-core CPU. How each benchmark measures is in",
        "[benchmark-methods.md](benchmark-methods.md).",
    ]
    for name in order:
        lines += ["", f"## {name}", ""]
        if name in QUESTIONS:
            lines += [QUESTIONS[name], ""]
        lines += [f"`seqcast-bench {COMMANDS.get(name, name)}`", "", tables[name].markdown()]
        if (results / f"{name}.png").exists():
            lines += ["", f"![{name}]({link / f'{name}.png'})"]
    return "\n".join(lines) + "\n"


def write(results: Path, page_path: Path = PAGE) -> Path:
    page_path.parent.mkdir(parents=True, exist_ok=True)
    page_path.write_text(page(results, page_path))
    return page_path
