"""Sessions carried across a model change in-process: rebuilt from their tail when the models read the same
inputs, refused by name when they do not, and never changed by a refusal or a failure."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from models import FeatureSpec
from service.engine import Engine, RunResult
from service.metrics import SESSIONS
from service.records import SessionRecord
from service.schemas import ObserveRequest, Reason, Rejection, SessionResponse
from service.sessions import Sessions
from service.store import MemoryStore
from tests.service.bodies import ENGINE_SPEC, make_engine

START = np.datetime64("2024-05-03T21:00").astype("datetime64[us]").astype(object)
AHEAD = [[15.0]] * 6
OLD, NEW = "seqcast-forecaster:old", "seqcast-forecaster:new"


def _values(count: int, seed: int = 0) -> tuple[list[float], list[list[float]]]:
    rng = np.random.default_rng(seed)
    values = (10 + 2 * np.sin(np.arange(count) / 5) + rng.normal(0, 0.3, count)).tolist()
    return values, [[3.0 + 0.01 * k, 15.0 + 0.1 * (k % 7)] for k in range(count)]


def _retrained(engine: Engine, tag: str, seed: int = 1) -> Engine:
    """The same model trained again: the same inputs, other weights."""
    torch.manual_seed(seed)
    weights = {k: v + 0.1 * torch.randn_like(v) for k, v in engine.checkpoint.state_dict.items()}
    return Engine(dataclasses.replace(engine.checkpoint, state_dict=weights), tag)


def _two_models() -> tuple[MemoryStore, Engine, Engine]:
    """A store, and an old model and a new one that read the same inputs."""
    old = make_engine()
    old.tag = OLD
    return MemoryStore(ttl_s=60, max_sessions=10), old, _retrained(old, NEW)


def _offline(engine: Engine, values: list[float], covariates: list[list[float]], offset: int = 0) -> np.ndarray:
    """``engine``'s /forecast of the values from ``offset`` on: what a session rebuilt from them must answer."""
    start = START + offset * engine.spec.step.to_pytimedelta()
    checked = engine.check_history(values[offset:], covariates[offset:], start, AHEAD)
    return engine.run([engine.prepare(checked)], [None]).forecasts[0]


def _observe(session: str, seq: int, values: list[float], covariates: list[list[float]]) -> ObserveRequest:
    return ObserveRequest(session_id=session, seq=seq, values=values, covariates=covariates, future_covariates=AHEAD)


async def _open(sessions: Sessions, values: list[float], covariates: list[list[float]]) -> str:
    engine = sessions.engine
    opened = await sessions.open(engine.prepare(engine.check_history(values, covariates, START, AHEAD)))
    assert isinstance(opened, SessionResponse)
    return opened.session_id


def _answer(outcome: list[SessionResponse | Rejection]) -> SessionResponse:
    [answer] = outcome
    assert isinstance(answer, SessionResponse), answer
    return answer


def _quantiles(engine: Engine, answer: SessionResponse) -> np.ndarray:
    assert answer.quantiles is not None
    return np.column_stack([answer.quantiles[f"{q:g}"] for q in engine.config.quantiles])


def _migrated(tag: str) -> float:
    return SESSIONS.labels("migrated", tag)._value.get()  # type: ignore[attr-defined,no-any-return]


def test_a_session_moves_between_two_models_and_each_answer_is_exact_for_its_model() -> None:
    """A whole history within the tail: wherever the session was last stepped, each model's answer is its
    /forecast of the whole history, as two replicas serving old and new during a rolling update give."""
    store, old, new = _two_models()
    served = {OLD: Sessions(old, store, tail_length=100), NEW: Sessions(new, store, tail_length=100)}
    engines = {OLD: old, NEW: new}
    values, covariates = _values(40)
    migrated_before = _migrated(NEW), _migrated(OLD)

    async def scenario() -> None:
        session = await _open(served[OLD], values[:20], covariates[:20])
        for seq, tag in zip(range(20, 40, 4), [OLD, NEW, NEW, OLD, NEW], strict=True):
            request = _observe(session, seq, values[seq : seq + 4], covariates[seq : seq + 4])
            answer = _answer(await served[tag].observe([request]))
            assert (answer.model, answer.seq) == (tag, seq + 4)
            expected = _offline(engines[tag], values[: seq + 4], covariates[: seq + 4])
            np.testing.assert_allclose(_quantiles(engines[tag], answer), expected, rtol=1e-5, atol=1e-5)

    asyncio.run(scenario())
    # Old to new, new to old, old to new: three rebuilds, each counted by the model that made it.
    assert (_migrated(NEW) - migrated_before[0], _migrated(OLD) - migrated_before[1]) == (2, 1)


def test_a_rebuilt_session_is_the_new_models_forecast_of_its_tail_and_new_values() -> None:
    store, old, new = _two_models()
    values, covariates = _values(60)

    async def scenario() -> None:
        session = await _open(Sessions(old, store, tail_length=8), values[:50], covariates[:50])
        stored = SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")
        assert stored.tail is not None and stored.tail.shape == (8, 3)
        np.testing.assert_allclose(stored.tail[:, 0], values[42:50], rtol=1e-6)
        answer = _answer(
            await Sessions(new, store, tail_length=8).observe([_observe(session, 50, values[50:53], covariates[50:53])])
        )
        # The 8 kept values and the 3 new ones, read from a zero state; float32 tails round the raw values.
        np.testing.assert_allclose(_quantiles(new, answer), _offline(new, values[:53], covariates[:53], 42), atol=1e-4)
        assert not np.allclose(_quantiles(new, answer), _offline(new, values[:53], covariates[:53]), atol=1e-4)
        after = SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")
        assert after.model == NEW and after.tail is not None
        np.testing.assert_allclose(after.tail[:, 0], values[45:53], rtol=1e-6)

    asyncio.run(scenario())


def test_a_retry_of_the_observe_that_migrated_gets_the_stored_answer_from_either_model() -> None:
    store, old, new = _two_models()
    values, covariates = _values(30)

    async def scenario() -> None:
        session = await _open(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        request = _observe(session, 20, values[20:22], covariates[20:22])
        first = _answer(await Sessions(new, store, tail_length=64).observe([request]))
        # The answer was lost; the retry reaches a replica still on the old model.
        retried = _answer(await Sessions(old, store, tail_length=64).observe([request]))
        assert (retried.model, retried.seq, retried.forecast) == (NEW, 22, first.forecast)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"calendar": ("time_of_day",)}, "calendar ['time_of_day', 'day_of_week'] there, ['time_of_day'] here"),
        ({"past_covariates": ("power",)}, "past_covariates ['load'] there, ['power'] here"),
        ({"freq": "15min"}, "freq '30min' there, '15min' here"),
    ],
)
def test_models_that_read_other_inputs_refuse_the_session_by_name_and_leave_it(
    change: dict[str, Any], named: str
) -> None:
    store = MemoryStore(ttl_s=60, max_sessions=10)
    old = make_engine()
    old.tag = OLD
    other = make_engine(spec=dataclasses.replace(ENGINE_SPEC, **change))
    values, covariates = _values(30)

    async def scenario() -> None:
        session = await _open(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        before = (await store.get_many([session]))[0]
        [refused] = await Sessions(other, store, tail_length=64).observe(
            [_observe(session, 20, values[20:21], covariates[20:21])]
        )
        assert isinstance(refused, Rejection) and refused.reason == Reason.STALE_SESSION
        assert named in refused.error and OLD in refused.error, refused.error
        assert (await store.get_many([session]))[0] == before

    asyncio.run(scenario())


def test_a_session_that_kept_no_tail_gets_409_as_before() -> None:
    store, old, new = _two_models()
    values, covariates = _values(30)

    async def scenario() -> None:
        session = await _open(Sessions(old, store, tail_length=0), values[:20], covariates[:20])
        [refused] = await Sessions(new, store, tail_length=64).observe(
            [_observe(session, 20, values[20:21], covariates[20:21])]
        )
        assert isinstance(refused, Rejection) and refused.reason == Reason.STALE_SESSION
        assert "kept no inputs" in refused.error

    asyncio.run(scenario())


def test_a_failed_migration_leaves_the_old_record_and_a_retry_migrates() -> None:
    store, old, new = _two_models()
    values, covariates = _values(30)

    async def scenario() -> None:
        session = await _open(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        before = (await store.get_many([session]))[0]
        working = new.run

        def broken(*args: Any) -> RunResult:
            raise RuntimeError("out of memory")

        new.run = broken  # type: ignore[method-assign,assignment]
        request = _observe(session, 20, values[20:22], covariates[20:22])
        with pytest.raises(RuntimeError):
            await Sessions(new, store, tail_length=64).observe([request])
        assert (await store.get_many([session]))[0] == before
        new.run = working  # type: ignore[method-assign]
        answer = _answer(await Sessions(new, store, tail_length=64).observe([request]))
        np.testing.assert_allclose(_quantiles(new, answer), _offline(new, values[:22], covariates[:22]), atol=1e-5)

    asyncio.run(scenario())


def test_a_session_scaled_for_a_series_the_new_model_lacks_is_refused_by_name() -> None:
    store = MemoryStore(ttl_s=60, max_sessions=10)
    old = make_engine(per_series=True)
    old.tag = OLD
    small = {"small": old.checkpoint.series_scaling["small"]}
    new = Engine(dataclasses.replace(old.checkpoint, series_scaling=small), NEW)
    values, covariates = _values(30)

    async def scenario() -> None:
        prepared = old.prepare(old.check_history(values[:20], covariates[:20], START, AHEAD, series="large"))
        opened = await Sessions(old, store, tail_length=64).open(prepared)
        assert isinstance(opened, SessionResponse)
        [refused] = await Sessions(new, store, tail_length=64).observe(
            [_observe(opened.session_id, 20, values[20:21], covariates[20:21])]
        )
        assert isinstance(refused, Rejection) and "'large' is not one the model trained on" in refused.error

    asyncio.run(scenario())


def test_a_spec_describes_what_migration_compares() -> None:
    spec = FeatureSpec("y", ("load",), ("temperature",), ("time_of_day",), "30min")
    assert make_engine(spec=spec).inputs != make_engine().inputs
    assert make_engine(per_series=True).inputs != make_engine().inputs
