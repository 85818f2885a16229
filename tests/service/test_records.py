from __future__ import annotations

import struct

import numpy as np
import pytest

from service.records import NO_TIME, RecordError, SessionRecord


def _record(series: str | None = None) -> SessionRecord:
    rng = np.random.default_rng(0)
    return SessionRecord(
        model="seqcast-forecaster:abc",
        seq=12_345,
        next_time=NO_TIME,
        state=rng.normal(size=(4, 64)).astype(np.float32),  # LSTM: hidden and cell, 2 layers each
        last_digest=bytes(range(16)),
        last_forecast=rng.normal(size=(48, 1)).astype(np.float32),
        series=series,
    )


@pytest.mark.parametrize("series", [None, "CEU0500000001", "Zürich/Süd"])
def test_round_trip_is_exact(series: str | None) -> None:
    original = _record(series)
    restored = SessionRecord.from_bytes(original.to_bytes())
    assert (restored.model, restored.seq, restored.next_time, restored.last_digest, restored.series) == (
        original.model,
        original.seq,
        original.next_time,
        original.last_digest,
        series,
    )
    np.testing.assert_array_equal(restored.state, original.state)
    np.testing.assert_array_equal(restored.last_forecast, original.last_forecast)


def test_state_is_raw_float32_with_a_small_header() -> None:
    blob = _record().to_bytes()
    state_bytes = 2 * 2 * 64 * 4
    forecast_bytes = 48 * 4
    assert len(blob) - state_bytes - forecast_bytes < 80
    assert blob[:4] == b"SQS3"


def test_a_record_of_the_last_format_still_reads() -> None:
    """Sessions opened before an upgrade continue after it: format 2 had no series."""
    original = _record()
    tag = original.model.encode()
    header = struct.pack("<4sQqHIHHH16s", b"SQS2", original.seq, original.next_time, 4, 64, 48, 1, len(tag), bytes(16))
    restored = SessionRecord.from_bytes(header + tag + original.state.tobytes() + original.last_forecast.tobytes())
    assert (restored.model, restored.seq, restored.series) == (original.model, original.seq, None)
    np.testing.assert_array_equal(restored.state, original.state)
    np.testing.assert_array_equal(restored.last_forecast, original.last_forecast)


@pytest.mark.parametrize("blob", [b"", b"not a record at all", b"SQS1" + bytes(10)])
def test_foreign_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(RecordError):
        SessionRecord.from_bytes(blob)


def test_truncated_record_is_refused() -> None:
    with pytest.raises(RecordError, match="header implies"):
        SessionRecord.from_bytes(_record().to_bytes()[:-3])
