"""A cluster of real node processes wired for faults, and a monitor that polls it.

:class:`ChaosCluster` is a :class:`~bedrock_cp.cluster.LocalCluster` whose
node-to-node coordinator traffic (Raft, each Gateway's calls to the leader)
goes through one :class:`~tests.faultproxy.Link` per ordered pair of nodes, so
the network faults are per link and per direction. Data-plane connections
(commit proxy to logs, storage pulls, the Director's calls to workers) dial the
address each node registered, its real one: only process faults (kill -9,
SIGSTOP) reach them. Without a proxy the nodes dial each other directly and
only the process faults exist. The cluster remembers which nodes it killed or stopped, so
:meth:`ChaosCluster.heal` undoes everything at once and a node that exits on
its own stands out.

:class:`Monitor` polls every node's status, one request per node per round,
feeding a :class:`~tests.checking.Watch` (the invariants) and keeping the
latest answers for the nemesis (who leads, which Director recovers); every few
rounds it also takes a digest of each node's own directory, to compare nodes
that applied the same index.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bedrock_cp import protocol
from bedrock_cp.client.client import client_credentials
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.cluster.local import pid_is_node
from bedrock_cp.node.config import Timers
from bedrock_cp.protocol import Caller

from ..checking import Anomaly, History, NodeSample, StateSample, Watch
from ..faultproxy import FaultProxy, Link


class ChaosCluster:
    """See the module docstring. Synchronous controls; call them from the test's loop."""

    def __init__(
        self,
        proxy: FaultProxy | None,
        n: int,
        *,
        env: dict[str, str] | None = None,
        timers: Timers | None = None,
    ) -> None:
        self.cluster = LocalCluster(n, env=env, timers=timers)
        self.nodes = sorted(self.cluster.addresses)
        self.down: set[int] = set()
        self.paused: set[int] = set()
        self.links: dict[tuple[int, int], Link] = {}
        if proxy is None:  # process faults only: the nodes dial each other directly
            return
        for a in self.nodes:
            for b in self.nodes:
                if a != b:
                    host, port = self.cluster.addresses[b].rsplit(":", 1)
                    self.links[a, b] = proxy.link((host, int(port)))
        self.cluster.peer_address = lambda a, b, real: self.links[a, b].address

    @property
    def cluster_file(self) -> str:
        return str(self.cluster.cluster_file)

    # -- processes ----------------------------------------------------------------------

    def kill(self, node: int) -> None:
        """kill -9; the node stays down until :meth:`restart`."""
        self.paused.discard(node)
        self.cluster.kill(node, signal.SIGKILL)
        self.down.add(node)

    def restart(self, node: int) -> None:
        if node in self.down:
            self.cluster.restart(node)
            self.down.discard(node)

    def pause(self, node: int) -> None:
        if node not in self.down:
            self.cluster.pause(node)
            self.paused.add(node)

    def resume(self, node: int) -> None:
        if node in self.paused:
            self.cluster.resume(node)
            self.paused.discard(node)

    def unexpected_exits(self) -> dict[int, int]:
        """Nodes that exited although nobody killed them: node -> exit code."""
        return {
            node: code
            for node, proc in self.cluster.procs.items()
            if node not in self.down and (code := proc.poll()) is not None
        }

    # -- network ------------------------------------------------------------------------

    def cut_off(self, side: set[int]) -> None:
        """A partition without resets: ``side`` and the rest hear nothing of each other."""
        for (a, b), link in self.links.items():
            if (a in side) != (b in side):
                link.set_mode("blackhole")

    def one_way(self, src: int, dst: int) -> None:
        """Nothing ``src`` sends reaches ``dst``; ``dst`` still reaches ``src``."""
        self.links[src, dst].set_mode("blackhole", "forward")
        self.links[dst, src].set_mode("blackhole", "backward")

    def latency(self, low: float, high: float) -> None:
        for link in self.links.values():
            link.set_delay(low, high)

    def drops(self, probability: float, seed: int) -> None:
        for i, link in enumerate(self.links.values()):
            link.set_drop(probability, seed=seed + i)

    def heal_network(self) -> None:
        for link in self.links.values():
            link.heal()

    def heal(self) -> None:
        """Every link passes, every stopped node runs, every killed node is restarted."""
        self.heal_network()
        for node in sorted(self.paused):
            self.resume(node)
        for node in sorted(self.down):
            self.restart(node)

    # -- lifetime -----------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def logs(self) -> dict[int, Path]:
        return {n: self.cluster.log_path(n) for n in self.nodes}


def rss_bytes(pid: int) -> int | None:
    """A node process's resident set size, from /proc (None if it is gone)."""
    if not pid_is_node(pid):
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Latest:
    """A node's last answer to a status request, and when it came."""

    time: float
    reply: protocol.NodeStatusReply

    @property
    def recovery(self) -> dict[str, Any]:
        return dict(self.reply.recovery)


class Monitor:
    """Polls status; see the module docstring. Times are the history's."""

    def __init__(
        self,
        chaos: ChaosCluster,
        history: History,
        watch: Watch,
        *,
        interval: float = 0.1,
        timeout: float = 0.5,
        state_every: int = 3,
    ) -> None:
        self.chaos = chaos
        self.history = history
        self.watch = watch
        self.interval = interval
        self.timeout = timeout
        self.latest: dict[int, Latest] = {}
        self.samples: list[NodeSample] = []
        self.states: list[StateSample] = []
        #: Every this many rounds, also compare the nodes' directories (I2).
        self.state_every = state_every
        self.anomalies: list[Anomaly] = []
        self.rounds = 0
        self._reported_exits: set[int] = set()
        self._lazy_caller: Caller | None = None

    @property
    def _caller(self) -> Caller:
        # Built on first use: the cluster writes its credentials when it starts.
        if self._lazy_caller is None:
            self._lazy_caller = Caller(
                self.chaos.cluster.cluster,
                auth=client_credentials(self.chaos.cluster.client_cluster_file()),
                connect_timeout=self.timeout,
            )
        return self._lazy_caller

    def leader(self) -> int | None:
        """The node that last said it leads, in the highest term heard of."""
        leaders = [
            (x.reply.term, node) for node, x in self.latest.items() if x.reply.role == "leader"
        ]
        return max(leaders)[1] if leaders else None

    def max_epoch(self) -> int:
        return max((x.reply.epoch for x in self.latest.values()), default=0)

    async def _one(self, node: int) -> None:
        address = self.chaos.cluster.addresses[node]
        try:
            reply = await self._caller.call(address, protocol.NodeStatus(), self.timeout)
        except Exception:  # unreachable this round, whatever the reason: no sample
            return
        if not isinstance(reply, protocol.NodeStatusReply):
            return
        now = self.history.now()
        self.latest[node] = Latest(now, reply)
        recovery = reply.recovery
        sample = NodeSample(
            time=now,
            node=reply.node_id,
            pid=reply.pid,
            role=reply.role,
            term=reply.term,
            commit_index=reply.commit_index,
            applied_index=reply.applied_index,
            epoch=reply.epoch,
            director_epoch=int(recovery.get("epoch") or 0),
            director_state=str(recovery.get("state") or ""),
            rss_bytes=rss_bytes(reply.pid),
        )
        self.samples.append(sample)
        self.watch.add(sample)

    async def _state(self, node: int) -> None:
        """A digest of the directory this node alone holds (a stale read), for I2:
        its first page (2,000 services; the chaos runs register far fewer), one
        read at one applied index, as the invariant needs."""
        address = self.chaos.cluster.addresses[node]
        try:
            reply = await self._caller.call(address, protocol.ListServices(True), self.timeout)
        except Exception:  # unreachable this round: no sample
            return
        if not isinstance(reply, protocol.ServicesReply):
            return
        digest = hashlib.blake2b(msgspec.msgpack.encode(reply.services), digest_size=8)
        sample = StateSample(self.history.now(), node, reply.index, digest.hexdigest())
        self.states.append(sample)
        self.watch.add_state(sample)

    def _check_exits(self) -> None:
        for node, code in self.chaos.unexpected_exits().items():
            if node in self._reported_exits:
                continue
            self._reported_exits.add(node)
            tail = self.chaos.cluster.log_path(node).read_text(errors="replace")[-1500:]
            self.anomalies.append(
                Anomaly(
                    "node-exited", f"node {node} exited with {code} on its own; log tail:\n{tail}"
                )
            )

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._one(n) for n in self.chaos.nodes))
        self._check_exits()
        if self.rounds % self.state_every == 0:
            await asyncio.gather(*(self._state(n) for n in self.chaos.nodes))
        self.rounds += 1

    async def converge(self, timeout: float) -> bool:  # noqa: ASYNC109 - a polling deadline
        """Once writes stop: sample until every node holds the same applied index
        (so their directories are compared at least once there)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            before = len(self.states)
            await asyncio.gather(*(self._state(n) for n in self.chaos.nodes))
            fresh = self.states[before:]
            if len(fresh) == len(self.chaos.nodes) and len({s.applied_index for s in fresh}) == 1:
                return True
            await asyncio.sleep(0.1)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def close(self) -> None:
        if self._lazy_caller is not None:
            await self._lazy_caller.close()
