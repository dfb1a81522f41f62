"""ConnectorProtocol: the connecting side of the handshake.

It sends :class:`Hello` as soon as the connection is made and resolves
:attr:`ConnectorProtocol.welcome` with the acceptor's :class:`Welcome` (checked
against what we expected) or fails it with :class:`HandshakeRefused` /
:class:`ConnectionLost`. Frames after the handshake go to
:meth:`ConnectorProtocol.established_frame`. Outbound peer links and RPC
clients both build on it; the caller bounds the whole handshake with a timeout.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from ..wire import Frame, Hello, Refused, Welcome
from .errors import ConnectionLost, HandshakeRefused
from .handshake import check_welcome
from .protocol import FramedProtocol


class ConnectorProtocol(FramedProtocol):
    """Sends Hello, awaits Welcome; subclasses handle the established connection."""

    def __init__(
        self,
        *,
        hello: Hello,
        expect_cluster: str | None,
        expect_node: int | None,
        max_frame: int,
        stats: Counter[str],
    ) -> None:
        super().__init__(max_frame=max_frame, stats=stats)
        self._hello = hello
        self._expect_cluster = expect_cluster
        self._expect_node = expect_node
        self.welcome: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write(self._hello)

    def established_frame(self, frame: Frame) -> None:
        """A frame after the handshake; by default none is expected."""
        self.fail("unexpected_frame", f"unexpected {type(frame).__name__} frame")

    def frame_received(self, frame: Frame) -> None:
        if self.handshake_done:
            self.established_frame(frame)
            return
        if type(frame) is Welcome:
            problem = check_welcome(
                frame, cluster_id=self._expect_cluster, node_id=self._expect_node
            )
            if problem is not None:
                self._handshake_failed(HandshakeRefused(problem))
                self.fail("bad_welcome", problem)
                return
            self.handshake_done = True
            if not self.welcome.done():
                self.welcome.set_result(frame)
        elif type(frame) is Refused:
            self.stats["closed.refused_by_remote"] += 1
            self._handshake_failed(HandshakeRefused(frame.reason))
            self.close(f"refused: {frame.reason}")
        else:
            reason = f"expected Welcome, got {type(frame).__name__}"
            self._handshake_failed(HandshakeRefused(reason))
            self.fail("unexpected_frame", reason)

    def _handshake_failed(self, exc: Exception) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(exc)

    def on_closed(self, remote_broke: bool) -> None:
        self._handshake_failed(ConnectionLost(f"closed during handshake: {self.close_reason}"))
