"""ConnectorProtocol: the connecting side of the handshake.

It sends :class:`Hello` as soon as the connection is made (under TLS: once the
TLS handshake verified both certificates), answers a :class:`Challenge` with
its :class:`Proof` when it authenticates by secret or token, and resolves
:attr:`ConnectorProtocol.welcome` with the acceptor's :class:`Welcome` (checked
against what we expected: cluster, node id, and that the acceptor proved itself
— its certificate names that node, or its challenge proved the key) or fails it
with :class:`HandshakeRefused` / :class:`ConnectionLost`. Frames after the
handshake go to :meth:`ConnectorProtocol.established_frame`. Outbound peer
links and RPC clients both build on it; the caller bounds the whole handshake
with a timeout.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from ..auth import ConnectorAuth
from ..auth.tls import principal_of
from ..wire import Challenge, Frame, Refused, Welcome
from .address import split_address
from .errors import ConnectionLost, HandshakeRefused
from .handshake import answer_challenge, check_welcome, hello_for
from .protocol import FramedProtocol

P = TypeVar("P", bound="ConnectorProtocol")


class ConnectorProtocol(FramedProtocol):
    """Sends Hello, answers a Challenge, awaits Welcome; subclasses handle the rest."""

    def __init__(
        self,
        *,
        auth: ConnectorAuth,
        cluster_id: str,
        node_id: int,
        kind: Literal["peer", "client"],
        expect_cluster: str | None,
        expect_node: int | None,
        max_frame: int,
        stats: Counter[str],
    ) -> None:
        super().__init__(max_frame=max_frame, stats=stats)
        self._auth = auth
        self._hello = hello_for(auth, cluster_id=cluster_id, node_id=node_id, kind=kind)
        self._expect_cluster = expect_cluster
        self._expect_node = expect_node
        self._proved = False  # the acceptor answered our challenge correctly
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
        if type(frame) is Challenge and not self._proved:
            answer = answer_challenge(self._hello, frame, self._auth, self._expect_node)
            if isinstance(answer, str):
                self._refuse("bad_challenge", answer)
                return
            self._proved = True
            self.write(answer)
        elif type(frame) is Welcome:
            problem = check_welcome(
                frame, cluster_id=self._expect_cluster, node_id=self._expect_node
            ) or self._check_acceptor(frame)
            if problem is not None:
                self._refuse("bad_welcome", problem)
                return
            self.handshake_done = True
            if not self.welcome.done():
                self.welcome.set_result(frame)
        elif type(frame) is Refused:
            self.stats["closed.refused_by_remote"] += 1
            self._handshake_failed(HandshakeRefused(frame.reason))
            self.close(f"refused: {frame.reason}")
        else:
            self._refuse("unexpected_frame", f"expected Welcome, got {type(frame).__name__}")

    def abandon(self) -> None:
        """The connect gave up on this connection (its deadline, a cancel): close
        it. Nobody awaits :attr:`welcome` any more, so its outcome is consumed
        here rather than logged as never retrieved."""
        if not self.welcome.done():
            self.welcome.cancel()
        elif not self.welcome.cancelled():
            self.welcome.exception()
        self.abort()

    def _check_acceptor(self, welcome: Welcome) -> str | None:
        """Did the acceptor prove it is node ``welcome.node_id`` of its cluster?"""
        method = self._auth.method
        if method in ("secret", "token"):
            return None if self._proved else "the remote did not authenticate itself"
        if method == "tls":
            assert self.transport is not None
            cert = self.transport.get_extra_info("peercert")
            principal = principal_of(cert, welcome.cluster_id)
            if principal is None or principal.role != "node":
                return "the remote's certificate names no node of its cluster"
            if principal.node_id != welcome.node_id:
                return f"the remote says node {welcome.node_id} but its certificate is {principal}"
        return None

    def _refuse(self, code: str, reason: str) -> None:
        self._handshake_failed(HandshakeRefused(reason))
        self.fail(code, reason)

    def _handshake_failed(self, exc: Exception) -> None:
        if not self.welcome.done():
            self.welcome.set_exception(exc)

    def on_closed(self, remote_broke: bool) -> None:
        reason = f"closed during handshake: {self.close_reason}"
        if self._auth.method == "none" and not self.handshake_done:
            reason += " (the node may require authentication: no credentials were given)"
        self._handshake_failed(ConnectionLost(reason))


async def establish(factory: Callable[[], P], address: str, auth: ConnectorAuth) -> P:
    """Connect to ``address`` with a ``factory`` protocol and await its Welcome.

    Raises as the handshake fails (HandshakeRefused, ConnectionLost, OSError);
    the caller bounds it with a timeout. On any failure, a cancel included,
    the connection is abandoned (:meth:`ConnectorProtocol.abandon`), also one
    made but not yet handed back: under TLS the protocol is made when the
    handshake ends, a loop turn before ``create_connection`` returns.
    """
    host, port = split_address(address)
    made: list[P] = []

    def make() -> P:
        made.append(proto := factory())
        return proto

    try:
        await asyncio.get_running_loop().create_connection(make, host, port, **tls_options(auth))
        await made[0].welcome
    except BaseException:
        for proto in made:
            proto.abandon()
        raise
    return made[0]


def tls_options(auth: ConnectorAuth) -> dict[str, Any]:
    """``create_connection`` keyword arguments for ``auth``: the TLS context, if any.

    Host names are not checked (the certificate's identity URI is, on Welcome),
    so the server name sent is a fixed one.
    """
    if auth.ssl is None:
        return {}
    return {"ssl": auth.ssl, "server_hostname": "bedrock-cp"}
