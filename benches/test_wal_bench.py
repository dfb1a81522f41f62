"""WAL append + fdatasync, against a plain Python ``write`` + ``os.fdatasync`` loop.

Both sides write the same record sizes to a file in the same temp directory
and sync once per batch; the Python side does no framing or checksums at all,
so it is the floor a WAL in Python could reach.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_cp_native import Entry, Wal

PAYLOAD = b"x" * 128


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[Wal]:
    w = Wal.open(tmp_path / "wal", "bench", 1)
    yield w
    w.close()


@pytest.mark.parametrize("batch", [1, 64])
def test_wal_append_sync_native(benchmark: Any, wal: Wal, batch: int) -> None:
    benchmark.group = f"wal-append-fdatasync-batch-{batch}"
    benchmark.extra_info["side"] = "ours"
    state = {"next": 1}

    def append() -> None:
        first = state["next"]
        wal.append([Entry(i, 1, PAYLOAD) for i in range(first, first + batch)])
        state["next"] = first + batch

    benchmark.pedantic(append, rounds=300 if batch == 1 else 100, warmup_rounds=5)
    assert wal.last_index == state["next"] - 1


@pytest.mark.parametrize("batch", [1, 64])
def test_wal_append_sync_python_floor(benchmark: Any, tmp_path: Path, batch: int) -> None:
    benchmark.group = f"wal-append-fdatasync-batch-{batch}"
    benchmark.extra_info["side"] = "peer"
    fd = os.open(tmp_path / "plain.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    header = struct.pack("<I", len(PAYLOAD))

    def append() -> None:
        os.write(fd, (header + PAYLOAD) * batch)
        os.fdatasync(fd)

    try:
        benchmark.pedantic(append, rounds=300 if batch == 1 else 100, warmup_rounds=5)
    finally:
        os.close(fd)
