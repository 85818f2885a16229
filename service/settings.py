"""Runtime settings of the service, read once from ``SEQCAST_*`` environment variables at start-up."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "SEQCAST_"
# Redis keeps a TTL in milliseconds as a 64-bit integer, and a session idle for a year is not being served;
# below a second a session would expire between two requests of one client.
MAX_TTL_S = 365 * 24 * 3600.0


def _host_part_intact(parts: SplitResult) -> bool:
    """Whether a store URL's host part reads as meant. A password put into the URL as it is ends that part at
    its first '/', '?' or '#': the rest of the password and its '@' then land in the path, query or fragment,
    and a username, or the password's first characters, is read as the host or the port."""
    if "@" in parts.path + parts.query + parts.fragment:
        return False
    if parts.scheme == "unix":
        return True
    try:
        parts.port  # noqa: B018 - parsing it raises on a port that is not a number
    except ValueError:
        return False
    return bool(parts.hostname)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused store URL or API key would otherwise be echoed, secret and all, into the log.
    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, hide_input_in_errors=True)

    # BentoML model store tag of the forecaster to serve; unset or empty, the store's only forecaster name's latest.
    model_tag: str | None = None
    session_store: str = "memory"  # "memory" (one worker only) or a redis:// URL shared by workers and replicas
    session_ttl_s: float = Field(default=3600.0, ge=1, le=MAX_TTL_S)  # an idle session expires after this long
    max_sessions: int = Field(default=100_000, gt=0)  # in-memory store: past it, the least recently used go
    # A candidate model (a BentoML tag) that follows every session in shadow: its state is kept in the session and
    # its forecasts are scored live, never returned; served later, it finds each session's state ready.
    shadow_model_tag: str | None = None
    # Raw inputs a session keeps, from which a service running another model that reads the same inputs rebuilds
    # it (a model upgrade keeps sessions); unset, the model's training window (input_size); 0, none (no migration).
    session_tail: int | None = Field(default=None, ge=0, le=20_000)
    max_history: int = Field(default=20_000, gt=0)  # longest history /forecast and /open accept
    max_observe: int = Field(default=2_000, gt=0)  # most new values one /observe accepts
    # Values this many training standard deviations from the training mean are applied and flagged in the answer's
    # `warnings` (wrong units, a sentinel); past 1e6 deviations they are refused, as they would saturate the state.
    warn_beyond_std: float = Field(default=10.0, gt=0)
    # Sessions score their forecasts as actual values arrive, for a model exported with what that needs (/info).
    live_scoring: bool = True
    # Live scoring of a point model: an observed value this many times the model's test error (its test MASE, in
    # naive MAEs) from its forecast is flagged anomalous in the /observe answer; with Laplace-like errors about
    # 1 in 400 normal values would be. A quantile model flags values outside its widest interval instead.
    anomaly_k: float = Field(default=6.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)  # larger request bodies get 413
    # Values over all the items of one request (a list of histories or observes): bounds the work one request
    # asks for. 50,000 steps are ~0.1 s of the small model's pass, a few seconds of a large one's.
    max_request_values: int = Field(default=50_000, gt=0)
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
        if value == "memory":
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            # The scheme only: the rest may hold a password, and start-up errors end up in logs.
            raise ValueError(
                f"session_store must be 'memory' or a redis:// URL, got scheme {value.partition(':')[0]!r}"
            )
        parts = urlsplit(value)
        if not _host_part_intact(parts):
            raise ValueError(
                "session_store has no host and port Redis can be reached at: percent-encode a password holding "
                "'/', '?' or '#' (%2F, %3F, %23), or use one of letters and digits"
            )
        user, at, _ = parts.netloc.rpartition("@")
        _, colon, password = user.partition(":")
        if at and colon and not password:  # an unset variable expanded into the URL, say
            raise ValueError(
                "session_store names an empty password (':@'), which Redis takes for none: set one, or leave "
                "out ':@' for a Redis without one"
            )
        return value

    @field_validator("api_key")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("api_key is empty, which would let in an empty key: set a key or unset SEQCAST_API_KEY")
        return value

    @model_validator(mode="after")
    def _one_worker_per_memory_store(self) -> Settings:
        if self.session_store == "memory" and self.workers > 1:
            raise ValueError(
                f"workers={self.workers} with session_store='memory': each worker would hold its own sessions, and "
                "an observe reaching another worker than its /open would get 404; use a redis:// store or one worker"
            )
        return self


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each SEQCAST_* variable that is no setting (a misspelt one is otherwise silently ignored),
    naming the nearest setting."""
    known = [name.upper() for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        if name.startswith(PREFIX) and name.upper().removeprefix(PREFIX) not in known:
            # Compared without the prefix, which every name shares and would make any two look alike.
            near = difflib.get_close_matches(name.upper().removeprefix(PREFIX), known, n=1)
            hint = f"; did you mean {PREFIX}{near[0]}?" if near else ""
            warnings.append(f"{name} is not a seqcast setting and is ignored{hint}")
    return warnings
