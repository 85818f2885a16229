"""The HTTP edge of every refusal: the one map from a reason to its status, and the one function that builds a
refusal's body, used by the endpoints and the middlewares alike."""

from __future__ import annotations

import json

from starlette.types import Scope, Send

from service.metrics import REJECTED
from service.routes import endpoint_label
from service.schemas import Reason, Rejection

# nginx's status for a request whose client closed the connection first: no one reads it, /metrics counts it.
CLIENT_LEFT = 499

STATUS = {
    Reason.BAD_INPUT: 400,
    Reason.UNAUTHORIZED: 401,
    Reason.UNKNOWN_SESSION: 404,
    Reason.SEQ_CONFLICT: 409,
    Reason.STALE_SESSION: 409,
    Reason.BODY_TOO_LARGE: 413,
    Reason.NON_FINITE_FORECAST: 422,
    Reason.ABANDONED: CLIENT_LEFT,
    Reason.STORE_UNAVAILABLE: 503,
    Reason.SHED: 503,
    Reason.TIMEOUT: 504,
}
# Both are brief: a store outage, or a saturated worker; a retry after a second is the right thing.
RETRY_AFTER = frozenset({Reason.STORE_UNAVAILABLE, Reason.SHED})


def refusal_body(error: str, field: str | None = None, seq: int | None = None) -> bytes:
    """``{"error", "field"?, "seq"?}``: the one format every refusal has."""
    body: dict[str, object] = {"error": error}
    if field is not None:
        body["field"] = field
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def render(rejection: Rejection) -> tuple[int, bytes]:
    return STATUS[rejection.reason], refusal_body(rejection.error, rejection.field, rejection.seq)


def headers(rejection: Rejection) -> dict[str, str] | None:
    return {"Retry-After": "1"} if rejection.reason in RETRY_AFTER else None


async def send_refusal(
    scope: Scope, send: Send, reason: Reason, error: str, field: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """A middleware's refusal, answered before the app sees the request: counted, then sent in the one format."""
    REJECTED.labels(endpoint_label(scope.get("path", "")), reason).inc()
    body = refusal_body(error, field)
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": STATUS[reason], "headers": start})
    await send({"type": "http.response.body", "body": body})
