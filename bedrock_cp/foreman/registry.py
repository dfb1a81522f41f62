"""The worker kinds this build can run: ``kind -> factory``.

The node offers the kinds its configuration lists (``capabilities``), taken
from this registry; a kind missing here makes the node refuse to start with an
error naming it. Persistent kinds (``log``, ``storage``) are created by the
Foreman with a directory and a manifest; transaction roles (``sequencer``,
``commit_proxy``, ``resolver``) are started per epoch from a ``StartRole``.
"""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import protocol
from .._native import native
from ..clock import SYSTEM_CLOCK, Clock
from ..dataplane import CommitProxy, LogWorker, Resolver, Sequencer, StorageWorker
from ..dataplane.log import GENERATION_BYTES
from ..dataplane.metrics import TransactionMetrics
from ..dataplane.storage import WINDOW_SECONDS
from ..dataplane.worker import Dialer, Worker
from ..protocol import KeyRange, Layout, WorkerRef, decode_layout, idempotency
from .foreman import RoleFactory, WorkerFactory


@dataclass(frozen=True)
class WorkerContext:
    """What workers of this node share: cluster id, the dialer, fsync, the layout,
    and the node's seams (clock, disk executor, the disk their WALs live on)."""

    cluster_id: str
    dialer: Dialer
    fsync: bool = True
    #: The layout the node's Gateway holds now (storage starts following it).
    current_layout: Callable[[], Layout | None] = lambda: None
    #: Seconds the commit proxies keep idempotency records.
    idempotency_retention: float = idempotency.RETENTION_SECONDS
    #: What this node's commit proxies count (None: nothing).
    transaction_metrics: TransactionMetrics | None = None
    #: Seconds storage keeps committed versions in memory before its base.
    storage_flush: float = WINDOW_SECONDS
    #: The size at which a log closes a WAL generation.
    log_generation_bytes: int = GENERATION_BYTES
    clock: Clock = SYSTEM_CLOCK
    #: Runs the workers' blocking disk work (None: a thread of each worker's own).
    executor: concurrent.futures.Executor | None = None
    #: The disk the logs' WALs are on (None: the real file system; storage's
    #: SQLite base is always a real file, see the simulation's cluster).
    disk: native.MemDisk | None = None
    #: Seeds the workers' random choices (None: each its own, from the system).
    rng: random.Random | None = None


def worker_factories(ctx: WorkerContext | None = None) -> dict[str, WorkerFactory]:
    """The persistent worker kinds of this build (none without a context)."""
    if ctx is None:
        return {}

    async def log(ref: WorkerRef, directory: Path) -> Worker:
        return LogWorker(
            ref,
            directory,
            cluster_id=ctx.cluster_id,
            fsync=ctx.fsync,
            dialer=ctx.dialer,
            generation_bytes=ctx.log_generation_bytes,
            executor=ctx.executor,
            disk=ctx.disk,
        )

    async def storage(ref: WorkerRef, directory: Path) -> Worker:
        worker = StorageWorker(
            ref,
            directory,
            ctx.dialer,
            cluster_id=ctx.cluster_id,
            fsync=ctx.fsync,
            window_seconds=ctx.storage_flush,
            clock=ctx.clock,
            executor=ctx.executor,
            rng=None if ctx.rng is None else random.Random(ctx.rng.getrandbits(64)),
        )
        layout = ctx.current_layout()
        if layout is not None:
            worker.set_layout(layout)
        return worker

    return {"log": log, "storage": storage}


def role_factories(ctx: WorkerContext | None = None) -> dict[str, RoleFactory]:
    """The transaction roles (sequencer, commit proxy, resolver) of this build."""
    if ctx is None:
        return {}

    async def sequencer(ref: WorkerRef, req: protocol.StartRole) -> Worker:
        logs = decode_layout(req.layout).logs
        return Sequencer(
            ref, req.epoch, req.version, clock=ctx.clock.monotonic, logs=logs, dialer=ctx.dialer
        )

    async def resolver(ref: WorkerRef, req: protocol.StartRole) -> Worker:
        layout = decode_layout(req.layout)
        mine = [r for r in layout.resolvers if r.worker.id == ref.id]
        if not mine:
            raise ValueError(f"resolver {ref.id} is not in the layout of epoch {layout.epoch}")
        return Resolver(ref, req.epoch, req.version, KeyRange(mine[0].begin, mine[0].end))

    async def commit_proxy(ref: WorkerRef, req: protocol.StartRole) -> Worker:
        return CommitProxy(
            ref,
            req.epoch,
            decode_layout(req.layout),
            ctx.dialer,
            token=req.token,
            idempotency_retention=ctx.idempotency_retention,
            metrics=ctx.transaction_metrics,
            clock=ctx.clock,
        )

    return {"sequencer": sequencer, "resolver": resolver, "commit_proxy": commit_proxy}


def offered(
    capabilities: list[str], registry: Mapping[str, WorkerFactory]
) -> dict[str, WorkerFactory]:
    """The factories of the kinds listed in ``capabilities``.

    Raises KeyError naming a listed kind the registry does not have.
    """
    missing = sorted(set(capabilities) - set(registry))
    if missing:
        known = ", ".join(sorted(registry)) or "none"
        raise KeyError(
            f"capabilities {', '.join(map(repr, missing))} are not worker kinds of this build "
            f"(known: {known})"
        )
    return {kind: registry[kind] for kind in capabilities}
