"""A node's metrics: one :class:`~bedrock_cp.metrics.Registry` over its parts.

Most values are read from the parts when scraped (the Raft core's status, the
Director's timeline, the workers' directories), so nothing on a hot path pays
for them; the runner times its fsyncs and the commit proxies their answers
themselves. Served as Prometheus text by :class:`~bedrock_cp.metrics.MetricsServer`
when the node's ``metrics_listen`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..dataplane.metrics import TransactionMetrics
from ..metrics import Histogram, Registry
from ..protocol import Caller, Ping

if TYPE_CHECKING:
    from .node import Node

Samples = Iterable[tuple[Sequence[str], float]]

#: Seconds between two round-trip probes of each peer (only with metrics on).
PROBE_INTERVAL = 1.0
#: Round trips are bucketed finer than the default latency buckets (LAN and loopback).
RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

#: The Raft roles a node can be in (one gauge per role, 1 for the current one).
ROLES = ("follower", "pre_candidate", "candidate", "leader")


def _directory_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walked
                continue
    return total


def node_registry(node: Node, transactions: TransactionMetrics) -> Registry:
    """Every metric of ``node`` (its parts must exist: call after it started)."""
    reg = Registry()
    coordinator = node.coordinator
    assert coordinator is not None
    runner = coordinator.runner

    def raft(key: str) -> Samples:
        status: dict[str, object] = dict(runner.consensus.status())
        value = status[key]
        assert isinstance(value, int)
        return [((), float(value))]

    reg.gauge("raft_term", "The current Raft term", read=lambda: raft("term"))
    reg.gauge(
        "raft_commit_index", "The highest log index known committed", read=lambda: raft("commit")
    )
    reg.gauge(
        "raft_applied_index",
        "The highest index applied to the coordinators' state here",
        read=lambda: [((), float(coordinator.state.applied_index))],
    )
    reg.gauge(
        "raft_role",
        "1 for this node's Raft role",
        ["role"],
        read=lambda: [((r,), 1.0 if coordinator.role == r else 0.0) for r in ROLES],
    )
    reg.gauge(
        "raft_leader_window_ticks",
        "Ticks of silence after which this node would consider its leader lost",
        read=lambda: raft("leader_window"),
    )
    reg.gauge(
        "raft_leader",
        "The leader this node knows (0: none)",
        read=lambda: [((), coordinator.leader_id)],
    )
    reg.counter("raft_proposals", "Entries proposed here", read=lambda: [((), runner.proposals)])
    reg.counter(
        "raft_elections_started",
        "Elections this node started (it became a candidate)",
        read=lambda: [((), coordinator.elections_started)],
    )
    reg.counter(
        "raft_pre_votes_started",
        "Pre-votes this node started (it suspected its leader, or knew none)",
        read=lambda: [((), coordinator.pre_votes_started)],
    )
    reg.counter(
        "raft_leader_changes",
        "Times this node learned of a leader other than the last one it knew",
        read=lambda: [((), coordinator.leader_changes)],
    )
    reg.counter(
        "raft_forged_dropped",
        "Raft messages dropped: their sender was not the authenticated peer",
        read=lambda: raft("forged_dropped"),
    )
    reg.register(runner.persist_seconds)
    reg.register(runner.compaction_seconds)
    reg.gauge("epoch", "The cluster's current epoch", read=lambda: [((), coordinator.state.epoch)])

    def recovery_phases() -> Samples:
        host = node.recovery
        if host is None:
            return []
        done = [r for r in host.status.timeline if r.outcome == "completed"]
        if not done:
            return []
        return [((e.phase,), e.duration_ms / 1000) for e in done[-1].phases]

    reg.gauge(
        "recovery_phase_seconds",
        "Each phase of the last recovery completed by a Director on this node",
        ["phase"],
        read=recovery_phases,
    )

    def recoveries() -> Samples:
        host = node.recovery
        if host is None:
            return []
        counts: dict[str, int] = {}
        for r in host.status.timeline:
            counts[r.outcome or "running"] = counts.get(r.outcome or "running", 0) + 1
        return [((k,), float(v)) for k, v in sorted(counts.items())]

    reg.gauge(
        "recovery_attempts",
        "Recovery attempts of this node's Directors among the last ten, by outcome",
        ["outcome"],
        read=recoveries,
    )
    reg.register(transactions.answers)
    reg.register(transactions.latency)

    def worker_bytes() -> Samples:
        foreman = node.foreman
        if foreman is None:
            return []
        by_kind: dict[str, int] = {}
        for info in foreman.list():
            directory = foreman.workers_dir / info.ref.id
            if directory.is_dir():
                kind = info.ref.kind
                by_kind[kind] = by_kind.get(kind, 0) + _directory_bytes(directory)
        return [((k,), float(v)) for k, v in sorted(by_kind.items())]

    reg.gauge(
        "worker_disk_bytes",
        "Bytes in the data directories of this node's workers, by kind (log, storage)",
        ["kind"],
        read=worker_bytes,
    )
    reg.gauge(
        "coordinator_disk_bytes",
        "Bytes in this node's coordinator WAL and snapshots",
        read=lambda: [((), float(_directory_bytes(Path(node.config.data_dir) / "raft")))],
    )
    return reg


class PeerProber:
    """Measures the round trip to every other coordinator: a ``Ping`` (answered
    from memory, nothing written) each :data:`PROBE_INTERVAL`, over the node's
    own authenticated connections, into ``bedrock_peer_rtt_seconds{peer}``. Runs
    only while metrics are served; a peer that does not answer counts nothing."""

    def __init__(self, dialer: Caller, peers: Callable[[], Mapping[int, str]]) -> None:
        self.dialer = dialer
        self.peers = peers
        self.rtt = Histogram(
            "bedrock_peer_rtt_seconds",
            "Round trip of a Ping to each other coordinator",
            ["peer"],
            RTT_BUCKETS,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            for peer, address in sorted(self.peers().items()):
                started = loop.time()
                try:
                    await self.dialer.call(address, Ping(), PROBE_INTERVAL)
                except Exception:  # down or unreachable: no sample
                    continue
                self.rtt.observe(loop.time() - started, str(peer))
