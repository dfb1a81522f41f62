"""Calls from a node to itself, served in-process.

The Director, the commit proxies and the sequencer run on the leader's node,
beside one of the logs: most calls on a commit, a read version and the
Director's health checks go from this node to this node. Over the listener
each such call pays a TLS record and a syscall both ways plus two event-loop
wake-ups; a profile of one-client transactions showed those local round trips
as most of the commit's time.

:class:`LocalFirstChannel` serves a call addressed to the node's own address
by running the node's request handler directly, the same way the listener
does (:func:`~bedrock_cp.transport.inbound.serve_request`: the decoded body,
the node's authorization, the request's deadline), as the node itself
(``Principal.node(id)``, what the node's own connection would prove). The
bytes are the same encoded body and answer as on the wire, so nothing is
shared between caller and handler. Every other address goes to the wrapped
channel.

The handler runs in a task of its own, as behind the listener: a caller that
gives up (a quorum call that has its answers, a proxy being stopped) abandons
the answer without cancelling the handler halfway through what it persists,
and the request's deadline cancels the handler's task, never the caller's. A
node that stops closes the channel, which cancels what is still running, as a
closing connection does.

A worker's request to another worker of this node that needs no waiting does
not come here: :mod:`.own_workers` answers it with a call.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import msgspec

from ..auth import Principal
from ..transport import ConnInfo, RemoteError, RpcChannel
from ..transport.inbound import serve_request
from ..wire import TIMEOUT, Request, TransportError

#: What serves a request on this node (the node's ``_on_request``).
Handler = Callable[[Request, ConnInfo], Awaitable[msgspec.Raw]]
_Answer = msgspec.Raw | TransportError


class LocalFirstChannel:
    """An :class:`~bedrock_cp.transport.RpcChannel` that serves calls to
    ``own_address`` with ``handler`` and sends the rest through ``remote``."""

    def __init__(self, remote: RpcChannel, own_address: str, node_id: int, handler: Handler):
        self.remote = remote
        self.own_address = own_address
        self._handler = handler
        self._info = ConnInfo("peer", node_id, "local", Principal.node(node_id))
        #: Calls served in-process so far (tests and metrics look).
        self.local_calls = 0
        #: Handlers still running (a caller that gave up does not wait for them).
        self._serving: set[asyncio.Future[None]] = set()

    @property
    def cluster_id(self) -> str | None:
        return self.remote.cluster_id

    async def call(
        self,
        address: str,
        body: msgspec.Raw,
        timeout: float,  # noqa: ASYNC109 - the request's deadline, enforced by serve_request
    ) -> msgspec.Raw:
        if address != self.own_address:
            return await self.remote.call(address, body, timeout)
        self.local_calls += 1
        timeout_ms = max(1, math.ceil(timeout * 1000))
        reply: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        served = asyncio.ensure_future(self._serve(Request(0, timeout_ms, body), reply))
        self._serving.add(served)
        served.add_done_callback(self._serving.discard)
        answer = await reply
        if isinstance(answer, TransportError):
            if answer.code == TIMEOUT:
                raise TimeoutError(answer.message)
            raise RemoteError(answer.code, answer.message)
        return answer

    async def _serve(self, request: Request, reply: asyncio.Future[_Answer]) -> None:
        """Serve ``request`` and hand its answer to ``reply``, which the caller
        awaits. The handler's task sets it itself (one wake-up for the caller,
        where a shield around the task took two); a caller that gave up has
        cancelled ``reply``, and the handler runs on regardless."""
        try:
            answer = await serve_request(self._handler, request, self._info)
        except BaseException:
            reply.cancel()  # cancelled (the node stops): so is the call
            raise
        if not reply.done():
            reply.set_result(answer)

    async def connection(self, address: str) -> object:
        if address == self.own_address:
            return self
        return await self.remote.connection(address)

    def abort(self) -> None:
        """Cancel the handlers still running (the node stops or crashes)."""
        for served in list(self._serving):
            served.cancel()

    async def close(self) -> None:
        self.abort()
        await asyncio.gather(*self._serving, return_exceptions=True)
        await self.remote.close()
