"""Sustained directory writes into a growing directory: the rate, the writes'
latency tail, and what the log compactions cost while the state grows.

3 ``bedrock-cp node`` processes (fsync on, default timers, auth tls, the
Director and data plane running), one client multiplexing ``WRITERS`` (64)
tasks, each registering a new service as soon as its last one was
acknowledged, for ``BEDROCK_SUSTAINED_S`` seconds (default 30): every write
adds a service, so the directory grows to a few hundred thousand here. Every
compaction encodes the coordinators' whole state on the event loop, so how
often they run and how long each takes shows in the rate, in the tail, and in
each node's ``bedrock_raft_compaction_seconds`` (count and sum, read from its
metrics at the end; absent before that metric existed).

Timed (``benchmark.pedantic``, one round): the whole run. In ``extra_info``:
writes/s, the per-write latency percentiles (a write: from the call until its
acknowledgement; p50, p99 and max over all of them), the services in the
directory at the end, the leader's CPU per write and the compactions per node.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import uvloop

from bedrock_cp.cluster import LocalCluster
from tests.clusters import recovered_leader

from .cluster_sides import WRITERS, percentiles
from .cpu import usage

SECONDS = float(os.environ.get("BEDROCK_SUSTAINED_S", "30"))
_METRIC = re.compile(r"^bedrock_raft_compaction_seconds_(count|sum) ([0-9.e+-]+)$", re.M)


def _compactions(port: int) -> dict[str, float] | None:
    """A node's compactions so far (count, seconds), from its metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = {name: float(value) for name, value in _METRIC.findall(text)}
    if not found:
        return None
    return {"count": found.get("count", 0.0), "seconds": round(found.get("sum", 0.0), 3)}


async def _sustain(cluster: LocalCluster, latencies: list[float]) -> None:
    """``WRITERS`` tasks on one client register new services for ``SECONDS``."""
    client = await cluster.client()
    try:
        await client.register("warm", kind="log", address="127.0.0.1:9000")
        stop = time.monotonic() + SECONDS

        async def writer(w: int) -> None:
            n = 0
            while time.monotonic() < stop:
                n += 1
                started = time.perf_counter()
                await client.register(f"s{w}-{n}", kind="log", address="127.0.0.1:9000")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    finally:
        await client.close()


@pytest.mark.timeout(SECONDS * 4 + 120)
def test_sustained_writes_into_a_growing_directory(benchmark: Any, tmp_path: Path) -> None:
    cluster = LocalCluster(3, directory=tmp_path / "ours", metrics=True)
    cluster.start()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            leader = runner.run(recovered_leader(cluster))
            pid = cluster.procs[leader].pid
            latencies: list[float] = []
            cpu_before = usage(pid)[0]

            def run() -> None:
                runner.run(_sustain(cluster, latencies))

            benchmark.group = f"sustained directory writes ({WRITERS} tasks on one client)"
            benchmark.pedantic(run, rounds=1, iterations=1)
            cpu = usage(pid)[0] - cpu_before
        assert benchmark.stats is not None
        elapsed = benchmark.stats.stats.mean
        info = benchmark.extra_info
        info["side"] = "ours"
        info["settings"] = {
            "fsync": cluster.fsync,
            "auth": cluster.auth,
            "heartbeat_ms": cluster.timers.heartbeat_ms,
            "snapshot_every": cluster.snapshot_every,
            "seconds": SECONDS,
            "writers": WRITERS,
        }
        info["writes"] = len(latencies)
        info["writes_per_s"] = round(len(latencies) / elapsed)
        info["services_at_end"] = len(latencies) + 1  # each write a new service
        info["leader_cpu_per_write_us"] = round(cpu / len(latencies) * 1e6, 1)
        info.update(percentiles(latencies))
        info["compactions_per_node"] = {
            str(n): _compactions(port) for n, port in cluster.metrics_ports.items()
        }
        info["leader"] = leader
        assert len(latencies) > WRITERS
    finally:
        cluster.stop()
        cluster.cleanup()
