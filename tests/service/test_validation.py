"""Bodies refused in the service's own format, naming the field and the item, and the bounds on a request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.schemas import ObserveRequest, OpenRequest, RejectedRequest
from service.validation import BodyLimits, ItemParser, invalid_body, parse_items

ITEMS = ItemParser(ObserveRequest)
LIMITS = BodyLimits(max_items=4, max_values=10)


def refusal(body: bytes) -> tuple[str, str | None]:
    with pytest.raises(RejectedRequest) as refused:
        parse_items(ITEMS, body, LIMITS)
    return refused.value.rejection.error, refused.value.rejection.field


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        (b'{"session_id": "a", "seq": 1, "values": ["30000"]}', "values[0]: Input should be a valid number", "values"),
        (b'{"session_id": "a", "seq": 1, "values": [true]}', "values[0]: Input should be a valid number", "values"),
        (b'{"session_id": "a", "seq": "1", "values": [1]}', "seq: Input should be a valid integer", "seq"),
        (b'{"session_id": "a", "seq": 1}', "values: Field required", "values"),
        (
            b'[{"session_id": "a", "seq": 1, "values": [1]}, {"session_id": "a", "seq": 2, "values": [1, "x"]}]',
            "values[1]: Input should be a valid number (item 1 of the list)",
            "values",
        ),
        (b'{"session_id": "a", "seq": 1, "values": [1', "body: Invalid JSON", "body"),
        (b"[1, 2]", "body: Input should be an object (item 0 of the list)", "body"),
        (b"5", "body: Input should be an object", "body"),
    ],
)
def test_a_bad_body_is_refused_naming_its_field(body: bytes, error: str, field: str) -> None:
    got, named = refusal(body)
    assert got.startswith(error) and named == field
    assert "30000" not in got  # nothing the client sent is echoed


def test_a_bare_object_is_marked_to_be_answered_bare_and_a_list_of_one_is_not() -> None:
    one = b'{"session_id": "a", "seq": 1, "values": [1]}'
    [bare] = parse_items(ITEMS, one, LIMITS)
    [listed] = parse_items(ITEMS, b" [" + one + b"]", LIMITS)
    assert bare._single and not listed._single
    assert bare.model_dump() == listed.model_dump()


def test_lists_and_values_over_the_limits_are_refused_naming_the_setting() -> None:
    five = b"[" + b",".join([b'{"session_id": "a", "seq": 1, "values": [1]}'] * 5) + b"]"
    assert refusal(five) == (
        "body: a list of 5 requests; at most 4 are accepted in one (max_batch_size): send the rest in further requests",
        "body",
    )
    many = (
        b'[{"session_id": "a", "seq": 1, "values": [1, 2, 3, 4, 5, 6]},'
        b' {"session_id": "b", "seq": 1, "values": [1, 2, 3, 4, 5]}]'
    )
    error, field = refusal(many)
    assert error.startswith("body: 11 values in one request; at most 10") and "max_request_values" in error
    assert len(parse_items(ITEMS, many.replace(b", 6]", b"]"), LIMITS)) == 2


def test_a_model_of_its_own_is_named_without_a_list_index() -> None:
    with pytest.raises(ValidationError) as error:
        OpenRequest.model_validate_json(b'{"history": [1, "x"]}')
    assert invalid_body(error.value).error == "history[1]: Input should be a valid number"


def test_a_body_with_more_numbers_than_the_limits_allow_is_refused_unread() -> None:
    limits = LIMITS.for_model(covariates=1, future_numbers=0)  # 10 values and their 10 covariates, 4 items
    assert limits.max_commas == 10 * 2 + 4 * 16
    within = b'{"session_id": "a", "seq": 1, "values": [' + b",".join([b"1"] * 10) + b"]}"
    assert len(parse_items(ITEMS, within, limits)) == 1
    flood = b'{"session_id": "a", "seq": 1, "values": [' + b",".join([b"1"] * 200) + b"]}"
    with pytest.raises(RejectedRequest, match="refused unread"):
        parse_items(ITEMS, flood, limits)
