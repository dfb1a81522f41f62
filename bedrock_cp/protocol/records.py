"""The directory's records: what the coordinators hold and return about services and nodes.

They are part of request and response bodies (a Gateway declares its node's
:class:`Service` list; :class:`~bedrock_cp.protocol.coordinator.ServicesReply`
returns :class:`ServiceRecord` entries) and of the coordinators' persistent
state (the Raft log's commands, snapshots) as they are, so their fields are
positional and new ones may only be appended with defaults.
"""

from __future__ import annotations

from .base import Body


class Service(Body):
    """One service a node offers: ``id`` is cluster-unique, ``node`` owns it."""

    id: str
    kind: str
    node: str
    address: str


class ServiceRecord(Body):
    """A directory entry; ``registered_at_ms`` is the ``at_ms`` of its last registration."""

    id: str
    kind: str
    node: str
    address: str
    registered_at_ms: int


class NodeRecord(Body):
    """What a node declared in its last RegisterNode, and when.

    ``capabilities`` are sorted and unique (a set, stored canonically).
    ``registered_index`` is the Raft index of that RegisterNode.
    """

    node: str
    address: str
    capabilities: list[str]
    registered_index: int
    registered_at_ms: int


class LayoutRecord(Body):
    """The transaction system layout stored by the Director of ``epoch`` (opaque bytes)."""

    epoch: int
    layout: bytes


class RetiredWorker(Body):
    """A persistent worker the Director of ``epoch`` retired (a log of an old
    generation, a replaced storage replica): it belongs to no layout and will
    never again; the coordinators keep the record until its files are removed,
    so a node that comes back with it removes it instead of reusing it."""

    id: str
    kind: str
    node: str
    address: str
    epoch: int
