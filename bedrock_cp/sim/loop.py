"""An asyncio event loop on a virtual clock.

Instead of sleeping until the next timer, the loop's selector moves the
clock forward to it: a simulated minute of heartbeats and elections passes in
milliseconds, and the order of events depends only on the program and its seed.
Real file descriptors are never polled (the simulated network is in memory), so
work handed to threads would race the clock: :class:`InlineExecutor` runs it
on the spot instead, and :class:`DiskExecutor` does too but answers after a
virtual delay (a slow disk), in submission order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.BaseSelector):
    """Registers nothing real; ``select(timeout)`` advances the clock by ``timeout``."""

    def __init__(self, loop_clock: list[float]) -> None:
        self._clock = loop_clock
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(
            fileobj, fileobj if isinstance(fileobj, int) else -1, events, data
        )
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("simulation deadlock: no callback is ready and no timer is set")
        if timeout > 0:
            self._clock[0] += timeout
        return []

    def get_map(self) -> Any:
        return self._map

    def close(self) -> None:
        self._map.clear()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """``loop.time()`` is virtual and starts at ``start``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._virtual_clock = [start]
        super().__init__(_VirtualSelector(self._virtual_clock))

    def time(self) -> float:
        return self._virtual_clock[0]


class InlineExecutor(concurrent.futures.Executor):
    """Runs each submitted call immediately, in the calling thread."""

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered to the awaiting coroutine
            fut.set_exception(exc)
        return fut


class DiskExecutor(concurrent.futures.Executor):
    """One node's disk: each call runs at once, in the calling thread, and its
    result is delivered ``latency`` virtual seconds later (0: at once), never
    before an earlier call's — a disk serves its requests in order.

    The work is done when submitted: a node that crashes before the answer
    arrives has still written (and, if asked, synced) it, as a process killed
    while its fsync returns has.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: Virtual seconds each call takes (a slow disk: raise it).
        self.latency = 0.0
        self._last_done = 0.0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            outcome: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except BaseException as exc:  # delivered to the awaiting coroutine
            outcome = (False, exc)
        if self.latency <= 0 and self._last_done <= self._loop.time():
            _resolve(fut, outcome)
            return fut
        self._last_done = max(self._last_done, self._loop.time() + self.latency)
        self._loop.call_at(self._last_done, _resolve, fut, outcome)
        return fut


def _resolve(fut: concurrent.futures.Future[Any], outcome: tuple[bool, Any]) -> None:
    ok, value = outcome
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def run_simulation(main: Coroutine[Any, Any, T], *, start: float = 1000.0) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualClockLoop`."""
    loop = VirtualClockLoop(start)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
