"""One chaos run: a cluster, concurrent clients, a nemesis, then the checkers.

:func:`run_chaos` starts a :class:`~.cluster.ChaosCluster`, waits until its
Director runs, fills the bank, and starts the workloads (list-append through
``db.attempts()`` and as raw single attempts, occasional readers of every
key, bank transfers and reads, directory writes and reads, readers pinned to
one coordinator each), the status :class:`~.cluster.Monitor` and the
nemesis. When the schedule ends it heals
everything and requires recovery (I8: one ready leader followed by every node,
a running Director, a transaction committed) within ``recovery_deadline`` — a
liveness bound, set generously, not a performance figure. The workloads then
stop, a final read of every key, account and service id closes the history,
and every checker judges it. The verdicts come back in a :class:`ChaosReport`;
a failing run keeps its history, status samples, nemesis log and node logs in a
directory the report names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bedrock_cp.client import Client, ClusterFile, Database, connect, open_database
from bedrock_cp.director.testing_hooks import PAUSE_ENV

from ..checking import (
    APPEND,
    Anomaly,
    CheckResult,
    History,
    Watch,
    check_bank,
    check_directory,
    check_list_append,
    dump,
)
from ..checking.result import result
from ..faultproxy import fault_proxy
from .cluster import ChaosCluster, Monitor
from .nemesis import Fault, Nemesis, make_schedule, pause_hook
from .workloads import Bank, Budget, Directory, ListAppend, run_transaction


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    nodes: int = 3
    #: How long the nemesis runs.
    seconds: float = 30.0
    #: Only these fault kinds (default: all of them).
    faults: tuple[str, ...] = ()
    list_append_clients: int = 3  # the first one makes raw single attempts
    occasional_readers: int = 2  # likewise
    bank_clients: int = 2  # likewise
    directory_clients: int = 2
    #: A directory reader pinned to each coordinator.
    pinned_readers: bool = True
    #: Liveness bound for recovery once every fault is healed (I8); generous.
    recovery_deadline: float = 60.0
    #: How long the workloads go on after recovery.
    settle: float = 2.0
    rss_budget: int = 512 * 2**20
    #: Kept only when the run finds something; default: a fresh temporary directory.
    artifacts: str | None = None


@dataclass
class ChaosReport:
    config: ChaosConfig
    schedule: list[Fault]
    results: list[CheckResult] = field(default_factory=list)
    nemesis_log: list[str] = field(default_factory=list)
    artifacts: Path | None = None
    recovery_seconds: float | None = None

    @property
    def valid(self) -> bool:
        return bool(self.results) and all(r.valid is True for r in self.results)

    def summary(self) -> str:
        c = self.config
        lines = [
            f"chaos run: CHAOS_SEED={c.seed} nodes={c.nodes} seconds={c.seconds:g} "
            f"-> {'valid' if self.valid else 'INVALID'}",
            "schedule:",
            *(f"  {f.describe()}" for f in self.schedule),
            "nemesis:",
            *(f"  {line}" for line in self.nemesis_log),
        ]
        if self.recovery_seconds is not None:
            lines.append(f"recovered {self.recovery_seconds:.1f}s after healing")
        lines += [str(r) for r in self.results]
        if self.artifacts is not None:
            lines.append(f"history, samples and node logs kept in {self.artifacts}")
        return "\n".join(lines)


class _Run:
    def __init__(self, config: ChaosConfig, chaos: ChaosCluster) -> None:
        self.config = config
        self.chaos = chaos
        rng = random.Random(config.seed)
        self.history = History()
        self.watch = Watch(rss_budget=config.rss_budget)
        self.monitor = Monitor(chaos, self.history, self.watch)
        self.list_append = ListAppend(self.history, random.Random(rng.getrandbits(64)))
        self.bank = Bank(self.history, random.Random(rng.getrandbits(64)))
        self.directory = Directory(self.history, random.Random(rng.getrandbits(64)))
        self.liveness: list[Anomaly] = []
        self.dbs: list[Database] = []
        self.clients: list[Client] = []

    async def database(self) -> Database:
        db = await open_database(self.chaos.cluster_file, timeout=10.0, request_timeout=3.0)
        self.dbs.append(db)
        return db

    async def client(self) -> Client:
        client = await connect(self.chaos.cluster_file, timeout=10.0, request_timeout=3.0)
        self.clients.append(client)
        return client

    def pinned_client(self, node: int) -> Client:
        """A client that knows only ``node``'s address (it still follows redirects)."""
        cluster = ClusterFile(
            cluster=self.chaos.cluster.cluster,
            coordinators=[self.chaos.cluster.addresses[node]],
            auth=self.chaos.cluster.client_auth(),
        )
        client = Client(cluster, request_timeout=3.0)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for db in self.dbs:
            with contextlib.suppress(Exception):
                await db.close()
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await self.monitor.close()

    async def director_running(self, timeout: float) -> str | None:  # noqa: ASYNC109
        """None once a leader's Director reports ``running``; else what was last seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no status yet"
        while loop.time() < deadline:
            await self.monitor.poll_once()
            leader = self.monitor.leader()
            if leader is not None:
                rec = self.monitor.latest[leader].recovery
                last = f"leader {leader}: recovery {rec.get('state')} at {rec.get('phase')}"
                if rec.get("state") == "running":
                    return None
            await asyncio.sleep(0.05)
        return last

    async def recover(self) -> float | None:
        """Wait for I8 after healing; returns how long it took, None if not in time."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.config.recovery_deadline
        try:
            await self.chaos.cluster.wait_ready(timeout=self.config.recovery_deadline)
        except (TimeoutError, RuntimeError) as exc:
            self.liveness.append(Anomaly("no-recovery", f"no ready leader: {exc}"))
            return None
        problem = await self.director_running(max(1.0, deadline - loop.time()))
        if problem is not None:
            self.liveness.append(Anomaly("no-recovery", f"no running Director: {problem}"))
            return None
        db = await self.database()
        while loop.time() < deadline:
            mops = ((APPEND, *self.list_append.append_to()),)
            pending = self.history.invoke("probe", "txn", mops)
            outcome = await run_transaction(db, self.list_append.body(mops), retry=False)
            if outcome.committed:
                pending.ok(outcome.value)
                return loop.time() - start
            if outcome.ambiguous:
                pending.info(outcome.ambiguous)
            else:
                pending.fail(outcome.error)
            await asyncio.sleep(0.1)
        self.liveness.append(
            Anomaly("no-recovery", f"no commit within {self.config.recovery_deadline:g}s")
        )
        return None

    async def final_reads(self) -> None:
        db = await self.database()
        done = {
            "list-append": await self.list_append.final_read(db),
            "bank": await self.bank.final_read(db),
            "directory": await self.directory.final_read(await self.client()),
        }
        for what, ok in done.items():
            if not ok:
                self.liveness.append(Anomaly("final-read-failed", f"the final {what} read failed"))


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    """See the module docstring."""
    schedule = make_schedule(config.seed, config.seconds, config.faults)
    report = ChaosReport(config, schedule)
    phase, epoch = pause_hook(config.seed)
    with fault_proxy() as proxy:
        chaos = ChaosCluster(proxy, config.nodes, env={PAUSE_ENV: f"{phase}@{epoch}"})
        run = _Run(config, chaos)
        nemesis = Nemesis(chaos, run.monitor, run.history, schedule, paused_phase=(phase, epoch))
        nemesis.note(f"the Director of epoch {epoch} pauses before {phase}")
        chaos.start()
        try:
            await _run(run, nemesis, report)
        finally:
            await run.close()
            chaos.stop()
            report.nemesis_log = nemesis.log
            if not report.valid:
                report.artifacts = _keep(run, report)
            chaos.cluster.cleanup()
    return report


async def _run(run: _Run, nemesis: Nemesis, report: ChaosReport) -> None:
    config, chaos = run.config, run.chaos
    await chaos.cluster.wait_ready(timeout=60)
    problem = await run.director_running(60)
    if problem is not None:
        raise RuntimeError(f"the cluster never recovered before the faults: {problem}")
    await run.bank.setup(await run.database())

    stop_clients, stop_watch = asyncio.Event(), asyncio.Event()
    tasks = []
    for i in range(config.list_append_clients):
        db = await run.database()
        tasks.append(run.list_append.client(db, f"la{i}", Budget(stop_clients), retry=i > 0))
    for i in range(config.occasional_readers):
        db = await run.database()
        tasks.append(run.list_append.reader(db, f"lar{i}", Budget(stop_clients), retry=i > 0))
    for i in range(config.bank_clients):
        db = await run.database()
        tasks.append(run.bank.client(db, f"bank{i}", Budget(stop_clients), retry=i > 0))
    for i in range(config.directory_clients):
        client = await run.client()
        tasks.append(run.directory.client(client, f"dir{i}", Budget(stop_clients)))
    if config.pinned_readers:
        for node in chaos.nodes:
            client = run.pinned_client(node)
            tasks.append(run.directory.reader(client, f"pin{node}", Budget(stop_clients)))
    workers = [asyncio.ensure_future(t) for t in tasks]
    watchers = [
        asyncio.ensure_future(run.monitor.run(stop_watch)),
        asyncio.ensure_future(nemesis.reap_paused(stop_watch)),
    ]
    try:
        await nemesis.run()
        chaos.heal()
        nemesis.note("healed everything")
        report.recovery_seconds = await run.recover()
        if report.recovery_seconds is not None:
            nemesis.note(f"recovered in {report.recovery_seconds:.1f}s")
            await asyncio.sleep(config.settle)
    finally:
        stop_clients.set()
        # Bounded: every client call has its own timeout; what is left is cancelled
        # (its ops stay pending, so they count as info).
        _, late = await asyncio.wait(workers, timeout=30)
        for task in late:
            task.cancel()
        failures = [t.exception() for t in workers if t.done() and not t.cancelled()]
        errors = [e for e in failures if e is not None]
        if errors or report.recovery_seconds is None:
            stop_watch.set()
            await asyncio.gather(*watchers)
    if errors:
        raise errors[0]
    if report.recovery_seconds is not None:
        await run.final_reads()
        if not await run.monitor.converge(10.0):
            nemesis.note("the nodes' applied indexes did not meet within 10 s of the final reads")
        stop_watch.set()
        await asyncio.gather(*watchers)

    ops = run.history.ops()
    report.results = [
        check_directory(ops),
        check_list_append(ops),
        check_bank(ops, accounts=run.bank.accounts, total=run.bank.total),
        run.watch.result(),
        result(
            "liveness and processes (I8)",
            [*run.liveness, *run.monitor.anomalies],
            polls=run.monitor.rounds,
            reaped=", ".join(nemesis.reaped) or "none",
        ),
    ]


def _keep(run: _Run, report: ChaosReport) -> Path:
    """Copy what a failing run saw into a directory that outlives it."""
    base = report.config.artifacts or os.environ.get("CHAOS_ARTIFACTS")
    if base:
        out = Path(base) / f"chaos-{report.config.nodes}n-seed{report.config.seed}"
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(
            tempfile.mkdtemp(prefix=f"chaos-{report.config.nodes}n-seed{report.config.seed}-")
        )
    dump(run.history.ops(), out / "history.jsonl")
    with (out / "samples.jsonl").open("w") as f:
        for s in run.monitor.samples:
            f.write(json.dumps(asdict(s)) + "\n")
    with (out / "states.jsonl").open("w") as f:
        for state in run.monitor.states:
            f.write(json.dumps(asdict(state)) + "\n")
    (out / "report.txt").write_text(report.summary() + "\n")
    run_facts = {
        "seed": report.config.seed,
        "nodes": report.config.nodes,
        "seconds": report.config.seconds,
        "accounts": run.bank.accounts,
        "total": run.bank.total,
        "rss_budget": report.config.rss_budget,
    }
    (out / "run.json").write_text(json.dumps(run_facts, indent=1) + "\n")
    for node, path in run.chaos.logs().items():
        if path.exists():
            shutil.copy(path, out / f"node-{node}.log")
    return out


def seed_from_env(default: int | None = None) -> int:
    """``CHAOS_SEED`` if set, else ``default``, else a fresh random seed."""
    raw = os.environ.get("CHAOS_SEED")
    if raw:
        return int(raw)
    return default if default is not None else random.SystemRandom().randrange(2**31)


__all__ = ["ChaosConfig", "ChaosReport", "run_chaos", "seed_from_env"]
