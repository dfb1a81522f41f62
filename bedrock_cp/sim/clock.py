"""One simulated node's clock: virtual, and skewable.

A :class:`SimClock` reads the loop's virtual time through a rate: at 1.0 it is
the loop's time; at 2.0 the node's clock (and every timer armed on it: its
Raft ticks, its sequencer's versions) runs twice as fast as the others'; at
0.5, half as fast — a node whose timers fire late. The rate may change
mid-run; the clock never goes back. Wall time is a fixed epoch plus the
node's monotonic time, so stamps are the same in every run of a seed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: Wall time (ms since the Unix epoch) at virtual time 0: any fixed value will do.
WALL_EPOCH_MS = 1_700_000_000_000


class SimClock:
    """See the module docstring. Implements :class:`bedrock_cp.clock.Clock`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float = 1.0) -> None:
        self._loop = loop
        # Node time = _base + (loop time - _loop_base) * _rate.
        self._loop_base = loop.time()
        self._base = self._loop_base
        self._rate = rate

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """From now on, run ``rate`` times as fast as the loop's time."""
        if rate <= 0:
            raise ValueError("a clock's rate must be positive")
        self._base = self.monotonic()
        self._loop_base = self._loop.time()
        self._rate = rate

    def monotonic(self) -> float:
        return self._base + (self._loop.time() - self._loop_base) * self._rate

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        at = self._loop_base + (when - self._base) / self._rate
        return self._loop.call_at(at, callback, *args)

    def wall_ms(self) -> int:
        return WALL_EPOCH_MS + int(self.monotonic() * 1000)
