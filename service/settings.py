"""Runtime settings of the service, read once from ``SEQCAST_*`` environment variables at start-up."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEQCAST_", frozen=True)

    model_tag: str = "seqcast-forecaster:latest"  # BentoML model store tag of the forecaster to serve
    session_store: str = "memory"  # "memory" (one worker only) or a redis:// URL shared by workers and replicas
    session_ttl_s: float = Field(default=3600.0, gt=0)  # an idle session expires after this long
    max_sessions: int = Field(default=100_000, gt=0)  # in-memory store: past it, the least recently used go
    max_history: int = Field(default=20_000, gt=0)  # longest history /forecast and /open accept
    max_observe: int = Field(default=2_000, gt=0)  # most new values one /observe accepts
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)  # larger request bodies get 413
    # When set, every route but health, metrics and /docs needs `Authorization: Bearer <key>` (or `X-API-Key`).
    api_key: SecretStr | None = None
    noop_endpoint: bool = False  # serve /noop (parses an observe body, does nothing): BentoML's floor, for benchmarks
    workers: int = Field(default=1, gt=0)
    # A log line per request costs ~10% of a small request's time; /metrics already counts and times them all.
    access_log: bool = False
    # OpenTelemetry spans for API requests, exported as BentoML's tracing config says. Off, none is built: BentoML
    # builds one per request even with no exporter configured, which cost ~40% of a small request's time.
    tracing: bool = False
    request_timeout_s: float = Field(default=60.0, gt=0)  # a request not begun to be answered by then gets 504
    batching: bool = True  # adaptive batching of /forecast and /observe; off, each request runs its own pass
    max_batch_size: int = Field(default=64, gt=1)  # adaptive batching: most requests merged into one forward pass
    max_latency_ms: int = Field(default=2_000, gt=0)  # adaptive batching sheds a request predicted to wait longer (503)

    @field_validator("session_store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"session_store must be 'memory' or a redis:// URL, got {value!r}")
        return value
