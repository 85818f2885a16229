"""A careful client under hostile conditions, and the offline replay its sessions must end equal to.

Each session's observes are sent in order; every one is resent until acknowledged, as a client that lost a
response, timed out or met a restarting server would. Chaos adds duplicate sends (two copies at once) and
dropped responses (the request ran, the client never read the answer) on purpose. With a second URL, sends
alternate between two replicas, as a load balancer spreads them during a rolling update.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from models.checkpoint import load_checkpoint
from service.engine import Engine
from tests.service.bodies import START, ahead, history_body, observe_body, series

RETRIABLE = {502, 503, 504}


def _field(answer: httpx.Response) -> str | None:
    """The setting or input a refusal names; None when the answer is not seqcast's (a proxy's, a dying server's)."""
    try:
        return answer.json().get("field")  # type: ignore[no-any-return]
    except ValueError:
        return None


@dataclass
class Session:
    session_id: str
    seq: int
    forecast: list[float] = field(default_factory=list)
    model: str = ""  # the model that gave the last acknowledged answer
    sends: int = 0  # observes sent, retries too: with two replicas, each goes to the other one than the last


@dataclass
class RetryingLoad:
    """``sessions`` sessions opened on ``history`` values, then ``steps`` observes of ``chunk`` values each."""

    url: str
    sessions: int
    steps: int
    history: int = 48
    chunk: int = 2
    duplicate: float = 0.0  # chance an observe is sent twice at once
    drop: float = 0.0  # chance the answer to an observe is thrown away and the observe sent again
    threads: int = 16
    deadline_s: float = 240.0
    seed: int = 0
    other_url: str | None = None  # a second replica: each send goes to the other one than the last
    values: list[float] = field(init=False)
    temps: list[list[float]] = field(init=False)
    opened: list[Session] = field(init=False, default_factory=list)
    statuses: Counter[str] = field(init=False, default_factory=Counter)
    acknowledged: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.values, self.temps = series(self.history + self.steps * self.chunk + 1, seed=self.seed)

    def _client(self, url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=url or self.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))

    def open(self) -> None:
        with self._client() as client:
            for _ in range(self.sessions):
                body = history_body(self.values[: self.history], self.temps[: self.history])
                answer = client.post("/open", json=body)
                assert answer.status_code == 200, answer.text
                self.opened.append(Session(answer.json()["session_id"], self.history))

    def _note(self, outcome: str) -> None:
        with self._lock:
            self.statuses[outcome] += 1

    def _send(self, client: httpx.Client, body: dict[str, Any]) -> httpx.Response | None:
        try:
            return client.post("/observe", json=body)
        except httpx.TransportError as error:
            self._note(type(error).__name__)
            return None

    def _step(
        self, clients: list[httpx.Client], twin: ThreadPoolExecutor, rng: random.Random, session: Session
    ) -> None:
        lo = session.seq
        body = observe_body(session.session_id, lo, self.values[lo : lo + self.chunk], self.temps[lo : lo + self.chunk])
        expected = lo + self.chunk
        give_up = time.monotonic() + self.deadline_s
        while time.monotonic() < give_up:
            client, other_client = (clients[(session.sends + k) % len(clients)] for k in (0, 1))
            session.sends += 1
            if rng.random() < self.duplicate:  # the twin races from the other replica, if there are two
                # Its client is made here, not on the twin's thread: making one takes milliseconds, which would
                # let this send win every race.
                with self._client(str(other_client.base_url)) as twin_client:
                    copy = twin.submit(self._send, twin_client, body)
                    answer, other = self._send(client, body), copy.result()
                self._note(f"duplicate {other.status_code if other is not None else 'lost'}")
            else:
                answer = self._send(client, body)
            if answer is None or answer.status_code in RETRIABLE:
                if answer is not None:
                    self._note(f"{answer.status_code} {_field(answer)}")
                time.sleep(0.2)
                continue
            if answer.status_code == 409 and answer.json().get("seq") == expected:
                self._note("409 already applied")  # a twin won the race; resending gets the stored answer
                continue
            assert answer.status_code == 200, f"{answer.status_code}: {answer.text}"
            if rng.random() < self.drop:
                self._note("dropped")
                continue
            self._note("200")
            reply = answer.json()
            assert reply["seq"] == expected, reply
            session.seq, session.forecast, session.model = expected, reply["forecast"], reply["model"]
            with self._lock:
                self.acknowledged += 1
            return
        raise TimeoutError(f"observe of {session.session_id} at seq {lo} never acknowledged")

    def _drive(self, share: list[Session], seed: int) -> None:
        rng = random.Random(seed)
        urls = [self.url] if self.other_url is None else [self.url, self.other_url]
        clients = [self._client(url) for url in urls]
        with ThreadPoolExecutor(1) as twin:
            for _ in range(self.steps):
                for session in share:
                    self._step(clients, twin, rng, session)
        for client in clients:
            client.close()

    def run(self) -> None:
        shares = [self.opened[k :: self.threads] for k in range(self.threads)]
        with ThreadPoolExecutor(self.threads) as pool:
            for done in [pool.submit(self._drive, share, self.seed + k) for k, share in enumerate(shares)]:
                done.result()

    def start(self) -> Future[None]:
        """Runs the load in the background; the future's result() waits for it and re-raises its failure."""
        background = ThreadPoolExecutor(1)
        running = background.submit(self.run)
        background.shutdown(wait=False)
        return running

    def wait_for(self, acknowledged: int, timeout: float = 120) -> None:
        give_up = time.monotonic() + timeout
        while self.acknowledged < acknowledged:
            assert time.monotonic() < give_up, f"only {self.acknowledged} observes acknowledged"
            time.sleep(0.05)

    def offline(self, engine: Engine, seq: int) -> np.ndarray:
        """The forecast of reading the first ``seq`` values at once, in process."""
        prepared = engine.prepare(
            engine.check_history(self.values[:seq], self.temps[:seq], START.to_pydatetime(), ahead())
        )
        return engine.run([prepared], [None]).forecasts[0][:, engine.config.point_index]

    def verify(self, engines: Engine | Mapping[str, Engine]) -> None:
        """Every session is where its acknowledged observes put it, and its stored state is the offline one:
        one more observe must give the forecast of reading all values at once. ``engines`` by model tag: each
        answer is checked against the model that gave it."""

        def pick(tag: str) -> Engine:
            return engines[tag] if isinstance(engines, Mapping) else engines

        with self._client() as client:
            for session in self.opened:
                assert session.seq == self.history + self.steps * self.chunk
                expected = self.offline(pick(session.model), session.seq)
                np.testing.assert_allclose(session.forecast, expected, rtol=1e-4, atol=1e-4)
                lo = session.seq
                body = observe_body(session.session_id, lo, self.values[lo : lo + 1], self.temps[lo : lo + 1])
                answer = client.post("/observe", json=body)
                assert answer.status_code == 200 and answer.json()["seq"] == lo + 1, answer.text
                expected = self.offline(pick(answer.json()["model"]), lo + 1)
                np.testing.assert_allclose(answer.json()["forecast"], expected, rtol=1e-4, atol=1e-4)


def stored_engine(bentoml_home: Path, tag: str | None = None) -> Engine:
    """An in-process engine over the forecaster ``tag`` of ``bentoml_home``'s model store, or its only one."""
    name, version = tag.split(":") if tag else ("*", "*")
    path = next(bentoml_home.glob(f"models/{name}/{version}/checkpoint.pt"))
    return Engine(load_checkpoint(path), tag or "offline")
