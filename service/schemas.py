"""Typed request and response bodies. Their examples appear in the OpenAPI page at ``/``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidatorFunctionWrapHandler, WrapValidator

from service.abandoned import DEPARTURE, Departure

# Non-finite numbers would poison a recurrent state for good, so they are refused where they enter.
# Strict: a string ("30000") or a boolean is refused rather than read as a number.
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Rows = list[list[Finite]]


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Whether the item came as a bare object rather than inside a list, so it is answered the same way.
    _single: bool = PrivateAttr(default=False)
    # When it was parsed: the time until its batch starts is the batching wait.
    _received: float = PrivateAttr(default_factory=time.perf_counter)
    # Whether its client is still connected, where the service watches (service.abandoned).
    _departure: Departure | None = PrivateAttr(default_factory=lambda: DEPARTURE.get())

    @property
    def abandoned(self) -> bool:
        return self._departure is not None and self._departure.left

    @property
    def size(self) -> int:
        """Values the request brings: what its pass has to read."""
        raise NotImplementedError


def _one_or_many(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, dict):
        items = handler([value])
        items[0]._single = True
        return items
    return handler(value)


def one_or_many(item: type[BatchItem]) -> Any:
    """A batchable endpoint's body: one request object, or a list of them answered with a list."""
    return Annotated[list[item], WrapValidator(_one_or_many)]  # type: ignore[valid-type]


class HistoryRequest(BatchItem):
    history: list[Finite] = Field(min_length=1, description="observed target values, oldest first")
    covariates: Rows | None = Field(
        None, description="one row per history value: the model's past, then future covariates (see /info)"
    )
    start: datetime | None = Field(
        None, description="timestamp of the first history value; needed when the model has calendar features"
    )
    future_covariates: Rows | None = Field(
        None, description="one row per forecast step: the model's future covariates over the horizon"
    )
    series: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the training series this history continues, for a model that scales each series by its own "
        "statistics (see /info); left out, the history is a series of its own, scaled by its own statistics (at "
        "least two horizons of values); a session remembers either",
    )

    @property
    def size(self) -> int:
        return len(self.history)


class ForecastRequest(HistoryRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "history": [4.1, 4.3, 4.6],
                "covariates": [[18.2, 1.0], [18.0, 1.0], [17.7, 1.0]],
                "start": "2014-12-30T22:30:00",
                "future_covariates": [[17.5, 1.0], [17.2, 1.0]],
            }
        }
    )


class OpenRequest(HistoryRequest):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"history": [4.1, 4.3], "covariates": [[18.2, 1.0], [18.0, 1.0]], "start": "2014-12-30T23:00:00"}
        }
    )


class ObserveRequest(BatchItem):
    session_id: str = Field(min_length=1, max_length=64)
    seq: int = Field(
        ge=0, strict=True, description="observations the session had consumed when the client last heard of it"
    )
    values: list[Finite] = Field(min_length=1, description="new target values, oldest first")
    covariates: Rows | None = Field(None, description="one row per new value, as in /forecast")
    future_covariates: Rows | None = Field(None, description="one row per forecast step, as in /forecast")
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"session_id": "3q2-9FAKxHjHk4mQyQ5Zfw", "seq": 2, "values": [4.6], "covariates": [[17.7, 1.0]]}
        }
    )

    @property
    def size(self) -> int:
        return len(self.values)


class CloseRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=64)


class ForecastFields(TypedDict):
    forecast: list[float]
    quantiles: dict[str, list[float]] | None
    timestamps: list[str] | None
    warnings: list[str] | None
    model: str


class ForecastResponse(BaseModel):
    forecast: list[float] = Field(description="point forecast (the median for quantile models), one per step")
    quantiles: dict[str, list[float]] | None = Field(None, description="forecast per trained quantile")
    timestamps: list[str] | None = Field(
        None,
        description="ISO 8601 time of each forecast step, in the time of `start` (its offset dropped), on the "
        "model's calendar (month starts for a monthly model); null when the request gave no `start`",
    )
    warnings: list[str] | None = Field(
        None,
        description="values applied although far outside the training data (SEQCAST_WARN_BEYOND_STD training "
        "standard deviations), which often means other units; null when there are none",
    )
    model: str = Field(description="tag of the model that answered")


class SessionResponse(ForecastResponse):
    session_id: str
    seq: int = Field(description="observations the session has consumed")
    anomalies: list[int] | None = Field(
        None,
        description="positions in `values` of the observed values that were anomalous: outside the widest "
        "interval of their step's forecast (quantile models), or over SEQCAST_ANOMALY_K times the model's test "
        "error from it; "
        "applied all the same. null when live scoring is off or none was",
    )


class CloseResponse(BaseModel):
    session_id: str
    seq: int
    closed: bool = True


class InfoResponse(BaseModel):
    model: str
    cell: str
    horizon: int
    quantiles: list[float]
    target: str
    past_covariates: list[str]
    future_covariates: list[str]
    calendar: list[str]
    freq: str | None
    nonnegative: bool = Field(description="forecasts are clipped at zero")
    log_target: bool = Field(description="the model forecasts log(1 + value): values below zero are refused")
    scaled_series: int = Field(
        description="training series scaled by their own statistics, whose id a request may name (else its history "
        "is scaled by its own); 0 when all series are scaled alike"
    )
    min_own_history: int | None = Field(
        description="values a history without `series` needs, its statistics coming from them; null when all "
        "series are scaled alike"
    )
    max_history: int
    max_observe: int
    test_metrics: dict[str, Any]
    live_scoring: bool = Field(
        description="whether sessions score their forecasts as actual values arrive (/metrics: seqcast_live_*); "
        "off for a model exported before seqcast carried what it needs"
    )
    shadow_model: str | None = Field(
        default=None,
        description="the candidate model that follows every session in shadow (scored live, never answering); "
        "null when none",
    )
    session_tail: int = Field(
        description="raw inputs each session keeps, from which a service running another model that reads the same "
        "inputs rebuilds it on its next observe; 0: none, and a model upgrade ends every session"
    )


class Reason(StrEnum):
    """Why a request is refused, in the domain's words; the value is its metric label. Only the HTTP edge
    (service/refusals.py) knows which status each one is answered with."""

    BAD_INPUT = "bad_input"  # a value, type or size the service cannot take, named by its field
    UNKNOWN_SESSION = "unknown_session"  # never opened, closed or expired
    SEQ_CONFLICT = "seq_conflict"  # a stale or future seq, or another writer got there first
    STALE_SESSION = "stale_session"  # of a model this one cannot take it over from, or a record that cannot be read
    NON_FINITE_FORECAST = "non_finite_forecast"  # the model's answer overflowed; nothing was stored
    STORE_UNAVAILABLE = "store_unavailable"  # the session store did not answer; retrying is safe
    SHED = "shed"  # adaptive batching would have kept it waiting too long; nothing was applied
    ABANDONED = "abandoned"  # its client left before it was computed
    BODY_TOO_LARGE = "body_too_large"
    UNAUTHORIZED = "unauthorized"
    TIMEOUT = "timeout"  # not begun to be answered within request_timeout_s


@dataclass(frozen=True)
class Rejection:
    """A request the service refuses: why, a message that names the field, and the session's seq for a
    conflict."""

    reason: Reason
    error: str
    field: str | None = None
    seq: int | None = None  # the session's current seq, for seq conflicts


class RejectedRequest(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.error)
        self.rejection = rejection
