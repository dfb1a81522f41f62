"""The two sides of the cluster benchmarks, each behind the same small interface.

:class:`OursSide` runs a :class:`~bedrock_cp.cluster.LocalCluster` (3 real node
processes, fsync on, default timers) and writes with the product's own client;
:class:`EtcdSide` runs :class:`.etcd.EtcdCluster` and writes through the
gateway. Both run on one event loop owned by an ``asyncio.Runner`` so that
pytest-benchmark's synchronous targets can drive them, and both know how to
lose their leader (SIGKILL or SIGSTOP) and how to get back to a settled
cluster (untimed, in a round's setup).
"""

from __future__ import annotations

import asyncio
import math
import signal
from pathlib import Path
from typing import Any

from bedrock_cp.auth.config import Mode
from bedrock_cp.client import Client, resolve_cluster
from bedrock_cp.cluster import LocalCluster

from . import etcd

WRITERS = 64  # concurrent writers in the throughput benchmarks
WRITES_PER_WRITER = 16


def percentiles(data: list[float]) -> dict[str, float]:
    """p50/max (nearest rank) and the trial count, in milliseconds; p99 too, but
    only from 100 samples on (below that it would only be the max renamed)."""
    xs = sorted(data)
    if not xs:
        return {}

    def rank(p: float) -> float:
        return xs[max(0, math.ceil(p * len(xs)) - 1)]

    out = {
        "trials": len(xs),
        "p50_ms": round(rank(0.50) * 1e3, 3),
        "max_ms": round(xs[-1] * 1e3, 3),
        "min_ms": round(xs[0] * 1e3, 3),
    }
    if len(xs) >= 100:
        out["p99_ms"] = round(rank(0.99) * 1e3, 3)
    return out


class OursSide:
    """A 3-node bedrock_cp cluster of real processes plus one client."""

    name = "ours"

    def __init__(
        self,
        runner: asyncio.Runner,
        directory: Path,
        *,
        attempt_timeout: float | None = None,
        auth: Mode = "tls",
    ) -> None:
        self.runner = runner
        self.cluster = LocalCluster(3, directory=directory, fsync=True, auth=auth)
        # None: the client's default (what users get).
        self.attempt_timeout = attempt_timeout
        self.client: Client | None = None
        self.down: int | None = None  # node killed or stopped by the last trial
        self.down_signal = signal.SIGKILL
        self.seq = 0

    @property
    def settings(self) -> dict[str, Any]:
        t = self.cluster.timers
        return {
            "tick_ms": t.tick_ms,
            "heartbeat_ms": t.heartbeat_ms,
            "election_timeout_ms": f"{t.election_timeout_ms}-{2 * t.election_timeout_ms}",
            "fsync": self.cluster.fsync,
            "nodes": len(self.cluster.addresses),
            "client_attempt_timeout_s": self.attempt_timeout or "default",
            "auth": self.cluster.auth,
        }

    def start(self) -> None:
        self.cluster.start()
        self.runner.run(self.cluster.wait_ready())
        if self.attempt_timeout is None:
            self.client = self.runner.run(self.cluster.client())
        else:
            cf = resolve_cluster(self.cluster.cluster_file)
            self.client = Client(cf, attempt_timeout=self.attempt_timeout)
            self.runner.run(self.client.ping_any(5.0))

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.runner.run(self.client.close())
        finally:
            self.cluster.stop()

    def _key(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq}"

    async def write(self, prefix: str = "svc") -> None:
        assert self.client is not None
        await self.client.register(self._key(prefix), kind="log", address="127.0.0.1:9000")

    async def write_many(self, writers: int, each: int) -> None:
        async def writer(w: int) -> None:
            for _ in range(each):
                await self.write(f"w{w}")

        await asyncio.gather(*(writer(w) for w in range(writers)))

    # -- failover trials ---------------------------------------------------------------

    async def settle(self) -> int:
        """Bring back the node the last trial took down; wait until all caught up.

        Returns the leader, with the client already writing to it.
        """
        c = self.cluster
        if self.down is not None:
            if self.down_signal == signal.SIGKILL:
                c.kill(self.down)  # reaps it (already dead)
                c.restart(self.down)
            else:
                c.resume(self.down)
            self.down = None
        await c.wait_ready(timeout=30.0)
        assert self.client is not None
        index = await self.client.register(self._key("settle"), kind="log", address="x:1")

        async def caught_up() -> bool:
            assert self.client is not None
            st = await self.client.status(timeout=1.0)
            nodes = [n for n in st["nodes"] if n["reachable"]]
            return len(nodes) == len(c.addresses) and all(
                n["applied_index"] >= index and n["leader"] == st["leader"] for n in nodes
            )

        await _eventually(caught_up, timeout=20.0, what="every node caught up")
        return await c.wait_ready(timeout=10.0)

    def lose_leader(self, leader: int, sig: int) -> None:
        """Send ``sig`` to the leader's process and return at once (no reaping)."""
        self.down, self.down_signal = leader, sig
        self.cluster.procs[leader].send_signal(sig)

    async def write_after_failover(self) -> None:
        await self.write("failover")


class EtcdSide:
    """A 3-member etcd cluster plus keep-alive gateway connections to its leader."""

    name = "peer"

    def __init__(self, runner: asyncio.Runner, directory: Path) -> None:
        self.runner = runner
        self.cluster = etcd.EtcdCluster(directory)
        self.leader = 0
        self.conns: list[etcd.HttpConnection] = []
        self.down: int | None = None
        self.down_signal = signal.SIGKILL
        self.seq = 0

    @property
    def settings(self) -> dict[str, Any]:
        return self.cluster.settings

    def start(self) -> None:
        self.cluster.start()
        self.leader = self.runner.run(self.cluster.wait_settled())

    def stop(self) -> None:
        try:
            self.runner.run(self._close_conns())
        finally:
            self.cluster.stop()

    async def _close_conns(self) -> None:
        conns, self.conns = self.conns, []
        for conn in conns:
            await conn.close()

    def _conn(self, i: int) -> etcd.HttpConnection:
        while len(self.conns) <= i:
            self.conns.append(etcd.HttpConnection(self.cluster.members[self.leader].endpoint))
        return self.conns[i]

    def _key(self, prefix: str) -> bytes:
        self.seq += 1
        return f"svc/{prefix}-{self.seq}".encode()

    async def write(self, prefix: str = "svc", conn: int = 0) -> None:
        # The same content as a Register: kind and address.
        await etcd.put(
            self._conn(conn), self._key(prefix), b'{"kind":"log","address":"127.0.0.1:9000"}'
        )

    async def write_many(self, writers: int, each: int) -> None:
        async def writer(w: int) -> None:
            for _ in range(each):
                await self.write(f"w{w}", conn=w)

        await asyncio.gather(*(writer(w) for w in range(writers)))

    # -- failover trials ---------------------------------------------------------------

    async def settle(self) -> int:
        c = self.cluster
        if self.down is not None:
            if self.down_signal == signal.SIGKILL:
                c.reap(self.down)
                c.spawn(self.down)
            else:
                c.signal(self.down, signal.SIGCONT)
            self.down = None
        await self._close_conns()
        self.leader = await c.wait_settled()
        await self.write("settle")  # the connection to the leader is open and warm
        return self.leader

    def lose_leader(self, leader: int, sig: int) -> None:
        self.down, self.down_signal = leader, sig
        self.cluster.signal(leader, sig)

    async def write_after_failover(self) -> None:
        survivors = [m.endpoint for i, m in enumerate(self.cluster.members) if i != self.down]
        await etcd.put_until_committed(
            survivors, self._key("failover"), b'{"kind":"log","address":"127.0.0.1:9000"}'
        )


Side = OursSide | EtcdSide


def measure_throughput(benchmark: Any, runner: asyncio.Runner, side: Side, rounds: int) -> None:
    """``rounds`` rounds of WRITERS x WRITES_PER_WRITER concurrent writes; writes/s in
    ``extra_info``."""
    runner.run(side.settle())
    total = WRITERS * WRITES_PER_WRITER

    def many() -> None:
        runner.run(side.write_many(WRITERS, WRITES_PER_WRITER))

    benchmark.pedantic(many, rounds=rounds, warmup_rounds=1)
    assert benchmark.stats is not None
    benchmark.extra_info["writers"] = WRITERS
    benchmark.extra_info["writes_per_round"] = total
    benchmark.extra_info["writes_per_s"] = round(total / benchmark.stats.stats.mean)


async def _eventually(check: Any, *, timeout: float, what: str) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while loop.time() < deadline:
        try:
            if await check():
                return
        except Exception as exc:  # mid-failover
            last = exc
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{what}: not within {timeout:g}s (last: {last!r})")
