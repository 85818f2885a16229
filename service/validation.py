"""Request bodies turned into items or into one refusal naming the field: validation errors in the service's
own format, and the bounds on what one request may ask for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from service.schemas import BatchItem, Reason, RejectedRequest, Rejection

LISTED = re.compile(rb"\s*\[")


@dataclass(frozen=True)
class BodyLimits:
    max_items: int  # requests in one list (SEQCAST_MAX_BATCH_SIZE): a list always fits in one pass
    max_values: int  # values over all of a list's items (SEQCAST_MAX_REQUEST_VALUES): bounds a request's work
    # Commas a body within those limits can hold, once the served model's widths are known (for_model): each
    # value brings one, and one per covariate of its row; each item its future rows' and a few between fields.
    # Counting them takes ~1 ms for 4 MB; parsing such a body takes ~40 ms, all of it with the GIL held.
    max_commas: int | None = None

    def for_model(self, covariates: int, future_numbers: int) -> BodyLimits:
        """These limits, with the comma bound of a model reading ``covariates`` per value and ``future_numbers``
        (horizon x future covariates) per request."""
        commas = self.max_values * (1 + covariates) + self.max_items * (future_numbers + FIELD_COMMAS)
        return BodyLimits(self.max_items, self.max_values, commas)


FIELD_COMMAS = 16  # commas between a request's fields, generously


def _path(loc: list[int | str]) -> str:
    parts = [f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc]
    return "".join(parts).lstrip(".")


def invalid_body(error: ValidationError, listed: bool = False) -> Rejection:
    """A 400 naming the first problem's field and where it is (``history[3]``). Client input is never echoed.
    ``listed``: the body was a list, whose items the location starts with."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    first = problems[0]
    loc = list(first["loc"])
    item = loc.pop(0) if loc and isinstance(loc[0], int) and (listed or len(loc) > 1) else None
    if first["type"] == "json_invalid" or not loc:
        loc = ["body"]
    where = f" (item {item} of the list)" if listed and item is not None else ""
    more = f"; and {len(problems) - 1} more" if len(problems) > 1 else ""
    field = next((part for part in loc if isinstance(part, str)), "body")
    return Rejection(Reason.BAD_INPUT, f"{_path(loc)}: {first['msg']}{where}{more}", field)


class ItemParser:
    """A batchable endpoint's body, one request object or a list of them, parsed by pydantic straight from JSON.
    schemas.one_or_many accepts both in one type for BentoML's schema and clients, but its wrap validator makes
    pydantic build Python objects first and validate them after: a quarter slower per item, measured here."""

    def __init__(self, item: type[BatchItem]) -> None:
        self.one: TypeAdapter[BatchItem] = TypeAdapter(item)
        self.many: TypeAdapter[list[BatchItem]] = TypeAdapter(list[item])  # type: ignore[valid-type]

    def __call__(self, body: bytes, listed: bool) -> list[BatchItem]:
        if listed:
            return self.many.validate_json(body)
        parsed = self.one.validate_json(body)
        parsed._single = True
        return [parsed]


def parse_items(items: ItemParser, body: bytes, limits: BodyLimits) -> list[BatchItem]:
    """A batchable endpoint's body (one request or a list of them) as its items; raises RejectedRequest."""
    listed = LISTED.match(body) is not None
    if limits.max_commas is not None and body.count(b",") > limits.max_commas:
        raise RejectedRequest(
            Rejection(
                Reason.BAD_INPUT,
                f"body: holds more numbers than {limits.max_values} values and their covariates can "
                "(max_request_values), refused unread: send them in further requests",
                "body",
            )
        )
    try:
        parsed = items(body, listed)
    except ValidationError as error:
        raise RejectedRequest(invalid_body(error, listed)) from None
    if len(parsed) > limits.max_items:
        raise RejectedRequest(
            Rejection(
                Reason.BAD_INPUT,
                f"body: a list of {len(parsed)} requests; at most {limits.max_items} are accepted in one "
                "(max_batch_size): send the rest in further requests",
                "body",
            )
        )
    values = sum(item.size for item in parsed)
    if values > limits.max_values:
        raise RejectedRequest(
            Rejection(
                Reason.BAD_INPUT,
                f"body: {values} values in one request; at most {limits.max_values} are accepted "
                "(max_request_values): send them in further requests",
                "body",
            )
        )
    return parsed
