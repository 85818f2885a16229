"""ASGI middleware that asks for an API key on every route but health, metrics and the API's documentation.

Probes and Prometheus must reach the service without credentials, and the OpenAPI page describes the API
without exposing any data, so those stay open; everything that forecasts or touches a session needs the key.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.refusals import send_refusal
from service.schemas import Reason

OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/", "/docs", "/docs.json"})
OPEN_PREFIXES = ("/static_content/",)


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    bearer = headers.get(b"authorization", b"")
    if bearer[:7].lower() == b"bearer ":
        return bearer[7:].strip()
    return headers.get(b"x-api-key")


class ApiKey:
    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    def _is_open(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        presented = presented_key(dict(scope.get("headers", [])))
        # compare_digest takes as long for a near miss as for a far one, so timing tells nothing about the key.
        if presented is not None and hmac.compare_digest(presented, self.key):
            await self.app(scope, receive, send)
            return
        problem = "is missing" if presented is None else "is wrong"
        error = f"api key {problem}: send 'Authorization: Bearer <key>'"
        await send_refusal(
            scope, send, Reason.UNAUTHORIZED, error, "authorization", ((b"www-authenticate", b"Bearer"),)
        )
