"""A log's WAL appends, run on the WAL's own thread.

A push is answered only once its batch is durable, so an append is on the
path of every commit. Handed to a Python thread pool it paid, on top of the
write and its fsync, the pool thread's wake-up and the GIL both ways (a busy
event loop holds the GIL for long stretches). The native WAL's append thread
(``Wal.append_start``) never takes the GIL and says it is done on a
descriptor the event loop watches (as the Raft WAL thread does), so the loop
goes on serving while the disk works. Measured with
``benches/test_transactions_bench.py`` (6 paired runs on a 2-core machine):
one client's transaction p50 5.5 -> 4.6 ms, 32 clients ~2,000 -> ~2,250/s.

The simulation (and any caller that gives the log an executor) keeps the
executor: its inline executor is what makes a run replayable.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .._native import native


class WalAppends:
    """Appends to one WAL at a time (the log's current generation), in order.

    Each :meth:`append` returns once its entries are durable, or raises what
    the WAL raised (a failed fsync poisons the WAL: every later append fails).
    """

    def __init__(self) -> None:
        self._wal: native.Wal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # One future per append started and not yet reported, oldest first.
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def append(
        self, wal: native.Wal, entries: list[native.Entry], hard: native.HardState
    ) -> None:
        if wal is not self._wal:
            self._watch(wal)
        assert self._loop is not None
        done = self._loop.create_future()
        wal.append_start(entries, hard)
        self._waiting.append(done)
        await done

    def _watch(self, wal: native.Wal) -> None:
        """Follow ``wal`` (a new generation) instead of the previous one."""
        self.close()
        self._loop = asyncio.get_running_loop()
        self._wal = wal
        self._loop.add_reader(wal.append_fd, self._on_done)

    def _on_done(self) -> None:
        """The append fd is readable: report every append that finished."""
        wal = self._wal
        if wal is None:
            return
        while True:
            failure: BaseException | None = None
            try:
                if not wal.append_done():
                    return
            except Exception as exc:
                failure = exc
            if not self._waiting:
                continue  # its caller was cancelled and forgotten (see close)
            done = self._waiting.popleft()
            if done.done():
                continue  # its caller was cancelled (the log is stopping)
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(failure)

    def close(self) -> None:
        """Stop watching the current WAL; appends not reported are abandoned."""
        if self._wal is not None and self._loop is not None:
            self._loop.remove_reader(self._wal.append_fd)
        self._wal = None
        for done in self._waiting:
            done.cancel()
        self._waiting.clear()
