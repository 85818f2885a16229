"""Live accuracy around a level shift: an LSTM trained by ``seqcast-train fit`` on the taylor series, its test part
replayed through one session (the service's engine and sessions, in-process), the demand raised by a step halfway.
Each day's live MASE is read from the service's own counters, next to the model's test MASE and the drift alert's
threshold (1.5x it)."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.report import Table, figure, progress
from bench.workload import data_options, train_checkpoint
from models.checkpoint import load_checkpoint
from service.engine import Engine
from service.metrics import LIVE_ANOMALIES, LIVE_SCALED_ERROR, LIVE_SCORED
from service.schemas import ObserveRequest, SessionResponse
from service.scoring import STEP_LABELS, Scorer
from service.sessions import Sessions
from service.store import MemoryStore
from training.datamodule import SeriesDataModule
from training.export import live_scoring

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "taylor.yaml"
TAG = "seqcast-taylor:drift"


def _counted(counter: object, *labels: str) -> float:
    return sum(counter.labels(TAG, steps, *labels)._value.get() for steps in STEP_LABELS)  # type: ignore[attr-defined]


async def _replay(
    sessions: Sessions, y: np.ndarray, start: int, stamp: datetime, horizon: int
) -> list[tuple[float, int]]:
    """Opens on ``y[:start]``, observes the rest a value at a time; each day's live MASE and anomalies."""
    engine = sessions.engine
    opened = await sessions.open(engine.prepare(engine.check_history(y[:start].tolist(), None, stamp, None)))
    assert isinstance(opened, SessionResponse)
    days = []
    for day_start in range(start, len(y), horizon):
        errors, scored = _counted(LIVE_SCALED_ERROR), _counted(LIVE_SCORED)
        anomalies = LIVE_ANOMALIES.labels(TAG)._value.get()
        for t in range(day_start, min(day_start + horizon, len(y))):
            request = ObserveRequest(
                session_id=opened.session_id, seq=t, values=[y[t]], covariates=None, future_covariates=None
            )
            [answer] = await sessions.observe([request])
            assert isinstance(answer, SessionResponse), answer
        mase = (_counted(LIVE_SCALED_ERROR) - errors) / max(_counted(LIVE_SCORED) - scored, 1)
        days.append((mase, int(LIVE_ANOMALIES.labels(TAG)._value.get() - anomalies)))
    return days


def run(epochs: int, shift: float, out: Path) -> Table:
    import asyncio

    with tempfile.TemporaryDirectory() as workdir:
        progress(f"drift: training the taylor LSTM for {epochs} epochs")
        path, report = train_checkpoint(CONFIG, Path(workdir), epochs)
        checkpoint = load_checkpoint(path)
    data = SeriesDataModule(**data_options(CONFIG))
    data.setup()
    series = data.series[0]
    start, horizon = data.test_part(series).start, checkpoint.config.horizon
    engine = Engine(checkpoint, TAG)
    metadata = {"test_metrics": report["metrics"], **live_scoring(checkpoint, report)}
    scorer = Scorer.from_metadata(metadata, horizon, checkpoint.config.point_index, (), engine.step_ns, 6.0)
    assert scorer is not None
    y = series.target.copy()
    half = start + (len(y) - start) // 2
    y[half:] *= 1 + shift  # demand a step higher from the middle of the test part on
    progress("drift: replaying the test part through a session")
    sessions = Sessions(engine, MemoryStore(ttl_s=3600, max_sessions=10), scorer=scorer)
    days = asyncio.run(_replay(sessions, y, start, series.timestamps[0].to_pydatetime(), horizon))
    test_mase = report["metrics"]["streaming"]["mase"]
    table = Table("drift", ["day", "shifted", "live MASE", "vs test MASE", "anomalies"])
    for day, (mase, anomalies) in enumerate(days, start=1):
        shifted = start + (day - 1) * horizon >= half
        table.add(day, "yes" if shifted else "no", mase, f"{mase / test_mase:.2f}x", anomalies)
    table.notes.append(
        f"Test MASE {test_mase:.3f} (report.json, streaming); the test part's 14 days replayed one value per "
        f"observe; from day {(half - start) // horizon + 1} on, demand {shift:+.0%}. SeqcastForecastDrift fires "
        "when the 24 h live MASE passes 1.5x the test MASE."
    )
    _plot(days, test_mase, (half - start) / horizon, out / "drift.png")
    return table


def _plot(days: list[tuple[float, int]], test_mase: float, shift_day: float, path: Path) -> None:
    fig, ax = figure(figsize=(8, 3.5))
    ax.plot(range(1, len(days) + 1), [mase for mase, _ in days], marker="o", label="live MASE, per day")
    ax.axhline(test_mase, color="tab:gray", ls="--", label="test MASE")
    ax.axhline(1.5 * test_mase, color="tab:red", ls=":", label="drift alert (1.5x)")
    ax.axvline(shift_day + 0.5, color="black", lw=0.8)
    ax.text(shift_day + 0.6, ax.get_ylim()[1] * 0.9, "level shift", fontsize=8)
    ax.set_xlabel("day of the test part")
    ax.set_ylabel("MASE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
