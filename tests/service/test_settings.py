"""Settings that must stop the service before it listens, and the warning for a misspelt one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, unknown_variables
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"workers": 2}, "workers=2 with session_store='memory'"),
        ({"session_ttl_s": 1e17}, "less than or equal to 31536000"),
        ({"session_ttl_s": float("inf")}, "less than or equal to 31536000"),
        ({"session_ttl_s": 0.0004}, "greater than or equal to 1"),
        ({"api_key": ""}, "api_key is empty"),
        ({"api_key": "  "}, "api_key is empty"),
        ({"session_store": "redis://:@redis:6379/0"}, "session_store names an empty password"),
        ({"session_store": "rediss://default:@redis:6380/0"}, "session_store names an empty password"),
        # Passwords from `openssl rand -base64` hold '/' and '+': unencoded, the host part ends at the '/'.
        ({"session_store": "redis://:ab/c+d=@redis:6379/0"}, "session_store has no host and port"),
        ({"session_store": "redis://:ab#cd@redis:6379/0"}, "percent-encode a password"),
        ({"session_store": "redis://redis:63x9/0"}, "session_store has no host and port"),
        # With a username, the password's first '/', '?' or '#' made the username the host and the rest a path.
        ({"session_store": "rediss://default:/abc+d=@redis:6380/0"}, "session_store has no host and port"),
        ({"session_store": "redis://default:1234/x@redis:6379/0"}, "session_store has no host and port"),
        ({"session_store": "redis://default:?ab@redis:6379/0"}, "session_store has no host and port"),
        ({"session_store": "unix://:p/w@/run/redis.sock"}, "session_store has no host and port"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_by_name(settings: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**settings)  # type: ignore[arg-type]


def test_what_can_work_is_accepted() -> None:
    Settings(workers=2, session_store="redis://127.0.0.1:6379/0", session_ttl_s=1, api_key="k")
    Settings(session_store="redis://:0123abcd@redis:6379/0")
    Settings(session_store="rediss://default:0123abcd@redis:6380/0")
    Settings(session_store="redis://:ab%2Fc+d=@redis:6379/0")  # percent-encoded, as redis-py decodes it
    Settings(session_store="redis://:p@ss@redis/0")  # the last '@' ends the password; the port defaults
    Settings(session_store="unix:///run/redis.sock")
    Settings(session_store="unix://:pw@/run/redis.sock?db=0")
    Settings(session_store="redis://[::1]:6379/0")
    Settings(session_store="redis://redis:6379?db=2")


def test_a_refused_store_url_or_key_is_not_echoed_into_the_log() -> None:
    for settings in [{"session_store": "redis://:s3cr/et@redis:6379/0"}, {"session_store": "redsi://:s3cret@redis"}]:
        with pytest.raises(ValidationError) as refused:
            Settings(**settings)  # type: ignore[arg-type]
        assert "s3cr" not in str(refused.value)


def test_a_misspelt_variable_is_named_with_the_nearest_setting() -> None:
    warnings = unknown_variables(
        {"SEQCAST_SESION_TTL_S": "4", "SEQCAST_WORKERS": "1", "SEQCAST_XYZZY": "1", "PATH": "/"}
    )
    assert warnings == [
        "SEQCAST_SESION_TTL_S is not a seqcast setting and is ignored; did you mean SEQCAST_SESSION_TTL_S?",
        "SEQCAST_XYZZY is not a seqcast setting and is ignored",
    ]


def test_bentoml_serve_stops_at_start_on_a_refused_setting(model_home: Path, tmp_path: Path) -> None:
    env = {"BENTOML_HOME": str(model_home), "SEQCAST_WORKERS": "2", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "serve", "service.service:Seqcast", "--port", "1"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "workers=2 with session_store='memory'" in done.stderr
