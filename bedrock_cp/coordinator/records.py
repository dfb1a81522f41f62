"""Records held by the coordinators' state and returned by its queries.

Plain, frozen msgspec Structs: they are stored in snapshots and sent to clients
(:class:`~bedrock_cp.coordinator.api.ServicesReply`) as they are.
"""

from __future__ import annotations

import msgspec


class ServiceRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A directory entry; ``registered_at_ms`` is the ``at_ms`` of its last registration."""

    id: str
    kind: str
    node: str
    address: str
    registered_at_ms: int


class NodeRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What a node declared in its last RegisterNode, and when.

    ``capabilities`` are sorted and unique (a set, stored canonically).
    ``registered_index`` is the Raft index of that RegisterNode.
    """

    node: str
    address: str
    capabilities: list[str]
    registered_index: int
    registered_at_ms: int


class LayoutRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The transaction system layout stored by the Director of ``epoch`` (opaque bytes)."""

    epoch: int
    layout: bytes
