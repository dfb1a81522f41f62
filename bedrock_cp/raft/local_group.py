"""An in-process Raft group over an in-memory bus, with real WALs on disk.

Every member is a real :class:`~bedrock_cp_native.RaftNode` with a real
:class:`~bedrock_cp_native.Wal` (fsync on by default) driven by
:class:`~bedrock_cp.raft.driver.RaftDriver`; only the network is a queue and
only time is a tick counter. A crash drops a member's in-memory state and
closes its WAL; a restart reopens the WAL and rebuilds the node and its state
machine from what is on disk. Used by tests, the interim demo and benchmarks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .._native import native
from .driver import RaftDriver


class RecordingStateMachine:
    """A state machine that records every applied normal entry, for checks."""

    __slots__ = ("applied", "applied_index", "snapshot_index")

    def __init__(self) -> None:
        self.applied: dict[int, bytes] = {}
        self.applied_index = 0
        self.snapshot_index = 0

    def apply(self, entry: native.Entry) -> None:
        if entry.index <= self.applied_index:
            raise AssertionError(
                f"entry {entry.index} applied twice (applied index {self.applied_index})"
            )
        self.applied_index = entry.index
        if entry.kind == "normal" and entry.data:
            self.applied[entry.index] = entry.data

    def restore(self, snapshot: native.Snapshot) -> None:
        # The demo's snapshot payload is empty: entries below it are not rechecked.
        self.applied = {i: d for i, d in self.applied.items() if i > snapshot.index}
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
    def node(self) -> native.RaftNode:
        if self.driver is None:
            raise RuntimeError(f"member {self.id} is crashed")
        return self.driver.node


class LocalGroup:
    """N Raft members in one process. Time advances only through :meth:`tick`."""

    def __init__(
        self,
        n: int,
        base_dir: Path,
        *,
        cluster_id: str = "local",
        sync: bool = True,
        election_tick: int = 10,
        heartbeat_tick: int = 2,
        seed: int = 1,
    ) -> None:
        if n < 1:
            raise ValueError("a group needs at least one member")
        self.cluster_id = cluster_id
        self.sync = sync
        self.election_tick = election_tick
        self.heartbeat_tick = heartbeat_tick
        self.seed = seed
        self.voters = list(range(1, n + 1))
        self.bus: deque[tuple[int, bytes]] = deque()
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
        wal = native.Wal.open(m.wal_dir, self.cluster_id, node_id, sync=self.sync)
        node = native.RaftNode(
            node_id,
            self.voters,
            wal,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            seed=self.seed,
        )
        m.state_machine = RecordingStateMachine()
        m.driver = RaftDriver(node, wal, self._send, m.state_machine)

    def crash(self, node_id: int) -> None:
        """Drop a member's process state, as kill -9 would; its WAL stays on disk."""
        m = self.members[node_id]
        if m.driver is not None:
            m.driver.wal.close()
        m.driver = None
        for other in self.alive_ids():
            # Peers see the connection break at once (EOF), as over TCP.
            self.members[other].node.peer_unreachable(node_id)

    def alive_ids(self) -> list[int]:
        return [i for i, m in self.members.items() if m.alive]

    # -- network and time ---------------------------------------------------------

    def _send(self, to: int, data: bytes) -> None:
        self.bus.append((to, data))

    def pump(self, max_rounds: int = 10_000) -> None:
        """Process Readys and deliver messages until nothing is left to do."""
        for _ in range(max_rounds):
            progressed = False
            for m in self.members.values():
                if m.driver is not None and m.driver.handle_ready():
                    progressed = True
            while self.bus:
                to, data = self.bus.popleft()
                target = self.members.get(to)
                if target is None or target.driver is None or to in self.cut:
                    continue
                target.driver.node.step(data)
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
                    m.driver.node.tick()
            self.pump()

    # -- queries --------------------------------------------------------------------

    def leader(self) -> int | None:
        """The live member that believes it leads in the highest term, if any."""
        best: tuple[int, int] | None = None
        for i in self.alive_ids():
            node = self.members[i].node
            if node.role == "leader":
                term = node.term
                if best is None or term > best[0]:
                    best = (term, i)
        return None if best is None else best[1]

    def wait_for_leader(self, max_ticks: int = 1_000) -> int:
        """Tick until a leader is known to every live member; return its id."""
        self.pump()
        for _ in range(max_ticks):
            lead = self.leader()
            if lead is not None and all(
                self.members[i].node.leader_id == lead for i in self.alive_ids()
            ):
                return lead
            self.tick()
        raise TimeoutError(f"no leader after {max_ticks} ticks")

    def propose(self, data: bytes) -> int:
        """Propose on the current leader; return the index."""
        lead = self.leader()
        if lead is None:
            raise RuntimeError("no leader")
        index = self.members[lead].node.propose(data)
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
