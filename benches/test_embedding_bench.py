"""A latency-sensitive host application writing through ``bedrock_cp.connect``.

The host is one uvloop event loop. Beside its writers runs a *ticker*: a task
that sleeps 1 ms at a time and records how late each wake-up was (the loop's
lag: how long something else held the loop). Every figure here is what the
host's own loop sees, against a 3-node cluster on 127.0.0.1 (fsync on, TLS,
default timers), written to through the cluster file with the client's
defaults:

- ``saturated``: 64 writer tasks on one client, each registering services
  back to back for :data:`WINDOW` s; registers/s and the ticker's lag.
- ``rate_5k``: the same 64 tasks, but the host offers 5k writes/s (a pacer
  hands out one permit per 0.2 ms); writes/s achieved and the lag.
- ``control``: the host runs only the ticker while *another process* writes
  at 5k/s through its own client: the lag a busy cluster on this machine
  causes by itself (CPU contention), with no client in the host at all.
- ``embedded_follower`` / ``embedded_leader``: as ``rate_5k`` with node 3
  running *inside* the host's loop (``Node.start`` in-process; nodes 1 and 2
  are processes), once while it follows and once while it leads.
  The lag these add over ``rate_5k`` is what embedding costs the host.

Lag is ``actual wake-up - intended wake-up`` of each 1 ms sleep (uvloop's timer
resolution is 1 ms, so an idle loop reads ~0-1 ms); p99 is reported only with
>= 100 samples (each window has thousands). The timed quantity is the window
itself; the figures are in ``extra_info``. Run:

    .venv/bin/pytest benches/test_embedding_bench.py --benchmark-only -p no:randomly \
        --benchmark-json=benches/results/embedding.json
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import bedrock_cp
from bedrock_cp.client import Client
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.node import Node

from .cluster_sides import percentiles

WRITERS = 64
WINDOW = 4.0
RATE = 5_000
TICK = 0.001


class Ticker:
    """Sleeps :data:`TICK` at a time; records each wake-up's lateness (seconds)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK)
            self.lags.append(max(0.0, time.perf_counter() - start - TICK))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def lag_figures(lags: list[float]) -> dict[str, float]:
    got = percentiles(lags)
    return {f"lag_{k}": v for k, v in got.items() if k != "trials"}


async def host_window(client: Client, rate: float | None) -> dict[str, Any]:
    """64 writers for WINDOW seconds, at ``rate`` writes/s (None: as fast as they can)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WINDOW
    done = 0
    errors = 0
    permits = asyncio.Semaphore(0)
    seq = iter(range(10**9))

    async def writer(w: int) -> None:
        nonlocal done, errors
        while loop.time() < deadline:
            if rate is not None:
                await permits.acquire()
                if loop.time() >= deadline:
                    return
            try:
                await client.register(f"h{w}-{next(seq)}", kind="log", address="127.0.0.1:9")
            except Exception:
                errors += 1
            else:
                done += 1

    async def pacer() -> None:
        assert rate is not None
        start = loop.time()
        handed = 0
        while loop.time() < deadline:
            due = int((loop.time() - start) * rate)
            for _ in range(due - handed):
                permits.release()
            handed = due
            await asyncio.sleep(TICK)
        for _ in range(WRITERS):
            permits.release()  # wake every writer so it sees the deadline

    ticker = Ticker()
    ticker.start()
    started = time.perf_counter()
    tasks = [writer(w) for w in range(WRITERS)]
    if rate is not None:
        tasks.append(pacer())
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    await ticker.stop()
    return {
        "writes_per_s": round(done / elapsed, 1),
        "offered_per_s": rate or "max",
        "errors": errors,
        "writers": WRITERS,
        "window_s": WINDOW,
        "lag_samples": len(ticker.lags),
        **lag_figures(ticker.lags),
    }


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


def _settings(cluster: LocalCluster) -> dict[str, Any]:
    return {
        "auth": cluster.auth,
        "fsync": cluster.fsync,
        "nodes": len(cluster.addresses),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _measure(
    benchmark: Any, runner: asyncio.Runner, group: str, window: Callable[[], Awaitable[Any]]
) -> None:
    result: dict[str, Any] = {}

    def one() -> None:
        result.update(runner.run(window()))  # type: ignore[arg-type]

    benchmark.group = group
    benchmark.pedantic(one, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(group, result)


@pytest.mark.parametrize("rate", [None, RATE], ids=["saturated", "rate_5k"])
def test_host_writing_through_the_client(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path, rate: float | None
) -> None:
    cluster = LocalCluster(3, directory=tmp_path / "c")
    cluster.start()
    try:
        runner.run(cluster.wait_ready())
        client = runner.run(bedrock_cp.connect(cluster.cluster_file))
        try:
            benchmark.extra_info["settings"] = _settings(cluster)
            name = "saturated" if rate is None else f"{rate} writes/s offered"
            _measure(
                benchmark,
                runner,
                f"embedding: host of {WRITERS} writers, {name}",
                lambda: host_window(client, rate),
            )
        finally:
            runner.run(client.close())
    finally:
        cluster.stop()


#: The other process of ``control``: it writes as ``rate_5k``'s host does.
_WRITER_PROCESS = """
import sys, uvloop, bedrock_cp
from benches import test_embedding_bench as b
b.WINDOW = float(sys.argv[2])
async def main():
    client = await bedrock_cp.connect(sys.argv[1])
    print(await b.host_window(client, b.RATE), flush=True)
    await client.close()
uvloop.run(main())
"""


async def ticker_only(seconds: float) -> dict[str, Any]:
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(seconds)
    await ticker.stop()
    return {"lag_samples": len(ticker.lags), **lag_figures(ticker.lags)}


def test_host_ticker_only_beside_a_busy_cluster(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path
) -> None:
    cluster = LocalCluster(3, directory=tmp_path / "c")
    cluster.start()
    try:
        runner.run(cluster.wait_ready())
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER_PROCESS, str(cluster.cluster_file), str(WINDOW + 2)],
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.PIPE,
        )
        try:
            benchmark.extra_info["settings"] = _settings(cluster)

            async def window() -> dict[str, Any]:
                await asyncio.sleep(1.5)  # the other process connected and writing
                return await ticker_only(WINDOW)

            _measure(
                benchmark,
                runner,
                f"embedding: control, host only ticks, another process writes at {RATE}/s",
                window,
            )
            out, _ = writer.communicate(timeout=60)
            benchmark.extra_info["other_process"] = out.decode().strip()
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    finally:
        cluster.stop()


async def _start_embedded(cluster: LocalCluster, want_leader: bool) -> Node:
    """Nodes 1 and 2 as processes, node 3 in this loop; node 3 leads iff ``want_leader``.

    Leadership is moved by restarts, untimed: the in-process node (to lose
    it) or the process that leads (to win it, half the time), up to 20 times.
    """
    cluster.write_files()
    cluster.spawn(1)
    cluster.spawn(2)
    cluster.write_cluster_file()
    node = await Node.start(cluster.node_config(3))
    for _ in range(20):
        leader = await cluster.wait_ready(nodes=[1, 2, 3])
        if (leader == 3) == want_leader:
            return node
        if want_leader:
            cluster.kill(leader)
            await cluster.wait_ready(nodes=[i for i in (1, 2, 3) if i != leader])
            cluster.restart(leader)
        else:
            await node.stop()
            node = await Node.start(cluster.node_config(3))
    await node.stop()
    raise TimeoutError("could not arrange the embedded node's role")


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_host_with_an_embedded_node(
    benchmark: Any, runner: asyncio.Runner, tmp_path: Path, role: str
) -> None:
    cluster = LocalCluster(3, directory=tmp_path / "c")
    try:
        node = runner.run(_start_embedded(cluster, want_leader=role == "leader"))
        try:
            client = runner.run(bedrock_cp.connect(cluster.cluster_file))
            try:
                benchmark.extra_info["settings"] = {**_settings(cluster), "embedded": role}
                _measure(
                    benchmark,
                    runner,
                    f"embedding: host of {WRITERS} writers at {RATE}/s, node 3 embedded ({role})",
                    lambda: host_window(client, RATE),
                )
            finally:
                runner.run(client.close())
        finally:
            runner.run(node.stop())
    finally:
        cluster.stop()
