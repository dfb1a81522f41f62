"""The real node code under faults, on in-memory disks and network.

Power loss of the whole cluster (every acknowledged write survives), a new
coordinator that cannot catch up (fault tolerance never drops), a crash while
the WAL thread is inside an fsync, and a Raft message with a forged sender.
Time is virtual (VirtualClockLoop) except where a real WAL thread is the point.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bedrock_cp import protocol as api
from bedrock_cp.auth import AuthConfig, Principal
from bedrock_cp.node import Node, NodeConfig
from bedrock_cp.sim import InlineExecutor, SimClock, SimNetwork, run_simulation
from bedrock_cp_native import MemDisk

_ADDR = "sim-{}:7000"


def _config(node_id: int, base: Path, members: int = 3, *, join: bool = False) -> NodeConfig:
    coordinators = {str(i): _ADDR.format(i) for i in range(1, members + 1)}
    if join:
        coordinators[str(node_id)] = _ADDR.format(node_id)
    return NodeConfig(
        id=node_id,
        data_dir=str(base / f"n{node_id}"),
        listen=_ADDR.format(node_id),
        coordinators=coordinators,
        fsync=True,
        join=join,
        auth=AuthConfig(mode="none"),  # the simulated network authenticates nobody
    )


ADMIN = Principal.admin("sim-admin")


class _Sim:
    """Nodes on one SimNetwork, each on its own MemDisk."""

    def __init__(
        self, base: Path, seed: int, executor: concurrent.futures.Executor | None = None
    ) -> None:
        self.base = base
        self.rng = random.Random(seed)
        self.net = SimNetwork(self.rng)
        self.executor = executor or InlineExecutor()
        self.disks: dict[int, MemDisk] = {}
        self.nodes: dict[int, Node] = {}

    async def start(self, node_id: int, members: int = 3, *, join: bool = False) -> Node:
        loop = asyncio.get_running_loop()
        disk = self.disks.setdefault(node_id, MemDisk())
        node = await Node.start(
            _config(node_id, self.base, members, join=join),
            rng=random.Random(self.rng.getrandbits(64)),
            network_factory=self.net.factory,
            executor=self.executor,
            clock=SimClock(loop),
            disk=disk,
        )
        self.nodes[node_id] = node
        return node

    def crash(self, node_id: int) -> None:
        self.nodes[node_id].abort()
        self.net.crash(node_id)

    async def ready_leader(self, exclude: set[int] | None = None) -> int:
        async def find() -> int | None:
            for i in self.nodes:
                if i in (exclude or set()) or i in self.net.down:
                    continue
                pong = await self.net.request(i, api.Ping())
                if (
                    isinstance(pong, api.PingReply)
                    and pong.leader_id == i
                    and pong.state == "ready"
                ):
                    return i
            return None

        return await _eventually(find, "a ready leader")

    async def register(self, leader: int, name: str, seq: int) -> api.Response:
        return await self.net.request(leader, api.Register(name, "log", "10.0.0.1:1", "", 7, seq))


async def _eventually(probe: Callable[[], Awaitable[int | None]], what: str) -> int:
    """Polls ``probe`` until it answers, for at most 30 (virtual or real) seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while True:
        found = await probe()
        if found is not None:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within 30 s")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_acknowledged_writes_survive_a_whole_cluster_power_loss(tmp_path: Path, seed: int) -> None:
    """Every write acknowledged by the coordinators survives a power loss of
    every machine at once: their WALs really fsync'd (the disks lose whatever
    was not synced)."""

    async def scenario() -> None:
        sim = _Sim(tmp_path, seed)
        for i in (1, 2, 3):
            await sim.start(i)
        leader = await sim.ready_leader()
        acked = []
        for seq in range(1, 31):
            reply = await sim.register(leader, f"svc-{seq}", seq)
            assert isinstance(reply, api.WriteOk), reply
            acked.append(f"svc-{seq}")
        for i in (1, 2, 3):
            sim.crash(i)
        for i, disk in sim.disks.items():
            disk.power_loss(seed * 10 + i)
        for i in (1, 2, 3):
            await sim.start(i)
        leader = await sim.ready_leader()
        reply = await sim.net.request(leader, api.ListServices(stale=False))
        assert isinstance(reply, api.ServicesReply), reply
        ids = {s.id for s in reply.services}
        assert set(acked) <= ids, sorted(set(acked) - ids)
        for n in sim.nodes.values():
            await n.stop()

    run_simulation(scenario())


def test_a_new_coordinator_joins_as_a_learner_so_fault_tolerance_never_drops(
    tmp_path: Path,
) -> None:
    """Coordinator 4 is added while it cannot catch up (its links are cut).
    As a learner it does not count: with one of the three voters down the
    others still commit. Once it catches up it is promoted."""

    async def scenario() -> None:
        sim = _Sim(tmp_path, 7)
        for i in (1, 2, 3):
            await sim.start(i)
        leader = await sim.ready_leader()
        for seq in range(1, 11):
            assert isinstance(await sim.register(leader, f"svc-{seq}", seq), api.WriteOk)
        await sim.start(4, join=True)
        for i in (1, 2, 3):
            sim.net.partition(4, i)
        adding = asyncio.ensure_future(
            sim.net.request(leader, api.AddCoordinator(4, _ADDR.format(4), 9, 1), principal=ADMIN)
        )

        async def member() -> int | None:
            st = sim.nodes[leader].coordinator
            assert st is not None
            return 4 if 4 in st.learners() + st.voters() else None

        await _eventually(member, "coordinator 4 in the configuration")
        down = next(i for i in (1, 2, 3) if i != leader)
        sim.crash(down)
        reply = await asyncio.wait_for(sim.register(leader, "with-one-down", 11), timeout=5)
        assert isinstance(reply, api.WriteOk), reply
        assert not adding.done()
        sim.net.heal()
        added = await asyncio.wait_for(adding, timeout=60)
        assert isinstance(added, api.WriteOk), added
        coordinator = sim.nodes[leader].coordinator
        assert coordinator is not None
        assert coordinator.voters() == [1, 2, 3, 4]
        for i, n in sim.nodes.items():
            if i != down:
                await n.stop()

    run_simulation(scenario())


def test_a_learner_that_never_catches_up_is_reported(tmp_path: Path) -> None:
    async def scenario() -> None:
        sim = _Sim(tmp_path, 8)
        for i in (1, 2, 3):
            await sim.start(i)
        leader = await sim.ready_leader()
        coordinator = sim.nodes[leader].coordinator
        assert coordinator is not None
        coordinator.learner_catch_up_s = 2.0
        await sim.start(4, join=True)
        for i in (1, 2, 3):
            sim.net.partition(4, i)
        reply = await sim.net.request(
            leader, api.AddCoordinator(4, _ADDR.format(4), 9, 1), principal=ADMIN
        )
        assert isinstance(reply, api.Unavailable), reply
        assert "did not catch up" in reply.reason and "learner" in reply.reason
        assert coordinator.voters() == [1, 2, 3]
        assert coordinator.learners() == [4]
        for n in sim.nodes.values():
            await n.stop()

    run_simulation(scenario())


def test_a_forged_raft_sender_is_dropped_and_shows_in_status(tmp_path: Path) -> None:
    async def scenario() -> None:
        sim = _Sim(tmp_path, 9)
        for i in (1, 2, 3):
            await sim.start(i)
        leader = await sim.ready_leader()
        victim = next(i for i in (1, 2, 3) if i != leader)
        other = next(i for i in (1, 2, 3) if i not in (leader, victim))
        # A heartbeat claiming to come from `other`, arriving on the leader's connection.
        term = 2**40
        forged = (
            bytes([2, 7])
            + victim.to_bytes(8, "little")
            + other.to_bytes(8, "little")
            + term.to_bytes(8, "little")
            + bytes(8 * 3 + 1 + 8 + 4 + 4 + 1)
        )
        sim.nodes[victim]._on_raft(leader, [forged])
        reply = await sim.net.request(victim, api.NodeStatus())
        assert isinstance(reply, api.NodeStatusReply), reply
        assert reply.raft_forged_dropped == 1
        assert reply.term < term
        for n in sim.nodes.values():
            await n.stop()

    run_simulation(scenario())


def test_abort_while_the_wal_thread_is_inside_an_fsync(tmp_path: Path) -> None:
    """A crash simulation must not close the WAL under a WAL-thread write: the
    write finishes there, then the files are released, and the node restarts
    from them with every acknowledged write."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as wal_thread:
            sim = _Sim(tmp_path, 3, executor=wal_thread)
            node = await sim.start(1, members=1)
            leader = await sim.ready_leader()
            assert isinstance(await sim.register(leader, "before", 1), api.WriteOk)
            disk = sim.disks[1]
            disk._block_syncs(True)
            pending = asyncio.ensure_future(sim.register(leader, "in-flight", 2))

            async def in_fsync() -> int | None:
                return 1 if disk._syncs_waiting >= 1 else None

            await _eventually(in_fsync, "the WAL thread to be inside an fsync")
            sim.crash(1)
            assert not node.closed, "the WAL stays open while its thread writes"
            disk._block_syncs(False)

            async def released() -> int | None:
                return 1 if node.closed else None

            await _eventually(released, "the WAL to be released")
            pending.cancel()
            await sim.start(1, members=1)
            leader = await sim.ready_leader()
            reply = await sim.net.request(leader, api.ListServices(stale=False))
            assert isinstance(reply, api.ServicesReply)
            assert "before" in {s.id for s in reply.services}
            await sim.nodes[1].stop()
        del loop

    asyncio.run(scenario())
