"""Three native RaftNodes over an in-memory bus, driven through the binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from bedrock_cp.raft import LocalGroup
from bedrock_cp_native import (
    MessageDecodeError,
    NativePanicError,
    NotLeaderError,
    RaftNode,
    Wal,
)


@pytest.fixture
def group(tmp_path: Path) -> LocalGroup:
    return LocalGroup(3, tmp_path, sync=False)


def test_exactly_one_leader_is_elected(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    roles = {i: group.members[i].node.role for i in group.alive_ids()}
    assert [i for i, r in roles.items() if r == "leader"] == [leader]
    terms = {group.members[i].node.term for i in group.alive_ids()}
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


def test_restart_from_wal_keeps_term_vote_and_log(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    last = 0
    for i in range(20):
        last = group.propose(f"v{i}".encode())
    group.wait_applied(last)
    follower = next(i for i in group.alive_ids() if i != leader)
    before = group.members[follower].node.status()
    group.crash(follower)
    group.restart(follower)
    after = group.members[follower].node.status()
    assert after["term"] == before["term"]
    assert after["vote"] == before["vote"]
    assert after["last_index"] == before["last_index"]
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
        group.members[follower].node.propose(b"x")
    assert err.value.leader == leader


def test_undecodable_bytes_raise_and_the_node_keeps_working(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    node = group.members[leader].node
    for junk in [b"", b"\x00", b"\x01\x02garbage", b"\xff" * 100]:
        with pytest.raises(MessageDecodeError):
            node.step(junk)
    index = group.propose(b"still-alive")
    group.wait_applied(index)
    assert all(m.state_machine.applied[index] == b"still-alive" for m in group.members.values())


def test_ready_must_be_advanced_once_before_the_next(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1, sync=False)
    node = RaftNode(1, [1], wal)
    node.campaign()
    rd = node.ready()
    with pytest.raises(ValueError, match="advance"):
        node.ready()
    wal.save(rd)
    node.advance(rd)
    with pytest.raises(ValueError, match="already passed to advance"):
        node.advance(rd)
    with pytest.raises(ValueError, match="already passed to advance"):
        _ = rd.messages


def test_single_node_group_commits_alone(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1)
    node = RaftNode(1, [1], wal)
    node.campaign()
    applied: list[bytes] = []
    for _ in range(5):
        while node.has_ready():
            rd = node.ready()
            wal.save(rd)
            applied += [e.data for e in rd.committed_entries if e.kind == "normal" and e.data]
            node.advance(rd)
        if node.role == "leader" and not applied:
            node.propose(b"solo")
    assert node.role == "leader"
    assert applied == [b"solo"]


def test_founders_log_their_initial_membership_as_committed_conf_changes(tmp_path: Path) -> None:
    node = RaftNode(2, [1, 2, 3], Wal.open(tmp_path, "c", 2, sync=False))
    rd = node.ready()
    changes = [e.conf_change for e in rd.committed_entries]
    assert changes == [("add", 1), ("add", 2), ("add", 3)]
    assert [e.term for e in rd.committed_entries] == [0, 0, 0]


def test_a_panic_in_the_core_is_an_exception_and_poisons_the_node(tmp_path: Path) -> None:
    node = RaftNode(1, [1], Wal.open(tmp_path, "c", 1, sync=False))
    with pytest.raises(NativePanicError, match="injected panic"):
        node._inject_panic()
    # The core's invariants may be broken: every later call is refused.
    with pytest.raises(NativePanicError, match="unusable"):
        node.tick()
    with pytest.raises(NativePanicError, match="unusable"):
        node.propose(b"x")


def test_a_wal_feeds_only_one_node(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, "c", 1, sync=False)
    RaftNode(1, [1], wal)
    with pytest.raises(ValueError, match="already taken"):
        RaftNode(1, [1], wal)


def test_peer_unreachable_starts_an_election_without_waiting(group: LocalGroup) -> None:
    leader = group.wait_for_leader()
    term = group.members[leader].node.term
    group.crash(leader)  # tells the survivors through peer_unreachable
    group.pump()
    # No tick has passed, yet the survivors already elected a new leader.
    new_leader = group.leader()
    assert new_leader is not None and new_leader != leader
    assert group.members[new_leader].node.term > term


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
    lead = group.members[leader]
    assert lead.driver is not None
    snap = lead.node.create_snapshot(b"state-at-" + str(last).encode())
    lead.driver.wal.save_snapshot(snap)
    assert snap.index == last
    assert lead.node.status()["first_index"] == last + 1
    group.restart(lagging)
    group.wait_applied(last, members=[lagging])
    sm = group.members[lagging].state_machine
    assert sm.snapshot_index == last
    after = group.propose(b"after-snapshot")
    group.wait_applied(after)
    assert group.members[lagging].state_machine.applied[after] == b"after-snapshot"
