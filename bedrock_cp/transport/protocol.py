"""FramedProtocol: the asyncio Protocol under every transport connection.

It splits the byte stream into frames with the Cython :class:`FrameDecoder`
(length checked before allocation), decodes each strictly, and hands frames to
:meth:`FramedProtocol.frame_received`. Anything malformed closes *this*
connection with a logged reason and a ``stats["closed.<reason>"]`` count; the
node and its other connections carry on (invariant I9, docs/architecture.md).

A close is either *ours* (:meth:`fail`, :meth:`close`: deliberate) or the
remote's (EOF, reset, socket error). :attr:`closed` resolves to True when the
remote broke the connection — the fast failure signal for peers — and False
when we closed it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections import Counter
from typing import Final, cast

from ..wire import Frame, Refused, WireError, decode, encode
from ..wire._framing import FrameDecoder, FrameError
from .tls import TlsSession

log = logging.getLogger("bedrock_cp.transport")

#: Before the handshake only a tiny Hello/Welcome is legitimate: never buffer more.
HANDSHAKE_MAX_BYTES: Final = 64 * 1024

_LINGER_RST: Final = struct.pack("ii", 1, 0)


class FramedProtocol(asyncio.Protocol, abc.ABC):
    """Framing, strict decoding, close-with-reason; subclasses handle frames."""

    def __init__(self, *, max_frame: int, stats: Counter[str]) -> None:
        self._decoder = FrameDecoder(max_frame)
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.peername = "?"
        self.handshake_done = False
        #: Whether losing this connection is worth an INFO line (peers: yes; clients: no).
        self.loss_is_news = True
        #: Set once we decided to close; later frames are ignored.
        self.closing = False
        self._eof = False
        #: Why the connection closed (for errors raised to callers).
        self.close_reason = ""
        #: True if the remote broke the connection, False if we closed it.
        # Kept: asyncio.get_running_loop() costs a getpid() system call each time.
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[bool] = self.loop.create_future()
        # Frames written during one loop iteration leave in one send (see write).
        self._out: list[bytes] = []
        self._flush_scheduled = False
        #: TLS run by this protocol (the acceptor's; see :mod:`.tls`), or None.
        self.tls: TlsSession | None = None

    # -- subclass interface ---------------------------------------------------

    def who(self) -> str:
        """Who is at the other end, for log lines (e.g. ``"peer 2 127.0.0.1:5432"``)."""
        return f"connection {self.peername}"

    @abc.abstractmethod
    def frame_received(self, frame: Frame) -> None:
        """Handle one decoded frame (every kind of connection says how)."""

    def on_closed(self, remote_broke: bool) -> None:
        """Called once, from ``connection_lost``."""

    def tls_established(self) -> None:
        """The TLS handshake of :attr:`tls` completed (the peer's certificate verified)."""

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Raft messages are small and latency-bound: never wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peername = f"{peer[0]}:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        tls = self.tls
        if tls is not None:
            try:
                data, now = tls.feed(data)
            except ssl.SSLError as e:
                self.fail("tls_failed", f"TLS: {e.reason or e}")
                return
            if now:
                self.tls_established()
            self._send_raw(tls.outgoing())
            if tls.peer_closed:
                self._eof = True  # the remote closed: as an EOF
                if self.transport is not None:
                    self.transport.close()
            if not data or self.closing:
                return
        try:
            bodies = self._decoder.feed(data)
        except FrameError as e:
            self.fail("frame_too_large", str(e))
            return
        for body in bodies:
            try:
                frame = decode(body)
            except WireError as e:
                self.fail("undecodable", str(e))
                return
            try:
                self.frame_received(frame)
            except Exception:
                # A bug in a handler must cost this connection, not the node.
                name = type(frame).__name__
                log.exception("handling a %s frame from %s failed", name, self.who())
                self.fail("internal", f"internal error handling a {name} frame")
                return
            if self.closing:
                return
        if not self.handshake_done and self._decoder.buffered() > HANDSHAKE_MAX_BYTES:
            self.fail("handshake_too_large", f"over {HANDSHAKE_MAX_BYTES} bytes before handshake")

    def eof_received(self) -> bool | None:
        self._eof = True
        n = self._decoder.buffered()
        if n and not self.closing:
            self.fail("truncated", f"EOF inside a frame ({n} bytes of it received)")
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed.done():
            return  # reported once (a failed TLS upgrade reports it itself)
        remote_broke = self._eof or not self.closing
        if not self.closing:
            self.closing = True
            if exc is None:
                code = "eof"
            elif isinstance(exc, ConnectionResetError):
                code = "reset"
            else:
                code = "error"
            self.close_reason = "connection closed by the remote" if exc is None else str(exc)
            self.stats[f"closed.{code}"] += 1
            log.log(
                logging.INFO if self.handshake_done and self.loss_is_news else logging.DEBUG,
                "lost %s: %s",
                self.who(),
                self.close_reason,
            )
        self.on_closed(remote_broke)
        if not self.closed.done():
            self.closed.set_result(remote_broke)

    # -- writing and closing --------------------------------------------------

    def write(self, frame: Frame) -> None:
        """Encode and queue ``frame``; it is sent at the end of this loop iteration
        together with every other frame queued meanwhile (one syscall for many
        responses: a Ready that commits 64 writes answers them in one send).
        Dropped silently once closing."""
        if self.transport is None or self.closing:
            return
        self._out.append(encode(frame))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every queued frame now."""
        self._flush_scheduled = False
        out, self._out = self._out, []
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        if self.tls is not None:
            if not self.tls.established:
                return  # nothing can be sent before the TLS handshake (a refusal is dropped)
            self.tls.encrypt(data)
            data = self.tls.outgoing()
        self._send_raw(data)

    def _close_notify(self) -> None:
        if self.tls is not None:
            self.tls.close_notify()
            self._send_raw(self.tls.outgoing())

    def _send_raw(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def fail(
        self,
        code: str,
        detail: str,
        *,
        refuse: bool = False,
        who: str | None = None,
        quiet: bool = False,
    ) -> None:
        """Close this connection for ``detail``: log it, count ``closed.<code>``.

        With ``refuse``, send ``Refused(detail)`` first so the other side learns why;
        ``quiet`` when the caller logged a better line already.
        """
        if self.closing:
            return
        self.stats[f"closed.{code}"] += 1
        self.close_reason = detail
        if not quiet:
            log.warning("%s %s: %s", "refused" if refuse else "closed", who or self.who(), detail)
        if refuse:
            self.write(Refused(detail))
        self.flush()  # what was queued (the refusal) goes out before the close
        self._close_notify()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def close(self, reason: str = "closed locally") -> None:
        """Close deliberately and quietly (shutdown, membership change)."""
        if self.closing:
            return
        self.flush()  # a graceful close still delivers what was written
        self._close_notify()
        self.closing = True
        self.close_reason = reason
        if self.transport is not None:
            self.transport.close()

    def abort(self, *, rst: bool = False) -> None:
        """Drop the connection at once, discarding unsent data.

        With ``rst`` the kernel sends a TCP reset, as when a process is killed with
        unread data; used to simulate crashes.
        """
        self.closing = True
        self.close_reason = "aborted locally"
        transport = self.transport
        if transport is None:
            return
        if rst:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.abort()
