"""The storage replica's interface: versioned reads of the key ranges it serves.

A replica applies the committed batches it pulls from the logs and serves
reads at a version inside the MVCC window (:class:`StorageGet`,
:class:`StorageGetRange`); a read of a key it does not serve answers
``Failed("wrong_shard")``. A read names the epoch of the layout the reader
holds: a replica that has not seen that epoch yet (so may still hold versions
that epoch's recovery dropped) waits briefly for it, then answers
``Failed("unavailable")``. Clients may read the user keys and the idempotency
records (:mod:`.idempotency`), no other system key. The Director asks for its progress
(:class:`StorageStatus`) when planning a recovery, and may lock it
(:class:`StorageLock`).

To replace a lost replica, the Director has a new, empty one filled from a
healthy one (:class:`StorageFill`): the new replica reads a consistent
snapshot of the healthy replica's durable data in chunks bounded in bytes
(:class:`StorageSnapshot`, answered with :class:`SnapshotChunk`), then follows
the logs from the snapshot's version.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender
from .layout import STREAM_BYTES, WorkerRef

# -- requests --------------------------------------------------------------------------


class StorageGet(Body, tag="dp_get"):
    sender: ClassVar[Sender] = Sender.CLIENT

    worker: str
    key: bytes
    version: int
    epoch: int = 0


class StorageGetRange(Body, tag="dp_get_range"):
    """Pairs in ``[begin, end)`` at ``version``: at most ``limit``, and past the
    first no more than :data:`~bedrock_cp.protocol.layout.MAX_STREAM_BYTES`
    (``Values.more`` says that more remain: ask again after the last key)."""

    sender: ClassVar[Sender] = Sender.CLIENT

    worker: str
    begin: bytes
    end: bytes
    version: int
    limit: int = 1000
    epoch: int = 0


class StorageStatus(Body, tag="dp_storage_status"):
    sender: ClassVar[Sender] = Sender.PEER

    worker: str


class StorageLock(Body, tag="dp_storage_lock"):
    """Recovery: stop serving reads above ``version`` until unlocked by ``epoch``."""

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int
    locked: bool


class StorageFill(Body, tag="dp_storage_fill"):
    """Fill this (new, empty) replica with ``[begin, end)`` from replica ``source``.

    Answered at once (``Done``) while the fill runs; :class:`StorageStatus`
    reports its progress (``StorageState.fill``).
    """

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int
    source: WorkerRef
    begin: bytes
    end: bytes


class StorageSnapshot(Body, tag="dp_storage_snapshot"):
    """The next chunk of a consistent snapshot of this replica's durable data.

    ``start`` opens snapshot ``session`` (a name the caller picks) of
    ``[begin, end)`` at the replica's durable version; later calls continue
    after key ``after``. A chunk holds at least one pair and, past it, at most
    ``max_bytes`` (capped at :data:`~bedrock_cp.protocol.layout.MAX_STREAM_BYTES`).
    The session ends with its last chunk, with ``close``, or when left idle.
    """

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    session: str
    begin: bytes
    end: bytes
    start: bool = False
    after: bytes = b""
    max_bytes: int = STREAM_BYTES
    close: bool = False


StorageRequest = (
    StorageGet | StorageGetRange | StorageStatus | StorageLock | StorageFill | StorageSnapshot
)

# -- replies ---------------------------------------------------------------------------


class Value(Body, tag="dp_value"):
    value: bytes | None
    version: int


class Values(Body, tag="dp_values"):
    pairs: list[tuple[bytes, bytes]]
    more: bool
    version: int


class StorageState(Body, tag="dp_storage_state"):
    """``applied``: the newest version applied (in memory); ``durable``: every
    version up to it is on disk; ``oldest``: the oldest version readable.
    ``fill``: ``""`` (never filled), ``filling``, ``filled`` or ``failed: <why>``."""

    applied: int
    durable: int
    oldest: int
    locked: bool
    fill: str = ""


class SnapshotChunk(Body, tag="dp_snapshot_chunk"):
    """Pairs of a snapshot at ``version``, in key order; ``done``: the last chunk."""

    version: int
    pairs: list[tuple[bytes, bytes]]
    done: bool
