"""A session as bytes: a fixed header, then the recurrent state, the last answer and the tail as raw float32.

Nothing is pickled, so a session store shared with other processes can never make the service run code.
The header carries the tag of the model that stepped the session last. Under a model scaled per series, the
record names the training series the session continues, or holds the statistics fitted on its opening history
(a series the model did not train on), so later values are scaled as the first were. A record also carries
what its model reads and the last inputs it consumed, so that another model reading the same inputs can rebuild
it (``service/migration.py``), and the part of a candidate model following it in shadow (``service/stepper.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from models.features import Scaling

MAGIC = b"SQS6"
# Each format's header: magic, seq, next timestamp (ns), state rows, hidden size, horizon, outputs per step, tag
# length, [series length (3+)], [statistics columns (4+)], [scoring origin rows, steps since it (5+)], [inputs
# description length, tail rows, tail columns, shadow record length (6+)], digest of the last applied observe.
# Records of earlier formats are still read: sessions live on through an upgrade.
_HEADERS = {
    MAGIC: struct.Struct("<4sQqHIHHHHHHHHIHI16s"),  # 6: what the model reads, the last raw inputs, a shadow
    b"SQS5": struct.Struct("<4sQqHIHHHHHHH16s"),  # 5: the forecast made at the latest scoring origin
    b"SQS4": struct.Struct("<4sQqHIHHHHH16s"),  # 4: statistics fitted on the opening history
    b"SQS3": struct.Struct("<4sQqHIHHHH16s"),  # 3: the series
    b"SQS2": struct.Struct("<4sQqHIHHH16s"),  # 2: the state is (rows, hidden), rows spanning all state tensors
}
NO_TIME = -(2**63)  # next_time of a model without calendar features


class RecordError(ValueError):
    """Stored bytes that are not a session record of this format."""


@dataclass(frozen=True)
class SessionRecord:
    model: str  # tag of the model that stepped the session last
    seq: int  # observations consumed so far
    next_time: int  # the next observation's time in the model's clock ticks (service/clock.py), or NO_TIME
    state: np.ndarray  # (state rows, hidden) float32, as Engine.run gives it
    last_digest: bytes  # 16-byte digest of the last applied observe; zeros after /open
    last_forecast: np.ndarray  # (horizon, outputs per step) float32: the answer that observe got
    series: str | None = None  # the training series it continues, for a model scaled per series
    # For a series the model did not train on, the statistics fitted on the history it was opened with: its
    # later values must be scaled as its first ones were.
    scaling: Scaling | None = None
    # Live scoring (service/scoring.py): the forecast made at the latest scoring origin, (horizon, outputs)
    # float32, and how many values the session has observed since; None when there is none to score against.
    origin_forecast: np.ndarray | None = None
    since_origin: int = 0
    # Migration (service/migration.py): what the model reads, as migration.what_it_reads describes it ("" in records
    # of earlier formats), and the last raw inputs consumed, (rows, 1 + covariates) float32; None when not kept.
    reads: str = ""
    tail: np.ndarray | None = None
    # The candidate model that follows the session in shadow: its own record (model, state, forecast, scoring
    # origin; no tail or shadow of its own), at the same seq; None when none follows it.
    shadow: SessionRecord | None = None

    def to_bytes(self) -> bytes:
        tag = self.model.encode()
        series = (self.series or "").encode()
        rows, hidden = self.state.shape
        horizon, outputs = self.last_forecast.shape
        # float64: the statistics a session scales by are exactly those its opening request was scaled by
        stats = b"" if self.scaling is None else np.array([*self.scaling.mean, *self.scaling.std], "<f8").tobytes()
        columns = 0 if self.scaling is None else len(self.scaling.mean)
        origin = b"" if self.origin_forecast is None else np.ascontiguousarray(self.origin_forecast, "<f4").tobytes()
        inputs = self.reads.encode()
        tail_rows, tail_columns = (0, 0) if self.tail is None else self.tail.shape
        tail = b"" if self.tail is None else np.ascontiguousarray(self.tail, "<f4").tobytes()
        shadow = b"" if self.shadow is None else self.shadow.to_bytes()
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
            0 if self.origin_forecast is None else horizon,
            min(self.since_origin, 0xFFFF),
            len(inputs),
            tail_rows,
            tail_columns,
            len(shadow),
            self.last_digest,
        )
        state = np.ascontiguousarray(self.state, dtype="<f4").tobytes()
        forecast = np.ascontiguousarray(self.last_forecast, dtype="<f4").tobytes()
        return header + tag + series + inputs + stats + state + forecast + origin + tail + shadow

    @classmethod
    def from_bytes(cls, blob: bytes, nested: bool = False) -> SessionRecord:
        """The record in ``blob``; ``nested``: a shadow's, inside another record, which holds no tail or shadow."""
        header = _HEADERS.get(blob[:4])
        if header is None or len(blob) < header.size:
            raise RecordError("not a seqcast session record")
        _, seq, next_time, rows, hidden, horizon, outputs, tag_len, *lengths, digest = header.unpack_from(blob)
        absent_before = (0,) * 8  # what a field missing from an earlier format reads as
        series_len, columns, origin_rows, since, inputs_len, tail_rows, tail_columns, shadow_len = (
            *lengths,
            *absent_before,
        )[:8]
        if nested and (shadow_len or tail_columns):  # refused before it is read: nesting stops at one level
            raise RecordError("a shadow record holds a tail or a shadow of its own")
        series_at = header.size + tag_len
        inputs_at = series_at + series_len
        stats_at = inputs_at + inputs_len
        state_at = stats_at + 16 * columns
        forecast_at = state_at + 4 * rows * hidden
        origin_at = forecast_at + 4 * horizon * outputs
        tail_at = origin_at + 4 * origin_rows * outputs
        shadow_at = tail_at + 4 * tail_rows * tail_columns
        implied = shadow_at + shadow_len
        if origin_rows not in (0, horizon) or len(blob) != implied:
            raise RecordError(f"session record has {len(blob)} bytes, its header implies {implied}")
        stats = np.frombuffer(blob, dtype="<f8", count=2 * columns, offset=stats_at).tolist()
        state = np.frombuffer(blob, dtype="<f4", count=rows * hidden, offset=state_at)
        forecast = np.frombuffer(blob, dtype="<f4", count=horizon * outputs, offset=forecast_at)
        origin = np.frombuffer(blob, dtype="<f4", count=origin_rows * outputs, offset=origin_at)
        tail = np.frombuffer(blob, dtype="<f4", count=tail_rows * tail_columns, offset=tail_at)
        try:
            model, series = blob[header.size : series_at].decode(), blob[series_at:inputs_at].decode()
            inputs = blob[inputs_at:stats_at].decode()
        except UnicodeDecodeError:
            raise RecordError("session record's model tag, series or inputs are not UTF-8") from None
        return cls(
            model=model,
            seq=seq,
            next_time=next_time,
            state=state.reshape(rows, hidden),
            last_digest=digest,
            last_forecast=forecast.reshape(horizon, outputs),
            series=series or None,
            scaling=Scaling(tuple(stats[:columns]), tuple(stats[columns:])) if columns else None,
            origin_forecast=origin.reshape(horizon, outputs) if origin_rows else None,
            since_origin=since,
            reads=inputs,
            tail=tail.reshape(tail_rows, tail_columns) if tail_columns else None,
            shadow=cls._shadow(blob[shadow_at:], seq, next_time) if shadow_len else None,
        )

    @classmethod
    def _shadow(cls, blob: bytes, seq: int, next_time: int) -> SessionRecord | None:
        """The shadow's part, which must stand where the session does; None when it cannot be read: a candidate's
        part lost costs it a rebuild from the tail, never the served session."""
        try:
            shadow = cls.from_bytes(blob, nested=True)
        except RecordError:
            return None
        return shadow if (shadow.seq, shadow.next_time) == (seq, next_time) else None
