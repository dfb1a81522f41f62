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
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender

# -- requests --------------------------------------------------------------------------


class StorageGet(Body, tag="dp_get"):
    sender: ClassVar[Sender] = Sender.CLIENT

    worker: str
    key: bytes
    version: int
    epoch: int = 0


class StorageGetRange(Body, tag="dp_get_range"):
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


StorageRequest = StorageGet | StorageGetRange | StorageStatus | StorageLock

# -- replies ---------------------------------------------------------------------------


class Value(Body, tag="dp_value"):
    value: bytes | None
    version: int


class Values(Body, tag="dp_values"):
    pairs: list[tuple[bytes, bytes]]
    more: bool
    version: int


class StorageState(Body, tag="dp_storage_state"):
    applied: int
    durable: int
    oldest: int
    locked: bool
