"""A change notification many coroutines can wait on with a deadline.

Workers long-poll ("wait until the chain reaches version v, at most 1 s"). Each
change of state calls :meth:`Pulse.fire`; a waiter re-checks its condition after
every pulse, so no condition variable bookkeeping is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Pulse:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        """Wake every current waiter; later waiters wait for the next fire."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until ``condition()`` holds (re-checked on each fire) or ``timeout``
        seconds pass; returns the condition's last value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
            # the result instead of raising a cancellation that arrives in
            # the loop iteration the event was set, so a cancelled waiter
            # would go on as if it had not been cancelled.
            try:
                async with asyncio.timeout(remaining):
                    await self._event.wait()
            except TimeoutError:
                return condition()
        return True
