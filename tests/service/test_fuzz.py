"""Schemathesis drives every endpoint in the OpenAPI schema that BentoML publishes, with bodies that fit the
schema and bodies that break it: never a 5xx or a hang, and every refusal a 4xx that says what was wrong."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from bench.servers import bentoml_serve

EXAMPLES = 60  # per endpoint and mode: enough to hit every field's bad shapes, a few seconds each


@pytest.mark.timeout(600)
def test_generated_and_malformed_bodies_get_answers_or_4xx_never_5xx(model_home: Path, tmp_path: Path) -> None:
    with bentoml_serve(model_home, tmp_path / "serve.log", max_history=500) as running:
        schema = schemathesis.openapi.from_url(running.url + "/docs.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/forecast", "/open", "/observe", "/close", "/info"}
        statuses: dict[int, int] = {}
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case: schemathesis.Case) -> None:
                    response = case.call(base_url=running.url, timeout=10)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    assert response.status_code < 500, f"{case.as_curl_command()} -> {response.text[:500]}"
                    if response.status_code >= 400:
                        assert _says_why(response.json()), f"{case.as_curl_command()} -> {response.text[:500]}"

                try:
                    check()
                except Unsatisfiable:
                    # Health probes and info take no input, so a negative case has nothing to break.
                    assert mode is GenerationMode.NEGATIVE and (
                        operation.method.upper() == "GET" or operation.path == "/info"
                    )
        assert httpx.get(running.url + "/livez").status_code == 200
    assert any(400 <= status < 500 for status in statuses) and statuses.get(200, 0) > 0, statuses


def _says_why(body: object) -> bool:
    """A refusal names its problem: seqcast's own ``{"error": ...}`` or BentoML's validation message."""
    return isinstance(body, dict) and bool(body.get("error") or body.get("detail"))
