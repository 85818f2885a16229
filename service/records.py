"""A session as bytes: a fixed header, then the recurrent state and the last answer as raw float32.

Nothing is pickled, so a session store shared with other processes can never make the service run code.
The header carries the model tag, so a session opened under one model is refused by another. Under a model
scaled per series, the record names the training series the session continues, or holds the statistics fitted
on its opening history (a series the model did not train on), so later values are scaled as the first were.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from models.features import Scaling

MAGIC = b"SQS4"
# Each format's header: magic, seq, next timestamp (ns), state rows, hidden size, horizon, outputs per step, tag
# length, [series length (3+)], [statistics columns (4+)], digest of the last applied observe. Records of the
# last two formats are still read: sessions live on through an upgrade.
_HEADERS = {
    MAGIC: struct.Struct("<4sQqHIHHHHH16s"),  # 4: statistics fitted on the opening history
    b"SQS3": struct.Struct("<4sQqHIHHHH16s"),  # 3: the series
    b"SQS2": struct.Struct("<4sQqHIHHH16s"),  # 2: the state is (rows, hidden), rows spanning all state tensors
}
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
    series: str | None = None  # the training series it continues, for a model scaled per series
    # For a series the model did not train on, the statistics fitted on the history it was opened with: its
    # later values must be scaled as its first ones were.
    scaling: Scaling | None = None

    def to_bytes(self) -> bytes:
        tag = self.model.encode()
        series = (self.series or "").encode()
        rows, hidden = self.state.shape
        horizon, outputs = self.last_forecast.shape
        # float64: the statistics a session scales by are exactly those its opening request was scaled by
        stats = b"" if self.scaling is None else np.array([*self.scaling.mean, *self.scaling.std], "<f8").tobytes()
        columns = 0 if self.scaling is None else len(self.scaling.mean)
        header = _HEADERS[MAGIC].pack(
            MAGIC,
            self.seq,
            self.next_time,
            rows,
            hidden,
            horizon,
            outputs,
            len(tag),
            len(series),
            columns,
            self.last_digest,
        )
        state = np.ascontiguousarray(self.state, dtype="<f4").tobytes()
        forecast = np.ascontiguousarray(self.last_forecast, dtype="<f4").tobytes()
        return header + tag + series + stats + state + forecast

    @classmethod
    def from_bytes(cls, blob: bytes) -> SessionRecord:
        header = _HEADERS.get(blob[:4])
        if header is None or len(blob) < header.size:
            raise RecordError("not a seqcast session record")
        _, seq, next_time, rows, hidden, horizon, outputs, tag_len, *lengths, digest = header.unpack_from(blob)
        series_len, columns = (*lengths, 0, 0)[:2]  # formats before 3 and 4 have neither
        series_at = header.size + tag_len
        stats_at = series_at + series_len
        state_at = stats_at + 16 * columns
        forecast_at = state_at + 4 * rows * hidden
        if len(blob) != forecast_at + 4 * horizon * outputs:
            raise RecordError(
                f"session record has {len(blob)} bytes, its header implies {forecast_at + 4 * horizon * outputs}"
            )
        stats = np.frombuffer(blob, dtype="<f8", count=2 * columns, offset=stats_at).tolist()
        state = np.frombuffer(blob, dtype="<f4", count=rows * hidden, offset=state_at)
        forecast = np.frombuffer(blob, dtype="<f4", count=horizon * outputs, offset=forecast_at)
        try:
            model, series = blob[header.size : series_at].decode(), blob[series_at:stats_at].decode()
        except UnicodeDecodeError:
            raise RecordError("session record's model tag or series is not UTF-8") from None
        return cls(
            model=model,
            seq=seq,
            next_time=next_time,
            state=state.reshape(rows, hidden),
            last_digest=digest,
            last_forecast=forecast.reshape(horizon, outputs),
            series=series or None,
            scaling=Scaling(tuple(stats[:columns]), tuple(stats[columns:])) if columns else None,
        )
