"""The log worker: the durable, version-ordered record of commit batches.

Each :class:`~bedrock_cp.protocol.CommitBatch` is one entry of a native WAL
(data = the msgpack batch). Batches form a chain: a push is accepted only if
its ``prev_version`` is the log's last version, so a log never holds a version
without every version before it (since its base). A push waits a bounded time
for a missing predecessor (another proxy's batch still in flight), then fails
with ``gap``.

Durability: a push is answered only after its batch is fsync'd. Pushes arriving
while an fsync runs are written together by the next one (group commit), on a
dedicated single-thread executor so the event loop keeps serving meanwhile.

**Bounded history.** The batches live in a run of WAL *generations*: directories
``wal.<n>``, each a native WAL holding a contiguous run of the chain; a new one
is started once the current one holds :data:`GENERATION_BYTES`. The log serves
a set of storage replicas (given by the Director in
:class:`~bedrock_cp.protocol.LogRecover`, or joining later with
:class:`~bedrock_cp.protocol.LogPop`); each reports how far it has made its
data durable, and the log discards every batch at or below the lowest report:
from memory at once, and from disk a whole generation at a time (the state
file moves past it first, then its directory is removed). A replica that stops
reporting holds the log back, never the other way round: nothing a replica the
log serves still needs is ever discarded. A locked log discards nothing more
(the recovering Director copies from it what the replicas still need).

Every reply of a pull is bounded in bytes
(:data:`~bedrock_cp.protocol.layout.MAX_STREAM_BYTES` past its first batch), and
so is every pull a recovery copy makes: the copier resumes after the last
version it got. A copy takes the whole range from one source (checked as one
chain, never mixed with another source's batches); a source that fails is
left for the next at once, and one silent for :data:`COPY_HEDGE` (a stopped
node resets nothing) gets the next one copying beside it: the first complete
copy wins.

Fencing (I6): the highest epoch seen, the lock flag, the generations on disk
and the replicas served live in a small state file (:mod:`.statefile`), durable
before the request that changed them is answered. A locked log is locked for
good: its generation is over, and the next generation writes to new logs.
:class:`~bedrock_cp.protocol.LogRecover` rewrites a log into fresh WAL
generations holding exactly the requested range and makes it a member of the
recovering epoch (so it is unlocked again).

The proxies' ``committed`` version rides along with pushes (and
:class:`~bedrock_cp.protocol.LogCommitted` hints from an idle proxy) and is kept
in the WAL hard state's ``commit`` slot of the next append (a hint: written
without an extra fsync).
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
    MAX_STREAM_BYTES,
    STREAM_BYTES,
    CommitBatch,
    ConfirmEpoch,
    Done,
    Failed,
    Locked,
    LogBatches,
    LogCommitted,
    LogLock,
    LogLocked,
    LogPop,
    LogPull,
    LogPush,
    LogPushed,
    LogRecover,
    LogRecovered,
    NewerEpoch,
    ReplicaProgress,
    Request,
    Response,
    WorkerRef,
)
from . import statefile
from .pulse import Pulse
from .wal_appends import WalAppends
from .worker import Dialer

log = logging.getLogger(__name__)

#: Most batches one pull returns, and the longest long-poll honoured.
MAX_PULL_LIMIT = 10_000
MAX_PULL_WAIT_MS = 60_000
#: A WAL generation is closed (and a new one started) once it holds this much.
GENERATION_BYTES = 4 << 20
#: How long a recovery copy waits for one pull from a source.
COPY_PULL_TIMEOUT = 10.0
#: How long a recovery copy waits for any answer before it starts copying from
#: the next source as well (a stopped node answers nothing and resets nothing).
#: Under the Director's health timeout (0.25 s): a silent source costs less
#: than a dead component does to notice.
COPY_HEDGE = 0.1

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(CommitBatch)


#: How far from its run of generations a log on an unlistable disk looks for strays.
STRAY_REACH = 64


class LogState(msgspec.Struct, array_like=True, frozen=True):
    """What the log keeps in its state file.

    The WAL generations on disk are ``wal.<first_generation>`` to
    ``wal.<generation>`` (the last one is appended to; -1: only ``generation``).
    The log holds every batch of the chain above ``base``; ``epoch`` is the
    highest epoch seen; ``locked`` whether a recovery locked this log (for
    good); ``replicas`` the storage replicas it serves, each with the lowest
    durable version it may still need (what the Director gave, or where it
    joined).
    """

    generation: int = 0
    base: int = 0
    epoch: int = 0
    locked: bool = False
    first_generation: int = -1
    replicas: list[ReplicaProgress] = msgspec.field(default_factory=list)

    @property
    def generations(self) -> range:
        first = self.generation if self.first_generation < 0 else self.first_generation
        return range(first, self.generation + 1)


def _encoded_size(batch: CommitBatch) -> int:
    return len(_encoder.encode(batch))


class LogWorker:
    """A log: durable append by version, pull, pop, lock, recovery copy."""

    def __init__(
        self,
        ref: WorkerRef,
        directory: Path,
        *,
        cluster_id: str,
        fsync: bool = True,
        dialer: Dialer | None = None,
        gap_wait: float = 1.0,
        generation_bytes: int = GENERATION_BYTES,
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
        self._generation_bytes = generation_bytes
        self._disk = disk
        directory.mkdir(parents=True, exist_ok=True)
        self._state = statefile.load(self._state_path, LogState) or LogState()
        self._remove_strays()
        # The chain held, in version order (those above _durable await their
        # fsync); sizes are the encoded batches' bytes.
        self._versions: list[int] = []
        self._batches: list[CommitBatch] = []
        self._sizes: list[int] = []
        #: Closed generations still on disk: (generation, its last version).
        self._closed: list[tuple[int, int]] = []
        self._committed = 0
        self._next_index = 1
        self._generation_size = 0
        # The generation appended to; a new log opens (creates) it with its first
        # append, so a log a recovery is about to rewrite never makes one for nothing.
        self._wal: native.Wal | None = None
        for generation in self._state.generations:
            if generation == self._state.generation and not self._wal_exists(generation):
                break
            wal = self._open_wal(generation)
            hard, _, entries = wal.take_recovered()
            self._committed = max(self._committed, hard.commit)
            for entry in entries:
                batch = _batch_decoder.decode(entry.data)
                self._versions.append(batch.version)
                self._batches.append(batch)
                self._sizes.append(len(entry.data))
            if generation != self._state.generation:
                self._closed.append((generation, self._versions[-1] if entries else 0))
                wal.close()
            else:
                self._wal = wal
                self._next_index = len(entries) + 1
                self._generation_size = sum(len(e.data) for e in entries)
        self._base = self._state.base
        self._last = self._versions[-1] if self._versions else self._state.base
        self._durable = self._last
        self._committed = min(self._committed, self._durable)
        #: Replica id -> the highest durable version it reported (or was given).
        self._replicas: dict[str, int] = {r.replica: r.durable for r in self._state.replicas}
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
        # A real node's log appends on the WAL's own thread; a given executor
        # (the simulation's inline one, some tests) runs the appends itself.
        self._appends = WalAppends() if executor is None else None
        self._flusher: asyncio.Task[None] | None = None
        self._discarding: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.directory / "state"

    def _wal_dir(self, generation: int) -> Path:
        return self.directory / f"wal.{generation}"

    def _open_wal(self, generation: int) -> native.Wal:
        return native.Wal.open(
            self._wal_dir(generation), self._cluster_id, 1, sync=self._fsync, disk=self._disk
        )

    # The WAL generations live on the real file system, or on the disk given
    # (the simulation's); the state file is always a real file.

    def _wal_exists(self, generation: int) -> bool:
        path = self._wal_dir(generation)
        return path.exists() if self._disk is None else self._disk.exists(path)

    def _remove_wal(self, generation: int) -> None:
        path = self._wal_dir(generation)
        if self._disk is None:
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                self._disk.remove_tree(path)

    def _remove_strays(self) -> None:
        """Generations outside the state file's run: a crash left them halfway
        (started but not yet named, or named away but not yet removed)."""
        keep = self._state.generations
        if self._disk is None:
            names = {self._wal_dir(g).name for g in keep}
            for path in self.directory.glob("wal.*"):
                if path.name not in names:
                    shutil.rmtree(path, ignore_errors=True)
            return
        # A disk that cannot be listed: a crash leaves strays next to the run
        # only (a roll or a recovery was starting the ones after it, or was
        # removing the ones before it), so look that far.
        for generation in range(max(0, keep.start - STRAY_REACH), keep.stop + STRAY_REACH):
            if generation not in keep and self._wal_exists(generation):
                self._remove_wal(generation)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._pulse.fire()
        for task in (self._flusher, self._discarding):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        async with self._io_lock:
            if self._appends is not None:
                self._appends.close()
            if self._wal is not None:
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

    @property
    def base(self) -> int:
        """Every batch of the chain above this version is held."""
        return self._base

    @property
    def held(self) -> int:
        """How many batches the log holds in memory."""
        return len(self._versions)

    @property
    def generations(self) -> list[int]:
        """The WAL generations on disk, oldest first."""
        return list(self._state.generations)

    @property
    def replicas(self) -> dict[str, int]:
        """The replicas served, with the durable version each reported."""
        return dict(self._replicas)

    # -- requests ---------------------------------------------------------------------

    async def handle(self, body: Request) -> Response:
        if self.stopped:
            return Failed("unavailable", f"log {self.ref.id} is stopped")
        try:
            if isinstance(body, LogPush):
                return await self._push(body)
            if isinstance(body, LogPull):
                return await self._pull(body)
            if isinstance(body, LogPop):
                return await self._pop(body)
            if isinstance(body, LogCommitted):
                return await self._committed_hint(body)
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

    def answer_now(self, body: Request) -> Response | None:
        """A confirmation of the epoch, at once; None for anything else (see :meth:`handle`)."""
        if not isinstance(body, ConfirmEpoch):
            return None
        if self.stopped:
            return Failed("unavailable", f"log {self.ref.id} is stopped")
        return self.confirm_epoch(body)

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
            # (Below the base nothing can be checked: refused too.)
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
        data = _encoder.encode(batch)
        self._versions.append(batch.version)
        self._batches.append(batch)
        self._sizes.append(len(data))
        self._last = batch.version
        self._pending.append(data)
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
                try:
                    if self._generation_size >= self._generation_bytes:
                        await self._roll()
                    datas, self._pending = self._pending, []
                    upto = self._pending_last
                    term = self._state.epoch
                    entries = [
                        native.Entry(self._next_index + i, term, data)
                        for i, data in enumerate(datas)
                    ]
                    hard = native.HardState(0, 0, self._committed)
                    if self._wal is None:
                        self._wal = await loop.run_in_executor(
                            self._executor, self._open_wal, self._state.generation
                        )
                    if self._appends is not None:
                        await self._appends.append(self._wal, entries, hard)
                    else:
                        await loop.run_in_executor(self._executor, self._wal.append, entries, hard)
                except Exception as exc:
                    # An fsync failure poisons the WAL: this log is done (its data may be lost).
                    log.error("log %s: WAL append failed: %s", self.ref.id, exc)
                    self._fatal = exc
                    self._pulse.fire()
                    return
                self._next_index += len(entries)
                self._generation_size += sum(len(d) for d in datas)
                self._durable = upto
            self._pulse.fire()

    async def _roll(self) -> None:
        """Close the current generation and start the next one (under the I/O lock)."""
        loop = asyncio.get_running_loop()
        old, generation = self._state.generation, self._state.generation + 1

        def open_new() -> native.Wal:
            self._remove_wal(generation)
            return self._open_wal(generation)

        wal = await loop.run_in_executor(self._executor, open_new)
        first = self._state.generations.start
        await self._save_state(
            msgspec.structs.replace(self._state, generation=generation, first_generation=first)
        )
        previous, self._wal = self._wal, wal
        if previous is not None:
            await loop.run_in_executor(self._executor, previous.close)
        self._closed.append((old, self._durable))
        self._next_index = 1
        self._generation_size = 0

    # -- pulls -----------------------------------------------------------------------

    async def _pull(self, req: LogPull) -> Response:
        if req.after < self._base:
            return self._too_old(req.after)
        limit = max(1, min(req.limit, MAX_PULL_LIMIT))
        budget = max(1, min(req.max_bytes, MAX_STREAM_BYTES))
        wait = max(0, min(req.wait_ms, MAX_PULL_WAIT_MS)) / 1000
        if wait > 0:
            committed = self._committed
            # A newer committed version alone answers only while no batch is on
            # its way to disk: a push moves it as it appends, and the batch
            # follows within an fsync (one answer per push, not two).
            await self._pulse.wait_for(
                lambda: (
                    self._durable > req.after
                    or (self._committed > committed and self._last == self._durable)
                    or self._unavailable() is not None
                ),
                wait,
            )
        if failed := self._unavailable():
            return failed
        if req.after < self._base:  # discarded while waiting
            return self._too_old(req.after)
        start = bisect.bisect_right(self._versions, req.after)
        end = bisect.bisect_right(self._versions, self._durable, lo=start)
        end = min(end, start + limit)
        stop, size = start, 0
        while stop < end and (stop == start or size + self._sizes[stop] <= budget):
            size += self._sizes[stop]
            stop += 1
        return LogBatches(self._batches[start:stop], self._last, self._durable, self._committed)

    def _too_old(self, after: int) -> Failed:
        return Failed(
            "version_too_old",
            f"log {self.ref.id} holds only versions after {self._base}, not after {after}",
        )

    async def _committed_hint(self, req: LogCommitted) -> Response:
        if req.epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        if self._state.locked:
            return Locked(f"log {self.ref.id} is locked (epoch {self._state.epoch})")
        committed = max(self._committed, min(req.version, self._durable))
        if committed > self._committed:
            self._committed = committed
            self._pulse.fire()
        return Done()

    # -- popping ---------------------------------------------------------------------

    async def _pop(self, req: LogPop) -> Response:
        known = self._replicas.get(req.replica)
        if known is None:
            if not req.join:
                return Done()  # not a replica this log serves: it holds nothing back
            if req.durable < self._base:
                return self._too_old(req.durable)
            self._replicas[req.replica] = req.durable
            progress = [*self._state.replicas, ReplicaProgress(req.replica, req.durable)]
            async with self._io_lock:
                await self._save_state(msgspec.structs.replace(self._state, replicas=progress))
            return Done()
        if req.durable > known:
            self._replicas[req.replica] = req.durable
            self._discard()
        return Done()

    def _discard(self) -> None:
        """Drop what every replica served has made durable (never on a locked log)."""
        if self._state.locked or not self._replicas:
            return
        floor = min(min(self._replicas.values()), self._durable)
        if floor <= self._base:
            return
        stop = bisect.bisect_right(self._versions, floor)
        if stop:
            self._base = self._versions[stop - 1]
            # Let go of the batches at once (they may be megabytes each).
            del self._versions[:stop]
            del self._batches[:stop]
            del self._sizes[:stop]
        if self._closed and self._closed[0][1] <= self._base and self._discarding is None:
            self._discarding = asyncio.get_running_loop().create_task(
                self._discard_generations(), name=f"log-discard-{self.ref.id}"
            )

    async def _discard_generations(self) -> None:
        """Remove closed generations that hold nothing above the base: the state
        file moves past them first, so a crash halfway leaves strays, never holes."""
        try:
            async with self._io_lock:
                dead = [g for g, last in self._closed if last <= self._base]
                if not dead or self._state.locked:
                    return
                self._closed = self._closed[len(dead) :]
                first = self._closed[0][0] if self._closed else self._state.generation
                await self._save_state(
                    msgspec.structs.replace(self._state, first_generation=first, base=self._base)
                )

                def remove() -> None:
                    for generation in dead:
                        self._remove_wal(generation)

                await asyncio.get_running_loop().run_in_executor(self._executor, remove)
        finally:
            self._discarding = None

    # -- recovery --------------------------------------------------------------------

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
        progress = [ReplicaProgress(r, v) for r, v in sorted(self._replicas.items())]
        return LogLocked(oldest, self._last, self._durable, progress)

    async def _recover(self, req: LogRecover) -> Response:
        if req.epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        # A log that never wrote its state is known to this request's Director
        # only: the install below persists the epoch (one state write, not two).
        if self._state_path.exists() and (newer := await self._see_epoch(req.epoch)):
            return newer
        if req.first > req.last + 1 or (req.first < 1 and req.last >= req.first):
            return Failed("invalid", f"bad range [{req.first}, {req.last}]")
        if any(r.durable < req.first - 1 for r in req.replicas):
            return Failed("invalid", f"a replica needs versions before {req.first}")
        if self._dialer is None and req.first <= req.last:
            return Failed("internal", f"log {self.ref.id} has no dialer to copy from")
        loop = asyncio.get_running_loop()
        started = loop.time()
        batches: list[CommitBatch] = []
        if req.first <= req.last:
            copied = await self._copy(req)
            if isinstance(copied, Failed):
                return copied
            batches = copied
        base = batches[0].prev_version if batches else req.last
        copied_at = loop.time()
        async with self._io_lock:
            if failed := self._unavailable():
                return failed
            await self._install(batches, base, req)
        self._pulse.fire()
        # Where a slow replay spent its time (the Director's timeline has only the total).
        log.info(
            "log %s: recovered [%d, %d] for epoch %d: %d batches copied in %.0f ms, "
            "written in %.0f ms",
            self.ref.id,
            req.first,
            req.last,
            req.epoch,
            len(batches),
            (copied_at - started) * 1000,
            (loop.time() - copied_at) * 1000,
        )
        return LogRecovered(req.first, req.last, len(batches))

    async def _copy(self, req: LogRecover) -> list[CommitBatch] | Failed:
        """Exactly the batches with versions in ``[first, last]``, from any one source,
        pulled in answers bounded in bytes.

        Sources are tried in order; each copy is whole and checked on its own
        (one source's batches are never mixed with another's). A source that
        fails is left for the next one at once; one that stays silent
        :data:`COPY_HEDGE` (a stopped node resets nothing: its pull would last
        :data:`COPY_PULL_TIMEOUT`) gets the next source started beside it, and
        the first copy to complete wins (the others are cancelled).
        """
        assert self._dialer is not None
        progress = asyncio.Event()
        reasons: list[str] = []
        copies: list[asyncio.Task[list[CommitBatch] | str]] = []
        waiting: set[asyncio.Task[list[CommitBatch] | str]] = set()
        sources = iter(req.sources)

        def start_next() -> bool:
            source = next(sources, None)
            if source is None:
                return False
            task = asyncio.ensure_future(self._copy_from(source, req, progress))
            copies.append(task)
            waiting.add(task)
            return True

        try:
            start_next()
            while waiting:
                progress.clear()
                done, _ = await asyncio.wait(
                    waiting, timeout=COPY_HEDGE, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    waiting.discard(task)
                    result = task.result()
                    if isinstance(result, list):
                        if len(copies) > 1:
                            log.info(
                                "log %s: copied from source %d of %d (%s)",
                                self.ref.id,
                                copies.index(task) + 1,
                                len(req.sources),
                                "; ".join(reasons) or "the earlier ones were silent",
                            )
                        return result
                    reasons.append(result)
                    start_next()  # this source failed: the next one
                if not done and not progress.is_set():
                    start_next()  # silent (no answer within COPY_HEDGE): race the next one
        finally:
            for task in copies:
                task.cancel()
            await asyncio.gather(*copies, return_exceptions=True)
        return Failed("unavailable", "no source holds the range: " + "; ".join(reasons))

    async def _copy_from(
        self, source: WorkerRef, req: LogRecover, progress: asyncio.Event
    ) -> list[CommitBatch] | str:
        """The batches ``[first, last]`` from ``source`` alone, or why not (setting
        ``progress`` at each answer)."""
        assert self._dialer is not None
        batches: list[CommitBatch] = []
        after = req.first - 1
        while True:
            pull = LogPull(source.id, after=after, limit=MAX_PULL_LIMIT, max_bytes=STREAM_BYTES)
            try:
                resp = await self._dialer.call(source, pull, timeout=COPY_PULL_TIMEOUT)
            except Exception as exc:  # unreachable, timed out, a bad answer: next source
                return f"{source.id}: {type(exc).__name__} {exc}"
            progress.set()
            if not isinstance(resp, LogBatches):
                return f"{source.id}: {resp}"
            fresh = [b for b in resp.batches if b.version <= req.last]
            for b in fresh:
                prev = batches[-1].version if batches else None
                if prev is not None and b.prev_version != prev:
                    return f"{source.id}: chain broken at {b.version}"
                batches.append(b)
            if batches and batches[-1].version == req.last:
                return batches
            if not resp.batches or len(fresh) < len(resp.batches):
                return f"{source.id}: holds up to {resp.durable}, not {req.last}"
            after = resp.batches[-1].version

    async def _install(self, batches: list[CommitBatch], base: int, req: LogRecover) -> None:
        """Switch to fresh WAL generations holding exactly ``batches`` (under the I/O lock)."""
        loop = asyncio.get_running_loop()
        old = self._state.generations
        first = old.stop
        term = max(req.epoch, self._state.epoch)
        datas = [_encoder.encode(b) for b in batches]

        # Split the range into generations of about generation_bytes each.
        groups: list[tuple[int, int]] = []  # [start, stop) into batches
        start, size = 0, 0
        for i, data in enumerate(datas):
            if i > start and size >= self._generation_bytes:
                groups.append((start, i))
                start, size = i, 0
            size += len(data)
        groups.append((start, len(datas)))

        def build() -> tuple[native.Wal, list[tuple[int, int]]]:
            closed: list[tuple[int, int]] = []
            wal: native.Wal | None = None
            for n, (lo, hi) in enumerate(groups):
                if wal is not None:
                    wal.close()
                    closed.append((first + n - 1, batches[lo - 1].version))
                self._remove_wal(first + n)
                wal = self._open_wal(first + n)
                entries = [native.Entry(j - lo + 1, term, datas[j]) for j in range(lo, hi)]
                wal.append(entries, native.HardState(0, 0, req.last))
            assert wal is not None
            return wal, closed

        wal, closed = await loop.run_in_executor(self._executor, build)
        next_index = groups[-1][1] - groups[-1][0] + 1
        size = sum(len(d) for d in datas[groups[-1][0] :])

        # The state file names the generations: replacing it is the switch-over.
        last_generation = first + len(groups) - 1
        await self._save_state(
            LogState(
                generation=last_generation,
                base=base,
                epoch=term,
                locked=False,
                first_generation=first,
                replicas=list(req.replicas),
            )
        )
        previous, self._wal = self._wal, wal
        self._versions = [b.version for b in batches]
        self._batches = list(batches)
        self._sizes = [len(d) for d in datas]
        self._closed = closed
        self._next_index = next_index
        self._generation_size = size
        self._base = base
        self._last = self._durable = batches[-1].version if batches else base
        self._committed = req.last
        self._replicas = {r.replica: r.durable for r in req.replicas}
        self._pending = []

        def drop_old() -> None:
            if previous is not None:
                previous.close()
            for generation in old:
                self._remove_wal(generation)

        await loop.run_in_executor(self._executor, drop_old)
