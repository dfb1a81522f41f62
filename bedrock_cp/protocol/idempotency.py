"""Idempotency records: how a retry learns that an earlier attempt did commit.

A commit whose answer is lost (``commit_unknown_result``) may or may not have
committed. The client's retry loop gives each logical transaction a random id,
the same for all its attempts, carried in ``Commit.idempotency_id``. For every
batch holding such transactions the commit proxy:

- writes one record, ``\\xff/idmp/<commit version, 8 bytes big-endian>``, whose
  value lists the ids of the batch's committed transactions (:func:`encode_ids`);
  it is part of the batch, so it is durable exactly when they are;
- adds :func:`conflict_key` of the id to each such transaction's read and write
  conflict ranges, so two attempts of one transaction never both commit: the
  one resolved second conflicts with the first's write (whichever that is).

After an unknown outcome the next attempt first reads the records committed
after the read version of the unknown attempt (any commit of it is above that
version), at its own fresh read version: if its id is there, the transaction
committed at that record's version and is not run again. If not, nothing of it
committed at or below the new read version, and anything still in flight can
no longer commit alongside the new attempt (the conflict key). Across a
recovery this holds too: a new epoch's read versions are at or above its
recovery version, and all that the old epoch committed is at or below it.

Records expire: the first proxy of a layout clears every record more than the
retention period old (counted in versions, which advance no faster than time)
with one range clear in its next batch, every so often. A client trusts a
lookup only while the unknown attempt is younger than
:data:`LOOKUP_WINDOW_SECONDS`, which the retention must exceed comfortably.
Clients may read the records (``[PREFIX, END)``) and no other system key.
"""

from __future__ import annotations

import os
import random
import struct

from .layout import VERSIONS_PER_SECOND

#: The records: ``PREFIX + version`` (8 bytes, big-endian), in ``[PREFIX, END)``.
PREFIX = b"\xff/idmp/"
END = b"\xff/idmp0"
#: Conflict keys are never written; only resolvers see them.
CONFLICT_PREFIX = b"\xff/idmp-conflict/"
#: The size of the ids clients generate, and the most a commit may carry.
ID_SIZE = 16
MAX_ID_SIZE = 255
#: How long records are kept by default, and the least a configuration may set.
RETENTION_SECONDS = 60.0
MIN_RETENTION_SECONDS = 40.0
#: A client looks up an unknown attempt only while it is younger than this.
LOOKUP_WINDOW_SECONDS = 20.0
LOOKUP_WINDOW_VERSIONS = int(LOOKUP_WINDOW_SECONDS * VERSIONS_PER_SECOND)

_VERSION = struct.Struct(">Q")


def new_id(rng: random.Random | None = None) -> bytes:
    """A fresh random id for one logical transaction: from ``rng`` (the
    simulation's), else from the OS."""
    return os.urandom(ID_SIZE) if rng is None else rng.randbytes(ID_SIZE)


def check_id(idempotency_id: bytes) -> str | None:
    """Why ``idempotency_id`` cannot be carried by a commit, or None."""
    if len(idempotency_id) > MAX_ID_SIZE:
        return f"idempotency id of {len(idempotency_id)} bytes exceeds {MAX_ID_SIZE}"
    return None


def record_key(version: int) -> bytes:
    """The key of the record of the batch committed at ``version``."""
    return PREFIX + _VERSION.pack(version)


def record_version(key: bytes) -> int | None:
    """The commit version a record key names (None: not a record key)."""
    if not key.startswith(PREFIX) or len(key) != len(PREFIX) + _VERSION.size:
        return None
    return int(_VERSION.unpack_from(key, len(PREFIX))[0])


def encode_ids(ids: list[bytes]) -> bytes:
    """A record's value: each id as one length byte, then the id."""
    return b"".join(bytes([len(i)]) + i for i in ids)


def decode_ids(value: bytes) -> list[bytes]:
    """The ids of a record's value (a truncated last one is dropped)."""
    ids: list[bytes] = []
    at = 0
    while at < len(value):
        n = value[at]
        if at + 1 + n > len(value):
            break
        ids.append(value[at + 1 : at + 1 + n])
        at += 1 + n
    return ids


def conflict_key(idempotency_id: bytes) -> bytes:
    """The key every attempt of the transaction ``idempotency_id`` reads and writes."""
    return CONFLICT_PREFIX + idempotency_id
