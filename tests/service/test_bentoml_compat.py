"""The BentoML workarounds: their check names what a BentoML upgrade moved, and each one does what it says."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from bench.servers import Service
from service import bentoml_compat
from service.routes import endpoint_label, route_label


def test_the_installed_bentoml_has_everything_the_workarounds_touch() -> None:
    bentoml_compat.check()


def test_a_missing_attribute_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from bentoml._internal.marshal.dispatcher import CorkDispatcher

    monkeypatch.delattr(CorkDispatcher, "_get_inputs")
    with pytest.raises(bentoml_compat.IncompatibleBentoML, match=r"CorkDispatcher\._get_inputs is missing"):
        bentoml_compat.check()


def _dispatcher(sizes: list[int], max_batch_size: int) -> SimpleNamespace:
    return SimpleNamespace(
        _queue=deque(SimpleNamespace(data=size) for size in sizes),
        max_batch_size=max_batch_size,
        get_batch_size=lambda data: data,
    )


def test_a_request_that_does_not_fit_waits_for_the_next_pass_whole() -> None:
    dispatcher = _dispatcher([30, 20, 30, 64], max_batch_size=64)
    passes = []
    while dispatcher._queue:
        passes.append([job.data for job in bentoml_compat.whole_inputs(dispatcher)])
    assert passes == [[30, 20], [30], [64]]  # BentoML's own would split the third into 14 and 16


def test_labels_come_from_a_fixed_set() -> None:
    assert route_label("/forecast") == "/forecast"
    assert route_label("/static_content/swagger-ui.css") == "/static_content"
    assert route_label("/forecast/x") == route_label("/wp-login.php") == "other"
    assert endpoint_label("/observe") == "observe" and endpoint_label("/") == "other"


def test_the_running_service_counts_unknown_paths_as_other(service: Service) -> None:
    import httpx

    for path in ("/a", "/b/c", "/forecast/"):
        httpx.get(service.url + path, timeout=10)
    text = httpx.get(service.url + "/metrics", timeout=10).text
    assert 'endpoint="other"' in text and 'endpoint="/a"' not in text and 'endpoint="/b/c"' not in text
