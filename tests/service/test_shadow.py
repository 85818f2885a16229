"""A candidate model in shadow, in-process: it follows every session unseen, is scored live, and once promoted
finds each session's state ready; promoting back (a rollback) finds the old model's state kept in turn."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from service.engine import Engine, RunResult
from service.metrics import LIVE_SCORED, SESSIONS
from service.records import SessionRecord
from service.scoring import STEP_LABELS, Scorer
from service.sessions import Sessions
from service.stepper import Stepper
from service.store import MemoryStore
from tests.service.upgrades import (
    NEW,
    OLD,
    applied,
    observe,
    offline,
    open_session,
    quantiles,
    series_values,
    two_models,
)


def _scorer(engine: Engine) -> Scorer:
    """Live scoring with an origin every horizon observations."""
    config = engine.config
    return Scorer(
        config.horizon, config.point_index, config.quantiles, {"s": 1.0}, 1.0, 6.0, False, step_ns=0, scale_in_std=1.0
    )


def _count(counter: Any, *labels: str) -> float:
    return sum(counter.labels(*labels, steps)._value.get() for steps in STEP_LABELS)  # type: ignore[no-any-return]


def _event(event: str, tag: str) -> float:
    return SESSIONS.labels(event, tag)._value.get()  # type: ignore[attr-defined,no-any-return]


async def _stored(store: MemoryStore, session: str) -> SessionRecord:
    return SessionRecord.from_bytes((await store.get_many([session]))[0] or b"")


def test_a_shadow_follows_unseen_is_scored_and_once_promoted_replays_nothing() -> None:
    store, old, new = two_models()
    shadowed = Sessions(old, store, scorer=_scorer(old), tail_length=100, shadow=Stepper(new, _scorer(new)))
    promoted = Sessions(new, store, scorer=_scorer(new), tail_length=100, shadow=Stepper(old, _scorer(old)))
    rolled_back = Sessions(old, store, scorer=_scorer(old), tail_length=100, shadow=Stepper(new, _scorer(new)))
    values, covariates = series_values(60)
    scored_before = _count(LIVE_SCORED, NEW)
    before = {event: (_event(event, NEW), _event(event, OLD)) for event in ("promoted", "migrated")}

    async def scenario() -> None:
        session = await open_session(shadowed, values[:12], covariates[:12])
        for seq in range(12, 36, 3):
            answer = applied(
                await shadowed.observe([observe(session, seq, values[seq : seq + 3], covariates[seq : seq + 3])])
            )
            # The served model answers, exactly as without a shadow.
            assert answer.model == OLD
            expected = offline(old, values[: seq + 3], covariates[: seq + 3])
            np.testing.assert_allclose(quantiles(old, answer), expected, atol=1e-5)
        record = await _stored(store, session)
        assert record.model == OLD and record.shadow is not None and record.shadow.model == NEW
        # Promoted: the candidate's own state, exact for its reading of the whole history.
        answer = applied(await promoted.observe([observe(session, 36, values[36:39], covariates[36:39])]))
        assert answer.model == NEW
        np.testing.assert_allclose(quantiles(new, answer), offline(new, values[:39], covariates[:39]), atol=1e-5)
        record = await _stored(store, session)
        assert record.model == NEW and record.shadow is not None and record.shadow.model == OLD
        # Rolled back: the old model's state was followed in shadow in turn.
        answer = applied(await rolled_back.observe([observe(session, 39, values[39:42], covariates[39:42])]))
        assert answer.model == OLD
        np.testing.assert_allclose(quantiles(old, answer), offline(old, values[:42], covariates[:42]), atol=1e-5)

    asyncio.run(scenario())
    # The shadow followed from the opening and was scored on every value after its first origin, as the served
    # model is; the take-overs were promotions, with nothing rebuilt.
    assert _count(LIVE_SCORED, NEW) - scored_before >= 12
    assert (_event("promoted", NEW) - before["promoted"][0], _event("promoted", OLD) - before["promoted"][1]) == (1, 1)
    assert (_event("migrated", NEW), _event("migrated", OLD)) == before["migrated"]


def test_a_failing_shadow_never_fails_the_served_answer_and_catches_up_from_the_tail() -> None:
    store, old, new = two_models()
    sessions = Sessions(old, store, tail_length=100, shadow=Stepper(new, None))
    values, covariates = series_values(30)
    working = new.run

    def broken(*args: Any) -> RunResult:
        raise RuntimeError("out of memory")

    async def scenario() -> None:
        session = await open_session(sessions, values[:12], covariates[:12])
        new.run = broken  # type: ignore[method-assign,assignment]
        answer = applied(await sessions.observe([observe(session, 12, values[12:14], covariates[12:14])]))
        np.testing.assert_allclose(quantiles(old, answer), offline(old, values[:14], covariates[:14]), atol=1e-5)
        assert (await _stored(store, session)).shadow is None
        new.run = working  # type: ignore[method-assign]
        applied(await sessions.observe([observe(session, 14, values[14:16], covariates[14:16])]))
        shadow = (await _stored(store, session)).shadow
        assert shadow is not None and shadow.model == NEW
        promoted = Sessions(new, store, tail_length=100)
        answer = applied(await promoted.observe([observe(session, 16, values[16:17], covariates[16:17])]))
        np.testing.assert_allclose(quantiles(new, answer), offline(new, values[:17], covariates[:17]), atol=1e-5)

    promoted_before = _event("promoted", NEW)
    asyncio.run(scenario())
    assert _event("promoted", NEW) - promoted_before == 1  # its state, caught up from the tail, was taken over


def test_without_a_tail_a_shadow_added_later_cannot_follow_and_the_session_goes_on() -> None:
    store, old, new = two_models()
    values, covariates = series_values(20)

    async def scenario() -> None:
        session = await open_session(Sessions(old, store, tail_length=0), values[:12], covariates[:12])
        shadowed = Sessions(old, store, tail_length=0, shadow=Stepper(new, None))
        applied(await shadowed.observe([observe(session, 12, values[12:14], covariates[12:14])]))
        assert (await _stored(store, session)).shadow is None

    asyncio.run(scenario())


def test_a_shadow_opened_with_the_session_is_exact_for_the_whole_history_beyond_the_tail() -> None:
    """Tail 8, history 40: a rebuild would read the last 8 values only, so an answer equal to the candidate's
    forecast of all 43 shows that its own state, followed from the opening, was taken over."""
    store, old, new = two_models()
    shadowed = Sessions(old, store, tail_length=8, shadow=Stepper(new, None))
    values, covariates = series_values(50)
    promoted_before = _event("promoted", NEW)

    async def scenario() -> None:
        session = await open_session(shadowed, values[:40], covariates[:40])
        applied(await shadowed.observe([observe(session, 40, values[40:42], covariates[40:42])]))
        answer = applied(
            await Sessions(new, store, tail_length=8).observe([observe(session, 42, values[42:43], covariates[42:43])])
        )
        whole = offline(new, values[:43], covariates[:43])
        np.testing.assert_allclose(quantiles(new, answer), whole, atol=1e-5)
        assert not np.allclose(offline(new, values[:43], covariates[:43], 35), whole, atol=1e-4)

    asyncio.run(scenario())
    assert _event("promoted", NEW) - promoted_before == 1
