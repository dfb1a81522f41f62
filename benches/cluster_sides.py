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
import contextlib
import math
import random
import signal
import time
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bedrock_cp import protocol
from bedrock_cp.auth.config import Mode
from bedrock_cp.client import Client, resolve_cluster
from bedrock_cp.client.client import client_credentials
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import Caller

from . import etcd
from .cpu import CpuPerOperation
from .pysyncobj_side import VALUE, Line, PysyncobjCluster

WRITERS = 64  # concurrent writers in the throughput benchmarks
WRITES_PER_WRITER = 16
#: How often the failover probe writes to each survivor (see OursSide).
PROBE_EVERY = 0.002


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
        # One client (one connection) per concurrent writer, as etcd is driven.
        self.writers: list[Client] = []
        self.down: int | None = None  # node killed or stopped by the last trial
        self.down_signal: int = signal.SIGKILL
        self.seq = 0
        # Per failover trial, wall clock: the signal, the first probe write the
        # survivors committed, and the client's acknowledgement.
        self._lost_at = 0.0
        self.trial_times: list[tuple[float, float, float]] = []
        self._probe: Caller | None = None

    @property
    def settings(self) -> dict[str, Any]:
        t = self.cluster.timers
        return {
            "tick_ms": t.tick_ms,
            "heartbeat_ms": t.heartbeat_ms,
            "election_timeout_ms": f"{t.election_timeout_ms}-{2 * t.election_timeout_ms}",
            "silent_leader_window_ms": f"learned, {2 * t.heartbeat_ms}-{2 * t.election_timeout_ms}",
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
            for c in [*self.writers, *([self.client] if self.client else [])]:
                self.runner.run(c.close())
            if self._probe is not None:
                self.runner.run(self._probe.close())
        finally:
            self.cluster.stop()

    def _key(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq}"

    async def write(self, prefix: str = "svc") -> None:
        assert self.client is not None
        await self.client.register(self._key(prefix), kind="log", address="127.0.0.1:9000")

    async def write_many(self, writers: int, each: int) -> None:
        """``writers`` independent clients, each on its own connection."""
        cf = resolve_cluster(self.cluster.cluster_file)
        while len(self.writers) < writers:  # connected and warm before the first round
            c = Client(cf)
            await c.register(self._key("warm"), kind="log", address="127.0.0.1:9000")
            self.writers.append(c)

        async def writer(w: int) -> None:
            c = self.writers[w]
            for _ in range(each):
                await c.register(self._key(f"w{w}"), kind="log", address="127.0.0.1:9000")

        await asyncio.gather(*(writer(w) for w in range(writers)))

    async def write_many_multiplexed(self, writers: int, each: int) -> None:
        """``writers`` tasks sharing one client (one multiplexed connection)."""

        async def writer(w: int) -> None:
            for _ in range(each):
                await self.write(f"m{w}")

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
        self._lost_at = time.time()
        self.cluster.procs[leader].send_signal(sig)

    async def term(self) -> int:
        """The current term, as a coordinator that knows a leader reports it."""
        assert self.client is not None
        return (await self.client.ping_any(5.0)).term

    async def survivor_ready(self, term_before: int, *, every: float = 0.005) -> None:
        """Return once a survivor says it leads a later term with its first entry
        committed (``Ping`` state ``ready``), asking each survivor every
        ``every`` seconds (the cluster's part of a failover, no client write)."""
        caller = Caller(
            self.cluster.cluster,
            auth=client_credentials(self.cluster.client_cluster_file()),
        )
        survivors = [a for n, a in self.cluster.addresses.items() if n != self.down]

        async def ready(address: str) -> bool:
            try:
                reply = await caller.call(address, protocol.Ping(), timeout=0.5)
            except Exception:  # a survivor busy electing may time out: ask again
                return False
            return (
                isinstance(reply, protocol.PingReply)
                and reply.term > term_before
                and reply.state == "ready"
            )

        try:
            while True:  # polling other processes: no event to wait on
                if any(await asyncio.gather(*(ready(a) for a in survivors))):
                    return
                await asyncio.sleep(every)
        finally:
            await caller.close()

    async def write_after_failover(self) -> None:
        probe = asyncio.ensure_future(self._first_commit_anywhere())
        try:
            await self.write("failover")
            acked = time.time()
            committed = await asyncio.wait_for(asyncio.shield(probe), 15.0)
        finally:
            probe.cancel()
        self.trial_times.append((self._lost_at, committed, acked))

    async def _first_commit_anywhere(self) -> float:
        """When the survivors first commit a write (wall clock): what an
        omniscient client would see. Every ``PROBE_EVERY`` s a write goes to each
        survivor directly (no discovery, no backoff; earlier ones left running)."""
        if self._probe is None:
            auth = client_credentials(self.cluster.client_cluster_file())
            self._probe = Caller(self.cluster.cluster, auth=auth)
        caller = self._probe
        survivors = [a for i, a in self.cluster.addresses.items() if i != self.down]
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        calls: list[asyncio.Future[None]] = []

        async def one(address: str, session: int) -> None:
            with contextlib.suppress(Exception):
                key = self._key("probe")
                body = protocol.Register(key, "log", "127.0.0.1:9000", "", session, 1)
                reply = await caller.call(address, body, 1.0)
                if isinstance(reply, protocol.WriteOk) and not done.done():
                    done.set_result(time.time())

        try:
            for _ in range(int(15.0 / PROBE_EVERY)):
                for address in survivors:
                    calls.append(asyncio.ensure_future(one(address, random.getrandbits(62) | 1)))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(done), PROBE_EVERY)
            raise TimeoutError("no survivor committed a probe write")
        finally:
            for c in calls:
                c.cancel()

    def failover_split(self) -> dict[str, Any]:
        """The trials split into the cluster's share (signal -> the first probe
        write committed) and what the client adds (-> its own write acknowledged)."""
        cluster = percentiles([c - lost for lost, c, _ in self.trial_times])
        added = percentiles([max(0.0, a - c) for _, c, a in self.trial_times])
        return {
            "probe_every_ms": PROBE_EVERY * 1000,
            "cluster_ms_per_trial": [round((c - lost) * 1e3, 3) for lost, c, _ in self.trial_times],
            "client_added_ms_per_trial": [
                round(max(0.0, a - c) * 1e3, 3) for _, c, a in self.trial_times
            ],
            **{f"cluster_{k}": v for k, v in cluster.items() if k != "trials"},
            **{f"client_added_{k}": v for k, v in added.items() if k != "trials"},
        }


class PeerCluster(Protocol):
    """What a peer's cluster offers the bench (etcd's and PySyncObj's)."""

    @property
    def settings(self) -> dict[str, Any]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def spawn(self, index: int) -> None: ...

    def reap(self, index: int) -> None: ...

    def signal(self, index: int, sig: int) -> None: ...

    async def wait_settled(self) -> int: ...


class PeerConnection(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=PeerCluster)
K = TypeVar("K", bound=PeerConnection)


class PeerSide(Generic[C, K]):
    """A peer system's 3 processes plus one connection per client to its leader.

    Subclasses say how to connect to member ``index`` and how to write ``key``.
    During a failover a peer gets the most favourable client we could write: a
    new attempt every 10 ms, round-robin over the survivors, each on a fresh
    connection, earlier ones left running; the first success wins.
    """

    name = "peer"
    members = 3

    def __init__(self, runner: asyncio.Runner, cluster: C) -> None:
        self.runner = runner
        self.cluster = cluster
        self.leader = 0
        self.conns: list[K] = []
        self.down: int | None = None
        self.down_signal: int = signal.SIGKILL
        self.seq = 0

    def connect(self, index: int) -> K:
        raise NotImplementedError

    async def put(self, conn: K, key: bytes) -> None:
        raise NotImplementedError

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

    def _conn(self, i: int) -> K:
        while len(self.conns) <= i:
            self.conns.append(self.connect(self.leader))
        return self.conns[i]

    def _key(self, prefix: str) -> bytes:
        self.seq += 1
        return f"svc/{prefix}-{self.seq}".encode()

    async def write(self, prefix: str = "svc", conn: int = 0) -> None:
        await self.put(self._conn(conn), self._key(prefix))

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

    async def write_after_failover(
        self, *, stagger: float = 0.01, attempt_timeout: float = 1.0, deadline: float = 15.0
    ) -> None:
        survivors = [i for i in range(self.members) if i != self.down]
        key = self._key("failover")
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline
        tasks: set[asyncio.Task[None]] = set()
        last: BaseException | None = None

        async def attempt(index: int) -> None:
            conn = self.connect(index)
            try:
                async with asyncio.timeout(attempt_timeout):
                    await self.put(conn, key)
            finally:
                await conn.close()

        i = 0
        try:
            while loop.time() < give_up:
                tasks.add(asyncio.ensure_future(attempt(survivors[i % len(survivors)])))
                i += 1
                done, _ = await asyncio.wait(
                    tasks, timeout=stagger, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    tasks.discard(task)
                    if (exc := task.exception()) is None:
                        return
                    last = exc
            raise TimeoutError(f"{self.name}: no write committed within {deadline:g}s ({last!r})")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class EtcdSide(PeerSide[etcd.EtcdCluster, etcd.HttpConnection]):
    """A 3-member etcd cluster, written through its v3 HTTP/JSON gateway."""

    name = "peer"

    def __init__(self, runner: asyncio.Runner, directory: Path) -> None:
        super().__init__(runner, etcd.EtcdCluster(directory))

    def connect(self, index: int) -> etcd.HttpConnection:
        return etcd.HttpConnection(self.cluster.members[index].endpoint)

    async def put(self, conn: etcd.HttpConnection, key: bytes) -> None:
        await etcd.put(conn, key, VALUE)  # the same content as a Register


class PysyncobjSide(PeerSide[PysyncobjCluster, Line]):
    """3 PySyncObj processes behind their line front end (see ``pysyncobj_side``)."""

    name = "pysyncobj"

    def __init__(self, runner: asyncio.Runner, directory: Path) -> None:
        super().__init__(runner, PysyncobjCluster(directory))

    def connect(self, index: int) -> Line:
        return Line(self.cluster.client_ports[index])

    async def put(self, conn: Line, key: bytes) -> None:
        await conn.set(key, VALUE)


Side = OursSide | EtcdSide | PysyncobjSide


def measure_throughput(
    benchmark: Any, runner: asyncio.Runner, side: Side, rounds: int, *, multiplexed: bool = False
) -> None:
    """``rounds`` rounds of WRITERS x WRITES_PER_WRITER concurrent writes (one
    connection per writer, or with ``multiplexed`` one client for all: ours only);
    writes/s in ``extra_info``, and for ours the CPU per write of each node and
    of the client (see :mod:`.cpu`)."""
    leader = runner.run(side.settle())
    total = WRITERS * WRITES_PER_WRITER

    def many() -> None:
        if multiplexed:
            assert isinstance(side, OursSide)
            runner.run(side.write_many_multiplexed(WRITERS, WRITES_PER_WRITER))
        else:
            runner.run(side.write_many(WRITERS, WRITES_PER_WRITER))

    if not isinstance(side, OursSide):
        benchmark.pedantic(many, rounds=rounds, warmup_rounds=1)
    else:
        meter = CpuPerOperation.of(side.cluster, leader)
        meter.pedantic(benchmark, many, rounds=rounds, warmup=1)
        benchmark.extra_info["cpu_per_write"] = meter.per_operation(rounds * total)
    assert benchmark.stats is not None
    benchmark.extra_info["writers"] = WRITERS
    benchmark.extra_info["connections"] = 1 if multiplexed else WRITERS
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
