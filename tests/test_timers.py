"""Tick clock and failure detector (Cython)."""

from __future__ import annotations

import pytest

from bedrock_cp.raft._timers import TickClock


def test_ticks_fall_on_a_fixed_grid() -> None:
    clock = TickClock(0.010, start=100.0)
    assert clock.due(100.005) == 0
    assert clock.due(100.010) == 1
    assert clock.due(100.017) == 0
    # Waking late by half a tick does not shift the grid.
    assert clock.due(100.025) == 1
    assert clock.next_deadline() == pytest.approx(100.030)
    assert clock.ticks == 2


def test_a_wake_up_a_millisecond_early_still_delivers_the_tick() -> None:
    # Event loops round timers to milliseconds; an early wake-up must not spin.
    clock = TickClock(0.010, start=0.0)
    assert clock.due(0.0095) == 1
    assert clock.next_deadline() == pytest.approx(0.020)
    assert clock.due(0.005 + 0.010) == 0


def test_a_long_stall_delivers_at_most_max_burst_ticks() -> None:
    clock = TickClock(0.010, start=0.0, max_burst=2)
    assert clock.due(5.0) == 2
    assert clock.dropped == 498
    assert clock.due(5.005) == 0
    assert clock.due(5.010) == 1


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        TickClock(0.0, start=0.0)
    with pytest.raises(ValueError):
        TickClock(0.01, start=0.0, max_burst=0)
