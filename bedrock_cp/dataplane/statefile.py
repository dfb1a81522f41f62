"""A small record kept durably in one file, replaced atomically.

Workers keep their few scalars that must survive a restart (the highest epoch
seen, a lock flag, the WAL generation) here rather than in the WAL: they change
rarely, and a whole-file replace (write a temp file, fsync it, rename over the
old one, fsync the directory) can never leave a half-written record behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


def load(path: Path, type_: type[T]) -> T | None:
    """The record in ``path``, or None when there is none yet.

    Raises msgspec.DecodeError/ValidationError for a damaged file: a worker must
    not guess its epoch.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return msgspec.msgpack.decode(data, type=type_)


def save(path: Path, record: msgspec.Struct, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``record``; durable on return when ``fsync``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(msgspec.msgpack.encode(record))
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        # The rename itself is durable only once the directory is synced.
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
