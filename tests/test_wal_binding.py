"""The WAL through the binding: durability, refusals with clear messages, fatal fsync."""

from __future__ import annotations

import select
from pathlib import Path

import pytest

from bedrock_cp_native import (
    Entry,
    HardState,
    MemDisk,
    Wal,
    WalCorruptError,
    WalError,
    WalFatalError,
    WalForeignError,
)


def _entries(first: int, n: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, f"e{i}".encode()) for i in range(first, first + n)]


def _log_end(segment: bytes) -> int:
    """Where a segment's batches end: a syncing WAL writes zeros ahead of its
    end (these tests' entries end in a non-zero byte)."""
    return len(segment.rstrip(b"\0"))


def test_append_then_reopen_returns_everything(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c1", 7)
    wal.append(_entries(1, 100), HardState(term=1, vote=7, commit=50))
    assert wal.last_index == 100
    wal.close()
    wal = Wal.open(tmp_path, "c1", 7)
    hs, snap, entries = wal.take_recovered()
    assert hs == HardState(term=1, vote=7, commit=50)
    assert snap is None
    assert [e.data for e in entries] == [f"e{i}".encode() for i in range(1, 101)]


def test_one_fsync_covers_a_batch(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c1", 1)
    before = wal.sync_count
    wal.append(_entries(1, 500))
    assert wal.sync_count - before == 1


def test_foreign_cluster_and_node_are_refused_by_name(tmp_path: Path) -> None:
    Wal.open(tmp_path, "alpha", 1).append(_entries(1, 3))
    with pytest.raises(WalForeignError, match="alpha") as err:
        Wal.open(tmp_path, "beta", 1)
    assert "beta" in str(err.value)
    with pytest.raises(WalForeignError):
        Wal.open(tmp_path, "alpha", 2)


def test_a_flipped_bit_in_a_middle_record_refuses_to_open(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    wal.append(_entries(1, 50))
    wal.append(_entries(51, 1))  # a later write: the damage is not in the last one
    wal.close()
    segments = sorted(p for p in tmp_path.iterdir() if p.suffix == ".wal")
    assert segments, "no segment file found"
    seg = segments[0]
    raw = bytearray(seg.read_bytes())
    pos = _log_end(bytes(raw)) // 3
    raw[pos] ^= 0x10
    seg.write_bytes(bytes(raw))
    with pytest.raises(WalCorruptError) as err:
        Wal.open(tmp_path, "c", 1)
    assert seg.name in str(err.value)
    assert "offset" in str(err.value)


def test_a_torn_last_write_is_cut_off_and_earlier_ones_survive(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    wal.append(_entries(1, 9))
    wal.append(_entries(10, 1))
    wal.close()
    seg = sorted(p for p in tmp_path.iterdir() if p.suffix == ".wal")[-1]
    raw = seg.read_bytes()
    seg.write_bytes(raw[: _log_end(raw) - 3])
    wal = Wal.open(tmp_path, "c", 1)
    _, _, entries = wal.take_recovered()
    assert [e.index for e in entries] == list(range(1, 10))
    wal.append(_entries(10, 1))
    assert wal.last_index == 10


def test_an_fsync_failure_is_fatal_for_every_later_call(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    wal.append(_entries(1, 1))
    wal._inject_sync_failure()
    with pytest.raises(WalFatalError, match="fsync"):
        wal.append(_entries(2, 1))
    with pytest.raises(WalFatalError):
        wal.append(_entries(2, 1))


def test_non_consecutive_entries_are_refused(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    wal.append(_entries(1, 3))
    with pytest.raises(ValueError):
        wal.append(_entries(10, 1))


def test_entry_kind_is_validated() -> None:
    with pytest.raises(ValueError, match="normal"):
        Entry(1, 1, b"", kind="bogus")  # type: ignore[arg-type]


def test_unsynced_writes_are_lost_on_power_loss_and_synced_ones_kept(tmp_path: Path) -> None:
    disk = MemDisk()
    synced = Wal.open(tmp_path / "a", "c", 1, disk=disk)
    unsynced = Wal.open(tmp_path / "b", "c", 1, disk=disk, sync=False)
    for w in (synced, unsynced):
        w.append(_entries(1, 20))
    disk.power_loss(7)
    synced.close()
    unsynced.close()
    _, _, kept = Wal.open(tmp_path / "a", "c", 1, disk=disk).take_recovered()
    assert [e.index for e in kept] == list(range(1, 21))
    # Without fsync nothing was durable, not even the directory entries.
    try:
        _, _, left = Wal.open(tmp_path / "b", "c", 1, disk=disk).take_recovered()
    except WalError:  # a segment whose header never reached the disk
        left = []
    assert len(left) < 20


def test_a_wal_directory_is_locked_while_open(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    with pytest.raises(WalError, match="in use by another process"):
        Wal.open(tmp_path, "c", 1)
    wal.close()
    Wal.open(tmp_path, "c", 1).close()


def _wait_done(wal: Wal, n: int, timeout: float = 10.0) -> None:
    """Wait (on ``append_fd``, as an event loop would) until ``n`` appends are reported."""
    seen = 0
    while seen < n:
        readable, _, _ = select.select([wal.append_fd], [], [], timeout)
        assert readable, f"append_fd not readable within {timeout} s ({seen} of {n} reported)"
        while wal.append_done():
            seen += 1
    assert seen == n


def test_appends_on_the_wal_thread_are_durable_in_order_and_signal_the_fd(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    assert not wal.append_done()  # nothing started: nothing to report
    before = wal.sync_count
    for first in (1, 11, 21):
        wal.append_start(_entries(first, 10), HardState(0, 0, first))
    _wait_done(wal, 3)
    assert not wal.append_done()
    assert wal.sync_count - before == 3  # one fsync per append
    wal.close()
    hs, _, entries = Wal.open(tmp_path, "c", 1).take_recovered()
    assert [e.index for e in entries] == list(range(1, 31))
    assert hs.commit == 21


def test_an_fsync_failure_on_the_wal_thread_is_raised_by_append_done(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    wal.append_start(_entries(1, 1))
    _wait_done(wal, 1)
    wal._inject_sync_failure()
    wal.append_start(_entries(2, 1))
    select.select([wal.append_fd], [], [], 10.0)
    with pytest.raises(WalFatalError, match="fsync"):
        wal.append_done()
    wal.append_start(_entries(2, 1))  # poisoned: every later append fails too
    select.select([wal.append_fd], [], [], 10.0)
    with pytest.raises(WalFatalError):
        wal.append_done()


def test_a_closed_wal_refuses_appends_on_its_thread(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    wal.append_start(_entries(1, 1))
    _wait_done(wal, 1)
    wal.close()
    with pytest.raises(WalError, match="closed"):
        wal.append_start(_entries(2, 1))
