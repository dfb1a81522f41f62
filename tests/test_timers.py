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
    with pytest.raises(ValueError):
        TickClock(0.01, start=0.0, hold=-1.0)


def test_quiet_ticks_are_delivered_late_in_full() -> None:
    # The core said the next 4 ticks only count: a driver that slept through
    # them gets all of them at its next input, however late.
    clock = TickClock(0.010, start=0.0, max_burst=2)
    assert clock.wake_at(quiet=4) == pytest.approx(0.050)
    assert clock.due(0.035, quiet=4) == 3
    assert clock.due(0.051, quiet=1) == 2  # the last quiet one and the acting one
    assert clock.dropped == 0


def test_an_acting_tick_woken_for_late_delivers_at_most_max_burst_past_the_quiet_ones() -> None:
    clock = TickClock(0.010, start=0.0, max_burst=2, hold=0.1)
    # A heartbeat (no give-up) due at the 5th tick, woken for a second late.
    assert clock.due(1.0, quiet=4, gives_up=False) == 6
    assert clock.dropped == 94
    assert not clock.holding


def test_a_give_up_woken_for_late_is_held_while_the_peers_may_still_speak() -> None:
    # A stall (the whole host paused): the follower's window ended during it.
    clock = TickClock(0.010, start=0.0, max_burst=2, hold=0.1)
    assert clock.due(1.0, quiet=9, gives_up=True) == 9  # the quiet ones only
    assert clock.holding and clock.holds == 1
    assert clock.wake_at(quiet=0) == pytest.approx(1.1)
    # Meanwhile time is dropped, not counted toward the give-up.
    assert clock.due(1.05, quiet=0, gives_up=True) == 0
    # Nobody spoke during the hold: the give-up tick comes at its end.
    assert clock.due(1.1, quiet=0, gives_up=True) == 2
    assert not clock.holding


def test_a_hold_ends_when_an_input_moves_the_give_up_away() -> None:
    clock = TickClock(0.010, start=0.0, max_burst=2, hold=0.1)
    assert clock.due(1.0, quiet=9, gives_up=True) == 9
    # The leader's heartbeat arrived (the window restarted: 10 quiet ticks).
    assert clock.due(1.03, quiet=10, gives_up=True) == 3
    assert not clock.holding
    assert clock.wake_at(quiet=7) == pytest.approx(1.11)


def test_a_give_up_on_time_or_late_by_less_than_the_hold_is_not_held() -> None:
    clock = TickClock(0.010, start=0.0, max_burst=2, hold=0.1)
    assert clock.due(0.0505, quiet=4, gives_up=True) == 5
    assert not clock.holding
    # 80 ms late: a busy loop, not a stall (the leader may really be gone).
    assert clock.due(0.1305, quiet=4, gives_up=True) == 6
    assert not clock.holding
