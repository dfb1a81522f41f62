"""The Foreman: creates, lists, restarts and removes the workers of one node.

A node offers worker *kinds* (``log``, ``storage``): the Foreman is built with a
registry ``kind -> factory`` and creates only those. The factories are injected,
so the node wires the real worker classes and tests wire their own.

- **Persistent workers** (logs, storage) each own ``<data_dir>/workers/<id>/``
  with a manifest (:mod:`.manifest`) written before the worker first starts.
  :meth:`Foreman.boot` restarts every worker found on disk; a worker whose
  manifest is bad, whose kind is no longer offered or whose factory raises is
  listed as ``failed`` with the reason, and the others start regardless.
- **Roles** (sequencer, commit proxies, resolvers) live for one epoch: they are
  started from a :class:`~bedrock_cp.protocol.StartRole` through the
  ``roles`` factories, kept in memory only, and listed beside the workers.
- **Epoch fence**: every worker and role records the epoch it was created for;
  a request to remove or stop one carries the requesting Director's epoch and
  is refused for a newer epoch's worker, so a superseded Director can never
  tear down what its successor built.
- Removing a worker first renames its directory to a ``.removing-*`` tombstone
  (atomic), then deletes it: a crash halfway leaves no half-worker for the next
  boot, which sweeps tombstones.

Every operation on one id is exclusive (an entry is reserved before the first
await), so concurrent requests for the same id get clear errors, not races.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .. import protocol
from ..dataplane.worker import Worker
from ..protocol import WorkerRef
from .manifest import (
    MANIFEST_FORMAT,
    Manifest,
    ManifestError,
    check_worker_id,
    fsync_dir,
    read_manifest,
    write_manifest,
)

log = logging.getLogger("bedrock_cp.foreman")

#: Builds and starts a persistent worker in its (existing) directory.
WorkerFactory = Callable[[WorkerRef, Path], Awaitable[Worker]]
#: Builds and starts a transaction role from its StartRole request.
RoleFactory = Callable[[WorkerRef, protocol.StartRole], Awaitable[Worker]]

_TOMBSTONE = ".removing-"


class ForemanError(Exception):
    """A request the Foreman refuses; ``code`` is the ``Failed`` code it answers with."""

    code = "invalid"


class UnknownKind(ForemanError):
    """The node does not offer that worker kind (or role)."""


class WorkerExists(ForemanError):
    """A worker with that id exists on this node already."""


class NoSuchWorker(ForemanError):
    """No worker with that id on this node."""

    code = "no_such_worker"


class WorkerBusy(ForemanError):
    """Another operation on that worker is under way; retry."""

    code = "unavailable"


class NewerWorker(ForemanError):
    """The worker belongs to a newer epoch than the requester's."""

    code = "newer_epoch"


class StartFailed(ForemanError):
    """The worker's factory raised; nothing of it is left behind."""

    code = "internal"


class WorkerState(StrEnum):
    """Where a worker or role is in its life on this node (``WorkerInfo.state``)."""

    STARTING = "starting"
    RUNNING = "running"
    #: It could not start (a corrupt manifest, a factory that raised): kept,
    #: with its reason, until removed.
    FAILED = "failed"
    STOPPING = "stopping"


@dataclass
class _Entry:
    ref: WorkerRef
    persistent: bool
    state: WorkerState
    reason: str = ""
    worker: Worker | None = None
    #: The epoch the worker was created for (0: unknown, e.g. an old manifest).
    epoch: int = 0


class Foreman:
    """The workers of one node. See the module docstring."""

    def __init__(
        self,
        node: str,
        address: str,
        data_dir: Path,
        factories: Mapping[str, WorkerFactory],
        *,
        roles: Mapping[str, RoleFactory] | None = None,
        on_change: Callable[[], None] | None = None,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.node = node
        self.address = address
        self.workers_dir = Path(data_dir) / "workers"
        self.factories = dict(factories)
        self.roles = dict(roles or {})
        #: Called after the set of running workers changed (the Gateway re-registers).
        self.on_change = on_change
        self.wall_clock_ms = wall_clock_ms
        #: Runs the blocking disk work (fsyncs, deletes); the simulator's is inline.
        self.executor = executor
        self._entries: dict[str, _Entry] = {}

    # -- queries -----------------------------------------------------------------------

    def capabilities(self) -> list[str]:
        """The persistent worker kinds this node offers, sorted."""
        return sorted(self.factories)

    def list(self) -> list[protocol.WorkerInfo]:
        """Every worker and role this Foreman knows, by id."""
        return [
            protocol.WorkerInfo(e.ref, e.state, e.reason, e.epoch)
            for _, e in sorted(self._entries.items(), key=lambda kv: kv[0])
        ]

    def get(self, worker_id: str) -> Worker | None:
        """The running worker ``worker_id``, or None."""
        entry = self._entries.get(worker_id)
        if entry is None or entry.state is not WorkerState.RUNNING:
            return None
        return entry.worker

    def route(self, worker_id: str) -> Worker | None:
        """The worker a data-plane request naming ``worker_id`` goes to (None: no such)."""
        return self.get(worker_id)

    def running_refs(self) -> builtins.list[WorkerRef]:
        """Refs of the running workers and roles (what the Gateway registers)."""
        return [e.ref for _, e in sorted(self._entries.items()) if e.state is WorkerState.RUNNING]

    # -- persistent workers ------------------------------------------------------------

    async def create(self, kind: str, worker_id: str, epoch: int = 0) -> WorkerRef:
        """Create worker ``worker_id`` of ``kind`` for ``epoch``: directory, manifest,
        then start it.

        Raises UnknownKind, WorkerExists, ForemanError (bad id) or StartFailed.
        """
        if kind not in self.factories:
            raise UnknownKind(
                f"node {self.node} does not offer worker kind {kind!r} "
                f"(it offers: {', '.join(self.capabilities()) or 'none'})"
            )
        reason = check_worker_id(worker_id)
        if reason:
            raise ForemanError(reason)
        if worker_id in self._entries:
            raise WorkerExists(f"worker {worker_id!r} already exists on node {self.node}")
        directory = self.workers_dir / worker_id
        ref = WorkerRef(worker_id, kind, self.node, self.address)
        entry = _Entry(ref, persistent=True, state=WorkerState.STARTING, epoch=epoch)
        self._entries[worker_id] = entry
        loop = asyncio.get_running_loop()
        manifest = Manifest(
            format=MANIFEST_FORMAT,
            id=worker_id,
            kind=kind,
            created_at_ms=self.wall_clock_ms(),
            epoch=epoch,
        )
        try:
            await loop.run_in_executor(self.executor, self._make_directory, directory, manifest)
        except BaseException as exc:
            del self._entries[worker_id]
            if isinstance(exc, FileExistsError):
                raise WorkerExists(
                    f"worker {worker_id!r} already has a directory on node {self.node}"
                ) from None
            raise
        try:
            worker = await self.factories[kind](ref, directory)
        except BaseException as exc:
            await loop.run_in_executor(self.executor, self._delete_directory, directory)
            del self._entries[worker_id]
            if isinstance(exc, Exception):
                raise StartFailed(f"worker {worker_id!r} ({kind}) did not start: {exc!r}") from exc
            raise
        entry.worker = worker
        entry.state = WorkerState.RUNNING
        log.info("created worker %s (%s)", worker_id, kind)
        self._changed()
        return ref

    async def remove(self, worker_id: str, epoch: int | None = None) -> None:
        """Stop worker (or role) ``worker_id`` and delete its directory.

        With ``epoch`` (the requesting Director's), a worker created for a newer
        epoch is refused with :class:`NewerWorker`.
        """
        entry = self._entries.get(worker_id)
        if entry is None:
            raise NoSuchWorker(f"no worker {worker_id!r} on node {self.node}")
        if epoch is not None and entry.epoch > epoch:
            raise NewerWorker(
                f"worker {worker_id!r} belongs to epoch {entry.epoch}, newer than {epoch}"
            )
        if entry.state in (WorkerState.STARTING, WorkerState.STOPPING):
            raise WorkerBusy(f"worker {worker_id!r} is {entry.state}; retry")
        was_running = entry.state is WorkerState.RUNNING
        entry.state = WorkerState.STOPPING
        try:
            await self._stop_worker(entry)
            if entry.persistent:
                directory = self.workers_dir / worker_id
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._delete_directory, directory
                )
        finally:
            del self._entries[worker_id]
        log.info("removed worker %s (%s)", worker_id, entry.ref.kind)
        if was_running:
            self._changed()

    async def boot(self) -> builtins.list[protocol.WorkerInfo]:
        """Restart every worker found on disk; returns :meth:`list`.

        One bad worker (manifest, kind, factory) is marked failed with the reason;
        it never keeps the others from starting.
        """
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self.executor, self._scan)
        starts = []
        for worker_id, manifest_or_error in found:
            if worker_id in self._entries:
                continue
            starts.append(self._boot_one(worker_id, manifest_or_error))
        await asyncio.gather(*starts)
        failed = [e for e in self._entries.values() if e.state is WorkerState.FAILED]
        log.info(
            "booted %d workers (%d failed)",
            sum(1 for e in self._entries.values() if e.persistent),
            len(failed),
        )
        for e in failed:
            log.warning("worker %s failed: %s", e.ref.id, e.reason)
        if starts:
            self._changed()
        return self.list()

    async def _boot_one(self, worker_id: str, found: Manifest | ManifestError) -> None:
        kind = found.kind if isinstance(found, Manifest) else "unknown"
        ref = WorkerRef(worker_id, kind, self.node, self.address)
        epoch = found.epoch if isinstance(found, Manifest) else 0
        entry = _Entry(ref, persistent=True, state=WorkerState.STARTING, epoch=epoch)
        self._entries[worker_id] = entry
        if isinstance(found, ManifestError):
            entry.state, entry.reason = WorkerState.FAILED, str(found)
            return
        factory = self.factories.get(kind)
        if factory is None:
            entry.state = WorkerState.FAILED
            entry.reason = f"worker kind {kind!r} is not offered by node {self.node}"
            return
        try:
            entry.worker = await factory(ref, self.workers_dir / worker_id)
        except Exception as exc:
            entry.state, entry.reason = WorkerState.FAILED, f"did not start: {exc!r}"
            return
        entry.state = WorkerState.RUNNING

    # -- roles -------------------------------------------------------------------------

    async def start_role(self, body: protocol.StartRole) -> WorkerRef:
        """Start a transaction role (in memory only: an epoch's roles die with it)."""
        factory = self.roles.get(body.kind)
        if factory is None:
            raise UnknownKind(
                f"node {self.node} does not run role {body.kind!r} "
                f"(it runs: {', '.join(sorted(self.roles)) or 'none'})"
            )
        reason = check_worker_id(body.worker)
        if reason:
            raise ForemanError(reason)
        if body.worker in self._entries:
            raise WorkerExists(f"worker {body.worker!r} already exists on node {self.node}")
        ref = WorkerRef(body.worker, body.kind, self.node, self.address)
        entry = _Entry(ref, persistent=False, state=WorkerState.STARTING, epoch=body.epoch)
        self._entries[body.worker] = entry
        try:
            entry.worker = await factory(ref, body)
        except BaseException as exc:
            del self._entries[body.worker]
            if isinstance(exc, Exception):
                raise StartFailed(
                    f"role {body.worker!r} ({body.kind}) did not start: {exc!r}"
                ) from exc
            raise
        entry.state = WorkerState.RUNNING
        log.info("started role %s (%s, epoch %d)", body.worker, body.kind, body.epoch)
        self._changed()
        return ref

    async def stop_role(self, body: protocol.StopRole) -> None:
        """Stop role ``body.worker`` (a persistent worker is removed with :meth:`remove`)."""
        entry = self._entries.get(body.worker)
        if entry is None:
            raise NoSuchWorker(f"no role {body.worker!r} on node {self.node}")
        if entry.persistent:
            raise ForemanError(f"{body.worker!r} is a {entry.ref.kind} worker, not a role")
        await self.remove(body.worker, body.epoch or None)

    # -- requests ----------------------------------------------------------------------

    async def handle(self, body: protocol.Request) -> protocol.Response:
        """Answer a Foreman request (``fm_*``); refusals become ``Failed``."""
        try:
            match body:
                case protocol.CreateWorker(kind=kind, worker=worker_id, epoch=epoch):
                    return protocol.WorkerCreated(await self.create(kind, worker_id, epoch))
                case protocol.RemoveWorker(worker=worker_id, epoch=epoch):
                    await self.remove(worker_id, epoch or None)
                    return protocol.Done()
                case protocol.ListWorkers():
                    return protocol.Workers(self.list())
                case protocol.StartRole():
                    return protocol.WorkerCreated(await self.start_role(body))
                case protocol.StopRole():
                    await self.stop_role(body)
                    return protocol.Done()
        except ForemanError as exc:
            return protocol.Failed(exc.code, str(exc))
        except OSError as exc:
            log.warning("foreman request %s failed: %s", type(body).__name__, exc)
            return protocol.Failed("internal", f"disk error: {exc}")
        return protocol.Failed("invalid", f"{type(body).__name__} is not a Foreman request")

    # -- lifecycle ---------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop every running worker and role (their directories stay)."""
        running = [e for e in self._entries.values() if e.state is WorkerState.RUNNING]
        for e in running:
            e.state = WorkerState.STOPPING
        await asyncio.gather(*(self._stop_worker(e) for e in running))
        self._entries.clear()

    def abort(self) -> None:
        """The node is crashing: drop every worker and role at once.

        Nothing is shut down in order and nothing more is written: each
        worker's ``stop`` only ends its tasks, in the background (whoever
        crashes the node in-process, the simulator, has already cut it off its
        network and voided its disk handles, as a dead process's are).
        """
        entries, self._entries = list(self._entries.values()), {}
        loop = asyncio.get_running_loop()
        for entry in entries:
            worker, entry.worker = entry.worker, None
            if worker is not None:
                task = loop.create_task(worker.stop(), name=f"abort-{entry.ref.id}")
                task.add_done_callback(_ignore_result)

    # -- helpers -----------------------------------------------------------------------

    async def _stop_worker(self, entry: _Entry) -> None:
        worker, entry.worker = entry.worker, None
        if worker is None:
            return
        try:
            await worker.stop()
        except Exception:
            log.exception("worker %s did not stop cleanly", entry.ref.id)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _make_directory(self, directory: Path, manifest: Manifest) -> None:
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        directory.mkdir()  # FileExistsError: a leftover or concurrent worker
        try:
            write_manifest(directory, manifest)
            fsync_dir(self.workers_dir)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _delete_directory(self, directory: Path) -> None:
        if not directory.exists():
            return
        tombstone = directory.with_name(f"{_TOMBSTONE}{directory.name}")
        shutil.rmtree(tombstone, ignore_errors=True)
        directory.rename(tombstone)
        fsync_dir(directory.parent)
        shutil.rmtree(tombstone, ignore_errors=True)

    def _scan(self) -> builtins.list[tuple[str, Manifest | ManifestError]]:
        """The worker directories on disk with their manifests (or why not); sweeps
        tombstones and temporary files left by a crash."""
        if not self.workers_dir.is_dir():
            return []
        found: builtins.list[tuple[str, Manifest | ManifestError]] = []
        for path in sorted(self.workers_dir.iterdir()):
            if path.name.startswith(_TOMBSTONE):
                shutil.rmtree(path, ignore_errors=True)
                continue
            if not path.is_dir() or check_worker_id(path.name):
                continue
            try:
                found.append((path.name, read_manifest(path)))
            except ManifestError as exc:
                found.append((path.name, exc))
        return found


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a dead node's worker may fail to stop


__all__ = [
    "Foreman",
    "ForemanError",
    "NewerWorker",
    "NoSuchWorker",
    "RoleFactory",
    "StartFailed",
    "UnknownKind",
    "WorkerBusy",
    "WorkerExists",
    "WorkerFactory",
]
