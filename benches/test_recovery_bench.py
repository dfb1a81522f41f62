"""Full recovery at 1, 64 and 512 MiB of data, and the disk after 20 failovers.

Each size gets its own cluster of 3 node processes (fsync on, default timers),
loaded with that much data in 100 KB values (16 writers, one value per
transaction), then left until every storage replica has made everything
durable (the database at rest).

- ``test_full_recovery_<size>``: each trial (20 of them) kills the node
  hosting the leader and its Director with SIGKILL; the timed interval runs
  from the kill until a transaction (read version + one write + commit,
  acknowledged only once durable on every log) commits through the new epoch.
  Between trials (untimed) the killed node is restarted and the bench waits
  until the Director has rebuilt a full layout (a log and a serving storage
  replica on every node) and one transaction committed. ``extra_info`` holds
  p50 and max (20 samples: no p99), the mean duration of every recovery phase
  of the epochs that followed the kills, and the disk used by the nodes' data
  directories and the nodes' memory (RSS) after the trials, once the old log
  generations are retired (the last killed node keeps its copy of them until
  it is back and the live epoch sweeps it).
- ``test_disk_after_20_failovers_of_64_mib``: the 64 MiB cluster after 20
  such failovers (run here if the recovery bench did not), at rest and with
  the old log generations retired: the timed interval
  is one walk of the data directories; ``extra_info`` has the bytes used per
  node and in all, the logical data, and the budget (3x the logical data
  + 16 MiB per node).

Targets: p50 at 512 MiB within 1.5x of p50 at 1 MiB, and at most 100 ms; disk
after 20 failovers of 64 MiB within the budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from bedrock_cp import protocol
from bedrock_cp.auth.config import Mode
from bedrock_cp.client import Client, Database, open_database
from bedrock_cp.cluster import LocalCluster
from tests.clusters import eventually, node_caller, recovered
from tests.dataplane_pipeline import disk_bytes

from .cluster_sides import percentiles

TRIALS = 20
FAILOVERS = 20
#: The clusters' authentication (``tls`` by default; ``none`` to compare with runs
#: made before authentication existed).
AUTH: Mode = "none" if os.environ.get("BEDROCK_BENCH_AUTH") == "none" else "tls"
VALUE_SIZE = 100_000
WRITERS = 16
MIB = 1 << 20


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


def value_of(key: bytes) -> bytes:
    seed = hashlib.sha256(key).digest()
    return (seed * (VALUE_SIZE // len(seed) + 1))[:VALUE_SIZE]


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class _Rig:
    """One loaded cluster and what its trials recorded."""

    def __init__(self, runner: asyncio.Runner, size: int) -> None:
        self.runner = runner
        self.size = size
        self.keys = 0
        self.cluster = LocalCluster(3, auth=AUTH)
        self.client: Client | None = None
        self.db: Database | None = None
        self.killed: int | None = None
        self.epoch = 0
        self.failovers = 0
        self.timelines: list[dict[str, Any]] = []
        self.load_seconds = 0.0

    async def start(self) -> None:
        self.cluster.start()
        await self.cluster.wait_ready()
        self.client = await self.cluster.client()
        self.db = await open_database(str(self.cluster.cluster_file))
        st = await recovered(self.client)
        self.epoch = int(st["recovery"]["epoch"])
        started = time.monotonic()
        await self.load()
        self.load_seconds = time.monotonic() - started
        await self.at_rest()

    async def load(self) -> None:
        assert self.db is not None
        db = self.db
        keys = [b"data/%07d" % i for i in range(max(1, self.size // VALUE_SIZE))]
        self.keys = len(keys)

        async def writer(mine: list[bytes]) -> None:
            for key in mine:
                async for tr in db.attempts(timeout=120):
                    async with tr:
                        tr.set(key, value_of(key))

        await asyncio.gather(*(writer(keys[i::WRITERS]) for i in range(WRITERS)))

    async def at_rest(self) -> None:
        """Until every serving replica made all it applied durable."""
        assert self.db is not None
        db = self.db

        async def quiet() -> bool:
            layout = await db.refresh_layout(newer_than=0)
            for ref in layout.storage[0].replicas:
                peer = node_caller(self.cluster, int(ref.node))  # storage status: for nodes
                try:
                    state = await peer.call(ref, protocol.StorageStatus(ref.id), 2.0)
                finally:
                    await peer.close()
                if not isinstance(state, protocol.StorageState) or state.durable < state.applied:
                    return False
            return True

        await eventually(quiet, timeout=120, what="storage at rest")

    async def commit_one(self, key: bytes) -> None:
        assert self.db is not None
        async for tr in self.db.attempts(timeout=60):
            async with tr:
                await tr.read_version()
                tr.set(key, b"v" * 64)

    async def settle(self) -> int:
        """Restart the last victim; wait for a full layout; return the leader to kill."""
        assert self.client is not None and self.db is not None
        client, db = self.client, self.db
        if self.killed is not None:
            self.cluster.restart(self.killed)
            self.killed = None

        async def full() -> tuple[int, int] | None:
            st = await client.status(timeout=1.0)
            if st["recovery"]["state"] != "running" or not all(n["reachable"] for n in st["nodes"]):
                return None
            epoch = int(st["recovery"]["epoch"])
            layout = await db.refresh_layout(newer_than=epoch - 1)
            team = layout.storage[0]
            ok = (
                layout.epoch == epoch
                and len({r.node for r in layout.logs}) == 3
                and len(team.replicas) == 3
                and not team.absent
            )
            return (int(st["leader"]), epoch) if ok else None

        leader, self.epoch = await eventually(full, timeout=60, what="a full layout")
        await self.commit_one(b"settled")
        return leader

    async def after_kill(self) -> None:
        await self.commit_one(f"after-{time.monotonic_ns()}".encode())

    async def record_timeline(self) -> None:
        assert self.client is not None
        st = await recovered(self.client, newer_than=self.epoch, timeout=60)
        for record in st["recovery"]["timeline"]:
            if record["epoch"] == self.epoch + 1 and record["outcome"] == "completed":
                self.timelines.append(record)

    def kill(self, leader: int) -> None:
        self.killed = leader
        self.cluster.kill(leader, signal.SIGKILL)
        self.failovers += 1

    async def retired(self) -> None:
        """Until the old log generations are gone from every node's disk: a
        node that was down keeps its copy of them until it is back and the
        live epoch's Director retires them (seconds later)."""
        assert self.db is not None
        db = self.db

        async def only_current_logs() -> bool:
            layout = await db.refresh_layout(newer_than=0)
            current = {r.id for r in layout.logs}
            for n in self.cluster.addresses:
                workers = self.cluster.directory / f"data-{n}" / "workers"
                logs = {p.name for p in workers.iterdir() if p.name.startswith("log-")}
                if logs - current:
                    return False
            return True

        await eventually(only_current_logs, timeout=60, what="old log generations retired")

    def disk(self) -> dict[str, Any]:
        used = {n: disk_bytes(self.cluster.directory / f"data-{n}") for n in self.cluster.addresses}
        logical = self.keys * VALUE_SIZE
        return {
            "disk_bytes_per_node": used,
            "disk_bytes_total": sum(used.values()),
            "logical_bytes": logical,
            "budget_bytes": 3 * logical + 16 * MIB * len(used),
            "failovers": self.failovers,
            "rss_mb_per_node": {n: _rss_mb(p.pid) for n, p in self.cluster.procs.items()},
        }

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
        if self.client is not None:
            await self.client.close()
        self.cluster.stop()
        self.cluster.cleanup()


class _Rigs:
    """At most one loaded cluster at a time (the sizes run one after the other)."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner
        self.current: _Rig | None = None

    def get(self, size: int) -> _Rig:
        if self.current is not None and self.current.size == size:
            return self.current
        self.close()
        rig = _Rig(self.runner, size)
        self.current = rig
        self.runner.run(rig.start())
        return rig

    def close(self) -> None:
        if self.current is not None:
            self.runner.run(self.current.close())
            self.current = None


@pytest.fixture(scope="module")
def rigs(runner: asyncio.Runner) -> Iterator[_Rigs]:
    r = _Rigs(runner)
    try:
        yield r
    finally:
        r.close()


def _full_recovery(benchmark: Any, runner: asyncio.Runner, rig: _Rig) -> None:
    benchmark.group = "full recovery (SIGKILL leader+Director node -> txn committed)"

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        return (runner.run(rig.settle()),), {}

    # The recovery's timeline is read in the next (untimed) setup.
    pending: list[bool] = []

    def setup_and_record() -> tuple[tuple[int], dict[str, Any]]:
        if pending:
            runner.run(rig.record_timeline())
            pending.clear()
        return setup()

    def trial(leader: int) -> None:
        rig.kill(leader)
        runner.run(rig.after_kill())
        pending.append(True)

    benchmark.pedantic(trial, setup=setup_and_record, rounds=TRIALS, warmup_rounds=0)
    if pending:
        runner.run(rig.record_timeline())
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
    benchmark.extra_info["data_mib"] = rig.size // MIB
    benchmark.extra_info["load_seconds"] = round(rig.load_seconds, 1)
    runner.run(rig.settle())
    runner.run(rig.retired())
    benchmark.extra_info.update(rig.disk())
    assert len(rig.timelines) >= TRIALS // 2, "too few recoveries were recorded"


def test_full_recovery_1_mib(benchmark: Any, runner: asyncio.Runner, rigs: _Rigs) -> None:
    _full_recovery(benchmark, runner, rigs.get(1 * MIB))


def test_full_recovery_64_mib(benchmark: Any, runner: asyncio.Runner, rigs: _Rigs) -> None:
    _full_recovery(benchmark, runner, rigs.get(64 * MIB))


def test_disk_after_20_failovers_of_64_mib(
    benchmark: Any, runner: asyncio.Runner, rigs: _Rigs
) -> None:
    benchmark.group = "disk after 20 failovers of a 64 MiB database (one walk of the data dirs)"
    rig = rigs.get(64 * MIB)
    while rig.failovers < FAILOVERS:
        rig.kill(runner.run(rig.settle()))
        runner.run(rig.after_kill())
    runner.run(rig.settle())
    runner.run(rig.at_rest())
    runner.run(rig.retired())
    result: dict[str, Any] = {}
    benchmark.pedantic(lambda: result.update(rig.disk()), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["failovers"] >= FAILOVERS


def test_full_recovery_512_mib(benchmark: Any, runner: asyncio.Runner, rigs: _Rigs) -> None:
    _full_recovery(benchmark, runner, rigs.get(512 * MIB))
