"""An in-process Raft group over an in-memory bus, with real WALs.

Every member is a real :class:`~bedrock_cp_native.Consensus` (the core over
its WAL, fsync on by default) driven by
:class:`~bedrock_cp.raft.driver.RaftDriver`; only the network is a queue (that
drops messages over the transport's frame cap, as a peer link does) and only
time is a tick counter. The WALs live in directories on the real disk, or on
a :class:`~bedrock_cp_native.MemDisk` that can lose power. A crash drops a
member's in-memory state and closes its WAL; a restart reopens it and
rebuilds the node and its state machine from what is on disk. Used by tests,
the interim demo and benchmarks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .._native import native
from ..wire import MAX_FRAME
from .driver import RaftDriver


class RecordingStateMachine:
    """A state machine that records every applied normal entry, for checks.

    Its snapshot is its whole record (index -> data), so a member restored
    from a snapshot can still be compared entry by entry.
    """

    __slots__ = ("applied", "applied_index", "padding", "snapshot_index")

    def __init__(self, padding: int = 0) -> None:
        self.applied: dict[int, bytes] = {}
        self.applied_index = 0
        self.snapshot_index = 0
        #: Zero bytes added to every snapshot (to make snapshots large).
        self.padding = padding

    def apply(self, entry: native.Entry) -> None:
        if entry.index <= self.applied_index:
            raise AssertionError(
                f"entry {entry.index} applied twice (applied index {self.applied_index})"
            )
        self.applied_index = entry.index
        if entry.kind == "normal" and entry.data:
            self.applied[entry.index] = entry.data

    def snapshot_data(self) -> bytes:
        parts = [self.applied_index.to_bytes(8, "little"), len(self.applied).to_bytes(4, "little")]
        for index, data in sorted(self.applied.items()):
            parts += [index.to_bytes(8, "little"), len(data).to_bytes(4, "little"), data]
        return b"".join(parts) + bytes(self.padding)

    def restore(self, snapshot: native.Snapshot) -> None:
        data = snapshot.data
        applied_index = int.from_bytes(data[:8], "little")
        if applied_index != snapshot.index:
            raise AssertionError(
                f"snapshot labelled {snapshot.index} holds the state at {applied_index}"
            )
        count = int.from_bytes(data[8:12], "little")
        applied: dict[int, bytes] = {}
        at = 12
        for _ in range(count):
            index = int.from_bytes(data[at : at + 8], "little")
            n = int.from_bytes(data[at + 8 : at + 12], "little")
            applied[index] = data[at + 12 : at + 12 + n]
            at += 12 + n
        self.applied = applied
        self.applied_index = snapshot.index
        self.snapshot_index = snapshot.index


@dataclass
class Member:
    """One member of a :class:`LocalGroup`; ``driver`` is None while crashed."""

    id: int
    wal_dir: Path
    driver: RaftDriver | None = None
    state_machine: RecordingStateMachine = field(default_factory=RecordingStateMachine)

    @property
    def alive(self) -> bool:
        return self.driver is not None

    @property
    def consensus(self) -> native.Consensus:
        if self.driver is None:
            raise RuntimeError(f"member {self.id} is crashed")
        return self.driver.consensus


class LocalGroup:
    """N Raft members in one process. Time advances only through :meth:`tick`."""

    def __init__(
        self,
        n: int,
        base_dir: Path,
        *,
        cluster_id: str = "local",
        sync: bool = True,
        disk: native.MemDisk | None = None,
        election_tick: int = 10,
        heartbeat_tick: int = 2,
        seed: int = 1,
        max_frame: int = MAX_FRAME,
        snapshot_padding: int = 0,
    ) -> None:
        if n < 1:
            raise ValueError("a group needs at least one member")
        self.cluster_id = cluster_id
        self.sync = sync
        self.disk = disk
        self.election_tick = election_tick
        self.heartbeat_tick = heartbeat_tick
        self.seed = seed
        self.max_frame = max_frame
        self.snapshot_padding = snapshot_padding
        self.oversize_dropped = 0
        self.voters = list(range(1, n + 1))
        self.bus: deque[tuple[int, int, bytes]] = deque()
        self.members: dict[int, Member] = {}
        self.cut: set[int] = set()
        self.ticks = 0
        for i in self.voters:
            self.members[i] = Member(i, base_dir / f"node-{i}")
            self.restart(i)

    # -- membership of the process ------------------------------------------------

    def restart(self, node_id: int) -> None:
        """(Re)start a member from its WAL directory."""
        m = self.members[node_id]
        if m.alive:
            raise RuntimeError(f"member {node_id} is already running")
        consensus = native.Consensus.open(
            m.wal_dir,
            self.cluster_id,
            node_id,
            self.voters,
            disk=self.disk,
            sync=self.sync,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            seed=self.seed,
        )
        m.state_machine = RecordingStateMachine(self.snapshot_padding)
        snapshot = consensus.recovered_snapshot
        if snapshot is not None:
            m.state_machine.restore(snapshot)

        def send(to: int, data: bytes, frm: int = node_id) -> None:
            self._send(frm, to, data)

        m.driver = RaftDriver(consensus, send, m.state_machine)

    def crash(self, node_id: int) -> None:
        """Drop a member's process state, as kill -9 would; its WAL stays on disk."""
        m = self.members[node_id]
        if m.driver is not None:
            m.driver.consensus.close()
        m.driver = None
        for other in self.alive_ids():
            # Peers see the connection break at once (EOF), as over TCP.
            self.members[other].consensus.peer_unreachable(node_id)

    def power_loss(self, seed: int) -> None:
        """The whole group loses power: every member crashes, and the disk (a
        :class:`MemDisk`) keeps only what was synced."""
        if self.disk is None:
            raise RuntimeError("power_loss needs a group on a MemDisk")
        for i in self.alive_ids():
            m = self.members[i]
            assert m.driver is not None
            m.driver.consensus.close()
            m.driver = None
        self.bus.clear()
        self.disk.power_loss(seed)

    def compact(self, node_id: int) -> native.Snapshot:
        """Snapshot a member's state machine at its applied index (log compaction)."""
        m = self.members[node_id]
        sm = m.state_machine
        return m.consensus.create_snapshot(sm.applied_index, sm.snapshot_data())

    def alive_ids(self) -> list[int]:
        return [i for i, m in self.members.items() if m.alive]

    # -- network and time ---------------------------------------------------------

    def _send(self, frm: int, to: int, data: bytes) -> None:
        if len(data) > self.max_frame:
            # A peer link drops a message over the frame cap.
            self.oversize_dropped += 1
            return
        self.bus.append((frm, to, data))

    def pump(self, max_rounds: int = 10_000) -> None:
        """Process Readys and deliver messages until nothing is left to do."""
        for _ in range(max_rounds):
            progressed = False
            for m in self.members.values():
                if m.driver is not None and m.driver.handle_ready():
                    progressed = True
            while self.bus:
                frm, to, data = self.bus.popleft()
                target = self.members.get(to)
                if target is None or target.driver is None or to in self.cut or frm in self.cut:
                    continue
                target.driver.consensus.step(data, frm)
                progressed = True
            if not progressed:
                return
        raise RuntimeError(f"group did not quiesce within {max_rounds} rounds")

    def tick(self, n: int = 1) -> None:
        """Advance every live member by ``n`` ticks, pumping after each."""
        for _ in range(n):
            self.ticks += 1
            for m in self.members.values():
                if m.driver is not None:
                    m.driver.consensus.tick()
            self.pump()

    # -- queries --------------------------------------------------------------------

    def leader(self) -> int | None:
        """The live member that believes it leads in the highest term, if any."""
        best: tuple[int, int] | None = None
        for i in self.alive_ids():
            c = self.members[i].consensus
            if c.role == "leader":
                term = c.term
                if best is None or term > best[0]:
                    best = (term, i)
        return None if best is None else best[1]

    def wait_for_leader(self, max_ticks: int = 1_000) -> int:
        """Tick until a leader is known to every live member; return its id."""
        self.pump()
        for _ in range(max_ticks):
            lead = self.leader()
            if lead is not None and all(
                self.members[i].consensus.leader_id == lead for i in self.alive_ids()
            ):
                return lead
            self.tick()
        raise TimeoutError(f"no leader after {max_ticks} ticks")

    def propose(self, data: bytes) -> int:
        """Propose on the current leader; return the index."""
        lead = self.leader()
        if lead is None:
            raise RuntimeError("no leader")
        index = self.members[lead].consensus.propose(data)
        self.pump()
        return index

    def applied_on(self, node_id: int) -> int:
        return self.members[node_id].state_machine.applied_index

    def wait_applied(
        self, index: int, members: list[int] | None = None, max_ticks: int = 1_000
    ) -> None:
        """Tick until every listed (default: live) member applied ``index``."""
        ids = self.alive_ids() if members is None else members
        for _ in range(max_ticks):
            if all(self.applied_on(i) >= index for i in ids):
                return
            self.tick()
        raise TimeoutError(f"index {index} not applied on {ids} after {max_ticks} ticks")
