"""The handshake rules, as pure functions, and what a handshake establishes.

The acceptor checks a :class:`Hello` (:func:`check_hello`), the connector checks
the :class:`Welcome` it gets back (:func:`check_welcome`). Each returns None when
acceptable, or the reason it is not — a short code for ``stats`` and a sentence
for the log and the ``Refused`` frame. Nothing about the connection changes state
before these pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..wire import PROTOCOL_VERSION, Hello, Welcome

#: (stats code, human-readable reason)
Problem = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """Who is on an accepted connection, as its Hello said (``node_id`` 0 for clients)."""

    kind: Literal["peer", "client"]
    node_id: int
    address: str


def check_hello(
    hello: Hello, *, cluster_id: str, node_id: int, is_peer: Callable[[int], bool]
) -> Problem | None:
    """Why the acceptor ``node_id`` of ``cluster_id`` must refuse ``hello``, or None."""
    if hello.protocol != PROTOCOL_VERSION:
        return "bad_protocol", f"protocol version {hello.protocol} != {PROTOCOL_VERSION}"
    # A client may leave the cluster id empty to discover it from the Welcome.
    if hello.cluster_id != cluster_id and not (hello.kind == "client" and hello.cluster_id == ""):
        return "wrong_cluster", f"cluster id {hello.cluster_id!r} != {cluster_id!r}"
    if hello.kind == "peer":
        if hello.node_id == node_id:
            return "own_node_id", f"node id {hello.node_id} is this node's own"
        if not is_peer(hello.node_id):
            return "unknown_peer", f"node id {hello.node_id} is not a known peer"
    return None


def check_welcome(welcome: Welcome, *, cluster_id: str | None, node_id: int | None) -> str | None:
    """Why the connector must drop ``welcome``, or None.

    ``cluster_id``/``node_id`` None accept any (a client discovering the cluster).
    """
    if welcome.protocol != PROTOCOL_VERSION:
        return f"remote speaks protocol version {welcome.protocol}, not {PROTOCOL_VERSION}"
    if cluster_id is not None and welcome.cluster_id != cluster_id:
        return f"remote is in cluster {welcome.cluster_id!r}, not {cluster_id!r}"
    if node_id is not None and welcome.node_id != node_id:
        return f"remote is node {welcome.node_id}, not node {node_id}"
    return None
