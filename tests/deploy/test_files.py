"""The deployment files, checked by the tools that will read them: Compose v2, promtool, Grafana's JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import compose
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess

COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"  # the real binary, not its Python wrapper
DEPLOY = ROOT / "deploy"


def compose_config(path: Path, *extra: str, password: str | None = "not-a-default") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    return subprocess.run(
        [str(COMPOSE_BINARY), "-f", str(path), *extra, "config", "-q"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid(tmp_path: Path) -> None:
    done = compose_config(ROOT / "docker-compose.yml")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("password", [None, ""])
def test_compose_refuses_to_start_without_a_grafana_password(password: str | None) -> None:
    done = compose_config(ROOT / "docker-compose.yml", password=password)
    assert done.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD in .env" in done.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        (
            'condition: service_healthy\n    healthcheck:\n      test: ["CMD", "python"',
            'condition: service_healthy\n    healthcheck:\n      tset: ["CMD", "python"',
            "tset",
        ),
        (
            "      redis:\n        condition: service_healthy",
            "      cache:\n        condition: service_healthy",
            "cache",
        ),
        ("  redis-data:\n", "", "redis-data"),
    ],
)
def test_a_broken_copy_fails_the_same_check(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    original = (ROOT / "docker-compose.yml").read_text()
    assert old in original
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(original.replace(old, new, 1))
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    done = compose_config(broken)
    assert done.returncode != 0
    assert complaint in done.stderr


def test_compose_wires_health_and_profiles() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert set(services) == {"api", "redis", "prometheus", "grafana", "train"}
    assert services["train"]["profiles"] == ["train"]
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["prometheus"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name in ("api", "redis", "prometheus"):
        assert "healthcheck" in services[name], name
    # The API in compose runs what the image runs by default.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == services["api"]["command"]


def test_every_setting_in_compose_is_documented_in_env_example() -> None:
    import re

    used = set(re.findall(r"\$\{([A-Z_]+):[-?]", (ROOT / "docker-compose.yml").read_text()))
    documented = {
        line.split("=")[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert used == documented


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("config", "prometheus/prometheus.yml"),
        ("rules", "prometheus/alerts.yml"),
        ("rules", "prometheus/live_accuracy.yml"),
    ],
)
def test_promtool_accepts_the_committed_files(kind: str, path: str) -> None:
    done = subprocess.run(["promtool", "check", kind, str(DEPLOY / path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_drift_alert_fires_after_a_level_shift_and_not_without_one() -> None:
    """`promtool test rules` over synthetic counters (tests/deploy/promtool/live_accuracy_test.yml): a model
    whose live MASE quadruples halfway through two days alerts by the end of them; a steady one never does."""
    tests = ROOT / "tests" / "deploy" / "promtool"
    done = subprocess.run(
        ["promtool", "test", "rules", "live_accuracy_test.yml"], cwd=tests, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    broken.write_text((DEPLOY / "prometheus" / "alerts.yml").read_text().replace("> 0.1", "> > 0.1", 1))
    done = subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "seqcast.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_parses_and_covers_what_operators_watch() -> None:
    queries = " ".join(dashboard_queries())
    for metric in (
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds_bucket",
        "seqcast_batch_size_bucket",
        "seqcast_forward_duration_seconds_bucket",
        "seqcast_sessions_active",
        "seqcast_sessions_total",
        "seqcast_rejected_requests_total",
        "seqcast:live_mase:24h",  # live accuracy beside the test MASE it is judged against
        "seqcast_model_test_mase",
        "seqcast:live_coverage:24h",
    ):
        assert metric in queries, metric
    assert "histogram_quantile(0.99" in queries and "histogram_quantile(0.5" in queries
