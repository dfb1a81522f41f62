"""One request for a client's concurrent directory writes: :class:`WriteCoalescer`.

A host that registers from many tasks through one client would otherwise send
one request per write, and the leader would serve each alone: its own frame,
handler task, deadline timer, reply and TLS record, and the client its own
leader call. Those per-request costs are paid once per batch instead
(``benches/test_cluster_bench.py``, 64 tasks on one client, measures the
effect).

The coalescer collects the writes submitted during one pass of the event loop
and sends them together, as one :class:`~bedrock_cp.protocol.WriteBatch` (at
most :data:`~bedrock_cp.protocol.MAX_BATCH_WRITES` each) through the client's
usual leader call, retries and deadline included. A write submitted alone goes
alone, as the write itself: a single writer waits no longer than before, and a
batch never waits for a timer. Each write keeps its own session and answer: a
write the cluster rejects fails only its own caller.

A batch's request runs in a task of the coalescer, not of one caller: a caller
that gives up (cancelled, say) leaves the request to the others. Its session is
handed back only when the request ends, so no later write reuses it while an
earlier seq of it may still be in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .. import protocol

#: What sends one request to the leader (the client's leader call: redirects,
#: failovers, retries until the deadline).
Send = Callable[[protocol.Request], Awaitable[protocol.Response]]
#: A session and the last seq it used.
Session = tuple[int, int]


class _Queued:
    __slots__ = ("reply", "session", "write")

    def __init__(
        self,
        write: protocol.BatchedWrite,
        session: Session,
        reply: asyncio.Future[protocol.Response],
    ) -> None:
        self.write = write
        self.session = session
        self.reply = reply


class WriteCoalescer:
    """Sends the writes submitted in one event-loop pass as one request (module docstring)."""

    def __init__(
        self,
        send: Send,
        release: Callable[[Session], None],
        *,
        max_writes: int = protocol.MAX_BATCH_WRITES,
    ) -> None:
        self._send = send
        self._release = release
        self._max_writes = max_writes
        self._queued: list[_Queued] = []
        self._requests: set[asyncio.Task[None]] = set()

    async def write(self, write: protocol.BatchedWrite, session: Session) -> protocol.Response:
        """Send ``write`` (in ``session``) with the others of this pass; its answer.

        ``session`` is handed to ``release`` once the request carrying it ended.
        Raises what the client's leader call raises (for a batch: for each of its
        writes).
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[protocol.Response] = loop.create_future()
        if not self._queued:
            # After every task already woken in this pass has had its turn.
            loop.call_soon(self._flush)
        self._queued.append(_Queued(write, session, reply))
        return await reply

    async def close(self) -> None:
        """Cancel the requests still out; their callers get ``CancelledError``."""
        for task in list(self._requests):
            task.cancel()
        if self._requests:
            await asyncio.wait(self._requests)

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(queued), self._max_writes):
            task = loop.create_task(self._request(queued[start : start + self._max_writes]))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def _request(self, writes: list[_Queued]) -> None:
        try:
            if len(writes) == 1:
                answers = [await self._send(writes[0].write)]
            else:
                reply = await self._send(protocol.WriteBatch([q.write for q in writes]))
                if isinstance(reply, protocol.WriteResults) and len(reply.results) == len(writes):
                    answers = list(reply.results)
                else:
                    answers = [reply] * len(writes)  # the batch's own answer is each write's
        except asyncio.CancelledError:
            for q in writes:
                q.reply.cancel()  # the client is closing
            raise
        except Exception as exc:
            for q in writes:
                if not q.reply.done():
                    q.reply.set_exception(exc)
        else:
            for q, answer in zip(writes, answers, strict=True):
                if not q.reply.done():
                    q.reply.set_result(answer)
        finally:
            for q in writes:
                self._release(q.session)
