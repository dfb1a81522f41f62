"""InboundConnection: one accepted connection, from a peer or from a client.

Until the handshake is done, within ``handshake_timeout`` of the accept: under
TLS the certificates are verified first (by the protocol itself, see
:mod:`.tls`, so the connection counts against the limits from its first
byte); then only a
:class:`Hello` is accepted, and with a secret or token the :class:`Proof`
answering our :class:`Challenge`. A bad or missing Hello or proof is answered
with ``Refused`` and the connection closed — before any state changes.
Afterwards a peer may only send :class:`RaftBatch` (delivered to the host with
the authenticated node id) and a client only :class:`Request` (served as a task
under the request's deadline with the connection's :class:`ConnInfo`, answered
with :class:`Response`). Any other frame closes this connection, never the node.

Memory per connection is bounded (invariant I9, docs/architecture.md): the
frame decoder by the frame cap (and 64 KiB before the handshake), requests by
``max_inflight`` (beyond it the answer is ``overloaded``), and responses by
pausing reads while the client is not reading its answers. The host bounds the
number of connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import msgspec

from ..auth import AcceptorAuth, Principal
from ..auth.tls import principal_of
from ..wire import (
    INTERNAL,
    OVERLOADED,
    PROTOCOL_VERSION,
    TIMEOUT,
    Frame,
    Hello,
    Proof,
    RaftBatch,
    Request,
    Response,
    TransportError,
    Welcome,
    WireError,
    encode_body,
)
from .handshake import AUTH_FAILED, ConnInfo, PendingProof, Problem, authenticate, check_proof
from .protocol import FramedProtocol
from .tls import TlsSession

log = logging.getLogger("bedrock_cp.transport")

#: Longest deadline a request may ask for; a larger ``timeout_ms`` is cut to this.
MAX_REQUEST_TIMEOUT_MS: Final = 60_000
#: Unread responses beyond this pause reading requests from that client.
RESPONSE_BUFFER_HIGH: Final = 4 * 1024 * 1024


class InboundHost(Protocol):
    """What an accepted connection needs from its node (the Transport)."""

    node_id: int
    cluster_id: str
    stats: Counter[str]
    max_frame: int
    handshake_timeout: float
    max_inflight: int
    auth: AcceptorAuth

    def check_hello(self, hello: Hello) -> Problem | None: ...
    def inbound_opened(self, conn: InboundConnection) -> bool: ...
    def inbound_authenticated(self, conn: InboundConnection) -> None: ...
    def inbound_closed(self, conn: InboundConnection, remote_broke: bool) -> None: ...
    def peer_up(self, peer_id: int) -> None: ...
    def raft_received(self, peer_id: int, messages: list[bytes]) -> None: ...
    def handle_request(self, request: Request, info: ConnInfo) -> Awaitable[msgspec.Raw]: ...


class InboundConnection(FramedProtocol):
    """The acceptor's side of one connection."""

    def __init__(self, host: InboundHost) -> None:
        super().__init__(max_frame=host.max_frame, stats=host.stats)
        self._host = host
        self.info: ConnInfo | None = None
        #: The source address (no port), for the per-address limits.
        self.source = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tls_principal: Principal | None = None
        self._hello: Hello | None = None
        self._pending: PendingProof | None = None
        self._closed_once = False

    def who(self) -> str:
        info = self.info
        if info is None:
            return f"connection {self.peername}"
        if info.kind == "peer":
            return f"peer {info.node_id} {self.peername}"
        return f"{info.principal} {self.peername}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if isinstance(peer, tuple) and peer else self.peername
        self._host.stats["accepted"] += 1
        if not self._host.inbound_opened(self):
            return  # over a limit: the host closed it
        self.transport.set_write_buffer_limits(high=RESPONSE_BUFFER_HIGH)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._host.handshake_timeout, self._handshake_expired)
        ctx = self._host.auth.ssl
        if ctx is not None:
            self.tls = TlsSession(ctx, server_side=True)

    def tls_established(self) -> None:
        assert self.tls is not None
        self._tls_principal = principal_of(self.tls.peer_certificate(), self._host.cluster_id)

    def _handshake_expired(self) -> None:
        self.fail(
            "handshake_timeout", f"no handshake within {self._host.handshake_timeout}s", refuse=True
        )

    def frame_received(self, frame: Frame) -> None:
        info = self.info
        if info is None:
            if self._pending is not None:
                self._proof_received(frame)
            else:
                self._hello_received(frame)
        elif info.kind == "peer":
            if type(frame) is RaftBatch:
                self._host.raft_received(info.node_id, frame.messages)
            else:
                name = type(frame).__name__
                self.fail("unexpected_frame", f"unexpected {name} frame from a peer")
        elif type(frame) is Request:
            self._request_received(frame)
        else:
            self.fail("unexpected_frame", f"unexpected {type(frame).__name__} frame from a client")

    def _hello_received(self, frame: Frame) -> None:
        if type(frame) is not Hello:
            self.fail("not_hello", f"expected Hello, got {type(frame).__name__}", refuse=True)
            return
        who = f"{_claimed(frame)} {self.peername}"
        problem = self._host.check_hello(frame)
        if problem is not None:
            code, reason = problem
            self.fail(code, reason, refuse=True, who=who)
            return
        outcome = authenticate(
            frame,
            auth=self._host.auth,
            node_id=self._host.node_id,
            tls_principal=self._tls_principal,
        )
        if isinstance(outcome, tuple):
            code, reason = outcome
            # The log says why; the remote only learns that it failed.
            log.warning("refused %s: %s", who, reason)
            self.fail(code, AUTH_FAILED, refuse=True, who=who, quiet=True)
            return
        self._hello = frame
        if isinstance(outcome, PendingProof):
            self._pending = outcome
            self.write(outcome.challenge)
            return
        self._established(frame, outcome)

    def _proof_received(self, frame: Frame) -> None:
        pending, hello = self._pending, self._hello
        assert pending is not None and hello is not None
        who = f"{_claimed(hello)} {self.peername}"
        if type(frame) is not Proof:
            self.fail("not_proof", f"expected Proof, got {type(frame).__name__}", refuse=True)
            return
        problem = check_proof(pending, frame)
        if problem is not None:
            code, reason = problem
            log.warning("refused %s: %s", who, reason)
            self.fail(code, AUTH_FAILED, refuse=True, who=who, quiet=True)
            return
        self._established(hello, pending.principal)

    def _established(self, hello: Hello, principal: Principal) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        node_id = principal.node_id if principal.role == "node" else hello.node_id
        self.info = ConnInfo(
            kind=hello.kind, node_id=node_id, address=self.peername, principal=principal
        )
        self._pending = None
        self.handshake_done = True
        self.loss_is_news = hello.kind == "peer"
        self._host.inbound_authenticated(self)
        self.write(Welcome(PROTOCOL_VERSION, self._host.cluster_id, self._host.node_id))
        log.debug("accepted %s", self.who())
        if hello.kind == "peer":
            self._host.peer_up(node_id)

    # -- requests -------------------------------------------------------------

    def _request_received(self, request: Request) -> None:
        if len(self._tasks) >= self._host.max_inflight:
            self.stats["requests.overloaded"] += 1
            self._respond(
                request.id,
                TransportError(
                    OVERLOADED, f"more than {self._host.max_inflight} requests in flight"
                ),
            )
            return
        task = self.loop.create_task(self._serve(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: Request) -> None:
        assert self.info is not None
        answer = await serve_request(self._host.handle_request, request, self.info)
        if isinstance(answer, TransportError):
            self.stats[f"requests.{answer.code}"] += 1
        self._respond(request.id, answer)

    def _respond(self, request_id: int, answer: msgspec.Raw | TransportError) -> None:
        body = encode_body(answer) if isinstance(answer, TransportError) else answer
        try:
            self.write(Response(request_id, body))
        except WireError as e:
            self.stats["requests.internal"] += 1
            log.error("response %d to %s not sent: %s", request_id, self.who(), e)
            self.write(Response(request_id, encode_body(TransportError(INTERNAL, str(e)))))

    # Backpressure: a client that does not read its answers stops being read.
    def pause_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def on_closed(self, remote_broke: bool) -> None:
        if self._closed_once:
            return
        self._closed_once = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()
        self._host.inbound_closed(self, remote_broke)


async def serve_request(
    handle: Callable[[Request, ConnInfo], Awaitable[msgspec.Raw]], request: Request, info: ConnInfo
) -> msgspec.Raw | TransportError:
    """Run ``handle`` for one request under the request's deadline.

    Returns the handler's answer, or the error the caller is told instead:
    ``timeout`` when the deadline passed first, ``internal`` when the handler
    raised (a TimeoutError of its own included). The TCP listener and the
    simulated network serve every request through this.
    """
    timeout_ms = min(max(request.timeout_ms, 0), MAX_REQUEST_TIMEOUT_MS)
    task = asyncio.current_task()
    assert task is not None
    # One timer that cancels this task at the deadline: a node serves every
    # request through here, and an asyncio.timeout block costs several times more.
    deadline = _Deadline(task)
    timer = task.get_loop().call_later(timeout_ms / 1000, deadline.expire)
    try:
        return await handle(request, info)
    except asyncio.CancelledError:
        if deadline.expired and task.uncancel() == 0:
            return TransportError(TIMEOUT, f"no answer within {timeout_ms} ms")
        raise  # cancelled by someone else (the connection closed, the node stops)
    except Exception:
        # A TimeoutError the handler raised itself is a failure, not our deadline.
        log.exception("request %d from %s %s failed", request.id, info.principal, info.address)
        return TransportError(INTERNAL, "the request handler failed; see the server log")
    finally:
        timer.cancel()


class _Deadline:
    """Cancels a request's task when its deadline passes, and remembers that it did."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()


def _claimed(hello: Hello) -> str:
    """Who a Hello claims to be, for log lines (``peer 2``, ``client``, ``client 'app'``)."""
    if hello.node_id:
        return f"{hello.kind} {hello.node_id}" if hello.kind == "peer" else f"node {hello.node_id}"
    return f"client {hello.name[:64]!r}" if hello.name else "client"
