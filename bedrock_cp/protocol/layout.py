"""The transaction system layout (TSL) and the records every data-plane body shares.

Keys and values are bytes. The user key space is ``[b"", b"\\xff")``: keys
starting with ``0xff`` are reserved for the system and refused in user
transactions. The system key space is ``[b"\\xff", b"\\xff\\xff")``
(:data:`SYSTEM_END`); layouts assign only the user key space, and the storage
team and the resolver whose range reaches its end also serve the system keys
(:func:`served_range`).

Versions are integers that advance about one million per second (as in
FoundationDB), so the 5 s MVCC window is :data:`MVCC_WINDOW_VERSIONS`.

A :class:`Layout` says who does what in one epoch: the sequencer, the commit
proxies, the resolvers by key range, the logs and the storage teams, each a
:class:`WorkerRef`. The Director stores it encoded (:func:`encode_layout`) through
the coordinators; Gateways and clients decode it strictly (:func:`decode_layout`).
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from .base import Body

#: First key of the reserved system key space; user keys are below it.
SYSTEM_PREFIX = b"\xff"
#: End of the system key space (exclusive): system keys are ``[SYSTEM_PREFIX, SYSTEM_END)``.
SYSTEM_END = b"\xff\xff"
#: Versions advance ~1e6 per second; reads older than the window are refused.
VERSIONS_PER_SECOND = 1_000_000
MVCC_WINDOW_VERSIONS = 5 * VERSIONS_PER_SECOND
#: Limits (a transaction over them is refused with a clear error).
MAX_KEY_SIZE = 10_000
MAX_VALUE_SIZE = 100_000
MAX_TRANSACTION_SIZE = 10_000_000
#: Streams (log pulls, recovery copies, storage fills) answer in chunks of about
#: this many bytes, and never more than MAX_STREAM_BYTES past their first item,
#: so an answer stays far below the transport's frame cap (16 MiB) whatever the
#: data: one item is itself bounded (a commit batch by the proxy's batch cap,
#: a key-value pair by the key and value limits).
STREAM_BYTES = 1 << 20
MAX_STREAM_BYTES = 4 << 20


class MutationKind(IntEnum):
    SET = 0
    CLEAR = 1
    CLEAR_RANGE = 2


class Mutation(Body):
    """One write. For CLEAR_RANGE, ``param`` is the (exclusive) end key; for SET, the value."""

    kind: int
    key: bytes
    param: bytes = b""


class KeyRange(Body):
    """The half-open range ``[begin, end)``."""

    begin: bytes
    end: bytes

    @staticmethod
    def single(key: bytes) -> KeyRange:
        return KeyRange(key, key + b"\x00")

    def contains(self, key: bytes) -> bool:
        return self.begin <= key < self.end

    def intersects(self, other: KeyRange) -> bool:
        return self.begin < other.end and other.begin < self.end


class CommitBatch(Body):
    """What a log stores for one commit version: the mutations of the committed
    transactions of one proxy batch, in order. ``prev_version`` chains batches so
    a gap is detected."""

    prev_version: int
    version: int
    mutations: list[Mutation]


class WorkerRef(Body):
    """Where a worker lives: its id (unique in the cluster), kind, node and the
    node's address (the node routes requests to the worker by id)."""

    id: str
    kind: str
    node: str
    address: str


class ResolverAssignment(Body):
    """A resolver and the key range ``[begin, end)`` it checks conflicts for."""

    begin: bytes
    end: bytes
    worker: WorkerRef


class StorageTeam(Body):
    """The storage replicas serving ``[begin, end)``.

    ``absent`` are replicas of the team that were down when the layout was
    built: they serve no reads, but the logs keep every version they have not
    made durable, so one that comes back catches up (and a recovery takes it
    back into ``replicas``) — until it is replaced and retired.
    """

    begin: bytes
    end: bytes
    replicas: list[WorkerRef]
    absent: list[WorkerRef] = []  # noqa: RUF012 - msgspec copies a mutable default

    def members(self) -> list[WorkerRef]:
        """Every replica of the team, serving or absent."""
        return [*self.replicas, *self.absent]


class Layout(Body):
    """The transaction system layout (TSL) of one epoch: who does what.

    ``recovery_version`` is the version the epoch started at (every version at
    or below it is in the logs of this layout or was already durable).
    """

    epoch: int
    recovery_version: int
    sequencer: WorkerRef
    proxies: list[WorkerRef]
    resolvers: list[ResolverAssignment]
    logs: list[WorkerRef]
    storage: list[StorageTeam]


def served_range(begin: bytes, end: bytes) -> KeyRange:
    """The keys a storage team or resolver assigned ``[begin, end)`` serves.

    The one whose range reaches the end of the user key space also serves the
    system keys (the Director's and the idempotency records, which are written
    and conflict-checked like any others).
    """
    return KeyRange(begin, SYSTEM_END if end == SYSTEM_PREFIX else end)


def encode_layout(layout: Layout) -> bytes:
    return msgspec.msgpack.encode(layout)


def decode_layout(data: bytes) -> Layout:
    """Strict decode; raises msgspec.DecodeError (or ValidationError) on a bad TSL."""
    return msgspec.msgpack.decode(data, type=Layout)


def check_user_key(key: bytes) -> str | None:
    """Why ``key`` may not be used by a user transaction, or None."""
    if key.startswith(SYSTEM_PREFIX):
        return f"key {key[:32]!r} is outside the user key space (starts with 0xff)"
    if len(key) > MAX_KEY_SIZE:
        return f"key of {len(key)} bytes exceeds the {MAX_KEY_SIZE} byte limit"
    return None
