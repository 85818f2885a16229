"""Live scoring in-process: a session replaying a series' test part scores exactly what the report scored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from models import Checkpoint, Forecaster, ForecasterConfig
from service.engine import Engine
from service.metrics import LIVE_INTERVAL_HITS, LIVE_SCALED_ERROR, LIVE_SCORED
from service.schemas import ObserveRequest, SessionResponse
from service.scoring import STEP_LABELS, Scorer
from service.sessions import Sessions
from service.store import MemoryStore
from tests.conftest import synthetic_frame
from training.datamodule import SeriesDataModule
from training.evaluate import evaluate
from training.export import live_scoring

HORIZON = 12


def _model(tmp_path: Path, quantiles: tuple[float, ...]) -> tuple[Checkpoint, SeriesDataModule, dict]:
    """A randomly initialised forecaster over a synthetic half-hourly series, and its report on the test part."""
    synthetic_frame(points=1500).to_csv(tmp_path / "series.csv", index=False)
    data = SeriesDataModule(
        str(tmp_path / "series.csv"),
        future_covariates=["temperature"],
        calendar=["time_of_day"],
        input_size=48,
        horizon=HORIZON,
        val_size=200,
        test_size=200,
        chunk_length=144,
    )
    data.setup()
    torch.manual_seed(0)
    config = ForecasterConfig(
        input_dim=data.features.input_dim,
        horizon=HORIZON,
        future_dim=data.features.future_dim,
        hidden_size=16,
        quantiles=quantiles,
    )
    checkpoint = Checkpoint(config, data.features, data.scaling, Forecaster(config).state_dict())
    report, _ = evaluate(checkpoint, data)
    return checkpoint, data, report


def _counted(counter: object, tag: str, *extra: str) -> float:
    return sum(counter.labels(tag, steps, *extra)._value.get() for steps in STEP_LABELS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("quantiles", [(), (0.1, 0.5, 0.9)])
def test_replaying_the_test_part_through_a_session_gives_the_reports_mase(
    tmp_path: Path, quantiles: tuple[float, ...]
) -> None:
    checkpoint, data, report = _model(tmp_path, quantiles)
    tag = f"live-{len(quantiles)}:test"
    engine = Engine(checkpoint, tag)
    metadata = {"test_metrics": report["metrics"], **live_scoring(checkpoint, report)}
    scorer = Scorer.from_metadata(metadata, HORIZON, checkpoint.config.point_index, quantiles, engine.step_ns, 6.0)
    assert scorer is not None and scorer.origin_every_day  # half-hourly with timestamps: midnight origins
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10), scorer=scorer)
    series = data.series[0]
    y, temperature, start = series.target, series.covariates, data.test_part(series).start

    def ahead(t: int) -> list[list[float]]:
        rows = temperature[t + 1 : t + 1 + HORIZON].tolist()
        # Past the series' end the last temperature stands in: forecasts from there are never scored.
        return rows + [temperature[-1].tolist()] * (HORIZON - len(rows))

    async def replay() -> None:
        history = engine.check_history(
            y[:start].tolist(), temperature[:start].tolist(), series.timestamps[0].to_pydatetime(), ahead(start - 1)
        )
        opened = await sessions.open(engine.prepare(history))
        assert isinstance(opened, SessionResponse)
        for t in range(start, len(y)):
            body = {"session_id": opened.session_id, "seq": t, "values": [float(y[t])]}
            request = ObserveRequest(**body, covariates=[temperature[t].tolist()], future_covariates=ahead(t))
            [answer] = await sessions.observe([request])
            assert isinstance(answer, SessionResponse), answer

    asyncio.run(replay())
    scored = _counted(LIVE_SCORED, tag)
    assert scored == report["origins"] * HORIZON  # every value of every test origin's horizon, no other
    streaming = report["metrics"]["streaming"]
    assert _counted(LIVE_SCALED_ERROR, tag) / scored == pytest.approx(streaming["mase"], rel=1e-5)
    if quantiles:
        hits = _counted(LIVE_INTERVAL_HITS, tag, "80")
        assert hits / scored == pytest.approx(streaming["coverage"], abs=1e-9)


def _scorer(quantiles: tuple[float, ...] = ()) -> Scorer:
    metadata = {"naive_scales": {"s": 0.5}, "test_metrics": {"streaming": {"mase": 0.8}}}
    scorer = Scorer.from_metadata(metadata, 4, len(quantiles) // 2, quantiles, 1800 * 10**9, anomaly_k=6.0)
    assert scorer is not None
    return scorer


def test_values_far_from_their_forecast_are_flagged_and_still_scored() -> None:
    scorer = _scorer()
    origin = np.array([[10.0], [11.0], [12.0], [13.0]], dtype=np.float32)
    # One step in: the values fall on steps 2, 3 and 4; the last is 4 from its forecast, 8 scaled errors, over
    # 6 times the model's test MASE of 0.8.
    scored = scorer.score(origin, 1, np.array([11.5, 12.0, 17.0, 99.0]), scale=0.5)
    assert scored.anomalous == [2]  # 99.0 falls past the horizon: neither scored nor flagged
    by_label = {STEP_LABELS[b]: (sums.count, sums.scaled_error) for b, sums in scored.buckets.items()}
    assert by_label == {"2-3": (2, pytest.approx(1.0)), "4-7": (1, pytest.approx(8.0))}
    # One value at a time (the fast path) scores the same.
    one_by_one = [scorer.score(origin, 1 + i, np.array([v]), scale=0.5) for i, v in enumerate([11.5, 12.0, 17.0])]
    assert [s.anomalous for s in one_by_one] == [[], [], [0]]
    assert sum(sums.scaled_error for s in one_by_one for sums in s.buckets.values()) == pytest.approx(9.0)


def test_a_quantile_model_flags_values_outside_its_widest_interval() -> None:
    scorer = _scorer((0.1, 0.5, 0.9))
    assert scorer.interval_labels == ("80",)
    origin = np.array([[9.0, 10.0, 11.0]] * 4, dtype=np.float32)
    scored = scorer.score(origin, 0, np.array([10.5, 11.5, 8.0, 9.0]), scale=0.5)
    assert scored.anomalous == [1, 2]
    assert sum(sums.hits[0] for sums in scored.buckets.values()) == 2
    assert [scorer.score(origin, k, np.array([v]), 0.5).anomalous for k, v in enumerate([10.5, 11.5])] == [[], [0]]


def test_a_model_exported_before_live_scoring_serves_without_it() -> None:
    assert Scorer.from_metadata({"test_metrics": {"streaming": {"mase": 0.8}}}, 4, 0, (), 0, 6.0) is None
