"""The log worker: the durable, version-ordered record of commit batches.

Each :class:`~bedrock_cp.protocol.CommitBatch` is one entry of a native WAL
(entry index = 1, 2, 3, ... in arrival order; data = the msgpack batch). Batches form a chain:
a push is accepted only if its ``prev_version`` is the log's last version, so a
log never holds a version without every version before it (since its base).
A push waits a bounded time for a missing predecessor (another proxy's batch
still in flight), then fails with ``gap``.

Durability: a push is answered only after its batch is fsync'd. Pushes arriving
while an fsync runs are written together by the next one (group commit), on a
dedicated single-thread executor so the event loop keeps serving meanwhile.

Fencing (DESIGN §9 I6): the highest epoch seen and the lock flag live in a
small state file (:mod:`.statefile`), durable before the request that changed
them is answered. A locked log is locked for good: its generation is over, and
the next generation writes to new logs. :class:`~bedrock_cp.protocol.LogRecover`
rewrites a log into a fresh WAL generation holding exactly the requested range
and makes it a member of the recovering epoch (so it is unlocked again).

The proxies' ``committed`` version rides along with pushes and is kept in the
WAL hard state's ``commit`` slot (a hint: written without an extra fsync).
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import logging
import shutil
from pathlib import Path

import msgspec

from .._native import native
from ..protocol import (
    CommitBatch,
    ConfirmEpoch,
    Done,
    Failed,
    Locked,
    LogBatches,
    LogLock,
    LogLocked,
    LogPull,
    LogPush,
    LogPushed,
    LogRecover,
    LogRecovered,
    NewerEpoch,
    Request,
    Response,
    WorkerRef,
)
from . import statefile
from .pulse import Pulse
from .worker import Dialer

log = logging.getLogger(__name__)

#: Most batches one pull returns, and the longest long-poll honoured.
MAX_PULL_LIMIT = 10_000
MAX_PULL_WAIT_MS = 60_000

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(CommitBatch)


class LogState(msgspec.Struct, array_like=True, frozen=True):
    """What the log keeps in its state file.

    ``generation`` names the WAL directory in use (``wal.<generation>``);
    ``base`` is the version the oldest held batch chains from (the log's
    start); ``epoch`` the highest epoch seen; ``locked`` whether a recovery
    locked this log (for good).
    """

    generation: int = 0
    base: int = 0
    epoch: int = 0
    locked: bool = False


class LogWorker:
    """A log: durable append by version, pull, lock, recovery copy."""

    def __init__(
        self,
        ref: WorkerRef,
        directory: Path,
        *,
        cluster_id: str,
        fsync: bool = True,
        dialer: Dialer | None = None,
        gap_wait: float = 1.0,
        executor: concurrent.futures.Executor | None = None,
        disk: native.MemDisk | None = None,
    ) -> None:
        self.ref = ref
        self.directory = directory
        self.stopped = False
        self._cluster_id = cluster_id
        self._fsync = fsync
        self._dialer = dialer
        self._gap_wait = gap_wait
        self._disk = disk
        directory.mkdir(parents=True, exist_ok=True)
        self._state = statefile.load(self._state_path, LogState) or LogState()
        self._wal = native.Wal.open(
            self._wal_dir(self._state.generation), cluster_id, 1, sync=fsync, disk=disk
        )
        hard, _, entries = self._wal.take_recovered()
        self._committed = hard.commit
        # Every accepted batch, in version order; those above _durable await their fsync.
        self._versions: list[int] = []
        self._batches: list[CommitBatch] = []
        for entry in entries:
            batch = _batch_decoder.decode(entry.data)
            self._versions.append(batch.version)
            self._batches.append(batch)
        self._next_index = len(entries) + 1
        self._last = self._versions[-1] if self._versions else self._state.base
        self._durable = self._last
        self._pending: list[bytes] = []
        self._pending_last = 0
        self._fatal: BaseException | None = None
        self._pulse = Pulse()
        self._flush_wake = asyncio.Event()
        self._io_lock = asyncio.Lock()
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"log-{ref.id}"
        )
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.directory / "state"

    def _wal_dir(self, generation: int) -> Path:
        return self.directory / f"wal.{generation}"

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._pulse.fire()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(BaseException):
                await self._flusher
        async with self._io_lock:
            self._wal.close()
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    # -- status (for tests and the Foreman) ---------------------------------------

    @property
    def last(self) -> int:
        return self._last

    @property
    def durable(self) -> int:
        return self._durable

    @property
    def committed(self) -> int:
        return self._committed

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def broken(self) -> str | None:
        """Why this worker can no longer do its job (its WAL failed), or None."""
        return None if self._fatal is None else f"WAL failed: {self._fatal}"

    @property
    def locked(self) -> bool:
        return self._state.locked

    # -- requests ---------------------------------------------------------------------

    async def handle(self, body: Request) -> Response:
        if self.stopped:
            return Failed("unavailable", f"log {self.ref.id} is stopped")
        try:
            if isinstance(body, LogPush):
                return await self._push(body)
            if isinstance(body, LogPull):
                return await self._pull(body)
            if isinstance(body, LogLock):
                return await self._lock(body)
            if isinstance(body, LogRecover):
                return await self._recover(body)
            if isinstance(body, ConfirmEpoch):
                return self.confirm_epoch(body)
        except Exception as exc:  # a bug or a broken disk: answer, never crash the node
            log.exception("log %s: %s failed", self.ref.id, type(body).__name__)
            return Failed("internal", f"{type(exc).__name__}: {exc}")
        return Failed("invalid", f"a log does not handle {type(body).__name__}")

    def confirm_epoch(self, req: ConfirmEpoch) -> Response:
        """Is ``req.epoch`` still current here? A sequencer asks before handing out
        read versions. Read-only: nothing is persisted, no other request waits."""
        if req.epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        if self._state.locked:
            return Locked(f"log {self.ref.id} is locked (epoch {self._state.epoch})")
        if failed := self._unavailable():
            return failed
        return Done()

    async def _see_epoch(self, epoch: int) -> NewerEpoch | None:
        """Refuse an older epoch (I6); raise and persist a newer one."""
        if epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        if epoch > self._state.epoch:
            await self._save_state(msgspec.structs.replace(self._state, epoch=epoch))
        return None

    async def _save_state(self, state: LogState) -> None:
        self._state = state
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, lambda: statefile.save(self._state_path, state, fsync=self._fsync)
        )

    def _unavailable(self) -> Failed | None:
        if self.stopped:
            return Failed("unavailable", f"log {self.ref.id} is stopped")
        if self._fatal is not None:
            return Failed("internal", f"log {self.ref.id} WAL failed: {self._fatal}")
        return None

    async def _push(self, req: LogPush) -> Response:
        if newer := await self._see_epoch(req.epoch):
            return newer
        batch = req.batch
        if batch.version <= batch.prev_version:
            return Failed("invalid", f"batch version {batch.version} <= prev {batch.prev_version}")
        if self._state.locked:
            return Locked(f"log {self.ref.id} is locked (epoch {self._state.epoch})")
        if batch.prev_version > self._last:
            # Another proxy's earlier batch is still on its way: wait for the chain.
            if not await self._pulse.wait_for(
                lambda: batch.prev_version <= self._last or self.stopped, self._gap_wait
            ):
                return Failed(
                    "gap", f"version {batch.prev_version} never arrived (last {self._last})"
                )
            if failed := self._unavailable():
                return failed
            if self._state.epoch > req.epoch:
                return NewerEpoch(self._state.epoch)
            if self._state.locked:
                return Locked(f"log {self.ref.id} is locked (epoch {self._state.epoch})")
        if batch.version <= self._last:
            # A retry of a batch already here is acknowledged; anything else is a fork.
            i = bisect.bisect_left(self._versions, batch.version)
            if i == len(self._versions) or self._batches[i] != batch:
                return Failed(
                    "invalid", f"batch {batch.version} is not the one logged (log at {self._last})"
                )
        elif batch.prev_version != self._last:
            return Failed(
                "invalid", f"batch chains from {batch.prev_version}, log is at {self._last}"
            )
        else:
            self._append(batch)
        self._committed = max(self._committed, min(req.committed, batch.version))
        if not await self._pulse.wait_for(
            lambda: self._durable >= batch.version or self._unavailable() is not None, 3600.0
        ):
            return Failed("internal", "fsync never completed")
        if failed := self._unavailable():
            return failed
        return LogPushed(batch.version, self._durable)

    def _append(self, batch: CommitBatch) -> None:
        self._versions.append(batch.version)
        self._batches.append(batch)
        self._last = batch.version
        self._pending.append(_encoder.encode(batch))
        self._pending_last = batch.version
        self._flush_wake.set()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name=f"log-flush-{self.ref.id}"
            )
        self._pulse.fire()

    async def _flush_loop(self) -> None:
        """Write and fsync whatever accumulated while the previous fsync ran."""
        loop = asyncio.get_running_loop()
        while not self.stopped:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            if not self._pending:
                continue
            async with self._io_lock:
                datas, self._pending = self._pending, []
                upto = self._pending_last
                term = self._state.epoch
                entries = [
                    native.Entry(self._next_index + i, term, data) for i, data in enumerate(datas)
                ]
                hard = native.HardState(0, 0, self._committed)
                try:
                    await loop.run_in_executor(self._executor, self._wal.append, entries, hard)
                except Exception as exc:
                    # An fsync failure poisons the WAL: this log is done (its data may be lost).
                    log.error("log %s: WAL append failed: %s", self.ref.id, exc)
                    self._fatal = exc
                    self._pulse.fire()
                    return
                self._next_index += len(entries)
                self._durable = upto
            self._pulse.fire()

    async def _pull(self, req: LogPull) -> Response:
        if req.after < self._state.base:
            return Failed(
                "version_too_old",
                f"log {self.ref.id} starts after {self._state.base} > {req.after}",
            )
        limit = max(1, min(req.limit, MAX_PULL_LIMIT))
        wait = max(0, min(req.wait_ms, MAX_PULL_WAIT_MS)) / 1000
        if wait > 0:
            await self._pulse.wait_for(lambda: self._durable > req.after or self.stopped, wait)
        if failed := self._unavailable():
            return failed
        start = bisect.bisect_right(self._versions, req.after)
        end = bisect.bisect_right(self._versions, self._durable, lo=start)
        batches = self._batches[start : min(end, start + limit)]
        return LogBatches(batches, self._last, self._durable, self._committed)

    async def _lock(self, req: LogLock) -> Response:
        if newer := await self._see_epoch(req.epoch):
            return newer
        if not self._state.locked:
            await self._save_state(msgspec.structs.replace(self._state, locked=True))
        # Report only after every accepted batch is durable: the range is final.
        await self._pulse.wait_for(
            lambda: self._durable >= self._last or self._unavailable() is not None, 3600.0
        )
        if failed := self._unavailable():
            return failed
        oldest = self._versions[0] if self._versions else 0
        return LogLocked(oldest, self._last, self._durable)

    async def _recover(self, req: LogRecover) -> Response:
        if newer := await self._see_epoch(req.epoch):
            return newer
        if req.first > req.last + 1 or (req.first < 1 and req.last >= req.first):
            return Failed("invalid", f"bad range [{req.first}, {req.last}]")
        if self._dialer is None and req.first <= req.last:
            return Failed("internal", f"log {self.ref.id} has no dialer to copy from")
        batches: list[CommitBatch] = []
        if req.first <= req.last:
            copied = await self._copy(req)
            if isinstance(copied, Failed):
                return copied
            batches = copied
        base = batches[0].prev_version if batches else req.last
        async with self._io_lock:
            if failed := self._unavailable():
                return failed
            await self._install(batches, base, req.epoch, committed=req.last)
        self._pulse.fire()
        return LogRecovered(req.first, req.last, len(batches))

    async def _copy(self, req: LogRecover) -> list[CommitBatch] | Failed:
        """Exactly the batches with versions in ``[first, last]``, from any one source."""
        assert self._dialer is not None
        reasons: list[str] = []
        for source in req.sources:
            batches: list[CommitBatch] = []
            after = req.first - 1
            reason = ""
            while True:
                try:
                    resp = await self._dialer.call(
                        source, LogPull(source.id, after=after, limit=1000), timeout=10.0
                    )
                except (OSError, TimeoutError) as exc:
                    reason = f"{source.id}: {type(exc).__name__} {exc}"
                    break
                if not isinstance(resp, LogBatches):
                    reason = f"{source.id}: {resp}"
                    break
                fresh = [b for b in resp.batches if b.version <= req.last]
                for b in fresh:
                    prev = batches[-1].version if batches else None
                    if prev is not None and b.prev_version != prev:
                        reason = f"{source.id}: chain broken at {b.version}"
                        break
                    batches.append(b)
                if reason:
                    break
                if batches and batches[-1].version == req.last:
                    return batches
                if not resp.batches or len(fresh) < len(resp.batches):
                    reason = f"{source.id}: holds up to {resp.durable}, not {req.last}"
                    break
                after = resp.batches[-1].version
            reasons.append(reason)
        return Failed("unavailable", "no source holds the range: " + "; ".join(reasons))

    async def _install(
        self, batches: list[CommitBatch], base: int, epoch: int, *, committed: int
    ) -> None:
        """Switch to a fresh WAL generation holding exactly ``batches``."""
        loop = asyncio.get_running_loop()
        old_generation = self._state.generation
        generation = old_generation + 1
        new_dir = self._wal_dir(generation)
        term = max(epoch, self._state.epoch)

        def build() -> native.Wal:
            shutil.rmtree(new_dir, ignore_errors=True)
            wal = native.Wal.open(new_dir, self._cluster_id, 1, sync=self._fsync, disk=self._disk)
            entries = [native.Entry(i + 1, term, _encoder.encode(b)) for i, b in enumerate(batches)]
            wal.append(entries, native.HardState(0, 0, committed))
            return wal

        wal = await loop.run_in_executor(self._executor, build)
        # The state file names the generation: replacing it is the switch-over.
        await self._save_state(LogState(generation, base, term, locked=False))
        old = self._wal
        self._wal = wal
        self._versions = [b.version for b in batches]
        self._batches = list(batches)
        self._next_index = len(batches) + 1
        self._last = self._durable = batches[-1].version if batches else base
        self._committed = committed
        self._pending = []

        def drop_old() -> None:
            old.close()
            shutil.rmtree(self._wal_dir(old_generation), ignore_errors=True)

        await loop.run_in_executor(self._executor, drop_old)
