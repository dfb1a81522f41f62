"""A real in-process RecoveryContext for Director tests.

Real workers (:class:`LogWorker`, :class:`StorageWorker`, :class:`Sequencer`,
:class:`Resolver`, :class:`CommitProxy`) in temp directories behind a
:class:`LoopbackDialer`; nodes that can be taken down (unreachable, like a
dead node) or stopped (silent: a call lasts its whole timeout, like a
SIGSTOPped node's); the Raft traffic of the nodes named in ``raft_peers`` (the
Director's node hears them at every instant while they run, and last when they
were stopped or taken down); a fake "consensus" holding the stored layout and the current
epoch, which also plays the gateways (storage follows the stored layout).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from bedrock_cp import protocol
from bedrock_cp.dataplane.commit_proxy import CommitProxy
from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.resolver import Resolver
from bedrock_cp.dataplane.sequencer import Sequencer
from bedrock_cp.dataplane.storage import StorageWorker
from bedrock_cp.director import Attempt, Director
from bedrock_cp.director.context import NodeInfo, Parameters, Superseded
from bedrock_cp.director.phases import RecoveryPhase
from bedrock_cp.protocol import KeyRange, Layout, Mutation, MutationKind, WorkerRef, decode_layout

from .loopback import LoopbackDialer, StoppableWorker

CLUSTER = "director-test"
#: Every TestCluster not closed yet (see :func:`closes_clusters`).
_LIVE: list[TestCluster] = []
PARAMS = Parameters(
    desired_logs=3,
    storage_replicas=2,
    commit_proxies=2,
    resolvers=2,
    lock_timeout=0.5,
    call_timeout=2.0,
)


def closes_clusters(
    test: Callable[[Path], Awaitable[None]],
) -> Callable[[Path], Awaitable[None]]:
    """Decorate an async test taking ``tmp_path``: its clusters are closed even if it
    fails (a worker left running would keep the test's process from exiting)."""

    @functools.wraps(test)
    async def wrapper(tmp_path: Path) -> None:
        try:
            await test(tmp_path)
        finally:
            while _LIVE:
                await _LIVE.pop().close()

    return wrapper


class HarnessDialer(LoopbackDialer):
    """The loopback network plus what a node does: dead nodes, and ``Health``."""

    def __init__(self, cluster: TestCluster) -> None:
        super().__init__()
        self.cluster = cluster

    async def call(
        self,
        ref: WorkerRef,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        if ref.node in self.cluster.down:
            raise ConnectionRefusedError(f"node {ref.node} is down")
        if isinstance(body, protocol.Health):
            self.cluster.health_calls[ref.node] += 1
        await self.cluster.silence(ref.node, timeout)
        if isinstance(body, protocol.Health):
            worker = self.cluster.workers.get(body.worker)
            if worker is None or worker.stopped:
                return protocol.Failed("no_such_worker", body.worker)
            return protocol.Done()
        if isinstance(body, protocol.ListWorkers):  # the node's Foreman
            return protocol.Workers(
                [
                    protocol.WorkerInfo(w.ref, "running", "", self.cluster.epochs.get(i, 0))
                    for i, w in sorted(self.cluster.workers.items())
                    if w.ref.node == ref.node and not w.stopped
                ]
            )
        return await super().call(ref, body, timeout)


class TestCluster:
    """Nodes ``n1..nN`` (capabilities log, storage), their workers, and consensus."""

    __test__ = False

    def __init__(self, root: Path, nodes: int = 3, *, window_seconds: float = 5.0) -> None:
        self.root = root
        #: The storage replicas' MVCC window: how soon committed versions are flushed.
        self.window_seconds = window_seconds
        self.dialer = HarnessDialer(self)
        self.workers: dict[str, StoppableWorker] = {}
        #: The epoch each worker or role was created for (as its manifest says).
        self.epochs: dict[str, int] = {}
        self.nodes: dict[str, NodeInfo] = {
            f"n{i}": NodeInfo(f"n{i}", f"127.0.0.1:{7000 + i}", ["log", "storage"])
            for i in range(1, nodes + 1)
        }
        self.down: set[str] = set()
        #: Nodes that answer nothing and reset nothing (stopped, not dead).
        self.stopped: set[str] = set()
        #: Nodes whose Raft traffic the Director's node hears (see :meth:`TestContext.last_heard`).
        self.raft_peers: set[str] = set()
        #: Nodes whose Raft traffic stopped although they answer (see :meth:`mute`).
        self.raft_muted: set[str] = set()
        #: When each node went silent (:meth:`pause`, :meth:`mute`).
        self.silent_since: dict[str, float] = {}
        #: ``Health`` calls each node was sent.
        self.health_calls: Counter[str] = Counter()
        #: The node of every worker creation asked for, in order.
        self.creations: list[str] = []
        self.layout: bytes | None = None
        self.epoch = 0
        self.retiring: dict[str, protocol.RetiredWorker] = {}
        self.ids = itertools.count(1)
        _LIVE.append(self)

    def context(self, epoch: int, node: str = "n1", parameters: Parameters = PARAMS) -> TestContext:
        """A Director's context for ``epoch`` (consensus begins that epoch)."""
        self.epoch = max(self.epoch, epoch)
        return TestContext(self, epoch, node, parameters)

    def pause(self, node: str) -> None:
        """Stop ``node`` (as SIGSTOP would): silent from now on, Raft traffic included."""
        self.silent_since.setdefault(node, time.monotonic())
        self.stopped.add(node)

    def kill(self, node: str) -> None:
        """Take ``node`` down (as kill -9 would): unreachable from now on."""
        self.down.add(node)

    def mute(self, node: str) -> None:
        """Stop ``node``'s Raft traffic only (a slow coordinator WAL): it still answers."""
        self.silent_since.setdefault(node, time.monotonic())
        self.raft_muted.add(node)

    async def silence(self, node: str, timeout: float) -> None:  # noqa: ASYNC109
        """A call to a stopped ``node`` times out (after ``timeout``); others go on."""
        if node in self.stopped:
            await asyncio.sleep(timeout)
            raise TimeoutError(f"node {node} did not answer within {timeout:g}s")

    def current(self) -> Layout | None:
        return None if self.layout is None else decode_layout(self.layout)

    def add(self, worker: StoppableWorker) -> None:
        self.workers[worker.ref.id] = worker
        self.dialer.register(worker)

    async def remove(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id, None)
        self.dialer.unregister(worker_id)
        if worker is not None:
            await worker.stop()

    def running(self) -> set[str]:
        return {i for i, w in self.workers.items() if not w.stopped}

    async def close(self) -> None:
        for worker_id in list(self.workers):
            await self.remove(worker_id)

    # -- using a layout's pipeline --------------------------------------------------------

    async def call(self, ref: WorkerRef, body: protocol.Request) -> protocol.Response:
        return await self.dialer.call(ref, body, 5.0)

    async def read_version(self, layout: Layout) -> int:
        rv = await self.call(
            layout.sequencer, protocol.GetReadVersion(layout.sequencer.id, layout.epoch)
        )
        assert isinstance(rv, protocol.ReadVersion), rv
        return rv.version

    async def commit(self, layout: Layout, key: bytes, value: bytes) -> protocol.Response:
        """Commit ``key = value`` through ``layout``; a refusal of its read version is
        returned as the answer (an epoch that is over refuses already there)."""
        proxy = layout.proxies[0]
        rv = await self.call(
            layout.sequencer, protocol.GetReadVersion(layout.sequencer.id, layout.epoch)
        )
        if not isinstance(rv, protocol.ReadVersion):
            return rv
        body = protocol.Commit(
            proxy.id,
            rv.version,
            [KeyRange.single(key)],
            [],
            [Mutation(MutationKind.SET, key, value)],
        )
        return await self.call(proxy, body)

    async def get(self, layout: Layout, key: bytes) -> bytes | None:
        """Read ``key`` at a current read version from the first replica that serves it."""
        version = await self.read_version(layout)
        team = next(t for t in layout.storage if t.begin <= key < t.end)
        for _ in range(100):
            answer = await self.call(
                team.replicas[0], protocol.StorageGet(team.replicas[0].id, key, version)
            )
            if isinstance(answer, protocol.Value):
                return answer.value
            await asyncio.sleep(0.02)
        raise AssertionError(f"storage never served {key!r} at {version}")


class TestContext:
    """The :class:`~bedrock_cp.director.context.RecoveryContext` of one Director."""

    __test__ = False

    def __init__(self, cluster: TestCluster, epoch: int, node: str, parameters: Parameters) -> None:
        self.cluster = cluster
        self.epoch = epoch
        self.node = node
        self.address = cluster.nodes[node].address
        self.parameters = parameters

    async def stored_layout(self) -> bytes | None:
        return self.cluster.layout

    async def nodes(self) -> list[NodeInfo]:
        """The nodes, each with the log and storage workers running there (as the
        directory lists what the nodes' Gateways registered)."""
        c = self.cluster
        return [
            NodeInfo(
                n.node,
                n.address,
                n.capabilities,
                [
                    w.ref
                    for _, w in sorted(c.workers.items())
                    if w.ref.node == n.node and w.ref.kind in ("log", "storage") and not w.stopped
                ],
            )
            for n in c.nodes.values()
        ]

    async def call(
        self,
        ref: WorkerRef,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        return await self.cluster.dialer.call(ref, body, timeout)

    async def create_worker(self, node: NodeInfo, kind: str, worker_id: str) -> WorkerRef:
        c = self.cluster
        if node.node in c.down:
            raise ConnectionRefusedError(f"node {node.node} is down")
        c.creations.append(node.node)
        await c.silence(node.node, self.parameters.call_timeout)
        ref = WorkerRef(worker_id, kind, node.node, node.address)
        directory = c.root / node.node / worker_id
        worker: LogWorker | StorageWorker
        if kind == "log":
            worker = LogWorker(ref, directory, cluster_id=CLUSTER, fsync=False, dialer=c.dialer)
        elif kind == "storage":
            worker = StorageWorker(
                ref,
                directory,
                c.dialer,
                cluster_id=CLUSTER,
                fsync=False,
                window_seconds=c.window_seconds,
            )
            if (layout := c.current()) is not None:
                worker.set_layout(layout)
        else:
            raise ValueError(f"no worker kind {kind!r}")
        c.add(worker)
        c.epochs[worker_id] = self.epoch
        return ref

    async def remove_worker(self, ref: WorkerRef) -> None:
        await self.cluster.remove(ref.id)
        shutil.rmtree(self.cluster.root / ref.node / ref.id, ignore_errors=True)

    async def start_role(
        self, kind: str, worker_id: str, version: int, layout: bytes, token: bytes
    ) -> WorkerRef:
        ref = WorkerRef(worker_id, kind, self.node, self.address)
        decoded = decode_layout(layout)
        role: Sequencer | Resolver | CommitProxy
        if kind == "sequencer":
            role = Sequencer(
                ref,
                self.epoch,
                version,
                clock=time.monotonic,
                logs=decoded.logs,
                dialer=self.cluster.dialer,
            )
        elif kind == "resolver":
            mine = next(r for r in decoded.resolvers if r.worker.id == worker_id)
            role = Resolver(ref, self.epoch, version, KeyRange(mine.begin, mine.end))
        elif kind == "commit_proxy":
            role = CommitProxy(ref, self.epoch, decoded, self.cluster.dialer, token=token)
        else:
            raise ValueError(f"no role {kind!r}")
        self.cluster.add(role)
        self.cluster.epochs[worker_id] = self.epoch
        return ref

    async def stop_role(self, ref: WorkerRef) -> None:
        await self.cluster.remove(ref.id)

    async def store_layout(self, layout: bytes) -> None:
        c = self.cluster
        if c.epoch != self.epoch:
            raise Superseded(f"epoch {self.epoch} is not current (now {c.epoch})")
        c.layout = layout
        decoded = decode_layout(layout)
        for worker in c.workers.values():  # the gateways: storage follows the TSL
            if isinstance(worker, StorageWorker):
                worker.set_layout(decoded)

    async def retiring(self) -> list[protocol.RetiredWorker]:
        return [self.cluster.retiring[i] for i in sorted(self.cluster.retiring)]

    async def retire_workers(self, workers: list[protocol.RetiredWorker]) -> None:
        if self.cluster.epoch != self.epoch:
            raise Superseded(f"epoch {self.epoch} is not current (now {self.cluster.epoch})")
        for w in workers:
            self.cluster.retiring.setdefault(w.id, w)

    async def forget_retired(self, ids: list[str]) -> None:
        if self.cluster.epoch != self.epoch:
            raise Superseded(f"epoch {self.epoch} is not current (now {self.cluster.epoch})")
        for worker_id in ids:
            self.cluster.retiring.pop(worker_id, None)

    def clock(self) -> float:
        return time.monotonic()

    async def next_round(self, interval: float) -> None:
        await asyncio.sleep(interval)

    def last_heard(self, node: str) -> float | None:
        """Raft traffic from ``node``: heard now while it runs, last when it was
        paused or muted; None for this node itself, nodes not in ``raft_peers``
        and killed ones (a dead node's connections are reset: the node forgets it)."""
        c = self.cluster
        if node == self.node or node not in c.raft_peers or node in c.down:
            return None
        if node in c.stopped or node in c.raft_muted:
            return c.silent_since.get(node, 0.0)
        return time.monotonic()

    def random_token(self) -> bytes:
        return os.urandom(16)

    def new_worker_id(self, kind: str) -> str:
        return f"{kind}-e{self.epoch}-{next(self.cluster.ids)}"


async def epoch_one(cluster: TestCluster, commits: int = 5, **director: object) -> Layout:
    """A live epoch 1 (a Director over a new cluster) with ``commits`` transactions;
    the Director is stopped again (its epoch's workers and roles keep running)."""
    d = Director(cluster.context(1), **director)  # type: ignore[arg-type]
    task = asyncio.create_task(d.run())
    for _ in range(500):
        if d.layout is not None:
            break
        await asyncio.sleep(0.01)
    layout = d.layout
    assert layout is not None
    for i in range(commits):
        assert isinstance(await cluster.commit(layout, b"k%d" % i, b"v%d" % i), protocol.Committed)
    await d.stop()
    assert task.cancelled()
    return layout


async def run_phases(attempt: Attempt, ctx: TestContext, before: str) -> None:
    """Run the recovery phases in order up to (not including) ``before`` ("end": all)."""
    for phase in RecoveryPhase:
        if phase == before:
            return
        if attempt.new_cluster and phase.skipped_for_new_cluster:
            continue
        await phase.run(attempt, ctx)
    assert before == "end", f"no phase {before}"
