"""``host:port`` strings, as peers and clusters are configured."""

from __future__ import annotations


def split_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[::1]:7000"`` for IPv6) into host and port.

    Raises ValueError naming the address when it is malformed.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad address {address!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
