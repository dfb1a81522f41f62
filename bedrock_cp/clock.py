"""Time, as the parts of a node read it: the :class:`Clock` interface.

A part that reads the time or arms a timer whose length matters (the Raft
ticks, the sequencer's versions, the Director's phase durations, the stamps of
registrations and manifests) takes a ``Clock`` at construction instead of
calling :func:`time.monotonic` or :func:`time.time` itself. A node passes one
clock to all of its parts (``Node.start(clock=...)``), so the deterministic
simulation can give each simulated node its own: virtual, and running faster
or slower than the others when a fault skews it (:mod:`bedrock_cp.sim.clock`).

The system clock reads :func:`time.monotonic` (the same clock as the event
loop's deadlines, at full resolution: uvloop's ``loop.time()`` has only
milliseconds) and arms timers on the running loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol


class Clock(Protocol):
    """One node's time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (the one :meth:`call_at` takes)."""

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        """Run ``callback(*args)`` on the running loop once :meth:`monotonic` reaches ``when``."""

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch: stamps for people, never for ordering."""


class SystemClock:
    """The real clock (see the module docstring)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.Handle:
        # The loop's clock is CLOCK_MONOTONIC too, so deadlines carry over as they are.
        return asyncio.get_running_loop().call_at(when, callback, *args)

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


#: The clock of every part that is given none.
SYSTEM_CLOCK: Clock = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]
