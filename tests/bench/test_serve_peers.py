"""`seqcast-bench serve --peers` at a tiny size: every server comes up, answers as seqcast does (the harness
checks it before it measures), and serves every row without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import serve_peers
from bench.cli import SERVE_PEERS

pytestmark = pytest.mark.process  # starts bentoml serve, uvicorn, LitServe and a Ray cluster


def test_the_peer_harness_measures_every_server_on_both_questions_and_lists(tmp_path: Path) -> None:
    table = serve_peers.run([2], [4], 2, 1.0, list(SERVE_PEERS), tmp_path)
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert {row["server"] for row in rows} == {"seqcast", *SERVE_PEERS}
    for row in rows:
        assert row["errors"] == 0, row
        assert row["req/s"] > 0, row
        assert row["items/s"] == pytest.approx(row["req/s"] * row["items"], rel=0.02, abs=1), row
    questions = {(row["question"], row["server"]) for row in rows}
    for server in ("seqcast", *SERVE_PEERS):
        assert ("a: forecast a window", server) in questions
        assert ("b: one new observation", server) in questions
    lists = [row for row in rows if row["question"] == "c: lists"]
    assert {row["endpoint"] for row in lists} == {"/observe", "/forecast"}
    for row in lists:
        # Every item of a list is served in one pass: the pass holds at least the list.
        items_per_pass = float(row["items/pass in requests"].split(" in ")[0])
        assert items_per_pass >= 4, row
    assert (tmp_path / "serve-peers.png").stat().st_size > 10_000
