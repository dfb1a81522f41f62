"""One simulated run: a whole cluster, clients, a nemesis, then the checkers.

:func:`run_seed` builds a :class:`~.cluster.SimCluster` on a fresh
:class:`~bedrock_cp.sim.VirtualClockLoop`, waits until its first Director
runs, fills the bank, and starts the workloads of the chaos tests
(:mod:`tests.chaos.workloads`: list-append transactions through
``db.attempts()`` and as raw single attempts, bank transfers and reads,
directory writes and reads, a directory reader pinned to each coordinator),
the invariant sampler and the nemesis. When the schedule ends it heals
everything (links, message faults, clocks, disks; a node that is down is
restarted) and requires recovery — a ready leader, its Director running, a
transaction committed — within ``recovery_bound`` virtual seconds (I8). The
workloads then stop, a final read of every key, account and service closes
the history, and the checkers judge it: linearizability of the directory,
strict serializability of the list-append transactions, the bank invariant,
and the invariants :class:`~.invariants.Invariants` checked all along.

Everything — the schedule, the latencies, every node's and client's random
choices — comes from the seed, so a run is a pure function of it: the same
seed gives the same trace (:attr:`SimReport.trace`), and a failing seed is
replayed with ``make sim SEED=N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bedrock_cp.client import Client, Database
from bedrock_cp.sim import run_simulation

from ..chaos.workloads import Bank, Budget, Directory, ListAppend, run_transaction
from ..checking import (
    APPEND,
    Anomaly,
    CheckResult,
    History,
    check_bank,
    check_directory,
    check_list_append,
)
from ..checking.result import result
from .cluster import SimCluster
from .invariants import Invariants
from .nemesis import Fault, Nemesis, make_schedule, pause_hook


@dataclass(frozen=True)
class SimConfig:
    seed: int
    nodes: int = 3
    #: Virtual seconds of faults.
    seconds: float = 2.0
    #: Only these fault kinds (default: all of them).
    faults: tuple[str, ...] = ()
    #: Kill the Director of ``pause_hook(seed)``'s epoch in its phase.
    pause: bool = True
    list_append_clients: int = 2  # the first one makes raw single attempts
    bank_clients: int = 2  # likewise
    directory_clients: int = 2
    pinned_readers: bool = True
    #: I8: once every fault is healed, the cluster recovers within this many virtual seconds.
    recovery_bound: float = 20.0
    #: Virtual seconds the workloads go on after recovery.
    settle: float = 0.5
    #: How often the invariants are sampled (virtual seconds).
    sample_every: float = 0.01

    @property
    def replay(self) -> str:
        return f"make sim SEED={self.seed}"


@dataclass
class SimReport:
    config: SimConfig
    schedule: list[Fault]
    results: list[CheckResult] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None
    virtual_seconds: float = 0.0
    ops: int = 0
    error: str = ""

    @property
    def valid(self) -> bool:
        return not self.error and bool(self.results) and all(r.valid for r in self.results)

    @property
    def digest(self) -> str:
        """A fingerprint of the whole trace: equal for equal runs."""
        return hashlib.blake2b("\n".join(self.trace).encode(), digest_size=10).hexdigest()

    def line(self) -> str:
        verdict = "ok" if self.valid else "FAILED"
        recovered = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.2f}s"
        return (
            f"seed {self.config.seed}: {verdict} ({len(self.schedule)} faults, {self.ops} ops, "
            f"recovered in {recovered}, {self.virtual_seconds:.1f} virtual s, trace {self.digest})"
        )

    def summary(self, trace_lines: int = 60) -> str:
        lines = [self.line(), f"replay: {self.config.replay}", "schedule:"]
        lines += [f"  {f.describe()}" for f in self.schedule]
        if self.error:
            lines.append(f"error: {self.error}")
        lines += [str(r) for r in self.results]
        shown = self.trace[-trace_lines:]
        lines.append(f"trace (last {len(shown)} of {len(self.trace)} events):")
        lines += [f"  {t}" for t in shown]
        return "\n".join(lines)


class _Run:
    def __init__(self, config: SimConfig, base: Path, report: SimReport) -> None:
        self.config = config
        self.report = report
        loop = asyncio.get_running_loop()
        self.loop = loop
        rng = random.Random(config.seed)
        self.history = History(clock=loop.time)
        self.invariants = Invariants(self.history.now)
        phase, epoch = pause_hook(config.seed)
        self.paused = (phase, epoch) if config.pause else None
        self.cluster = SimCluster(
            base,
            rng.getrandbits(64),
            config.nodes,
            invariants=self.invariants,
            trace=self.note,
            pause_before=lambda e: phase if self.paused is not None and e == epoch else None,
        )
        self.list_append = ListAppend(self.history, random.Random(rng.getrandbits(64)))
        self.bank = Bank(self.history, random.Random(rng.getrandbits(64)))
        self.directory = Directory(self.history, random.Random(rng.getrandbits(64)))
        self.liveness: list[Anomaly] = []
        self.dbs: list[Database] = []
        self.clients: list[Client] = []
        self._leader: tuple[int, int] | None = None

    def note(self, text: str) -> None:
        self.report.trace.append(f"{self.history.now():9.4f} {text}")

    async def database(self, name: str) -> Database:
        db = await self.cluster.database(name)
        self.dbs.append(db)
        return db

    def client(self, name: str, *, only: int | None = None) -> Client:
        client = self.cluster.client(name, only=only)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for db in self.dbs:
            with contextlib.suppress(Exception):
                await db.close()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()

    # -- watching --------------------------------------------------------------------

    async def sample(self, stop: asyncio.Event) -> None:
        """The invariants, every ``sample_every``; leader changes go to the trace."""
        c = self.cluster
        while not stop.is_set():
            for i in c.up:
                node = c.node(i)
                if node is not None:
                    self.invariants.sample(i, node)
                    self.invariants.check_alive(i, node)
            leader = c.leader()
            if leader is not None:
                node = c.node(leader)
                assert node is not None and node.coordinator is not None
                current = (leader, node.coordinator.runner.consensus.term)
                if current != self._leader:
                    self._leader = current
                    self.note(f"leader {leader} (term {current[1]})")
            await asyncio.sleep(self.config.sample_every)

    async def running(self, bound: float) -> str | None:
        """None once a ready leader's Director is running; else what was last seen."""
        deadline = self.loop.time() + bound
        last = "no ready leader"
        while self.loop.time() < deadline:
            leader = self.cluster.leader()
            if leader is not None:
                epoch, state, where = self.cluster.director_state(leader)
                last = f"leader {leader}: epoch {epoch} director {state} {where}"
                if state == "running":
                    return None
            await asyncio.sleep(0.01)
        return last

    # -- the end ---------------------------------------------------------------------

    async def heal(self) -> None:
        c = self.cluster
        c.net.heal()
        c.net.faults.drop = c.net.faults.duplicate = c.net.faults.delay = 0.0
        for i in c.ids:
            m = c.machines[i]
            m.clock.set_rate(1.0)
            m.executor.latency = 0.0
            m.disk.set_fault(None)
            if m.node is not None and m.node.fatal is not None:
                c.crash(i)
            if not c.alive(i):
                await c.start(i)
        self.note("healed everything")

    async def recover(self) -> float | None:
        """I8 after healing: how long it took, None if not within the bound."""
        start = self.loop.time()
        deadline = start + self.config.recovery_bound
        problem = await self.running(self.config.recovery_bound)
        if problem is not None:
            self.liveness.append(Anomaly("no-recovery", f"no running Director: {problem}"))
            return None
        db = await self.database("probe")
        while self.loop.time() < deadline:
            mops = ((APPEND, *self.list_append.append_to()),)
            pending = self.history.invoke("probe", "txn", mops)
            outcome = await run_transaction(db, self.list_append.body(mops), retry=False)
            if outcome.committed:
                pending.ok(outcome.value)
                return self.loop.time() - start
            if outcome.ambiguous:
                pending.info(outcome.ambiguous)
            else:
                pending.fail(outcome.error)
            await asyncio.sleep(0.05)
        self.liveness.append(
            Anomaly("no-recovery", f"no commit within {self.config.recovery_bound:g}s")
        )
        return None

    async def final_reads(self) -> None:
        db = await self.database("final")
        done = {
            "list-append": await self.list_append.final_read(db),
            "bank": await self.bank.final_read(db),
            "directory": await self.directory.final_read(self.client("final-dir")),
        }
        for what, ok in done.items():
            if not ok:
                self.liveness.append(Anomaly("final-read-failed", f"the final {what} read failed"))


async def _run(run: _Run, report: SimReport) -> None:
    config, c = run.config, run.cluster
    stop_watch = asyncio.Event()
    nemesis = Nemesis(c, report.schedule, run.note, paused_phase=run.paused)
    watchers = [
        asyncio.ensure_future(run.sample(stop_watch)),
        asyncio.ensure_future(nemesis.reap_paused(stop_watch)),
    ]
    try:
        for i in c.ids:
            await c.start(i)
        problem = await run.running(30.0)
        if problem is not None:
            raise RuntimeError(f"the cluster never recovered before the faults: {problem}")
        await run.bank.setup(await run.database("setup"))
        run.note("bank filled; workloads start")

        stop_clients = asyncio.Event()
        tasks = []
        # The list-append processes share one database, as a host's tasks do:
        # read versions they ask for at the same instant travel as one request.
        shared_db = await run.database("la")
        for i in range(config.list_append_clients):
            tasks.append(
                run.list_append.client(shared_db, f"la{i}", Budget(stop_clients), retry=i > 0)
            )
        db = await run.database("lar")
        tasks.append(run.list_append.reader(db, "lar", Budget(stop_clients), retry=True, every=0.2))
        for i in range(config.bank_clients):
            db = await run.database(f"bank{i}")
            tasks.append(run.bank.client(db, f"bank{i}", Budget(stop_clients), retry=i > 0))
        # The directory's processes share one client, as a host's tasks do, and
        # step together: writes they make at the same instant travel as one WriteBatch.
        processes = [f"dir{i}" for i in range(config.directory_clients)]
        shared = run.client("dir")
        tasks.append(run.directory.lockstep(shared, processes, Budget(stop_clients), pace=0.01))
        if config.pinned_readers:
            for node in c.ids:
                client = run.client(f"pin{node}", only=node)
                tasks.append(run.directory.reader(client, f"pin{node}", Budget(stop_clients)))
        workers = [asyncio.ensure_future(t) for t in tasks]
        try:
            await nemesis.run()
            await run.heal()
            report.recovery_seconds = await run.recover()
            if report.recovery_seconds is not None:
                run.note(f"recovered in {report.recovery_seconds:.3f}s")
                await asyncio.sleep(config.settle)
        finally:
            stop_clients.set()
            # Bounded: every client call has its own timeout; what is left is
            # cancelled (its ops stay pending, so they count as info).
            _, late = await asyncio.wait(workers, timeout=30)
            for task in late:
                task.cancel()
            errors = [
                t.exception() for t in workers if t.done() and not t.cancelled() and t.exception()
            ]
        batcher = shared_db.read_versions
        run.note(f"list-append read versions: {batcher.asks} in {batcher.requests_sent} requests")
        if errors:
            raise errors[0]  # type: ignore[misc]
        if report.recovery_seconds is not None:
            await run.final_reads()
    finally:
        stop_watch.set()
        await asyncio.gather(*watchers, return_exceptions=True)

    ops = run.history.ops()
    report.ops = len(ops)
    for op in ops:
        if op.f != "fault":
            run.note(op.describe())
    report.results = [
        check_directory(ops),
        check_list_append(ops),
        check_bank(ops, accounts=run.bank.accounts, total=run.bank.total),
        result(
            "invariants (I1 I2 I4 I5 I6 I9)",
            run.invariants.anomalies[:20],
            entries_compared=run.invariants.entries_compared,
            requests_seen=run.invariants.requests_seen,
            epochs=len(run.invariants.epochs),
            hostile=nemesis.hostile_sent,
        ),
        result(
            "liveness (I8)",
            run.liveness,
            reaped=", ".join(nemesis.reaped) or "none",
        ),
    ]


async def _main(config: SimConfig, base: Path, report: SimReport) -> None:
    run = _Run(config, base, report)
    try:
        await _run(run, report)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
        run.note(f"run failed: {report.error}")
    finally:
        report.virtual_seconds = run.history.now()
        await run.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run.cluster.stop(), 10)


def _scratch() -> str | None:
    """Where the nodes' few real files go: memory when the machine offers it
    (their fsyncs cost nothing there, and what they guarantee is argued in
    :mod:`.cluster`), else the default temporary directory."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class _VirtualTime(logging.Formatter):
    """Log lines stamped with the simulation's virtual time."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            now = f"{asyncio.get_running_loop().time() - 1000.0:9.4f}"
        except RuntimeError:
            now = "        -"
        return f"{now} {record.levelname[0]} {record.name}: {record.getMessage()}"


def run_seed(config: SimConfig, *, quiet: bool = True) -> SimReport:
    """Run one simulation (see the module docstring) on a fresh virtual loop.

    ``quiet``: the nodes log nothing; otherwise everything they log at INFO
    and above goes to stderr, stamped with the virtual time.
    """
    report = SimReport(config, make_schedule(config.seed, config.seconds, config.faults))
    product = logging.getLogger("bedrock_cp")
    level = product.level
    handler = logging.StreamHandler()
    handler.setFormatter(_VirtualTime())
    if quiet:
        product.setLevel(logging.CRITICAL + 1)
    else:
        product.setLevel(logging.INFO)
        product.addHandler(handler)
    try:
        with tempfile.TemporaryDirectory(prefix=f"sim-{config.seed}-", dir=_scratch()) as tmp:
            run_simulation(_main(config, Path(tmp), report))
    finally:
        product.setLevel(level)
        product.removeHandler(handler)
    return report
