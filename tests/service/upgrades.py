"""Two models that read the same inputs, and what checks a session moved between them, for in-process tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from service.engine import Engine
from service.schemas import ObserveRequest, Rejection, SessionResponse
from service.sessions import Sessions
from service.store import MemoryStore
from tests.service.bodies import make_engine

START = np.datetime64("2024-05-03T21:00").astype("datetime64[us]").astype(object)
AHEAD = [[15.0]] * 6
OLD, NEW = "seqcast-forecaster:old", "seqcast-forecaster:new"


def series_values(count: int, seed: int = 0) -> tuple[list[float], list[list[float]]]:
    rng = np.random.default_rng(seed)
    values = (10 + 2 * np.sin(np.arange(count) / 5) + rng.normal(0, 0.3, count)).tolist()
    return values, [[3.0 + 0.01 * k, 15.0 + 0.1 * (k % 7)] for k in range(count)]


def retrained(engine: Engine, tag: str, seed: int = 1) -> Engine:
    """The same model trained again: the same inputs, other weights."""
    torch.manual_seed(seed)
    weights = {k: v + 0.1 * torch.randn_like(v) for k, v in engine.checkpoint.state_dict.items()}
    return Engine(dataclasses.replace(engine.checkpoint, state_dict=weights), tag)


def two_models() -> tuple[MemoryStore, Engine, Engine]:
    """A store, and an old model and a new one that read the same inputs."""
    old = make_engine()
    old.tag = OLD
    return MemoryStore(ttl_s=60, max_sessions=10), old, retrained(old, NEW)


def offline(engine: Engine, values: list[float], covariates: list[list[float]], offset: int = 0) -> np.ndarray:
    """``engine``'s /forecast of the values from ``offset`` on: what a session rebuilt from them must answer."""
    start = START + offset * engine.spec.step.to_pytimedelta()
    checked = engine.check_history(values[offset:], covariates[offset:], start, AHEAD)
    return engine.run([engine.prepare(checked)], [None]).forecasts[0]


def observe(session: str, seq: int, values: list[float], covariates: list[list[float]]) -> ObserveRequest:
    return ObserveRequest(session_id=session, seq=seq, values=values, covariates=covariates, future_covariates=AHEAD)


async def open_session(sessions: Sessions, values: list[float], covariates: list[list[float]]) -> str:
    """Opens a session as the service does: the history prepared for the served model and for its shadow."""
    prepared = [
        engine.prepare(engine.check_history(values, covariates, START, AHEAD))
        for engine in (sessions.engine, *([sessions.shadow.engine] if sessions.shadow else []))
    ]
    opened = await sessions.open(*prepared)
    assert isinstance(opened, SessionResponse)
    return opened.session_id


def applied(outcome: list[SessionResponse | Rejection]) -> SessionResponse:
    [answer] = outcome
    assert isinstance(answer, SessionResponse), answer
    return answer


def quantiles(engine: Engine, answer: SessionResponse) -> np.ndarray:
    assert answer.quantiles is not None
    return np.column_stack([answer.quantiles[f"{q:g}"] for q in engine.config.quantiles])
