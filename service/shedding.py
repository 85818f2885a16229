"""The answer to a request that adaptive batching sheds.

BentoML's batcher sheds a queued request it predicts would wait longer than ``max_latency_ms``. BentoML 1.4
answers it with a 503 whose body says only "An unexpected error has occurred, please check the server log",
and logs two chained tracebacks for it. The log then fills fastest exactly when the worker has no time to
spare, and a client cannot tell a shed request from a crash. Here a shed request gets the endpoint's own
answer instead: a 503 naming the setting, with nothing logged.
"""

from __future__ import annotations

from collections.abc import Callable

from _bentoml_impl.server.app import ServiceAppFactory


def install(shed_answer: Callable[[], object]) -> None:
    """Makes every batching endpoint answer a shed request with ``shed_answer()``, rendered by the endpoint's
    output spec. The batcher calls its fallback in place of the endpoint, once per shed request."""
    build = ServiceAppFactory.__init__

    def build_then_answer_shed(factory: ServiceAppFactory, *args: object, **kwargs: object) -> None:
        build(factory, *args, **kwargs)  # type: ignore[arg-type]
        for dispatcher in factory.dispatchers.values():
            dispatcher.fallback = shed_answer

    ServiceAppFactory.__init__ = build_then_answer_shed  # type: ignore[method-assign]
