"""Sessions carried across a model change in-process: rebuilt from their tail when the models read the same
inputs, refused by name when they do not, and never changed by a refusal or a failure."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
import pytest

from models import FeatureSpec, Scaling
from service.engine import Engine, RunResult
from service.metrics import SESSIONS
from service.migration import differences, in_logs, what_it_reads
from service.records import NO_TIME, SessionRecord
from service.schemas import Reason, Rejection, SessionResponse
from service.sessions import Sessions
from service.stepper import Stepper
from service.store import MemoryStore, Put
from tests.service.bodies import ENGINE_SPEC, make_engine
from tests.service.upgrades import (
    AHEAD,
    NEW,
    OLD,
    START,
    applied,
    observe,
    offline,
    open_session,
    quantiles,
    series_values,
    two_models,
)


def _migrated(tag: str) -> float:
    return SESSIONS.labels("migrated", tag)._value.get()  # type: ignore[attr-defined,no-any-return]


def test_a_session_moves_between_two_models_and_each_answer_is_exact_for_its_model() -> None:
    """A whole history within the tail: wherever the session was last stepped, each model's answer is its
    /forecast of the whole history, as two replicas serving old and new during a rolling update give."""
    store, old, new = two_models()
    served = {OLD: Sessions(old, store, tail_length=100), NEW: Sessions(new, store, tail_length=100)}
    engines = {OLD: old, NEW: new}
    values, covariates = series_values(40)
    migrated_before = _migrated(NEW), _migrated(OLD)

    async def scenario() -> None:
        session = await open_session(served[OLD], values[:20], covariates[:20])
        for seq, tag in zip(range(20, 40, 4), [OLD, NEW, NEW, OLD, NEW], strict=True):
            request = observe(session, seq, values[seq : seq + 4], covariates[seq : seq + 4])
            answer = applied(await served[tag].observe([request]))
            assert (answer.model, answer.seq) == (tag, seq + 4)
            expected = offline(engines[tag], values[: seq + 4], covariates[: seq + 4])
            np.testing.assert_allclose(quantiles(engines[tag], answer), expected, rtol=1e-5, atol=1e-5)

    asyncio.run(scenario())
    # Old to new, new to old, old to new: three rebuilds, each counted by the model that made it.
    assert (_migrated(NEW) - migrated_before[0], _migrated(OLD) - migrated_before[1]) == (2, 1)


def test_a_rebuilt_session_is_the_new_models_forecast_of_its_tail_and_new_values() -> None:
    store, old, new = two_models()
    values, covariates = series_values(60)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=8), values[:50], covariates[:50])
        stored = SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")
        assert stored.tail is not None and stored.tail.shape == (8, 3)
        np.testing.assert_allclose(stored.tail[:, 0], values[42:50], rtol=1e-6)
        answer = applied(
            await Sessions(new, store, tail_length=8).observe([observe(session, 50, values[50:53], covariates[50:53])])
        )
        # The 8 kept values and the 3 new ones, read from a zero state; float32 tails round the raw values.
        np.testing.assert_allclose(quantiles(new, answer), offline(new, values[:53], covariates[:53], 42), atol=1e-4)
        assert not np.allclose(quantiles(new, answer), offline(new, values[:53], covariates[:53]), atol=1e-4)
        after = SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")
        assert after.model == NEW and after.tail is not None
        np.testing.assert_allclose(after.tail[:, 0], values[45:53], rtol=1e-6)

    asyncio.run(scenario())


def test_a_retry_of_the_observe_that_migrated_gets_the_stored_answer_from_either_model() -> None:
    store, old, new = two_models()
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        request = observe(session, 20, values[20:22], covariates[20:22])
        first = applied(await Sessions(new, store, tail_length=64).observe([request]))
        # The answer was lost; the retry reaches a replica still on the old model.
        retried = applied(await Sessions(old, store, tail_length=64).observe([request]))
        assert (retried.model, retried.seq, retried.forecast) == (NEW, 22, first.forecast)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"future_covariates": ("humidity",)}, "future_covariates ['temperature'] there, ['humidity'] here"),
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
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        before = (await store.get_many([session]))[0]
        [refused] = await Sessions(other, store, tail_length=64).observe(
            [observe(session, 20, values[20:21], covariates[20:21])]
        )
        assert isinstance(refused, Rejection) and refused.reason == Reason.STALE_SESSION
        assert named in refused.error and OLD in refused.error, refused.error
        assert (await store.get_many([session]))[0] == before

    asyncio.run(scenario())


def test_a_session_that_kept_no_tail_gets_409_as_before() -> None:
    store, old, new = two_models()
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=0), values[:20], covariates[:20])
        # Served on by a release that keeps tails, it starts none: one of its later values only would rebuild
        # the session wrong.
        applied(
            await Sessions(old, store, tail_length=64).observe([observe(session, 20, values[20:21], covariates[20:21])])
        )
        assert SessionRecord.from_bytes((await store.get_many([session]))[0] or b"").tail is None
        [refused] = await Sessions(new, store, tail_length=64).observe(
            [observe(session, 21, values[21:22], covariates[21:22])]
        )
        assert isinstance(refused, Rejection) and refused.reason == Reason.STALE_SESSION
        assert "kept no inputs" in refused.error

    asyncio.run(scenario())


def test_a_failed_migration_leaves_the_old_record_and_a_retry_migrates() -> None:
    store, old, new = two_models()
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        before = (await store.get_many([session]))[0]
        working = new.run

        def broken(*args: Any) -> RunResult:
            raise RuntimeError("out of memory")

        new.run = broken  # type: ignore[method-assign,assignment]
        request = observe(session, 20, values[20:22], covariates[20:22])
        with pytest.raises(RuntimeError):
            await Sessions(new, store, tail_length=64).observe([request])
        assert (await store.get_many([session]))[0] == before
        new.run = working  # type: ignore[method-assign]
        answer = applied(await Sessions(new, store, tail_length=64).observe([request]))
        np.testing.assert_allclose(quantiles(new, answer), offline(new, values[:22], covariates[:22]), atol=1e-5)

    asyncio.run(scenario())


def test_a_session_scaled_for_a_series_the_new_model_lacks_is_refused_by_name() -> None:
    store = MemoryStore(ttl_s=60, max_sessions=10)
    old = make_engine(per_series=True)
    old.tag = OLD
    small = {"small": old.checkpoint.series_scaling["small"]}
    new = Engine(dataclasses.replace(old.checkpoint, series_scaling=small), NEW)
    values, covariates = series_values(30)

    async def scenario() -> None:
        prepared = old.prepare(old.check_history(values[:20], covariates[:20], START, AHEAD, series="large"))
        opened = await Sessions(old, store, tail_length=64).open(prepared)
        assert isinstance(opened, SessionResponse)
        [refused] = await Sessions(new, store, tail_length=64).observe(
            [observe(opened.session_id, 20, values[20:21], covariates[20:21])]
        )
        assert isinstance(refused, Rejection) and "'large' is not one the model trained on" in refused.error

    asyncio.run(scenario())


def test_a_move_into_or_out_of_logs_rebuilds_a_training_series_and_refuses_own_statistics() -> None:
    """The tail is raw values, which a model of log(1 + y) reads its own way; statistics fitted on a session's
    own history are in its old model's space, so only those sessions are refused."""
    store = MemoryStore(ttl_s=60, max_sessions=10)
    old = make_engine(per_series=True)
    old.tag = OLD
    # Retrained in logs: each series' target statistics are of log(1 + y) (ten is about 2.4).
    in_logs_scaling = {
        name: Scaling((2.4, *scaling.mean[1:]), (0.2, *scaling.std[1:]))
        for name, scaling in old.checkpoint.series_scaling.items()
    }
    logs = dataclasses.replace(old.spec, log_target=True)
    new = Engine(dataclasses.replace(old.checkpoint, features=logs, series_scaling=in_logs_scaling), NEW)
    values, covariates = series_values(30)

    async def scenario() -> None:
        sessions = Sessions(old, store, tail_length=64)
        named = await sessions.open(old.prepare(old.check_history(values[:20], covariates[:20], START, AHEAD, "large")))
        own = await sessions.open(old.prepare(old.check_history(values[:20], covariates[:20], START, AHEAD)))
        below = [*values[:19], -1.0]  # a value in units that has no log
        negative = await sessions.open(old.prepare(old.check_history(below, covariates[:20], START, AHEAD, "large")))
        assert all(isinstance(s, SessionResponse) for s in (named, own, negative))
        moved, refused, unreadable = await Sessions(new, store, tail_length=64).observe(
            [observe(s.session_id, 20, values[20:21], covariates[20:21]) for s in (named, own, negative)]
        )
        assert isinstance(unreadable, Rejection) and unreadable.reason == Reason.STALE_SESSION
        assert "it kept values below zero, which a model of log(1 + y) cannot read" in unreadable.error
        assert isinstance(moved, SessionResponse) and moved.model == NEW
        assert isinstance(refused, Rejection) and refused.reason == Reason.STALE_SESSION
        assert "its own statistics are in units, and this model reads the target of log(1 + y)" in refused.error

    asyncio.run(scenario())
    assert in_logs(new.reads) and not in_logs(old.reads)
    assert differences(old.reads, new.reads) == []  # the inputs agree: only own statistics stop a move
    assert old.reads == what_it_reads(old.spec, True)  # in units, described as before log targets


def test_a_spec_describes_what_migration_compares() -> None:
    spec = FeatureSpec("y", ("load",), ("humidity",), ("time_of_day",), "30min")
    assert make_engine(spec=spec).reads != make_engine().reads
    calendar = FeatureSpec("y", ("load",), ("temperature",), ("time_of_day",), "30min")
    assert make_engine(spec=calendar).reads == make_engine().reads  # derived from timestamps, not kept
    assert make_engine(per_series=True).reads != make_engine().reads


def test_a_model_with_other_calendar_features_rebuilds_from_the_sessions_timestamps() -> None:
    """Calendar features come from timestamps, which a timed session's tail has: no refusal for them."""
    store, old, _ = two_models()
    new = make_engine(spec=dataclasses.replace(ENGINE_SPEC, calendar=("time_of_day",)))
    new.tag = NEW
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        request = observe(session, 20, values[20:22], covariates[20:22])
        answer = applied(await Sessions(new, store, tail_length=64).observe([request]))
        np.testing.assert_allclose(quantiles(new, answer), offline(new, values[:22], covariates[:22]), atol=1e-5)
        # Without timestamps, the new model's calendar could not be derived.
        record = SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")
        untimed = dataclasses.replace(record, model=OLD, next_time=NO_TIME)
        assert "no timestamps" in (Stepper(new, None).unrebuildable(untimed) or "")

    asyncio.run(scenario())


def test_a_kept_tail_that_does_not_fit_the_model_is_refused_alone() -> None:
    store, old, new = two_models()
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=64), values[:20], covariates[:20])
        record = SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")
        assert record.tail is not None
        for bad in (record.tail[:, :2], np.concatenate([record.tail, record.tail])):  # a column short; past seq
            assert await store.put_many_if([Put(session, dataclasses.replace(record, tail=bad).to_bytes(), 20, 20)])
            for sessions in (Sessions(old, store, tail_length=64), Sessions(new, store, tail_length=64)):
                [refused] = await sessions.observe([observe(session, 20, values[20:21], covariates[20:21])])
                assert isinstance(refused, Rejection) and refused.reason == Reason.STALE_SESSION, refused
                assert "kept inputs" in refused.error

    asyncio.run(scenario())


@pytest.mark.parametrize(("tail", "opened", "rebuilt"), [(8, 20, False), (64, 20, True), (8, 8, True)])
def test_a_seasonal_model_rebuilds_a_session_only_from_a_tail_that_holds_its_season(
    tail: int, opened: int, rebuilt: bool
) -> None:
    """A tail shorter than the season, cut from a longer history, would leave zeros where the season was; a tail
    that is the whole history rebuilds it exactly however short."""
    store = MemoryStore(ttl_s=60, max_sessions=10)
    old, new = make_engine(), make_engine(seasonal_lag=12)
    old.tag, new.tag = OLD, NEW
    values, covariates = series_values(30)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=tail), values[:opened], covariates[:opened])
        [answer] = await Sessions(new, store, tail_length=tail).observe(
            [observe(session, opened, values[opened : opened + 1], covariates[opened : opened + 1])]
        )
        if rebuilt:
            assert isinstance(answer, SessionResponse) and answer.model == NEW, answer
        else:
            assert isinstance(answer, Rejection) and answer.reason == Reason.STALE_SESSION, answer
            assert "under the model's season of 12" in answer.error

    asyncio.run(scenario())
