"""RpcClient: request/response calls to a node's listener, as a client.

Used by the CLI, the client library, and by nodes calling other nodes' request
ports. Each :meth:`RpcClient.call` gets a fresh request id and a future; answers
may arrive in any order. The body is opaque here: the caller encodes it with
:func:`bedrock_cp.wire.encode_body` and decodes the answer with its own union.

Errors: :class:`TimeoutError` when the caller's deadline passes;
:class:`ConnectionLost` for every pending call when the connection closes;
:class:`RemoteError` when the server's transport answered with a
``TransportError`` body (``timeout``, ``internal``, ``overloaded``) — ``call``
checks for it so callers never see such a body.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Final

import msgspec

from ..auth import ConnectorAuth
from ..wire import MAX_FRAME, Frame, Request, Response, transport_error_of
from .connector import ConnectorProtocol, establish
from .errors import ConnectionLost, RemoteError

#: Request ids wrap here (msgpack uint64 is fine, but keep them small on the wire).
_MAX_ID: Final = 2**32


class _RpcProtocol(ConnectorProtocol):
    def __init__(
        self,
        cluster_id: str | None,
        auth: ConnectorAuth,
        node_id: int,
        max_frame: int,
        stats: Counter[str],
    ) -> None:
        super().__init__(
            auth=auth,
            cluster_id=cluster_id or "",
            node_id=node_id,
            kind="client",
            expect_cluster=cluster_id,
            expect_node=None,
            max_frame=max_frame,
            stats=stats,
        )
        self.pending: dict[int, asyncio.Future[msgspec.Raw]] = {}
        self.loss_is_news = False  # the caller hears it as ConnectionLost

    def established_frame(self, frame: Frame) -> None:
        if type(frame) is not Response:
            self.fail("unexpected_frame", f"unexpected {type(frame).__name__} frame from a server")
            return
        fut = self.pending.pop(frame.id, None)
        if fut is None:
            self.stats["responses.late"] += 1  # its caller gave up already
        elif not fut.done():
            fut.set_result(frame.body)

    def on_closed(self, remote_broke: bool) -> None:
        super().on_closed(remote_broke)
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(self.close_reason))


def _expire(fut: asyncio.Future[msgspec.Raw]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class RpcClient:
    """One client connection to a node; calls may run concurrently."""

    def __init__(self, proto: _RpcProtocol, remote_node_id: int, remote_cluster_id: str) -> None:
        self._proto = proto
        self._next_id = 1
        self.remote_node_id = remote_node_id
        self.remote_cluster_id = remote_cluster_id
        #: Counters (``closed.<reason>``, ``responses.late``), like Transport.stats.
        self.stats = proto.stats

    @classmethod
    async def connect(
        cls,
        address: str,
        cluster_id: str | None,
        *,
        auth: ConnectorAuth,
        node_id: int = 0,
        timeout: float = 2.0,  # noqa: ASYNC109 - bounds connect and handshake together
        max_frame: int = MAX_FRAME,
    ) -> RpcClient:
        """Connect to ``"host:port"`` and complete the handshake within ``timeout``.

        ``cluster_id`` None accepts any cluster (discovery; see ``remote_cluster_id``).
        ``auth`` is how this side proves itself; ``node_id`` is this node's id when a
        node calls another (0 for clients). Raises HandshakeRefused (with the
        acceptor's reason), TimeoutError or OSError.
        """
        stats: Counter[str] = Counter()
        async with asyncio.timeout(timeout):
            proto = await establish(
                lambda: _RpcProtocol(cluster_id, auth, node_id, max_frame, stats), address, auth
            )
        welcome = proto.welcome.result()
        return cls(proto, welcome.node_id, welcome.cluster_id)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or closing; calls then raise ConnectionLost."""
        return self._proto.closing

    # The deadline travels with the request (the server enforces it too): not just a wrapper.
    async def call(self, body: msgspec.Raw, timeout: float) -> msgspec.Raw:  # noqa: ASYNC109
        """Send ``body`` as a request with deadline ``timeout`` (seconds); return the answer.

        Raises TimeoutError, ConnectionLost, or RemoteError (see the module docstring).
        """
        proto = self._proto
        if proto.closing:
            raise ConnectionLost(proto.close_reason or "connection closed")
        rid = self._next_id
        self._next_id = rid + 1 if rid + 1 < _MAX_ID else 1
        loop = proto.loop
        fut: asyncio.Future[msgspec.Raw] = loop.create_future()
        proto.pending[rid] = fut
        # One timer that fails the future: far cheaper per call than an
        # asyncio.timeout block (which cancels and uncancels the whole task).
        timer = loop.call_later(timeout, _expire, fut)
        try:
            proto.write(Request(rid, max(1, math.ceil(timeout * 1000)), body))
            raw = await fut
        finally:
            timer.cancel()
            proto.pending.pop(rid, None)
        err = transport_error_of(raw)
        if err is not None:
            raise RemoteError(err.code, err.message)
        return raw

    async def close(self) -> None:
        """Close the connection; pending calls fail with ConnectionLost."""
        proto = self._proto
        proto.close("closed by the client")
        await asyncio.shield(proto.closed)
