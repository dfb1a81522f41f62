"""A whole cluster in one process: real nodes on virtual time, network and disks.

:class:`SimCluster` runs ``n`` real :class:`~bedrock_cp.node.Node` objects —
coordinators, Directors, Foremen, Gateways, the data plane — on the running
:class:`~bedrock_cp.sim.VirtualClockLoop`, each with its own seams:

- a :class:`~bedrock_cp.sim.SimClock` (a fault can skew it);
- an endpoint of the shared :class:`~bedrock_cp.sim.SimNetwork`;
- a :class:`~bedrock_cp_native.MemDisk` for every WAL it keeps (the
  coordinator's, every generation of each log's) and a
  :class:`~bedrock_cp.sim.DiskExecutor` for all its disk work (a fault can slow it);
- a seeded ``random.Random`` and token source.

The other files a node writes (worker manifests, state files, and each storage
replica's SQLite base) are real files in a temporary directory. That is
faithful because the disk executor runs every write at once, whole, between
two events of the loop, so a simulated crash or power loss never falls inside
one, and each of those writes is durable when it returns: a state file or
manifest is written whole and synced (tmp file, fsync, rename, fsync of the
directory); a SQLite write is one transaction with ``synchronous=FULL`` (the
nodes run with fsync), and a committed SQLite transaction is durable while an
uncommitted one is absent. So at every point a crash can reach, the durable
content of these files is their visible content — what a real power loss
would leave. What this does not model: torn or lost writes inside SQLite's own
files (its crash safety is its own, tested far beyond this project), and the
injected ENOSPC/EIO, which reach the WALs (and so the coordinator and the
logs) but not these files.

A crash is :meth:`SimCluster.crash`: the node object is aborted (nothing is
stopped cleanly), the network drops it (its peers see their connections
break), and its disk forgets its handles (the dead object can write nothing
more). A restart builds a new node on the same disk and directory. A power
loss crashes every node and makes each disk lose what was not synced.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bedrock_cp import protocol
from bedrock_cp.auth import AuthConfig, Principal
from bedrock_cp.client import Client, ClusterFile, Database, open_database
from bedrock_cp.node import Node, NodeConfig
from bedrock_cp.sim import DiskExecutor, SimClock, SimNetwork
from bedrock_cp_native import MemDisk, WalError

from .invariants import Invariants

log = logging.getLogger("tests.sim")

_ADDR = "sim-{}:7000"
#: Short enough for a run of a few virtual seconds to flush storage many times.
STORAGE_FLUSH_MS = 200
#: A few kilobytes: logs roll and remove generations within a run.
LOG_GENERATION_BYTES = 4096


@dataclass
class SimNode:
    """One machine: its disk, clock and disk executor outlive the node process."""

    id: int
    config: NodeConfig
    disk: MemDisk
    clock: SimClock
    executor: DiskExecutor
    node: Node | None = None
    incarnation: int = 0
    #: Why the last restart was refused (a WAL that does not open), if it was.
    refused: str = ""
    disk_fault: str | None = None
    history: list[str] = field(default_factory=list)


class SimCluster:
    """See the module docstring."""

    def __init__(
        self,
        base: Path,
        seed: int,
        n: int,
        *,
        invariants: Invariants,
        trace: Callable[[str], None],
        pause_before: Callable[[int], str | None] = lambda epoch: None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.rng = random.Random(seed)
        self.net = SimNetwork(random.Random(self.rng.getrandbits(64)))
        self.invariants = invariants
        self.net.observers.append(invariants.on_request)
        self.trace = trace
        self.pause_before = pause_before
        self.ids = list(range(1, n + 1))
        coordinators = {str(i): _ADDR.format(i) for i in self.ids}
        self.machines: dict[int, SimNode] = {}
        for i in self.ids:
            config = NodeConfig(
                id=i,
                data_dir=str(base / f"n{i}"),
                listen=_ADDR.format(i),
                coordinators=coordinators,
                fsync=True,
                capabilities=["log", "storage"],
                # The simulated network proves who calls (see SimNetwork).
                auth=AuthConfig(mode="none"),
                log_level="warning",
                # History goes as it would in minutes of a real cluster: storage
                # writes its base and logs close and drop generations within a run.
                storage_flush_ms=STORAGE_FLUSH_MS,
                log_generation_bytes=LOG_GENERATION_BYTES,
            )
            self.machines[i] = SimNode(i, config, MemDisk(), SimClock(loop), DiskExecutor(loop))
        self.cluster_file = ClusterFile(cluster="bedrock", coordinators=list(coordinators.values()))

    # -- processes -------------------------------------------------------------------

    @property
    def up(self) -> list[int]:
        return [i for i in self.ids if self.alive(i)]

    def alive(self, i: int) -> bool:
        node = self.machines[i].node
        return node is not None and not node.closed and i not in self.net.down

    def node(self, i: int) -> Node | None:
        return self.machines[i].node if self.alive(i) else None

    async def start(self, i: int) -> bool:
        """Start (or restart) node ``i``; False if it refuses to (its WAL does not open)."""
        m = self.machines[i]
        if m.node is not None and not m.node.closed:
            return True
        m.incarnation += 1
        rng = random.Random(self.rng.getrandbits(64))
        try:
            node = await Node.start(
                m.config,
                clock=m.clock,
                rng=rng,
                token_bytes=rng.randbytes,
                network_factory=self.net.factory,
                executor=m.executor,
                disk=m.disk,
            )
        except WalError as exc:
            m.refused = f"{type(exc).__name__}: {exc}"
            m.node = None
            self.net.crash(i)
            self.trace(f"node {i} refuses to start: {m.refused}")
            return False
        m.refused = ""
        assert node.recovery is not None
        node.recovery.pause_before = self.pause_before
        m.node = node
        self.invariants.attach(i, node)
        self.trace(f"node {i} started (incarnation {m.incarnation})")
        return True

    def crash(self, i: int) -> None:
        """kill -9 of node ``i``: see the module docstring."""
        m = self.machines[i]
        if m.node is not None:
            m.node.abort()
        self.net.crash(i)
        m.disk.crash()
        self.invariants.crashed(i, power_lost=False)
        self.trace(f"node {i} crashed")

    async def power_loss(self, seed: int) -> None:
        """Every machine loses power at once; then they all boot again."""
        for i in self.ids:
            self.crash(i)
        for i in self.ids:
            self.machines[i].disk.power_loss(seed + i)
            self.invariants.crashed(i, power_lost=True)
        self.trace("power loss of every machine")

    async def stop(self) -> None:
        for i in self.ids:
            node = self.machines[i].node
            if node is not None and not node.closed:
                await node.stop()

    # -- what the nodes say ----------------------------------------------------------

    def leader(self) -> int | None:
        """The live node that leads and is ready (its no-op applied), if one does."""
        best: tuple[int, int] | None = None
        for i in self.up:
            node = self.machines[i].node
            assert node is not None and node.coordinator is not None
            c = node.coordinator
            if c.role == "leader" and c.readiness == "ready":
                term = c.runner.consensus.term
                if best is None or term > best[0]:
                    best = (term, i)
        return None if best is None else best[1]

    def director_state(self, i: int) -> tuple[int, str, str]:
        """(epoch, state, where: the phase or the last reason) of node ``i``'s Director host."""
        node = self.machines[i].node
        if node is None or node.recovery is None:
            return 0, "none", ""
        st = node.recovery.status
        return st.epoch, st.state, f"at {st.phase}" + (f" ({st.reason})" if st.reason else "")

    # -- clients ---------------------------------------------------------------------

    async def database(self, name: str) -> Database:
        rng = random.Random(self.rng.getrandbits(64))
        return await open_database(
            self.cluster_file, channel=self.net.channel(name), rng=rng, request_timeout=3.0
        )

    def client(self, name: str, *, only: int | None = None) -> Client:
        """An admin's client process (it may file services under any node);
        ``only``: it knows just that coordinator's address."""
        cluster = self.cluster_file
        if only is not None:
            cluster = ClusterFile(cluster="bedrock", coordinators=[_ADDR.format(only)])
        rng = random.Random(self.rng.getrandbits(64))
        channel = self.net.channel(name, Principal.admin(name))
        return Client(cluster, request_timeout=3.0, channel=channel, rng=rng)

    async def hostile_call(self, i: int, body: protocol.Request) -> protocol.Response:
        """A request from a process that is no node of the cluster."""
        return await self.net.request(i, body, principal=Principal.client("intruder"))
