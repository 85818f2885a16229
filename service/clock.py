"""A model's steps as integer ticks, so that sessions count time by adding: nanoseconds for a fixed step
(seconds to days), a step count for calendar steps (months, quarters, years, business days), whose length
varies and which nanoseconds cannot step through by adding."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from models.features import fixed_step, mean_step

EPOCH = datetime(1970, 1, 1)  # ticks count from it, in the requests' own time (offsets dropped)


class Clock:
    """Ticks of one frequency: ``step`` ticks per step, a tick for every time that ``start`` may name; for
    calendar steps ``offset`` is the calendar's unit (a month for months and for two-monthly steps alike)."""

    def __init__(self, freq: str | None) -> None:
        step = fixed_step(freq) if freq is not None else None
        calendar = None if freq is None or step is not None else pd.tseries.frequencies.to_offset(freq)
        self.freq = freq
        self.timed = freq is not None  # whether answers can carry timestamps
        # Ticks count the calendar's unit (a month for "2MS"), so that two-monthly data may start in any month.
        self.offset = None if calendar is None else calendar.base
        self.step = step.value if step is not None else 1 if calendar is None else calendar.n
        self._anchor = pd.Timestamp(EPOCH)
        if self.offset is not None:
            self._anchor = self.offset.rollforward(self._anchor)
            self._typical = mean_step(self.offset.freqstr)  # where a count of steps starts its search
        # Nanosecond times span 1677 to 2262; a calendar's first tick may fall before that span, so the next.
        self.latest = self._ticks(pd.Timestamp.max)
        self.earliest = self._ticks(pd.Timestamp.min) + (0 if self.offset is None else 1)

    def ticks(self, start: datetime) -> int:
        """The tick of ``start``; ValueError, with what to send instead, for a time outside the calendar's range
        or, for calendar steps, not on one of them (a monthly model's 15 March)."""
        try:
            stamp = pd.Timestamp(start)
            stamp = (stamp.tz_localize(None) if stamp.tzinfo else stamp).as_unit("ns")
        except (pd.errors.OutOfBoundsDatetime, OverflowError):
            raise ValueError(f"must lie between {pd.Timestamp.min:%Y-%m-%d} and {pd.Timestamp.max:%Y-%m-%d}") from None
        if self.offset is None:
            return int(stamp.value)
        tick = self._ticks(stamp)
        if self.time(tick) != stamp:
            raise ValueError(
                f"{stamp.isoformat()} is not a step of the model's frequency {self.freq}: the step "
                f"before it is {self.time(tick).isoformat()}"
            )
        return tick

    def _ticks(self, stamp: pd.Timestamp) -> int:
        """The last step at or before ``stamp`` (ns ticks for a fixed step)."""
        if self.offset is None:
            return int(stamp.value)
        # Near, in plain integers (the span from 1677 to 2262 overflows a Timedelta); calendar arithmetic settles it.
        tick = (stamp.value - self._anchor.value) // self._typical.value
        while not self._at_or_before(tick, stamp):
            tick -= 1
        while self._at_or_before(tick + 1, stamp):
            tick += 1
        return tick

    def _at_or_before(self, tick: int, stamp: pd.Timestamp) -> bool:
        try:
            return bool(self.time(tick) <= stamp)
        except (pd.errors.OutOfBoundsDatetime, OverflowError):
            return tick < 0  # past an end of the calendar: the far past is before any stamp, the far future after

    @property
    def fixed_ns(self) -> int:
        """The step in nanoseconds for a fixed step; 0 for a calendar step or an unknown frequency."""
        return self.step if self.timed and self.offset is None else 0

    def time(self, tick: int) -> pd.Timestamp:
        if self.offset is None:
            return pd.Timestamp(tick)
        return self._anchor + tick * self.offset

    def format(self, tick: int) -> str:
        """ISO 8601 to the second; for fixed steps datetime's formatting, ~15 us cheaper a call than numpy's."""
        if self.offset is None:
            return (EPOCH + timedelta(microseconds=tick // 1000)).isoformat(timespec="seconds")
        return self.time(tick).to_pydatetime().isoformat(timespec="seconds")
