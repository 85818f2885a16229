from __future__ import annotations

import numpy as np
import pytest

from service.records import NO_TIME, RecordError, SessionRecord


def _record() -> SessionRecord:
    rng = np.random.default_rng(0)
    return SessionRecord(
        model="seqcast-forecaster:abc",
        seq=12_345,
        next_time=NO_TIME,
        state=rng.normal(size=(4, 64)).astype(np.float32),  # LSTM: hidden and cell, 2 layers each
        last_digest=bytes(range(16)),
        last_forecast=rng.normal(size=(48, 1)).astype(np.float32),
    )


def test_round_trip_is_exact() -> None:
    original = _record()
    restored = SessionRecord.from_bytes(original.to_bytes())
    assert (restored.model, restored.seq, restored.next_time, restored.last_digest) == (
        original.model,
        original.seq,
        original.next_time,
        original.last_digest,
    )
    np.testing.assert_array_equal(restored.state, original.state)
    np.testing.assert_array_equal(restored.last_forecast, original.last_forecast)


def test_state_is_raw_float32_with_a_small_header() -> None:
    blob = _record().to_bytes()
    state_bytes = 2 * 2 * 64 * 4
    forecast_bytes = 48 * 4
    assert len(blob) - state_bytes - forecast_bytes < 80
    assert blob[:4] == b"SQS2"


@pytest.mark.parametrize("blob", [b"", b"not a record at all", b"SQS1" + bytes(10)])
def test_foreign_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(RecordError):
        SessionRecord.from_bytes(blob)


def test_truncated_record_is_refused() -> None:
    with pytest.raises(RecordError, match="header implies"):
        SessionRecord.from_bytes(_record().to_bytes()[:-3])
