"""Propose -> commit of an in-process 3-node group: real core, real WALs, fsync on.

Latency: one proposal on the leader until the leader applied it (persisted on
a quorum, each with its own fdatasync). Throughput: 256 proposals in flight,
then wait until all are applied; reported as time per batch (entries/s in
``extra_info``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bedrock_cp.raft import LocalGroup


def _group(tmp_path: Path) -> tuple[LocalGroup, int]:
    group = LocalGroup(3, tmp_path, sync=True)
    return group, group.wait_for_leader()


def test_propose_commit_latency_3_nodes(benchmark: Any, tmp_path: Path) -> None:
    group, leader = _group(tmp_path)
    node = group.members[leader].consensus

    def one() -> None:
        index = node.propose(b"v" * 64)
        group.pump()
        if group.applied_on(leader) < index:
            raise AssertionError("proposal not applied after pumping")

    benchmark.pedantic(one, rounds=200, warmup_rounds=5)


def test_propose_commit_throughput_3_nodes(benchmark: Any, tmp_path: Path) -> None:
    group, leader = _group(tmp_path)
    node = group.members[leader].consensus
    batch = 256

    def many() -> None:
        last = 0
        for _ in range(batch):
            last = node.propose(b"v" * 64)
        group.pump()
        if group.applied_on(leader) < last:
            raise AssertionError("batch not applied after pumping")

    benchmark.pedantic(many, rounds=20, warmup_rounds=1)
    benchmark.extra_info["entries_per_round"] = batch
    if benchmark.stats is not None:
        benchmark.extra_info["entries_per_s"] = round(batch / benchmark.stats.stats.mean)
