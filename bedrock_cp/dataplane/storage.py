"""The storage worker: applies committed batches and serves versioned reads.

It serves the key ranges of the layout's storage teams that list it, and pulls
batches from the layout's logs (one log at a time, moving to the next on any
error) with a long-poll ``LogPull(after=applied)``. Every pulled batch is
applied to an in-memory :class:`~.mvcc.VersionedMap` at once, so reads at recent
versions are served; history is kept for the MVCC window
(:data:`~bedrock_cp.protocol.MVCC_WINDOW_VERSIONS`).

Persistence follows the committed version, never the applied one: a batch is
written to the storage's own WAL only once the logs report it ``committed``
(durable on every log of its generation). A batch above that may still be
discarded by a recovery: when a layout of a newer epoch arrives with a
``recovery_version`` below what was applied, everything above it is rolled back
in memory, and the disk never held it. A restart reloads the WAL (no
compaction in this reference implementation: the whole history is replayed).

The highest epoch seen and the lock flag are kept in a state file (I6).

The replica of the team that reaches the end of the user key space also keeps
the system keys (:func:`~bedrock_cp.protocol.served_range`); clients may read
only the idempotency records among them. A read names the epoch of the
reader's layout; until this replica follows that epoch's layout (and so has
rolled back what its recovery dropped) it waits ``read_wait`` for it, then
answers ``unavailable``: the client tries another replica.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from pathlib import Path

import msgspec

from .._native import native
from ..protocol import (
    MVCC_WINDOW_VERSIONS,
    SYSTEM_PREFIX,
    CommitBatch,
    Failed,
    KeyRange,
    Layout,
    Locked,
    LogBatches,
    LogPull,
    Mutation,
    MutationKind,
    NewerEpoch,
    Request,
    Response,
    StorageGet,
    StorageGetRange,
    StorageLock,
    StorageState,
    StorageStatus,
    Value,
    Values,
    WorkerRef,
    idempotency,
    served_range,
)
from . import statefile
from .mvcc import VersionedMap
from .pulse import Pulse
from .worker import Dialer

log = logging.getLogger(__name__)

MAX_RANGE_LIMIT = 10_000
#: Pull long-poll; a pull answer lost for longer than this plus slack moves to the next log.
PULL_WAIT_MS = 500
COMPACT_INTERVAL = 1.0

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(CommitBatch)


class StorageFileState(msgspec.Struct, array_like=True, frozen=True):
    """The storage's state file: the highest epoch seen and the lock flag."""

    epoch: int = 0
    locked: bool = False


def _merge(ranges: list[KeyRange]) -> list[KeyRange]:
    out: list[KeyRange] = []
    for r in sorted(ranges, key=lambda r: r.begin):
        if r.begin >= r.end:
            continue
        if out and r.begin <= out[-1].end:
            out[-1] = KeyRange(out[-1].begin, max(out[-1].end, r.end))
        else:
            out.append(r)
    return out


def _client_readable(begin: bytes, end: bytes | None) -> bool:
    """User keys, and the idempotency records among the system keys."""
    if end is None:
        return begin < SYSTEM_PREFIX or idempotency.PREFIX <= begin < idempotency.END
    return end <= SYSTEM_PREFIX or idempotency.PREFIX <= begin <= end <= idempotency.END


class StorageWorker:
    """A storage replica of the reference data plane."""

    def __init__(
        self,
        ref: WorkerRef,
        directory: Path,
        dialer: Dialer,
        *,
        cluster_id: str,
        fsync: bool = True,
        read_wait: float = 1.0,
        compact_interval: float = COMPACT_INTERVAL,
        executor: concurrent.futures.Executor | None = None,
        disk: native.MemDisk | None = None,
    ) -> None:
        self.ref = ref
        self.directory = directory
        self.stopped = False
        self._dialer = dialer
        self._fsync = fsync
        self._read_wait = read_wait
        self._compact_interval = compact_interval
        directory.mkdir(parents=True, exist_ok=True)
        self._state = statefile.load(self._state_path, StorageFileState) or StorageFileState()
        self._wal = native.Wal.open(directory / "wal", cluster_id, 1, sync=fsync, disk=disk)
        _, _, entries = self._wal.take_recovered()
        self._map = VersionedMap()
        self._applied = 0
        for entry in entries:
            batch = _batch_decoder.decode(entry.data)
            for m in batch.mutations:
                self._map.apply(batch.version, m)
            self._applied = batch.version
        self._next_index = len(entries) + 1
        self._durable = self._applied
        self._committed = self._applied
        self._oldest = 0
        # Applied batches not yet persisted (above the committed version), oldest first.
        self._unpersisted: list[CommitBatch] = []
        self._layout: Layout | None = None
        self._ranges: list[KeyRange] = []
        self._pulse = Pulse()
        self._persist_wake = asyncio.Event()
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"storage-{ref.id}"
        )
        self._puller: asyncio.Task[None] | None = None
        self._persister: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None

    @property
    def _state_path(self) -> Path:
        return self.directory / "state"

    # -- status ----------------------------------------------------------------------

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def durable(self) -> int:
        return self._durable

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def broken(self) -> str | None:
        """Why this worker can no longer do its job (its WAL failed), or None."""
        return None if self._fatal is None else f"WAL failed: {self._fatal}"

    @property
    def ranges(self) -> list[KeyRange]:
        return list(self._ranges)

    # -- layout ----------------------------------------------------------------------

    def set_layout(self, layout: Layout) -> None:
        """Follow a new TSL: serve its ranges for this replica, pull from its logs.

        Called by the node's gateway on every TSL change, from the event loop.
        A layout older than the newest epoch seen is ignored.
        """
        if self.stopped or layout.epoch < self._state.epoch:
            return
        if layout.epoch > self._state.epoch:
            # Rare (once per recovery): a small synchronous fsync is acceptable here.
            self._state = msgspec.structs.replace(self._state, epoch=layout.epoch)
            statefile.save(self._state_path, self._state, fsync=self._fsync)
            if layout.recovery_version < self._applied:
                self._rollback(layout.recovery_version)
        self._layout = layout
        self._ranges = _merge(
            [
                served_range(team.begin, team.end)
                for team in layout.storage
                if any(r.id == self.ref.id for r in team.replicas)
            ]
        )
        self._pulse.fire()  # reads waiting for this epoch
        if self._puller is not None:
            self._puller.cancel()  # safe: batches are applied between awaits, never halfway
            self._puller = None
        if not self._ranges:
            # Not in any team of this layout: stand still. Pulling would advance
            # `applied` past versions whose mutations it keeps none of, and a
            # later layout that takes this replica back (a spare) would then
            # serve reads at versions whose data it never stored.
            return
        loop = asyncio.get_running_loop()
        self._puller = loop.create_task(
            self._pull_loop(list(layout.logs)), name=f"pull-{self.ref.id}"
        )
        if self._persister is None:
            self._persister = loop.create_task(self._persist_loop(), name=f"persist-{self.ref.id}")

    def _rollback(self, version: int) -> None:
        log.info("storage %s: rolling back from %d to %d", self.ref.id, self._applied, version)
        if self._durable > version:
            # Never expected: the disk holds only committed versions, which a recovery keeps.
            log.error(
                "storage %s: durable %d above recovery %d", self.ref.id, self._durable, version
            )
        self._map.rollback(version)
        self._unpersisted = [b for b in self._unpersisted if b.version <= version]
        self._applied = version
        self._committed = min(self._committed, version)
        self._pulse.fire()

    # -- pulling and applying ----------------------------------------------------------

    async def _pull_loop(self, logs: list[WorkerRef]) -> None:
        if not logs:
            return
        i = 0
        last_compact = asyncio.get_running_loop().time()
        while not self.stopped:
            source = logs[i % len(logs)]
            req = LogPull(source.id, after=self._applied, limit=1000, wait_ms=PULL_WAIT_MS)
            try:
                resp = await self._dialer.call(source, req, timeout=PULL_WAIT_MS / 1000 + 2.0)
            except (OSError, TimeoutError) as exc:
                resp = Failed("unavailable", str(exc))
            if not isinstance(resp, LogBatches):
                log.debug("storage %s: pull from %s: %s", self.ref.id, source.id, resp)
                i += 1  # fail over to the next log
                await asyncio.sleep(0.05)
                continue
            self._apply(req.after, resp)
            now = asyncio.get_running_loop().time()
            if now - last_compact >= self._compact_interval:
                last_compact = now
                self._compact()

    def _apply(self, after: int, resp: LogBatches) -> None:
        if after != self._applied:
            return  # a rollback happened while this pull was in flight
        for batch in resp.batches:
            if batch.version <= self._applied:
                continue
            mine = self._mine(batch)
            for m in mine.mutations:
                self._map.apply(batch.version, m)
            self._applied = batch.version
            self._unpersisted.append(mine)
        self._committed = max(self._committed, min(resp.committed, self._applied))
        self._persist_wake.set()
        self._pulse.fire()

    def _mine(self, batch: CommitBatch) -> CommitBatch:
        """The batch restricted to the ranges this replica serves."""
        kept: list[Mutation] = []
        for m in batch.mutations:
            if m.kind == MutationKind.CLEAR_RANGE:
                for r in self._ranges:
                    begin, end = max(m.key, r.begin), min(m.param, r.end)
                    if begin < end:
                        kept.append(Mutation(m.kind, begin, end))
            elif any(r.contains(m.key) for r in self._ranges):
                kept.append(m)
        return CommitBatch(batch.prev_version, batch.version, kept)

    def _compact(self) -> None:
        oldest = self._applied - MVCC_WINDOW_VERSIONS
        if oldest > self._oldest:
            self._oldest = oldest
            self._map.compact(oldest)

    async def _persist_loop(self) -> None:
        """Write applied batches to the WAL once they are committed."""
        loop = asyncio.get_running_loop()
        while not self.stopped:
            await self._persist_wake.wait()
            self._persist_wake.clear()
            n = 0
            while n < len(self._unpersisted) and self._unpersisted[n].version <= self._committed:
                n += 1
            if n == 0:
                continue
            batches, self._unpersisted = self._unpersisted[:n], self._unpersisted[n:]
            entries = [
                native.Entry(self._next_index + i, self._state.epoch, _encoder.encode(b))
                for i, b in enumerate(batches)
            ]
            try:
                await loop.run_in_executor(self._executor, self._wal.append, entries, None)
            except Exception as exc:
                log.error("storage %s: WAL append failed: %s", self.ref.id, exc)
                self._fatal = exc
                return
            self._next_index += len(entries)
            self._durable = batches[-1].version
            self._persist_wake.set()  # more may have become committed meanwhile
            self._pulse.fire()

    # -- requests ----------------------------------------------------------------------

    async def handle(self, body: Request) -> Response:
        if self.stopped:
            return Failed("unavailable", f"storage {self.ref.id} is stopped")
        try:
            if isinstance(body, StorageGet):
                return await self._get(body)
            if isinstance(body, StorageGetRange):
                return await self._get_range(body)
            if isinstance(body, StorageStatus):
                return StorageState(self._applied, self._durable, self._oldest, self._state.locked)
            if isinstance(body, StorageLock):
                return await self._lock(body)
        except Exception as exc:
            log.exception("storage %s: %s failed", self.ref.id, type(body).__name__)
            return Failed("internal", f"{type(exc).__name__}: {exc}")
        return Failed("invalid", f"a storage does not handle {type(body).__name__}")

    async def _readable(
        self, version: int, begin: bytes, end: bytes | None, epoch: int
    ) -> Failed | Locked | None:
        """Why a read of ``[begin, end)`` (or the key ``begin``) at ``version`` cannot be served."""
        if self._state.locked:
            return Locked(f"storage {self.ref.id} is locked by a recovery")
        if not _client_readable(begin, end):
            return Failed("invalid", f"system key {begin[:32]!r} is not readable by clients")
        if epoch > self._state.epoch and not await self._pulse.wait_for(
            lambda: self._state.epoch >= epoch or self.stopped, self._read_wait
        ):
            return Failed("unavailable", f"storage {self.ref.id} has not seen epoch {epoch} yet")
        covered = any(
            r.contains(begin) if end is None else r.begin <= begin and end <= r.end
            for r in self._ranges
        )
        if not covered:
            return Failed("wrong_shard", f"storage {self.ref.id} does not serve {begin[:32]!r}")
        if version < self._oldest:
            return Failed("version_too_old", f"version {version} < oldest kept {self._oldest}")
        if version > self._applied and not await self._pulse.wait_for(
            lambda: self._applied >= version or self.stopped, self._read_wait
        ):
            return Failed("future_version", f"version {version} > applied {self._applied}")
        if self.stopped:
            return Failed("unavailable", f"storage {self.ref.id} is stopped")
        if version < self._oldest:  # compacted while waiting
            return Failed("version_too_old", f"version {version} < oldest kept {self._oldest}")
        return None

    async def _get(self, req: StorageGet) -> Response:
        if refused := await self._readable(req.version, req.key, None, req.epoch):
            return refused
        return Value(self._map.get(req.key, req.version), req.version)

    async def _get_range(self, req: StorageGetRange) -> Response:
        if req.begin > req.end:
            return Failed("invalid", "range begin is after its end")
        if refused := await self._readable(req.version, req.begin, req.end, req.epoch):
            return refused
        limit = max(1, min(req.limit, MAX_RANGE_LIMIT))
        pairs, more = self._map.range(req.begin, req.end, req.version, limit)
        return Values(pairs, more, req.version)

    async def _lock(self, req: StorageLock) -> Response:
        if req.epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        state = StorageFileState(req.epoch, req.locked)
        if state != self._state:
            self._state = state
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self._executor, lambda: statefile.save(self._state_path, state, fsync=self._fsync)
            )
        return StorageState(self._applied, self._durable, self._oldest, self._state.locked)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._pulse.fire()
        for task in (self._puller, self._persister):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        # A persist cancelled mid-write still finishes in the executor before close.
        if self._owns_executor:
            self._executor.shutdown(wait=True)
        self._wal.close()
