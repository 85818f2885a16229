"""The fixed set of routes a metric may name: every label comes from it, whatever path a client asks for.

A label per raw path would let any client add series to /metrics without bound (2,000 random paths grew it
from 6 KB to 8.5 MB). A path the service does not serve is counted as ``other``.
"""

from __future__ import annotations

API = ("/forecast", "/open", "/observe", "/close", "/info", "/noop")
# BentoML's own: health, metrics, the OpenAPI page (``/``) and its spec and assets.
BUILTIN = ("/livez", "/readyz", "/healthz", "/metrics", "/", "/docs.json")
STATIC_PREFIX = "/static_content/"
OTHER = "other"
ROUTES = frozenset((*API, *BUILTIN))


def route_label(path: str) -> str:
    """The path itself for a route the service has, ``/static_content`` for its assets, else ``other``."""
    if path in ROUTES:
        return path
    if path.startswith(STATIC_PREFIX):
        return STATIC_PREFIX.rstrip("/")
    return OTHER


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label of seqcast's own metrics: an API route's name (``forecast``), else ``other``."""
    return path[1:] if path in API else OTHER
