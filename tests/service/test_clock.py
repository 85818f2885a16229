"""Ticks of fixed and calendar steps: every step a tick, and back."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from service.clock import Clock


@pytest.mark.parametrize("freq", ["MS", "ME", "QS-OCT", "YS", "B", "W-SUN"])
def test_calendar_steps_are_consecutive_ticks_from_the_far_past_to_the_far_future(freq: str) -> None:
    clock = Clock(freq)
    grid = pd.date_range("1680-01-01", "2260-01-01", freq=freq)
    for stamp in (*grid[:3], *grid[len(grid) // 2 : len(grid) // 2 + 3], *grid[-3:]):
        tick = clock.ticks(stamp.to_pydatetime())
        assert clock.time(tick) == stamp and clock.time(tick + 1) == stamp + pd.tseries.frequencies.to_offset(freq)
        assert clock.format(tick) == stamp.isoformat()
    assert clock.step == 1 and clock.time(clock.latest) <= pd.Timestamp.max < clock.time(clock.latest) + clock.offset
    assert clock.time(clock.earliest) >= pd.Timestamp.min


def test_fixed_steps_tick_in_nanoseconds_and_any_time_is_a_start() -> None:
    clock = Clock("30min")
    tick = clock.ticks(datetime(2024, 5, 3, 22, 17))
    assert tick == pd.Timestamp("2024-05-03 22:17").value and clock.step == 1_800_000_000_000
    assert clock.format(tick + clock.step) == "2024-05-03T22:47:00"
    with pytest.raises(ValueError, match="must lie between 1677"):
        clock.ticks(datetime(2263, 1, 1))
    assert not Clock(None).timed


def test_a_multiple_of_a_calendar_unit_starts_on_any_of_its_units() -> None:
    clock = Clock("2MS")
    tick = clock.ticks(datetime(2024, 2, 1))  # a two-monthly series of even months
    assert clock.step == 2 and clock.format(tick + clock.step) == "2024-04-01T00:00:00"
    assert clock.format(clock.ticks(datetime(2024, 3, 1)) + clock.step) == "2024-05-01T00:00:00"
