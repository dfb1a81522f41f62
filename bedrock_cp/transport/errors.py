"""Exceptions the transport raises to its callers.

Both connection failures are :class:`ConnectionError` (so ``except OSError``
catches every way a network call can fail); :class:`RemoteError` is the server
telling us a request could not be served, which is not a connection problem.
"""

from __future__ import annotations


class ConnectionLost(ConnectionError):
    """The connection closed; every call pending on it fails with this."""


class HandshakeRefused(ConnectionError):
    """The handshake failed: the acceptor sent ``Refused`` (its reason is ``reason``),
    or the acceptor's ``Welcome`` was not the one we expected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteError(Exception):
    """A response body was a ``TransportError``: the server's transport answered
    instead of the handler (``code`` is ``timeout``, ``internal`` or ``overloaded``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
