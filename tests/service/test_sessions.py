"""Session handling in-process: what a failure, a bad value or a non-finite forecast leaves behind."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from service.engine import Engine, RunResult
from service.records import SessionRecord
from service.schemas import ObserveRequest, Reason, Rejection, SessionResponse
from service.sessions import Sessions
from service.store import MemoryStore
from tests.service.bodies import make_engine

START = np.datetime64("2024-05-03T21:00").astype("datetime64[us]").astype(object)
AHEAD = [[15.0]] * 6


def _observe(session: str, seq: int, new: list[float], **change: Any) -> ObserveRequest:
    body = {"session_id": session, "seq": seq, "values": new, "covariates": [[3.0, 15.0]] * len(new)}
    return ObserveRequest(**{**body, "future_covariates": AHEAD, **change})


async def _opened(sessions: Sessions, engine: Engine) -> tuple[str, bytes]:
    prepared = engine.prepare(engine.check_history([10.0, 11.0, 12.0], [[3.0, 15.0]] * 3, START, AHEAD))
    opened = await sessions.open(prepared)
    assert isinstance(opened, SessionResponse)
    blob = (await sessions.store.get_many([opened.session_id]))[0]
    assert blob is not None
    return opened.session_id, blob


def test_a_failed_forward_pass_leaves_the_stored_session_unchanged() -> None:
    engine, store = make_engine(), MemoryStore(ttl_s=60, max_sessions=10)
    sessions = Sessions(engine, store)

    async def scenario() -> None:
        session, before = await _opened(sessions, engine)
        working = engine.run

        def broken(*args: Any) -> RunResult:
            raise RuntimeError("out of memory")

        engine.run = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await sessions.observe([_observe(session, 3, [13.0])])
        assert (await store.get_many([session]))[0] == before
        engine.run = working  # type: ignore[method-assign]
        [after] = await sessions.observe([_observe(session, 3, [13.0])])
        assert isinstance(after, SessionResponse) and after.seq == 4

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"values": [1e300]}, "values"),
        ({"values": [3e38]}, "values"),
        ({"covariates": [[3.0, 1e12]]}, "covariates"),
        ({"future_covariates": [[1e9]] * 6}, "future_covariates"),
    ],
)
def test_values_far_outside_the_training_range_are_refused_and_change_nothing(
    change: dict[str, Any], field: str
) -> None:
    engine = make_engine()
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10))

    async def scenario() -> None:
        session, before = await _opened(sessions, engine)
        [refused] = await sessions.observe([_observe(session, 3, [13.0], **change)])
        assert isinstance(refused, Rejection) and refused.reason is Reason.BAD_INPUT and refused.field == field
        assert "far outside the training data's range" in refused.error
        assert (await sessions.store.get_many([session]))[0] == before

    asyncio.run(scenario())


def test_a_non_finite_forecast_is_refused_and_not_stored() -> None:
    engine = make_engine()
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10))

    async def scenario() -> None:
        session, before = await _opened(sessions, engine)
        other, _ = await _opened(sessions, engine)
        real = engine.run

        def first_goes_nan(*args: Any) -> RunResult:
            result = real(*args)
            result.forecasts[0] = np.nan
            return RunResult(result.forecasts, result.states, np.isfinite(result.forecasts).all(axis=(1, 2)))

        engine.run = first_goes_nan  # type: ignore[method-assign]
        refused, fine = await sessions.observe([_observe(session, 3, [13.0]), _observe(other, 3, [13.0])])
        assert isinstance(refused, Rejection) and refused.reason is Reason.NON_FINITE_FORECAST
        assert isinstance(fine, SessionResponse) and fine.seq == 4  # its batch-mate is unaffected
        assert (await sessions.store.get_many([session]))[0] == before

    asyncio.run(scenario())


def test_the_stored_record_is_what_the_answer_says() -> None:
    engine = make_engine()
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10))

    async def scenario() -> None:
        session, _ = await _opened(sessions, engine)
        [answer] = await sessions.observe([_observe(session, 3, [13.0, 14.0])])
        record = SessionRecord.from_bytes((await sessions.store.get_many([session]))[0] or b"")
        assert isinstance(answer, SessionResponse)
        assert record.seq == answer.seq == 5
        assert record.model == engine.tag
        np.testing.assert_allclose(record.last_forecast[:, 1], answer.forecast)

    asyncio.run(scenario())


def test_a_session_keeps_the_series_it_was_opened_for() -> None:
    engine = make_engine(per_series=True)
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10))
    values = [1010.0, 990.0, 1100.0, 1050.0, 960.0]
    covariates = [[30.0, 20.0]] * 5

    async def scenario() -> None:
        opened = await sessions.open(
            engine.prepare(engine.check_history(values[:3], covariates[:3], START, AHEAD, "large"))
        )
        assert isinstance(opened, SessionResponse)
        [answer] = await sessions.observe([_observe(opened.session_id, 3, values[3:], covariates=covariates[3:])])
        whole = engine.run([engine.prepare(engine.check_history(values, covariates, START, AHEAD, "large"))], [None])
        assert isinstance(answer, SessionResponse)
        np.testing.assert_allclose(answer.forecast, whole.forecasts[0][:, 1], rtol=1e-5)
        record = SessionRecord.from_bytes((await sessions.store.get_many([opened.session_id]))[0] or b"")
        assert record.series == "large"

    asyncio.run(scenario())


def test_a_session_of_a_series_the_model_did_not_train_on_keeps_its_opening_statistics() -> None:
    """Later values are scaled by the statistics of the opening history, not refitted on what they add."""
    engine = make_engine(per_series=True)
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10))
    rng = np.random.default_rng(6)
    values, covariates = rng.normal(500, 80, 20).tolist(), rng.normal(20, 4, (20, 2)).tolist()

    async def scenario() -> None:
        opening = engine.prepare(engine.check_history(values[:14], covariates[:14], START, AHEAD))
        opened = await sessions.open(opening)
        assert isinstance(opened, SessionResponse)
        record = SessionRecord.from_bytes((await sessions.store.get_many([opened.session_id]))[0] or b"")
        assert record.series is None and record.scaling == opening.scaling
        [answer] = await sessions.observe([_observe(opened.session_id, 14, values[14:], covariates=covariates[14:])])
        assert isinstance(answer, SessionResponse)
        start = int(np.datetime64(START, "ns").astype(np.int64))
        whole = engine.prepare(engine.check_observe(values, covariates, start, AHEAD, None, opening.scaling))
        np.testing.assert_allclose(answer.forecast, engine.run([whole], [None]).forecasts[0][:, 1], rtol=1e-5)
        refitted = engine.run([engine.prepare(engine.check_history(values, covariates, START, AHEAD))], [None])
        assert not np.allclose(answer.forecast, refitted.forecasts[0][:, 1], rtol=1e-5)
        after = SessionRecord.from_bytes((await sessions.store.get_many([opened.session_id]))[0] or b"")
        assert after.scaling == opening.scaling

    asyncio.run(scenario())


def test_a_long_pass_runs_beside_the_event_loop_and_a_one_step_pass_on_it() -> None:
    """A batch of long histories must not stall what else the worker serves (health checks, other requests)."""
    engine = make_engine()
    sessions = Sessions(engine, MemoryStore(ttl_s=60, max_sessions=10))
    working, threads = engine.run, []

    def slow(*args: Any) -> RunResult:
        threads.append(threading.current_thread())
        time.sleep(0.3)  # holds its thread as a long torch pass would, without the GIL
        return working(*args)

    engine.run = slow  # type: ignore[method-assign]
    long = engine.prepare(engine.check_history([10.0] * 600, [[3.0, 15.0]] * 600, START, AHEAD))

    async def ticking(work: Any) -> tuple[Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            return await work, ticks
        finally:
            ticker.cancel()

    async def scenario() -> None:
        opened, ticks = await ticking(sessions.open(long))
        assert isinstance(opened, SessionResponse)
        assert ticks >= 10 and threads[-1] is not threading.main_thread()
        [observed], ticks = await ticking(sessions.observe([_observe(opened.session_id, 600, [11.0])]))
        assert isinstance(observed, SessionResponse)
        assert ticks == 0 and threads[-1] is threading.main_thread()

    asyncio.run(scenario())


def test_a_record_without_the_statistics_its_model_needs_is_refused_alone() -> None:
    """Under a model scaled per series, a record naming no series and holding no statistics (an older format's,
    or a corrupt one), or naming a series the model does not know, fails its own observe, not the batch's."""
    engine = make_engine(per_series=True)
    store = MemoryStore(ttl_s=60, max_sessions=10)
    sessions = Sessions(engine, store)
    covariates = [[30.0, 20.0]] * 3

    async def scenario() -> None:
        ids = []
        for _ in range(3):
            opened = await sessions.open(
                engine.prepare(engine.check_history([1.0, 2.0, 3.0], covariates, START, AHEAD, "large"))
            )
            assert isinstance(opened, SessionResponse)
            ids.append(opened.session_id)
        for sid, series in zip(ids[1:], (None, "unknown"), strict=True):
            record = SessionRecord.from_bytes((await store.get_many([sid]))[0] or b"")
            broken = SessionRecord(
                record.model,
                record.seq,
                record.next_time,
                record.state,
                record.last_digest,
                record.last_forecast,
                series,
                None,
            )
            store._sessions[sid] = (record.seq, broken.to_bytes(), time.monotonic() + 60)
        answers = await sessions.observe([_observe(sid, 3, [4.0], covariates=[[30.0, 20.0]]) for sid in ids])
        assert isinstance(answers[0], SessionResponse) and answers[0].seq == 4
        for refused in answers[1:]:
            assert isinstance(refused, Rejection) and refused.reason is Reason.STALE_SESSION, refused
            assert "cannot be read" in refused.error

    asyncio.run(scenario())
