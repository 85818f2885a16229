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


def _mean_wait(log_outbound: object, passes: list[tuple[int, float]]) -> float:
    """The wait BentoML's optimizer learns from ``passes`` of (requests, wait) after a burst of 64 clients."""
    from bentoml._internal.marshal.dispatcher import Optimizer

    optimizer = Optimizer(max_latency=2.0)
    for n, wait in [(64, 0.010)] * 60 + passes:
        log_outbound(optimizer, n, wait, 0.002)  # type: ignore[operator]
    optimizer.trigger_refresh()
    return float(optimizer.wait)


def test_a_lone_request_teaches_the_dispatcher_no_wait_after_a_burst() -> None:
    import inspect

    from bentoml._internal.marshal.dispatcher import Optimizer

    stock = inspect.unwrap(Optimizer.log_outbound)
    # After the burst, a lone client: each request held about as long as the wait learnt so far.
    lone = [(1, 0.0095)] * 60
    assert _mean_wait(stock, lone) > 0.009  # upstream: the burst's wait stays, fed by the lone requests
    assert _mean_wait(bentoml_compat.without_lone_waits(stock), lone) == 0
    # Passes that did gather several requests still teach their wait.
    assert _mean_wait(bentoml_compat.without_lone_waits(stock), [(8, 0.004)] * 60) == pytest.approx(0.004)
    # The first lone request after a burst halves the wait at once, without waiting for a refresh.
    burst = Optimizer(max_latency=2.0)
    for _ in range(60):
        stock(burst, 64, 0.010, 0.002)
    burst.trigger_refresh()
    bentoml_compat.without_lone_waits(stock)(burst, 1, 0.0095, 0.0001)
    assert burst.wait == pytest.approx(0.005)
    burst.trigger_refresh()  # and the refresh, from the halved waits, does not bring the burst's back
    assert burst.wait < 0.0051
