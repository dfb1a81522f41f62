"""Availability under faults: the longest stretch without a committed transaction.

A :class:`~tests.chaos.cluster.ChaosCluster` of 3 or 5 real node processes
(fsync on, default timers, TLS; the nodes dial each other directly: only
process faults) takes a seeded schedule of faults, one at a time, a new one
every 2-5 s: kill -9 of the leader's node (its Director, sequencer, proxy and
resolver die with it) or of a follower's node (a log and a storage replica),
restarted 0.5-3 s later; or SIGSTOP of either, SIGCONT 0.5-3 s later (no
reset: only timeouts can tell). The faults are inflicted by the chaos suite's
:class:`~tests.chaos.nemesis.Nemesis`; the leader is who the status
:class:`~tests.chaos.cluster.Monitor` last saw leading.

Meanwhile ``CLIENTS`` transaction clients, each with its own
:class:`~bedrock_cp.client.Database`, increment a counter of their own
(read + write + commit through ``db.attempts()``, idempotent), and
``DIRECTORY_CLIENTS`` directory clients re-register a service id of their own
with a fresh address, one write after another. Each acknowledged commit or
write is stamped on the monotonic clock when its acknowledgement arrives.

What one run records (``extra_info``), for transactions and directory writes
apart:

- ``longest_gap_ms``: the longest interval between two consecutive
  acknowledgements of any client (the run's edges count as acknowledgements,
  so a stall at the end is not missed);
- ``gaps_over_50ms``: count, p50, p90 and max of those intervals above 50 ms;
- ``by_fault``: each gap above 50 ms is attributed to the last fault that began
  before the gap ended; per fault kind and target role, the count of faults and
  the p50/max of the longest gap each caused (``faults`` lists them one by one);
- ``per_second``: acknowledgements per second over the run.

The history is checked, so that no figure improves by losing writes: every
client's counter at the end holds at least its acknowledged increments and at
most those plus the ones whose outcome stayed unknown; every service id's
final address is at least as new as its last acknowledged one.

``BEDROCK_AVAIL_SECONDS`` sets the faulty stretch (default 60),
``BEDROCK_AVAIL_SEED`` replays a schedule (the seed is printed and kept in
``extra_info``; real processes interleave as they will), ``BEDROCK_AVAIL_LOGS=DIR``
keeps the node logs there. The timed interval
is the whole run (one round; its figures are in ``extra_info``). Kept in
``benches/results/availability-under-faults.json``::

    .venv/bin/pytest benches/test_availability_bench.py -p no:randomly --benchmark-only \\
        --benchmark-json=benches/results/availability-under-faults.json

Figures depend on loopback: a killed process's sockets are reset by the
kernel at once; a stopped one's are not (as a stopped or vanished host).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop

from bedrock_cp.client import (
    Client,
    ClientError,
    Database,
    ErrorCode,
    TransactionError,
    connect,
    open_database,
)
from tests.chaos.cluster import ChaosCluster, Monitor
from tests.chaos.nemesis import Fault, Nemesis
from tests.checking import History, Watch

SECONDS = float(os.environ.get("BEDROCK_AVAIL_SECONDS", "60"))
CLIENTS = 8
DIRECTORY_CLIENTS = 2
#: Gaps longer than this are the ones whose distribution is reported.
GAP_FLOOR = 0.05
KINDS = ("kill-leader", "kill-follower", "pause-leader", "pause-follower")


def seed_from_env() -> int:
    raw = os.environ.get("BEDROCK_AVAIL_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(2**31)


def make_schedule(seed: int, seconds: float) -> list[Fault]:
    """A fault every 2-5 s, each undone 0.5-3 s after it began and before the next."""
    rng = random.Random(seed)
    faults = []
    t = rng.uniform(2.0, 5.0)
    while t < seconds - 1.0:
        spacing = rng.uniform(2.0, 5.0)
        duration = min(rng.uniform(0.5, 3.0), spacing - 0.5)
        kind = rng.choice(KINDS)
        faults.append(Fault(round(t, 3), kind, round(duration, 3), rng.getrandbits(31), False))
        t += spacing
    return faults


@dataclass
class Acks:
    """Acknowledgement times of one kind of operation, and what stayed unknown."""

    times: list[float] = field(default_factory=list)
    acked: dict[int, int] = field(default_factory=dict)
    unknown: dict[int, int] = field(default_factory=dict)
    failed: int = 0
    failures: list[tuple[float, float, str]] = field(default_factory=list)

    def ack(self, client: int) -> None:
        self.times.append(time.monotonic())
        self.acked[client] = self.acked.get(client, 0) + 1

    def unsure(self, client: int) -> None:
        self.unknown[client] = self.unknown.get(client, 0) + 1

    def failure(self, began: float, error: Exception) -> None:
        """A failed attempt (retried): when it began and ended, and why."""
        self.failures.append((began, time.monotonic(), str(error)[:160]))


@dataclass(frozen=True)
class Inflicted:
    fault: Fault
    what: str
    began: float
    healed: float

    @property
    def label(self) -> str:
        """``kill -9 leader``, ``SIGSTOP follower``, ..."""
        action, role = self.fault.kind.split("-")
        return f"{'kill -9' if action == 'kill' else 'SIGSTOP'} {role}"


def _rank(xs: list[float], p: float) -> float:
    return xs[max(0, math.ceil(p * len(xs)) - 1)]


def gaps(times: list[float], start: float, end: float) -> list[tuple[float, float]]:
    """Every (begin, end) between consecutive acknowledgements, the run's edges included."""
    edges = [start, *sorted(t for t in times if start <= t <= end), end]
    return list(itertools.pairwise(edges))


def summarize(acks: Acks, faults: list[Inflicted], start: float, end: float) -> dict[str, Any]:
    spans = gaps(acks.times, start, end)
    long = sorted(b - a for a, b in spans if b - a > GAP_FLOOR)
    worst_by_fault: dict[int, tuple[float, tuple[float, float]]] = {}
    unattributed = 0.0
    for a, b in spans:
        if b - a <= GAP_FLOOR:
            continue
        before = [i for i, f in enumerate(faults) if f.began < b]
        if before:
            if b - a > worst_by_fault.get(before[-1], (0.0, (a, b)))[0]:
                worst_by_fault[before[-1]] = (b - a, (a, b))
        else:
            unattributed = max(unattributed, b - a)
    rows = []
    by_kind: dict[str, list[float]] = {}
    for i, f in enumerate(faults):
        worst, gap = worst_by_fault.get(i, (0.0, (0.0, 0.0)))
        by_kind.setdefault(f.label, []).append(worst)
        rows.append(
            {
                "at_s": round(f.began - start, 3),
                "fault": f.label,
                "what": f.what,
                "lasted_s": round(f.healed - f.began, 3),
                "longest_gap_ms": round(worst * 1e3, 1),
                "gap_at_s": round(gap[0] - start, 3),
                # The failed attempts that overlapped that gap, longest first: why it lasted.
                "failed_attempts": [
                    f"{(b - a) * 1e3:.0f} ms from {a - start:.3f}s: {why}"
                    for a, b, why in sorted(acks.failures, key=lambda x: x[0] - x[1])
                    if a < gap[1] and b > gap[0] and b - a > GAP_FLOOR
                ][:5],
            }
        )
    ms = lambda x: round(x * 1e3, 1)  # noqa: E731
    return {
        "acknowledged": len(acks.times),
        "per_second": round(len(acks.times) / (end - start), 1),
        "longest_gap_ms": ms(max((b - a for a, b in spans), default=end - start)),
        "gaps_over_50ms": {
            "count": len(long),
            "p50_ms": ms(_rank(long, 0.5)) if long else None,
            "p90_ms": ms(_rank(long, 0.9)) if long else None,
            "max_ms": ms(long[-1]) if long else None,
        },
        "by_fault": {
            kind: {
                "faults": len(worst),
                "p50_ms": ms(_rank(sorted(worst), 0.5)),
                "max_ms": ms(max(worst)),
            }
            for kind, worst in sorted(by_kind.items())
        },
        "longest_gap_before_any_fault_ms": ms(unattributed),
        "unknown_outcomes": sum(acks.unknown.values()),
        "failed": acks.failed,
        "faults": rows,
    }


def compact(recoveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recovery records, an epoch's run of stalled attempts shown by its
    first and last (``stalled_attempts`` counts them all): a stall retried
    every few ms would otherwise fill the JSON."""
    out: list[dict[str, Any]] = []
    runs: dict[int, list[dict[str, Any]]] = {}
    for r in recoveries:
        if str(r.get("outcome", "")).startswith("stalled"):
            runs.setdefault(r["epoch"], []).append(r)
        else:
            out.append(r)
    for stalled in runs.values():
        kept = [stalled[0], stalled[-1]] if len(stalled) > 1 else stalled
        out += [{**r, "stalled_attempts": len(stalled)} for r in kept]
    return sorted(out, key=lambda r: (r["epoch"], r["attempt"]))


class _Run:
    def __init__(self, nodes: int, seed: int) -> None:
        self.seed = seed
        self.chaos = ChaosCluster(None, nodes)
        self.history = History()
        self.monitor = Monitor(self.chaos, self.history, Watch(), state_every=50)
        self.txns = Acks()
        self.writes = Acks()
        self.last_write: dict[int, int] = {}
        self.dbs: list[Database] = []
        self.clients: list[Client] = []
        self.recoveries: dict[tuple[int, int], dict[str, Any]] = {}

    async def database(self) -> Database:
        db = await open_database(self.chaos.cluster_file, timeout=10.0)
        self.dbs.append(db)
        return db

    async def client(self) -> Client:
        client = await connect(self.chaos.cluster_file, timeout=10.0)
        self.clients.append(client)
        return client

    @staticmethod
    def key(i: int) -> bytes:
        return b"avail/%d" % i

    async def counter(self, db: Database, i: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async for tr in db.attempts(timeout=20.0):
                    began = time.monotonic()
                    async with tr:
                        n = int(await tr.get(self.key(i)) or b"0")
                        tr.set(self.key(i), b"%d" % (n + 1))
                    if tr.error is not None:
                        self.txns.failure(began, tr.error)
            except TransactionError as err:
                if err.maybe_committed or err.code is ErrorCode.COMMIT_UNKNOWN_RESULT:
                    self.txns.unsure(i)
                else:
                    self.txns.failed += 1
                continue
            self.txns.ack(i)

    async def registrar(self, client: Client, j: int, stop: asyncio.Event) -> None:
        # Each write's number is in the address's host: a port would run out
        # (the registrars stopped after 65,535 writes, 287 s into a 300 s run).
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await client.register(
                    f"avail-{j}", kind="avail", address=f"write-{n}.avail:1", node="avail"
                )
            except (ClientError, OSError, TimeoutError):
                self.writes.unsure(j)
                continue
            self.last_write[j] = n
            self.writes.ack(j)

    async def keep_timelines(self, stop: asyncio.Event) -> None:
        """Every Director's recovery records, as the nodes' status shows them."""
        while not stop.is_set():
            for node, latest in list(self.monitor.latest.items()):
                for record in latest.recovery.get("timeline", []):
                    self.recoveries[node, record["epoch"], record["attempt"]] = record  # type: ignore[index]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def check(self) -> list[str]:
        """What the history lost, if anything (see the module docstring)."""
        problems = []
        db = await self.database()
        for i in range(CLIENTS):
            async for tr in db.attempts(timeout=30.0):
                async with tr:
                    value = int(await tr.get(self.key(i)) or b"0")
            low = self.txns.acked.get(i, 0)
            high = low + self.txns.unknown.get(i, 0)
            if not low <= value <= high:
                problems.append(f"counter {i} is {value}, acknowledged {low}, unknown {high - low}")
        client = await self.client()
        services = {s.id: s.address for s in await client.services()}
        for j, n in self.last_write.items():
            got = services.get(f"avail-{j}", "")
            if not got or int(got.split(".", 1)[0].removeprefix("write-")) < n:
                problems.append(f"service avail-{j} at {got or 'nowhere'}, acknowledged write {n}")
        return problems

    async def close(self) -> None:
        for closable in [*self.dbs, *self.clients]:
            with contextlib.suppress(Exception):
                await closable.close()
        await self.monitor.close()


async def _director_running(run: _Run) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        await run.monitor.poll_once()
        leader = run.monitor.leader()
        if leader is not None and run.monitor.latest[leader].recovery.get("state") == "running":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("no running Director before the faults")


async def availability(nodes: int, seed: int, seconds: float) -> dict[str, Any]:
    schedule = make_schedule(seed, seconds)
    run = _Run(nodes, seed)
    nemesis = Nemesis(run.chaos, run.monitor, run.history, schedule)
    run.chaos.start()
    try:
        await run.chaos.cluster.wait_ready(timeout=60)
        await _director_running(run)
        stop_clients, stop_watch = asyncio.Event(), asyncio.Event()
        dbs = [await run.database() for _ in range(CLIENTS)]
        clients = [await run.client() for _ in range(DIRECTORY_CLIENTS)]
        watchers = [
            asyncio.ensure_future(run.monitor.run(stop_watch)),
            asyncio.ensure_future(run.keep_timelines(stop_watch)),
        ]
        workers = [
            asyncio.ensure_future(run.counter(db, i, stop_clients)) for i, db in enumerate(dbs)
        ]
        workers += [
            asyncio.ensure_future(run.registrar(c, j, stop_clients)) for j, c in enumerate(clients)
        ]
        start = time.monotonic()
        inflicted: list[Inflicted] = []
        for fault in schedule:
            delay = start + fault.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.monotonic()
            what = await nemesis.apply(fault)
            inflicted.append(Inflicted(fault, what, began, time.monotonic()))
        await asyncio.sleep(max(0.0, start + seconds - time.monotonic()))
        end = time.monotonic()
        stop_clients.set()
        _, late = await asyncio.wait(workers, timeout=30)
        for task in late:
            task.cancel()
        for task in workers:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        run.chaos.heal()
        problems = await run.check()
        stop_watch.set()
        await asyncio.gather(*watchers)
        return {
            "seed": seed,
            "nodes": nodes,
            "seconds": round(end - start, 1),
            # The run's start on the machine's monotonic clock (the recoveries' ``started``).
            "started_monotonic": start,
            "transaction_clients": CLIENTS,
            "directory_clients": DIRECTORY_CLIENTS,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "transactions": summarize(run.txns, inflicted, start, end),
            "directory_writes": summarize(run.writes, inflicted, start, end),
            "history_problems": problems,
            "recoveries": compact(
                sorted(
                    ({"node": k[0], **v} for k, v in run.recoveries.items()),
                    key=lambda r: (r["epoch"], r["attempt"]),
                )
            ),
            "nemesis_log": nemesis.log,
        }
    finally:
        await run.close()
        run.chaos.stop()
        keep = os.environ.get("BEDROCK_AVAIL_LOGS")
        if keep:
            out = Path(keep) / f"{nodes}n-seed{seed}"
            out.mkdir(parents=True, exist_ok=True)
            for node, path in run.chaos.logs().items():
                if path.exists():
                    shutil.copy(path, out / f"node-{node}.log")
        run.chaos.cluster.cleanup()


def _bench(benchmark: Any, nodes: int) -> None:
    seed = seed_from_env()
    print(f"BEDROCK_AVAIL_SEED={seed} nodes={nodes} seconds={SECONDS:g}")
    benchmark.group = f"availability under faults ({nodes} nodes, a fault every 2-5 s)"
    result: dict[str, Any] = {}

    def one_run() -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result.update(runner.run(availability(nodes, seed, SECONDS)))

    benchmark.pedantic(one_run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    for what in ("transactions", "directory_writes"):
        figures = result[what]
        print(
            f"{what}: longest gap {figures['longest_gap_ms']} ms, over 50 ms "
            f"{figures['gaps_over_50ms']}, {figures['per_second']}/s, "
            f"by fault {figures['by_fault']}"
        )
    assert not result["history_problems"], result["history_problems"]


@pytest.mark.timeout(int(SECONDS) + 300)
def test_availability_3_nodes(benchmark: Any) -> None:
    _bench(benchmark, 3)


@pytest.mark.timeout(int(SECONDS) + 300)
def test_availability_5_nodes(benchmark: Any) -> None:
    _bench(benchmark, 5)
