"""The native Consensus (Raft core over its WAL) through the binding: three
members over an in-memory bus, the Ready-loop contract, power loss on a
MemDisk, and hostile input."""

from __future__ import annotations

import select
import struct
import threading
import time
from pathlib import Path

import pytest

from bedrock_cp.raft import LocalGroup
from bedrock_cp_native import (
    Consensus,
    MemDisk,
    MessageDecodeError,
    NativePanicError,
    NotLeaderError,
    SnapshotRefusedError,
    WalFatalError,
)


@pytest.fixture
def group(tmp_path: Path) -> LocalGroup:
    return LocalGroup(3, tmp_path, sync=False)


def _wait_until(cond: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def _heartbeat(frm: int, to: int, term: int) -> bytes:
    """A Raft Heartbeat in the core's wire format (version 2)."""
    fixed = struct.pack("<BBQQQQQQBQ", 2, 7, to, frm, term, 0, 0, 0, 0, 0)
    return fixed + struct.pack("<I", 0) + struct.pack("<I", 0) + b"\x00"


def _drain(c: Consensus) -> list[tuple[int, bytes]]:
    sent: list[tuple[int, bytes]] = []
    while c.has_ready():
        out = c.persist(c.ready())
        sent += out.messages
        c.advance(out)
    return sent


def test_exactly_one_leader_is_elected(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    roles = {i: group.members[i].consensus.role for i in group.alive_ids()}
    assert [i for i, r in roles.items() if r == "leader"] == [leader]
    terms = {group.members[i].consensus.term for i in group.alive_ids()}
    assert len(terms) == 1


def test_proposals_commit_in_order_on_all_three(group: LocalGroup) -> None:
    group.wait_for_leader()
    indexes = [group.propose(f"cmd-{i}".encode()) for i in range(50)]
    assert indexes == sorted(indexes)
    assert len(set(indexes)) == 50
    group.wait_applied(indexes[-1])
    expected = {idx: f"cmd-{i}".encode() for i, idx in enumerate(indexes)}
    for m in group.members.values():
        assert m.state_machine.applied == expected


def test_restart_from_wal_keeps_term_vote_log_and_membership(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    last = 0
    for i in range(20):
        last = group.propose(f"v{i}".encode())
    group.wait_applied(last)
    follower = next(i for i in group.alive_ids() if i != leader)
    before = group.members[follower].consensus.status()
    group.crash(follower)
    group.restart(follower)
    after = group.members[follower].consensus.status()
    for key in ("term", "vote", "last_index", "voters", "learners"):
        assert after[key] == before[key], key
    assert after["commit"] >= before["commit"]
    # The committed log is re-delivered and re-applied from the WAL.
    group.pump()
    assert (
        group.members[follower].state_machine.applied == group.members[leader].state_machine.applied
    )


def test_follower_refuses_proposals_naming_the_leader(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    follower = next(i for i in group.alive_ids() if i != leader)
    with pytest.raises(NotLeaderError) as err:
        group.members[follower].consensus.propose(b"x")
    assert err.value.leader == leader


def test_undecodable_bytes_raise_and_the_node_keeps_working(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    c = group.members[leader].consensus
    for junk in [b"", b"\x00", b"\x01\x02garbage", b"\xff" * 100]:
        with pytest.raises(MessageDecodeError):
            c.step(junk, 2)
    index = group.propose(b"still-alive")
    group.wait_applied(index)
    assert all(m.state_machine.applied[index] == b"still-alive" for m in group.members.values())


def test_the_ready_loop_is_persist_then_advance_once(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, "c", 1, [1], sync=False)
    _drain(c)
    c.campaign()
    rd = c.ready()
    with pytest.raises(ValueError, match="outstanding"):
        c.ready()
    assert not c.has_ready(), "nothing more while a Ready is out"
    out = c.persist(rd)
    with pytest.raises(ValueError, match="already persisted"):
        c.persist(rd)
    c.advance(out)
    with pytest.raises(ValueError, match="already advanced"):
        c.advance(out)
    assert c.role == "leader"


def test_single_node_group_commits_alone(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, "c", 1, [1])
    applied: list[bytes] = []
    for _ in range(5):
        while c.has_ready():
            out = c.persist(c.ready())
            applied += [e.data for e in out.committed_entries if e.kind == "normal" and e.data]
            c.advance(out)
        if c.role != "leader":
            c.campaign()
        elif not applied:
            c.propose(b"solo")
    assert c.role == "leader"
    assert applied == [b"solo"]


def test_founders_log_their_initial_membership_as_committed_conf_changes(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, "c", 2, [1, 2, 3], sync=False)
    out = c.persist(c.ready())
    changes = [e.conf_change for e in out.committed_entries]
    assert changes == [("add", 1), ("add", 2), ("add", 3)]
    assert [e.term for e in out.committed_entries] == [0, 0, 0]


def test_a_panic_in_the_core_is_an_exception_and_poisons_the_node(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, "c", 1, [1], sync=False)
    with pytest.raises(NativePanicError, match="injected panic"):
        c._inject_panic()
    # The core's invariants may be broken: every later call is refused.
    with pytest.raises(NativePanicError, match="unusable"):
        c.tick()
    with pytest.raises(NativePanicError, match="unusable"):
        c.propose(b"x")


def test_peer_unreachable_starts_an_election_without_waiting(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    term = group.members[leader].consensus.term
    group.crash(leader)  # tells the survivors through peer_unreachable
    group.pump()
    # No tick has passed, yet the survivors already elected a new leader.
    new_leader = group.leader()
    assert new_leader is not None and new_leader != leader
    assert group.members[new_leader].consensus.term == term + 1


def test_snapshot_catches_up_a_lagging_member(tmp_path: Path) -> None:
    group = LocalGroup(3, tmp_path, sync=False)
    leader = group.wait_for_leader()
    lagging = next(i for i in group.alive_ids() if i != leader)
    group.crash(lagging)
    group.wait_for_leader()
    leader = group.leader()
    assert leader is not None
    last = 0
    for i in range(40):
        last = group.propose(f"k{i}".encode())
    group.wait_applied(last)
    snap = group.compact(leader)
    assert snap.index == last
    assert group.members[leader].consensus.status()["first_index"] == last + 1
    group.restart(lagging)
    group.wait_applied(last, members=[lagging])
    sm = group.members[lagging].state_machine
    assert sm.snapshot_index == last
    after = group.propose(b"after-snapshot")
    group.wait_applied(after)
    assert sm.applied == group.members[leader].state_machine.applied


def test_a_snapshot_at_another_index_than_the_applied_one_is_refused(tmp_path: Path) -> None:
    group = LocalGroup(1, tmp_path, sync=False)
    group.wait_for_leader()
    index = group.propose(b"a")
    group.wait_applied(index)
    c = group.members[1].consensus
    with pytest.raises(SnapshotRefusedError, match="applied index"):
        c.create_snapshot(index + 1, b"state")
    with pytest.raises(SnapshotRefusedError, match="applied index"):
        c.create_snapshot(index - 1, b"state")
    assert c.create_snapshot(index, b"state").index == index


def test_a_follower_needing_a_64_mib_snapshot_catches_up(tmp_path: Path) -> None:
    """Four times the 16 MiB frame cap: it travels in bounded chunks."""
    group = LocalGroup(3, tmp_path, sync=False, snapshot_padding=64 << 20)
    leader = group.wait_for_leader()
    lagging = next(i for i in group.alive_ids() if i != leader)
    group.crash(lagging)
    leader = group.wait_for_leader()
    last = 0
    for i in range(10):
        last = group.propose(f"k{i}".encode())
    group.wait_applied(last)
    assert len(group.compact(leader).data) > 4 * group.max_frame
    group.restart(lagging)
    group.wait_applied(last, members=[lagging])
    assert group.oversize_dropped == 0
    sm = group.members[lagging].state_machine
    assert sm.snapshot_index == last
    assert sm.applied == group.members[leader].state_machine.applied


# -- hostile input ----------------------------------------------------------------------


def test_the_largest_term_never_wraps(tmp_path: Path) -> None:
    """In a release build, `term + 1` at u64::MAX wrapped to 0: term went back."""
    c = Consensus.open(tmp_path, "c", 1, [1, 2], sync=False, pre_vote=False)
    _drain(c)
    assert c.step(_heartbeat(2, 1, 2**64 - 1), 2)
    for _ in range(200):
        c.tick()
        _drain(c)
    assert c.term == 2**64 - 1
    assert c.role == "follower"


def test_a_raft_message_from_a_forged_sender_is_dropped_and_counted(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, "c", 1, [1, 2, 3], sync=False)
    _drain(c)
    before = c.status()
    # Node 3's heartbeat arriving on node 2's authenticated connection.
    assert not c.step(_heartbeat(3, 1, 7), 2)
    after = c.status()
    assert after["forged_dropped"] == 1
    assert (after["term"], after["leader_id"]) == (before["term"], before["leader_id"])
    assert c.step(_heartbeat(3, 1, 7), 3)
    assert c.term == 7


# -- durability on a power-losing disk ----------------------------------------------------


def test_acknowledged_writes_survive_a_whole_group_power_loss(tmp_path: Path) -> None:
    for seed in range(5):
        disk = MemDisk()
        group = LocalGroup(3, tmp_path / f"s{seed}", disk=disk)
        group.wait_for_leader()
        acked: dict[int, bytes] = {}
        for i in range(30):
            data = f"w{i}".encode()
            index = group.propose(data)
            group.wait_applied(index, members=[group.leader() or 1])
            acked[index] = data
        group.power_loss(seed)
        for i in group.members:
            group.restart(i)
        group.wait_for_leader()
        group.wait_applied(max(acked))
        for m in group.members.values():
            for index, data in acked.items():
                assert m.state_machine.applied.get(index) == data, (seed, m.id, index)


def test_the_loop_keeps_stepping_and_proposing_while_a_persist_is_in_its_fsync(
    tmp_path: Path,
) -> None:
    disk = MemDisk()
    c = Consensus.open(tmp_path, "c", 1, [1], disk=disk)
    _drain(c)
    c.campaign()
    _drain(c)
    c.propose(b"first")
    rd = c.ready()
    assert rd.must_sync
    disk._block_syncs(True)
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(c.persist(rd)))
    worker.start()
    try:
        _wait_until(lambda: disk._syncs_waiting == 1, "the persist to reach its fsync")
        # The loop thread is not blocked by the fsync in flight.
        second = c.propose(b"second")
        c.tick()
        assert c.status()["last_index"] == second
        assert not result
    finally:
        disk._block_syncs(False)
        worker.join(timeout=10)
    assert result and not worker.is_alive()


def test_a_persist_goes_on_while_a_compaction_syncs_its_snapshot_file(tmp_path: Path) -> None:
    """A compaction writes and syncs its snapshot file without the WAL's lock:
    a persist (an append and its fsync) is not held behind it. Before, the
    lock was held for the whole file (0.1 s and more for a large state) and
    every commit waited. Seen here: with every sync held, the persist reaches
    its own fsync while the snapshot's is still in flight."""
    disk = MemDisk()
    c = Consensus.open(tmp_path, "c", 1, [1], disk=disk)
    _drain(c)
    c.campaign()
    _drain(c)
    applied = c.propose(b"first")
    _drain(c)
    snapshots: list[object] = []
    persisted: list[object] = []
    disk._block_syncs(True)
    compaction = threading.Thread(
        target=lambda: snapshots.append(c.create_snapshot(applied, b"state" * 1000))
    )
    persist: threading.Thread | None = None
    compaction.start()
    try:
        _wait_until(lambda: disk._syncs_waiting == 1, "the snapshot file to reach its fsync")
        c.propose(b"second")
        rd = c.ready()
        assert rd.must_sync
        persist = threading.Thread(target=lambda: persisted.append(c.persist(rd)))
        persist.start()
        _wait_until(lambda: disk._syncs_waiting == 2, "the persist to reach its own fsync")
    finally:
        disk._block_syncs(False)
        compaction.join(timeout=10)
        if persist is not None:
            persist.join(timeout=10)
    assert persisted and snapshots
    assert c.status()["first_index"] == applied + 1  # the log was compacted
    c.close()
    reopened = Consensus.open(tmp_path, "c", 1, [1], disk=disk)
    assert reopened.recovered_snapshot is not None
    assert reopened.recovered_snapshot.index == applied
    assert reopened.recovered_snapshot.data == b"state" * 1000
    reopened.close()


def _wait_readable(fd: int, timeout: float = 10.0) -> None:
    readable, _, _ = select.select([fd], [], [], timeout)
    assert readable, "persist_fd never became readable"


def test_the_wal_thread_persists_without_the_loop_and_signals_its_fd(tmp_path: Path) -> None:
    disk = MemDisk()
    c = Consensus.open(tmp_path, "c", 1, [1], disk=disk)
    _drain(c)
    c.campaign()
    _drain(c)
    c.propose(b"first")
    rd = c.ready()
    assert rd.must_sync
    disk._block_syncs(True)
    try:
        c.persist_start(rd)
        _wait_until(lambda: disk._syncs_waiting == 1, "the WAL thread to reach its fsync")
        assert c.persist_done() is None, "not durable yet"
        with pytest.raises(ValueError, match="already persisted"):
            c.persist_start(rd)
        second = c.propose(b"second")  # the loop carries on meanwhile
        assert c.status()["last_index"] == second
    finally:
        disk._block_syncs(False)
    _wait_readable(c.persist_fd)
    out = c.persist_done()
    assert out is not None
    c.advance(out)
    assert c.persist_done() is None
    c.close()


def test_a_failed_fsync_on_the_wal_thread_is_raised_by_persist_done(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, "c", 1, [1])
    _drain(c)
    c.campaign()
    _drain(c)
    c.propose(b"doomed")
    rd = c.ready()
    c._inject_sync_failure()
    c.persist_start(rd)
    _wait_readable(c.persist_fd)
    with pytest.raises(WalFatalError):
        c.persist_done()


def test_a_leader_sends_its_appends_before_persisting_them(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    c = group.members[leader].consensus
    _drain(c)
    c.propose(b"x")
    rd = c.ready()
    assert rd.must_sync
    early = rd.take_early_messages()
    assert sorted(to for to, _ in early) == sorted(i for i in group.members if i != leader)
    assert rd.take_early_messages() == [], "taken once"
    out = c.persist(rd)
    assert not any(data in (d for _, d in early) for _, data in out.messages)
    c.advance(out)
