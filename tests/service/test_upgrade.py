"""A rolling upgrade over HTTP: two `bentoml serve` replicas over one real Redis, one serving the old model and
one the new, with a careful client's sends alternating between them, duplicated and their answers dropped."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.servers import bentoml_serve, metric, redis_server
from bench.workload import publish_retrained
from tests.service.retrying import RetryingLoad, stored_engine

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def old_and_new(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A model store of the module's own holding the test model and a retrain of it; their tags."""
    home = tmp_path_factory.mktemp("upgrade") / "bentoml"
    shutil.copytree(model_home, home, symlinks=True)
    return home, *publish_retrained(home)


def test_sessions_live_through_a_rolling_upgrade_each_answer_exact_for_its_model(
    old_and_new: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, old, new = old_and_new
    engines = {old: stored_engine(home, old), new: stored_engine(home, new)}
    # The whole history (48 opening values, 8 observes of 2, one more to verify) fits in the tail, so a
    # session rebuilt under either model is exactly that model's forecast of everything it observed.
    tail = {"session_tail": 100}
    with (
        redis_server(tmp_path / "redis") as url,
        bentoml_serve(home, tmp_path / "old.log", session_store=url, model_tag=old, **tail) as before,
        bentoml_serve(home, tmp_path / "new.log", session_store=url, model_tag=new, **tail) as after,
    ):
        load = RetryingLoad(before.url, sessions=60, steps=8, duplicate=0.1, drop=0.1, other_url=after.url)
        load.open()
        load.run()
        load.verify(engines)
        migrated = {
            tag: metric(server.url, "seqcast_sessions", "_total", event="migrated", model=tag)
            for tag, server in ((old, before), (new, after))
        }
        info = httpx.post(after.url + "/info", json={}).json()
    assert load.acknowledged == 480
    # A session's sends alternate, so most observes reached the replica that had not stepped it last.
    assert sum(migrated.values()) > 240 and min(migrated.values()) > 60, migrated
    assert info["session_tail"] == 100
    assert load.statuses["dropped"] > 10 and sum(v for k, v in load.statuses.items() if "duplicate" in k) > 10
    # The two models answer differently, so an answer checked against the wrong one would have failed.
    assert not np.allclose(load.offline(engines[old], 60), load.offline(engines[new], 60), atol=1e-3)


def test_a_session_keeps_the_models_training_window_by_default(client: httpx.Client) -> None:
    assert client.post("/info").json()["session_tail"] == 48  # the test model's data.input_size


def test_a_shadow_is_scored_beside_the_served_model_and_promoted_without_replay(
    old_and_new: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, old, new = old_and_new
    engines = {old: stored_engine(home, old), new: stored_engine(home, new)}
    tail = {"session_tail": 100}
    with redis_server(tmp_path / "redis") as url:
        with bentoml_serve(
            home, tmp_path / "shadow.log", session_store=url, model_tag=old, shadow_model_tag=new, **tail
        ) as shadowed:
            load = RetryingLoad(shadowed.url, sessions=20, steps=12, chunk=4)
            load.open()
            load.run()
            scored = {tag: metric(shadowed.url, "seqcast_live_scored", "_total", model=tag) for tag in (old, new)}
            errors = {tag: metric(shadowed.url, "seqcast_live_scaled_error", "_total", model=tag) for tag in (old, new)}
            role = metric(shadowed.url, "seqcast_model_role", model=new, role="shadow")
            info = httpx.post(shadowed.url + "/info", json={}).json()
        # The candidate is promoted: the next replica serves it, with no shadow.
        with bentoml_serve(home, tmp_path / "promoted.log", session_store=url, model_tag=new, **tail) as promoted:
            load.url = promoted.url
            load.verify(engines)  # each answer before exact for the old model, the one after for the new
            events = {
                event: metric(promoted.url, "seqcast_sessions", "_total", event=event, model=new)
                for event in ("promoted", "migrated")
            }
    # Both models were scored on the same live values, side by side; only the served one answered.
    assert scored[old] == scored[new] > 0, scored
    assert errors[old] != errors[new]
    assert (info["shadow_model"], role) == (new, 1)
    assert events == {"promoted": 20, "migrated": 0}
