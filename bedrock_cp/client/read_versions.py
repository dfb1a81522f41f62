"""One read-version request for a database's concurrent transactions: :class:`ReadVersionBatcher`.

Every transaction starts by asking the sequencer for a read version; 32
transactions in flight would otherwise be 32 requests the sequencer serves
alone (frame, handler task, deadline timer, reply, TLS record) and 32 replies
the client reads alone. The batcher sends one request for all the asks made
during one pass of the event loop and hands its answer to each (FoundationDB's
client batches its read-version requests the same way).

Sharing keeps the guarantee a read version gives: it is at least every version
committed before the ask. The sequencer answers with a version at least every
commit acknowledged before *the request* reached it, and the request is sent
only after every ask it answers was made; an ask made while a request is out
never joins it but waits for the next one. A batch never waits for a timer: an
ask alone goes alone, in the next turn of the loop.

The request runs in a task of the batcher, not of one caller: a caller that
gives up (cancelled, say) leaves the request to the others. What an ask alone
pays over a direct call: that task, the two event-loop passes before it sends
(the flush, the task's first step) and the hand-over of its answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..protocol import Layout

#: Asks for a read version of ``layout``'s epoch from its sequencer; raises
#: what the database's calls raise (:class:`~.errors.TransactionError`).
Ask = Callable[[Layout], Awaitable[int]]


class ReadVersionBatcher:
    """Answers the asks made in one event-loop pass with one request (module docstring)."""

    def __init__(self, ask: Ask) -> None:
        self._ask = ask
        #: Asks of this pass, by (sequencer, epoch): the layout to ask and the waiters.
        self._queued: dict[tuple[str, int], tuple[Layout, list[asyncio.Future[int]]]] = {}
        self._requests: set[asyncio.Task[None]] = set()
        #: Requests sent and asks they answered (for tests and metrics).
        self.requests_sent = 0
        self.asks = 0

    async def read_version(self, layout: Layout) -> int:
        """A read version of ``layout``'s epoch, shared with the other asks of this pass."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[int] = loop.create_future()
        if not self._queued:
            # After every task already woken in this pass has had its turn.
            loop.call_soon(self._flush)
        key = (layout.sequencer.id, layout.epoch)
        queued = self._queued.get(key)
        if queued is None:
            self._queued[key] = (layout, [reply])
        else:
            queued[1].append(reply)
        self.asks += 1
        return await reply

    def _flush(self) -> None:
        queued, self._queued = self._queued, {}
        loop = asyncio.get_running_loop()
        for layout, waiters in queued.values():
            task = loop.create_task(self._request(layout, waiters))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def _request(self, layout: Layout, waiters: list[asyncio.Future[int]]) -> None:
        self.requests_sent += 1
        try:
            version = await self._ask(layout)
        except asyncio.CancelledError:
            for w in waiters:
                w.cancel()  # the database is closing
            raise
        except Exception as exc:
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
        else:
            for w in waiters:
                if not w.done():
                    w.set_result(version)

    async def close(self) -> None:
        """Cancel the requests still out; their callers get ``CancelledError``."""
        for task in list(self._requests):
            task.cancel()
        if self._requests:
            await asyncio.wait(self._requests)
