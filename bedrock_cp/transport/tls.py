"""TLS inside the protocol: an ``ssl.SSLObject`` over memory BIOs.

The acceptor runs TLS itself instead of handing the socket to the event loop's
TLS layer, so a connection is one object from its first byte: it counts
against the connection limits and the handshake deadline while the
certificates are still being exchanged, can be evicted like any other, and
behaves the same under uvloop and the stock loop (uvloop starts reading an
accepted socket before ``start_tls`` could take it over).
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any


class TlsSession:
    """One side of a TLS connection: bytes in from the socket, plaintext out."""

    __slots__ = ("_in", "_obj", "_out", "established", "peer_closed")

    def __init__(self, ctx: ssl.SSLContext, *, server_side: bool) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=server_side)
        #: Whether the handshake completed (the peer's certificate was verified).
        self.established = False
        #: Whether the peer sent its close_notify (we answered with ours).
        self.peer_closed = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Take ``data`` from the socket; return (plaintext, handshake completed now).

        Raises ``ssl.SSLError`` when the handshake or a record fails.
        """
        self._in.write(data)
        now = False
        if not self.established:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                return b"", False
            self.established = now = True
        chunks = []
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # (want-read raises): the peer's close_notify came
                self.peer_closed = True
                self.close_notify()
                break
            chunks.append(chunk)
        return b"".join(chunks), now

    def close_notify(self) -> None:
        """Queue our close_notify (the peer's TLS layer waits for it on close)."""
        if self.established:
            # Want-read: ours is queued, theirs may never come.
            with contextlib.suppress(ssl.SSLError):
                self._obj.unwrap()

    def encrypt(self, data: bytes) -> None:
        """Queue ``data`` as TLS records (take them with :meth:`outgoing`)."""
        self._obj.write(data)

    def outgoing(self) -> bytes:
        """Bytes to send to the socket now (handshake messages, records)."""
        return self._out.read()

    def peer_certificate(self) -> dict[str, Any] | None:
        return self._obj.getpeercert()
