"""The service's request time limit (``traffic.timeout``), in place of BentoML's own middleware (installed by
service/bentoml_compat.py).

BentoML 1.4's ``TimeoutMiddleware`` arms ``loop.call_later(timeout, ...)`` for every request and never cancels
it. The timer holds a copy of the request's context (its OpenTelemetry span among it) until it fires, so a
worker at a few hundred requests/s keeps the last minute of requests alive: ~10^6 objects that each of
Python's full collections walks, stalling every request in flight for 100-300 ms. This one answers the same
way and disarms its timer when the request is answered.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.refusals import send_refusal
from service.schemas import Reason


class RequestTimeout:
    """Answers 504 when a request has not begun its answer within ``timeout`` seconds (the service's
    ``request_timeout_s``); an answer already begun is left to finish, as BentoML's does."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        begun = asyncio.get_running_loop().create_future()

        def mark_begun(_: object = None) -> None:
            if not begun.done():
                begun.set_result(None)

        async def send_marking(message: Message) -> None:
            mark_begun()
            await send(message)

        handling = asyncio.ensure_future(self.app(scope, receive, send_marking))
        handling.add_done_callback(mark_begun)  # a request that fails before answering is not a timeout
        try:
            async with asyncio.timeout(self.timeout):
                await begun
        except asyncio.CancelledError:
            handling.cancel()  # the server is shutting down or the client went away: the work goes with it
            raise
        except TimeoutError:
            if handling.cancel():
                message = f"request_timeout_s: not answered within {self.timeout:g} s"
                await send_refusal(scope, send, Reason.TIMEOUT, message, "request_timeout_s")
                return
        await handling
