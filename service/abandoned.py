"""Noticing that a client left before its request was served, so that its forecast is not computed.

A client that times out closes its connection, but the request it sent stays in the batching queue, and by
default its history would still be read by a forward pass whose answer no one receives. Under overload,
clients time out and retry, and each retry would queue another copy of the same work. This middleware watches
the connection of each request to the given paths once its body has arrived. The request's ``Departure``,
which its parsed items keep (``schemas.BatchItem``), then says whether the client is still there when its
batch starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Departure:
    """Whether the client of one request has closed its connection."""

    left = False


# The request being parsed, read by each batch item as it is built; None outside a watched request.
DEPARTURE: ContextVar[Departure | None] = ContextVar("DEPARTURE", default=None)


class WatchDeparture:
    def __init__(self, app: ASGIApp, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        departure = Departure()
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            # Once the body is in, the server's next message is a disconnect: the client left, or the answer
            # was sent (the request is over then, and this task with it).
            if (await receive())["type"] == "http.disconnect":
                departure.left = True

        async def receiving() -> Message:
            nonlocal watcher
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body") and watcher is None:
                watcher = asyncio.create_task(watch())
            elif message["type"] == "http.disconnect":
                departure.left = True
            return message

        token = DEPARTURE.set(departure)
        try:
            await self.app(scope, receiving, send)
        finally:
            DEPARTURE.reset(token)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
