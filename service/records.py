"""A session as bytes: a fixed header, then the recurrent state and the last answer as raw float32.

Nothing is pickled, so a session store shared with other processes can never make the service run code.
The header carries the model tag, so a session opened under one model is refused by another, and the series
the session continues, whose statistics scale its values under a model scaled per series.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"SQS3"  # 3: the series; 2: the state is (rows, hidden), rows spanning all of the model's state tensors
# magic, seq, next timestamp (ns), state rows, hidden size, horizon, outputs per step, tag length, series length,
# digest of the last applied observe
_HEADER = struct.Struct("<4sQqHIHHHH16s")
# Records of the last format, without a series, are still read: sessions live on through an upgrade.
MAGIC_V2 = b"SQS2"
_HEADER_V2 = struct.Struct("<4sQqHIHHH16s")
NO_TIME = -(2**63)  # next_time of a model without calendar features


class RecordError(ValueError):
    """Stored bytes that are not a session record of this format."""


@dataclass(frozen=True)
class SessionRecord:
    model: str  # tag of the model that opened the session
    seq: int  # observations consumed so far
    next_time: int  # ns since the epoch of the next observation's timestamp, or NO_TIME
    state: np.ndarray  # (state rows, hidden) float32, as Engine.run gives it
    last_digest: bytes  # 16-byte digest of the last applied observe; zeros after /open
    last_forecast: np.ndarray  # (horizon, outputs per step) float32: the answer that observe got
    series: str | None = None  # the series it continues, for a model scaled per series

    def to_bytes(self) -> bytes:
        tag = self.model.encode()
        series = (self.series or "").encode()
        rows, hidden = self.state.shape
        horizon, outputs = self.last_forecast.shape
        header = _HEADER.pack(
            MAGIC, self.seq, self.next_time, rows, hidden, horizon, outputs, len(tag), len(series), self.last_digest
        )
        state = np.ascontiguousarray(self.state, dtype="<f4").tobytes()
        forecast = np.ascontiguousarray(self.last_forecast, dtype="<f4").tobytes()
        return header + tag + series + state + forecast

    @classmethod
    def from_bytes(cls, blob: bytes) -> SessionRecord:
        if len(blob) >= _HEADER.size and blob[:4] == MAGIC:
            _, seq, next_time, rows, hidden, horizon, outputs, tag_len, series_len, digest = _HEADER.unpack_from(blob)
            tag_at = _HEADER.size
        elif len(blob) >= _HEADER_V2.size and blob[:4] == MAGIC_V2:
            _, seq, next_time, rows, hidden, horizon, outputs, tag_len, digest = _HEADER_V2.unpack_from(blob)
            tag_at, series_len = _HEADER_V2.size, 0
        else:
            raise RecordError("not a seqcast session record")
        series_at = tag_at + tag_len
        state_at = series_at + series_len
        forecast_at = state_at + 4 * rows * hidden
        if len(blob) != forecast_at + 4 * horizon * outputs:
            raise RecordError(
                f"session record has {len(blob)} bytes, its header implies {forecast_at + 4 * horizon * outputs}"
            )
        state = np.frombuffer(blob, dtype="<f4", count=rows * hidden, offset=state_at)
        forecast = np.frombuffer(blob, dtype="<f4", count=horizon * outputs, offset=forecast_at)
        return cls(
            model=blob[tag_at:series_at].decode(),
            seq=seq,
            next_time=next_time,
            state=state.reshape(rows, hidden),
            last_digest=digest,
            last_forecast=forecast.reshape(horizon, outputs),
            series=blob[series_at:state_at].decode() or None,
        )
