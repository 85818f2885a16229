from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from models import Scaling
from service.records import _HEADERS, MAGIC, NO_TIME, RecordError, SessionRecord

READS = '["y",[],["temperature"],["time_of_day"],"30min","one for all series"]'


def _record(
    series: str | None = None, scaling: Scaling | None = None, origin: bool = False, since: int = 0, tail: int = 0
) -> SessionRecord:
    rng = np.random.default_rng(0)
    return SessionRecord(
        model="seqcast-forecaster:abc",
        seq=12_345,
        next_time=NO_TIME,
        state=rng.normal(size=(4, 64)).astype(np.float32),  # LSTM: hidden and cell, 2 layers each
        last_digest=bytes(range(16)),
        last_forecast=rng.normal(size=(48, 1)).astype(np.float32),
        series=series,
        scaling=scaling,
        origin_forecast=rng.normal(size=(48, 1)).astype(np.float32) if origin else None,
        since_origin=since,
        reads=READS if tail else "",
        tail=rng.normal(size=(tail, 2)).astype(np.float32) if tail else None,
    )


@pytest.mark.parametrize(
    ("series", "scaling"),
    [
        (None, None),
        ("CEU0500000001", None),
        ("Zürich/Süd", None),
        (None, Scaling((1234.5678901234, 0.1), (1 / 3, 2.0))),  # a series the model did not train on
    ],
)
@pytest.mark.parametrize(("origin", "since", "tail"), [(False, 0, 0), (True, 0, 0), (True, 47, 336), (False, 0, 1)])
def test_round_trip_is_exact(series: str | None, scaling: Scaling | None, origin: bool, since: int, tail: int) -> None:
    original = _record(series, scaling, origin, since, tail)
    restored = SessionRecord.from_bytes(original.to_bytes())
    assert (restored.model, restored.seq, restored.next_time, restored.last_digest, restored.series) == (
        original.model,
        original.seq,
        original.next_time,
        original.last_digest,
        series,
    )
    assert restored.scaling == scaling
    np.testing.assert_array_equal(restored.state, original.state)
    np.testing.assert_array_equal(restored.last_forecast, original.last_forecast)
    assert restored.since_origin == since
    if origin:
        np.testing.assert_array_equal(restored.origin_forecast, original.origin_forecast)
    else:
        assert restored.origin_forecast is None
    assert restored.reads == original.reads
    if tail:
        np.testing.assert_array_equal(restored.tail, original.tail)
    else:
        assert restored.tail is None


def test_state_is_raw_float32_with_a_small_header() -> None:
    blob = _record().to_bytes()
    state_bytes = 2 * 2 * 64 * 4
    forecast_bytes = 48 * 4
    assert len(blob) - state_bytes - forecast_bytes < 96
    assert blob[:4] == b"SQS6"
    # Live scoring adds one horizon of floats: the forecast made at the latest scoring origin.
    assert len(_record(origin=True).to_bytes()) - len(blob) == forecast_bytes
    # The tail adds its raw floats and what the model reads, once.
    assert len(_record(tail=336).to_bytes()) - len(blob) == 336 * 2 * 4 + len(READS)


@pytest.mark.parametrize(
    ("magic", "series"),
    [(b"SQS5", "CEU0500000001"), (b"SQS4", "CEU0500000001"), (b"SQS3", "CEU0500000001"), (b"SQS2", "")],
)
def test_records_of_earlier_formats_still_read(magic: bytes, series: str) -> None:
    """Sessions opened before an upgrade continue after it: format 5 had no tail, 4 no scoring origin, 3 no
    statistics, 2 no series."""
    original = _record()
    tag = original.model.encode()
    lengths = {
        b"SQS5": (len(tag), len(series.encode()), 0, 0, 0),
        b"SQS4": (len(tag), len(series.encode()), 0),
        b"SQS3": (len(tag), len(series.encode())),
    }.get(magic, (len(tag),))
    layout = "<4sQqHIHHH" + "H" * (len(lengths) - 1) + "16s"
    header = struct.pack(layout, magic, original.seq, original.next_time, 4, 64, 48, 1, *lengths, bytes(16))
    blob = header + tag + series.encode() + original.state.tobytes() + original.last_forecast.tobytes()
    restored = SessionRecord.from_bytes(blob)
    assert (restored.model, restored.seq, restored.series, restored.scaling, restored.origin_forecast) == (
        original.model,
        original.seq,
        series or None,
        None,
        None,
    )
    assert (restored.reads, restored.tail) == ("", None)
    np.testing.assert_array_equal(restored.state, original.state)
    np.testing.assert_array_equal(restored.last_forecast, original.last_forecast)


@pytest.mark.parametrize("blob", [b"", b"not a record at all", b"SQS1" + bytes(10)])
def test_foreign_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(RecordError):
        SessionRecord.from_bytes(blob)


def test_truncated_record_is_refused() -> None:
    with pytest.raises(RecordError, match="header implies"):
        SessionRecord.from_bytes(_record().to_bytes()[:-3])


def test_a_shadow_travels_inside_its_session_record() -> None:
    shadow = dataclasses.replace(_record(origin=True, since=5), model="seqcast-forecaster:candidate")
    original = dataclasses.replace(_record(tail=48), shadow=shadow)
    restored = SessionRecord.from_bytes(original.to_bytes())
    assert restored.shadow is not None and restored.shadow.model == "seqcast-forecaster:candidate"
    np.testing.assert_array_equal(restored.shadow.state, shadow.state)
    np.testing.assert_array_equal(restored.shadow.origin_forecast, shadow.origin_forecast)
    assert restored.shadow.since_origin == 5 and restored.shadow.shadow is None
    np.testing.assert_array_equal(restored.tail, original.tail)


def test_a_nested_or_displaced_shadow_is_dropped_and_the_session_kept() -> None:
    """A shadow part nested deeper, or at another seq than its session, was not written by seqcast: the
    candidate loses it (it rebuilds from the tail), the served session stands."""
    deep = dataclasses.replace(_record(), shadow=dataclasses.replace(_record(), shadow=_record()))
    restored = SessionRecord.from_bytes(dataclasses.replace(_record(), shadow=deep).to_bytes())
    assert restored.shadow is None and restored.seq == 12_345
    displaced = dataclasses.replace(_record(), seq=12_000)
    assert SessionRecord.from_bytes(dataclasses.replace(_record(), shadow=displaced).to_bytes()).shadow is None


def test_a_deeply_nested_blob_is_refused_without_recursing() -> None:
    """Each level a crafted header: from_bytes reads the nested header's lengths before going in."""
    base = _record().to_bytes()
    size = _HEADERS[MAGIC].size
    fields = list(_HEADERS[MAGIC].unpack(base[:size]))
    blob = base
    for _ in range(2_000):  # far past Python's recursion limit
        fields[-2] = len(blob)  # the shadow record's length
        blob = _HEADERS[MAGIC].pack(*fields) + base[size:] + blob
    assert SessionRecord.from_bytes(blob).shadow is None
