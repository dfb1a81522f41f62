"""Full recovery: kill -9 of the node hosting the leader and its Director ->
the first committed transaction (3 node processes, fsync on, default timers).

Each trial (>= 20) kills the leader's node with SIGKILL and times, from the
kill, until a transaction (read version + one write + commit, acknowledged
only once durable on every log) commits through the new epoch's pipeline.
Between trials (untimed) the killed node is restarted and the bench waits until
the Director has rebuilt a full layout (a log and a storage replica per node).
``extra_info`` holds p50/p99/max and the mean duration of every recovery phase
of the epochs that followed the kills. DESIGN §10 target: p50 <= 100 ms.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from bedrock_cp.client import Client, Database, open_database
from bedrock_cp.cluster import LocalCluster
from tests.clusters import recovered

from .cluster_sides import percentiles

TRIALS = 20


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


class _Rig:
    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.cluster = LocalCluster(3)
        self.client: Client | None = None
        self.db: Database | None = None
        self.killed: int | None = None
        self.epoch = 0
        self.timelines: list[dict[str, Any]] = []

    async def start(self) -> None:
        self.cluster.start()
        await self.cluster.wait_ready()
        self.client = await self.cluster.client()
        self.db = await open_database(str(self.cluster.cluster_file))
        st = await recovered(self.client)
        self.epoch = int(st["recovery"]["epoch"])
        await self.commit_one(b"warmup")

    async def commit_one(self, key: bytes) -> None:
        assert self.db is not None
        async for tr in self.db.attempts(timeout=30):
            async with tr:
                await tr.read_version()
                tr.set(key, b"v" * 64)

    async def settle(self) -> int:
        """Restart the last victim; wait for a full layout; return the leader to kill."""
        assert self.client is not None and self.db is not None
        if self.killed is not None:
            self.cluster.restart(self.killed)
            self.killed = None
        for _ in range(400):  # bounded: ~20 s
            st = await recovered(self.client, newer_than=0)
            epoch = int(st["recovery"]["epoch"])
            layout = await self.db.refresh_layout(newer_than=epoch - 1)
            full = (
                len({r.node for r in layout.logs}) == 3
                and len(layout.storage[0].replicas) >= 2
                and layout.epoch == epoch
                and all(n["reachable"] for n in st["nodes"])
            )
            if full:
                self.epoch = layout.epoch
                await self.commit_one(b"settled")
                return int(st["leader"])
            await asyncio.sleep(0.05)
        raise AssertionError("the cluster did not get back to a full layout")

    async def after_kill(self) -> None:
        await self.commit_one(f"after-{time.monotonic_ns()}".encode())

    async def record_timeline(self) -> None:
        assert self.client is not None
        st = await recovered(self.client, newer_than=self.epoch)
        for record in st["recovery"]["timeline"]:
            if record["epoch"] == self.epoch + 1 and record["outcome"] == "completed":
                self.timelines.append(record)

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
        if self.client is not None:
            await self.client.close()


@pytest.fixture(scope="module")
def rig(runner: asyncio.Runner) -> Iterator[_Rig]:
    r = _Rig(runner)
    try:
        runner.run(r.start())
        yield r
    finally:
        runner.run(r.close())
        r.cluster.stop()
        r.cluster.cleanup()


def test_full_recovery_kill_9_leader_and_director(
    benchmark: Any, runner: asyncio.Runner, rig: _Rig
) -> None:
    benchmark.group = "full recovery (SIGKILL leader+Director node -> txn committed)"

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        return (runner.run(rig.settle()),), {}

    def trial(leader: int) -> None:
        rig.killed = leader
        rig.cluster.kill(leader, signal.SIGKILL)
        runner.run(rig.after_kill())
        runner.run(rig.record_timeline())

    benchmark.pedantic(trial, setup=setup, rounds=TRIALS, warmup_rounds=0)
    assert benchmark.stats is not None
    benchmark.extra_info.update(percentiles(list(benchmark.stats.stats.data)))
    phases: dict[str, list[float]] = {}
    for record in rig.timelines:
        for phase in record["phases"]:
            phases.setdefault(phase["phase"], []).append(float(phase["duration_ms"]))
    benchmark.extra_info["phase_mean_ms"] = {
        name: round(statistics.fmean(values), 3) for name, values in phases.items()
    }
    benchmark.extra_info["director_recovery_mean_ms"] = (
        round(statistics.fmean(float(r["duration_ms"]) for r in rig.timelines), 3)
        if rig.timelines
        else None
    )
    assert len(rig.timelines) >= TRIALS // 2, "too few recoveries were recorded"
