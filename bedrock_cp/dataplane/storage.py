"""The storage worker: applies committed batches and serves versioned reads.

It serves the key ranges of the layout's storage teams that list it, and pulls
batches from the layout's logs (one log at a time, the one on its own node
first, moving to the next on any error) with a long-poll
``LogPull(after=applied)``, each answer bounded in bytes. Every pulled batch
is applied at once to the in-memory MVCC window (:class:`~.mvcc.VersionedMap`)
above the durable base (:class:`~.engine.Engine`, SQLite), so reads at recent
versions are served.

**Continuity.** Batches chain (``prev_version``): one is applied only if it
chains from the last one applied. When a new epoch's layout arrives,
everything above its recovery version is rolled back; a batch that does not
chain from what was applied (the replica missed an epoch whose recovery
dropped versions it had applied) rolls the replica back to its durable
version, which every later chain contains, and it pulls again from there.

**Checkpoints.** Applied batches are flushed to the base once they are
committed (durable on every log of their generation) and out of the MVCC
window: older than :data:`~bedrock_cp.protocol.MVCC_WINDOW_VERSIONS` behind the
newest applied version, or applied that long ago (so an idle replica catches
up too). A flush is one SQLite transaction that also moves the durable
version. Reads at a version at or above the durable version are served (the
window decides the keys it holds, the base the others); older ones answer
``version_too_old``. A restart opens the base and pulls only what the logs
hold above its durable version. The replica reports that version to every
log of its layout (:class:`~bedrock_cp.protocol.LogPop`, at most once per
:data:`POP_INTERVAL`), so they can discard what it no longer needs.

**Fills.** A new, empty replica can be filled from a healthy one
(:class:`~bedrock_cp.protocol.StorageFill`): it opens a consistent snapshot of
the source's base (:class:`~bedrock_cp.protocol.StorageSnapshot`, chunks
bounded in bytes), joins the layout's logs at the snapshot's version (so they
keep what it will need), copies the chunks, and is then a replica whose data
is the source's at that version: a recovery can add it to the team.

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
import os
import random
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ..clock import SYSTEM_CLOCK, Clock
from ..protocol import (
    MAX_STREAM_BYTES,
    MVCC_WINDOW_VERSIONS,
    STREAM_BYTES,
    SYSTEM_PREFIX,
    VERSIONS_PER_SECOND,
    CommitBatch,
    Done,
    Failed,
    KeyRange,
    Layout,
    Locked,
    LogBatches,
    LogPop,
    LogPull,
    Mutation,
    MutationKind,
    NewerEpoch,
    Request,
    Response,
    SnapshotChunk,
    StorageFill,
    StorageGet,
    StorageGetRange,
    StorageLock,
    StorageSnapshot,
    StorageState,
    StorageStatus,
    Value,
    Values,
    WorkerRef,
    idempotency,
    served_range,
)
from . import statefile
from .engine import FILL_DONE, FILL_RUNNING, Engine, Snapshot
from .mvcc import VersionedMap
from .pulse import Pulse
from .worker import Dialer

log = logging.getLogger(__name__)

MAX_RANGE_LIMIT = 10_000
#: Pull long-poll; a pull answer lost for longer than this plus slack moves to the next log.
PULL_WAIT_MS = 500
#: How long an applied batch stays in the window (seconds), at least.
WINDOW_SECONDS = MVCC_WINDOW_VERSIONS / VERSIONS_PER_SECOND
#: Flushes are at least this far apart (seconds), and hold at most this many bytes.
FLUSH_INTERVAL = 0.1
FLUSH_BYTES = 16 << 20
#: The shortest wait of the flush loop for a batch to leave the window by time.
MIN_FLUSH_WAIT = 0.001
#: The durable version is reported to the logs at most this often (seconds).
POP_INTERVAL = 1.0
#: Snapshot sessions a replica serves at once, and how long an idle one lives.
MAX_SNAPSHOTS = 4
SNAPSHOT_IDLE = 30.0
#: A replica that cannot pull says so at most this often (seconds) per reason.
COMPLAIN_EVERY = 30.0


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


def _minus(begin: bytes, end: bytes, holes: list[KeyRange]) -> list[KeyRange]:
    """``[begin, end)`` without ``holes`` (sorted, disjoint, inside it)."""
    out: list[KeyRange] = []
    at = begin
    for hole in holes:
        if hole.begin > at:
            out.append(KeyRange(at, hole.begin))
        at = max(at, hole.end)
    if at < end:
        out.append(KeyRange(at, end))
    return out


def _batch_bytes(batch: CommitBatch) -> int:
    return sum(len(m.key) + len(m.param) + 8 for m in batch.mutations) + 16


@dataclass
class _Session:
    """A snapshot this replica serves to a replica being filled."""

    snapshot: Snapshot
    end: bytes
    used: float


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
        window_seconds: float = WINDOW_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        executor: concurrent.futures.Executor | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ref = ref
        self.directory = directory
        self.stopped = False
        self._cluster_id = cluster_id
        self._dialer = dialer
        self._fsync = fsync
        self._read_wait = read_wait
        self._window_seconds = window_seconds
        self._clock = clock
        self._rng = rng or random.Random()
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # the replica's data is private to its owner
        self._state = statefile.load(self._state_path, StorageFileState) or StorageFileState()
        self._engine = Engine(directory, fsync=fsync)
        self._fill = self._engine.fill()
        if self._fill == FILL_RUNNING:
            # A fill cut short by a crash: its data is a partial copy; drop it.
            self._engine.begin_fill()
            self._fill = "failed: interrupted by a restart"
        self._durable = self._engine.durable()
        self._applied = self._durable  # the version of the last batch applied
        self._committed = self._durable
        self._map = VersionedMap()
        # Applied batches not yet in the base (restricted to this replica's
        # ranges), oldest first, with when each was applied.
        self._unpersisted: list[CommitBatch] = []
        self._applied_at: list[float] = []
        self._layout: Layout | None = None
        self._ranges: list[KeyRange] = []
        self._pulse = Pulse()
        self._persist_wake = asyncio.Event()
        self._report_wake = asyncio.Event()
        # Writes on one thread, reads on another (each with its SQLite
        # connection), unless the node runs all its disk work on one executor.
        self._owns_executor = executor is None
        self._writes: concurrent.futures.Executor = (
            executor
            or concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"storage-w-{ref.id}"
            )
        )
        self._reads: concurrent.futures.Executor = (
            executor
            or concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"storage-r-{ref.id}"
            )
        )
        self._puller: asyncio.Task[None] | None = None
        self._persister: asyncio.Task[None] | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._filler: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._sessions: dict[str, _Session] = {}
        self._complaints: dict[str, float] = {}
        self._flushes = 0

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
        """Why this worker can no longer do its job (its base failed to write), or None."""
        return None if self._fatal is None else f"storage write failed: {self._fatal}"

    @property
    def ranges(self) -> list[KeyRange]:
        return list(self._ranges)

    @property
    def window(self) -> VersionedMap:
        """The MVCC window above the base (for tests)."""
        return self._map

    @property
    def flushes(self) -> int:
        """How many flushes to the base this replica made since it started."""
        return self._flushes

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
            # Cancelled, and also told by no longer being `_puller`: a cancellation
            # can be lost (Python 3.11's wait_for returns an answer that is ready
            # in the same loop iteration instead of raising it), and the old
            # puller must never apply a batch under this layout's ranges.
            self._puller.cancel()
            self._puller = None
        loop = asyncio.get_running_loop()
        if self._reporter is None:
            self._reporter = loop.create_task(self._report_loop(), name=f"pops-{self.ref.id}")
        self._report_wake.set()  # the new logs learn where this replica stands
        if not self._ranges:
            # Not in any team of this layout: stand still. Pulling would advance
            # `applied` past versions whose mutations it keeps none of, and a
            # later layout that takes this replica back (a spare) would then
            # serve reads at versions whose data it never stored.
            return
        # Every log holds every batch: the one on this node first (no network
        # hop, and no one node serves the pulls of every replica), then the
        # others in the layout's order.
        logs = sorted(layout.logs, key=lambda log: log.node != self.ref.node)
        self._puller = loop.create_task(self._pull_loop(logs), name=f"pull-{self.ref.id}")
        if self._persister is None:
            self._persister = loop.create_task(self._persist_loop(), name=f"persist-{self.ref.id}")

    def _rollback(self, version: int) -> None:
        """Forget every applied version above ``version`` (never below the base)."""
        if self._durable > version:
            # Never expected: the base holds only committed versions, which a recovery keeps.
            log.error(
                "storage %s: durable %d above recovery %d", self.ref.id, self._durable, version
            )
            version = self._durable
        log.info("storage %s: rolling back from %d to %d", self.ref.id, self._applied, version)
        self._map.rollback(version)
        keep = sum(1 for b in self._unpersisted if b.version <= version)
        del self._unpersisted[keep:]
        del self._applied_at[keep:]
        # The chain goes on from the last batch applied at or below `version`.
        self._applied = self._unpersisted[-1].version if self._unpersisted else self._durable
        self._committed = min(self._committed, version)
        self._pulse.fire()

    # -- pulling and applying ----------------------------------------------------------

    async def _pull_loop(self, logs: list[WorkerRef]) -> None:
        if not logs:
            return
        i = 0
        while not self.stopped and self._puller is asyncio.current_task():
            source = logs[i % len(logs)]
            after = self._applied
            req = LogPull(
                source.id, after=after, wait_ms=PULL_WAIT_MS, limit=10_000, max_bytes=STREAM_BYTES
            )
            try:
                resp = await self._dialer.call(source, req, timeout=PULL_WAIT_MS / 1000 + 2.0)
                if self._puller is not asyncio.current_task():
                    return  # a newer layout replaced this puller while it waited
                if isinstance(resp, LogBatches):
                    if self._apply(after, resp):
                        continue
                    problem = f"the chain of {source.id} does not continue from {self._durable}"
                else:
                    problem = f"{source.id}: {resp}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable, a bad answer, a bug: say so, go on
                problem = f"{source.id}: {type(exc).__name__}: {exc}"
            self._complain(problem)
            i += 1  # fail over to the next log
            await asyncio.sleep(0.05)

    def _complain(self, problem: str) -> None:
        """Log why pulling failed: at once for a new reason, then now and then."""
        key = problem.split(":", 2)[-1][:80]
        now = self._clock.monotonic()
        if now - self._complaints.get(key, -COMPLAIN_EVERY) >= COMPLAIN_EVERY:
            self._complaints[key] = now
            log.warning("storage %s: cannot pull: %s", self.ref.id, problem)

    def _apply(self, after: int, resp: LogBatches) -> bool:
        """Apply the batches that chain on; False if nothing chains from the base."""
        if after != self._applied:
            return True  # a rollback happened while this pull was in flight
        now = self._clock.monotonic()
        for batch in resp.batches:
            if batch.version <= self._applied:
                continue
            if batch.prev_version != self._applied:
                # What this replica applied is not the chain the logs now hold
                # (an epoch it missed dropped some of it): back to the base,
                # which every later chain contains.
                if self._applied == self._durable:
                    return False
                log.warning(
                    "storage %s: batch %d chains from %d, not from applied %d: rolling back",
                    self.ref.id,
                    batch.version,
                    batch.prev_version,
                    self._applied,
                )
                self._rollback(self._durable)
                return True
            mine = self._mine(batch)
            for m in mine.mutations:
                self._map.apply(batch.version, m)
            self._applied = batch.version
            self._unpersisted.append(mine)
            self._applied_at.append(now)
        committed = min(resp.committed, self._applied)
        if committed > self._committed:
            self._committed = committed
        self._persist_wake.set()
        self._pulse.fire()
        return True

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

    # -- checkpoints -------------------------------------------------------------------

    def _flushable(self, now: float) -> int:
        """How many unpersisted batches may go to the base now: committed, and out
        of the window (by version, or by time), at most FLUSH_BYTES of them."""
        n, size = 0, 0
        horizon = self._applied - MVCC_WINDOW_VERSIONS
        while n < len(self._unpersisted):
            batch = self._unpersisted[n]
            if batch.version > self._committed:
                break
            if batch.version > horizon and now - self._applied_at[n] < self._window_seconds:
                break
            size += _batch_bytes(batch)
            n += 1
            if size >= FLUSH_BYTES:
                break
        return n

    def _next_flush_in(self, now: float) -> float | None:
        """Seconds until the oldest committed batch leaves the window by time:
        never less than :data:`MIN_FLUSH_WAIT`, for the loop sleeps by its own
        time, which may run faster than this replica's clock (or round a tiny
        wait to none): the flush loop must never spin without time passing."""
        if not self._unpersisted or self._unpersisted[0].version > self._committed:
            return None
        return max(MIN_FLUSH_WAIT, self._applied_at[0] + self._window_seconds - now)

    async def _persist_loop(self) -> None:
        """Move committed batches that left the window into the base."""
        loop = asyncio.get_running_loop()
        while not self.stopped:
            now = self._clock.monotonic()
            n = self._flushable(now)
            if n == 0:
                self._persist_wake.clear()
                wait = self._next_flush_in(now)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._persist_wake.wait()
                continue
            batches = self._unpersisted[:n]
            durable = batches[-1].version
            try:
                await loop.run_in_executor(self._writes, self._engine.write, batches, durable)
            except Exception as exc:
                log.error("storage %s: writing the base failed: %s", self.ref.id, exc)
                self._fatal = exc
                return
            # A rollback meanwhile only dropped versions above the committed ones.
            keep = sum(1 for b in self._unpersisted if b.version <= durable)
            del self._unpersisted[:keep]
            del self._applied_at[:keep]
            self._durable = durable
            self._flushes += 1
            self._map.drop_through(durable)
            self._pulse.fire()
            self._report_wake.set()
            await asyncio.sleep(FLUSH_INTERVAL)

    async def _report_loop(self) -> None:
        """Tell the layout's logs how far this replica is durable (rate-limited)."""
        told: dict[str, int] = {}
        while not self.stopped:
            await self._report_wake.wait()
            self._report_wake.clear()
            layout = self._layout
            if layout is None:
                continue
            durable = self._durable
            logs = [r for r in layout.logs if told.get(r.id, -1) < durable]
            answers = await asyncio.gather(
                *(self._dialer.call(r, LogPop(r.id, self.ref.id, durable), 2.0) for r in logs),
                return_exceptions=True,
            )
            for ref, answer in zip(logs, answers, strict=True):
                if isinstance(answer, Done):
                    told[ref.id] = durable
                else:
                    self._report_wake.set()  # try again next round
            await asyncio.sleep(POP_INTERVAL)

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
                return self._status()
            if isinstance(body, StorageLock):
                return await self._lock(body)
            if isinstance(body, StorageSnapshot):
                return await self._snapshot(body)
            if isinstance(body, StorageFill):
                return self._start_fill(body)
        except Exception as exc:
            log.exception("storage %s: %s failed", self.ref.id, type(body).__name__)
            return Failed("internal", f"{type(exc).__name__}: {exc}")
        return Failed("invalid", f"a storage does not handle {type(body).__name__}")

    def _status(self) -> StorageState:
        return StorageState(
            self._applied, self._durable, self._durable, self._state.locked, self._fill
        )

    def _covers(self, begin: bytes, end: bytes | None) -> bool:
        return any(
            r.contains(begin) if end is None else r.begin <= begin and end <= r.end
            for r in self._ranges
        )

    def _too_old(self, version: int) -> Failed:
        return Failed("version_too_old", f"version {version} < oldest kept {self._durable}")

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
        if not self._covers(begin, end):
            return Failed("wrong_shard", f"storage {self.ref.id} does not serve {begin[:32]!r}")
        if version < self._durable:
            return self._too_old(version)
        if version > self._applied and not await self._pulse.wait_for(
            lambda: self._applied >= version or self.stopped, self._read_wait
        ):
            return Failed("future_version", f"version {version} > applied {self._applied}")
        if self.stopped:
            return Failed("unavailable", f"storage {self.ref.id} is stopped")
        if version < self._durable:  # flushed while waiting
            return self._too_old(version)
        return None

    async def _get(self, req: StorageGet) -> Response:
        if refused := await self._readable(req.version, req.key, None, req.epoch):
            return refused
        found, value = self._map.lookup(req.key, req.version)
        if not found:
            loop = asyncio.get_running_loop()
            value, base = await loop.run_in_executor(self._reads, self._engine.get, req.key)
            if base > req.version:  # the base moved past the version meanwhile
                return self._too_old(req.version)
        return Value(value, req.version)

    async def _get_range(self, req: StorageGetRange) -> Response:
        if req.begin > req.end:
            return Failed("invalid", "range begin is after its end")
        if refused := await self._readable(req.version, req.begin, req.end, req.epoch):
            return refused
        limit = max(1, min(req.limit, MAX_RANGE_LIMIT))
        # The window first (before any await: it may change meanwhile), then the base.
        decided, cleared = self._map.range(req.begin, req.end, req.version)
        segments = _minus(req.begin, req.end, cleared)
        skip = {key for key, _ in decided}
        loop = asyncio.get_running_loop()
        rows, base = await loop.run_in_executor(
            self._reads, self._engine.scan, segments, skip, limit + 1
        )
        if base > req.version:
            return self._too_old(req.version)
        live = [(k, v) for k, v in decided if v is not None]
        pairs = sorted(rows + live)
        # At most `limit` pairs, and no more bytes than a stream answer holds.
        n, size = 0, 0
        while n < min(limit, len(pairs)):
            size += len(pairs[n][0]) + len(pairs[n][1])
            if n > 0 and size > MAX_STREAM_BYTES:
                break
            n += 1
        return Values(pairs[:n], len(pairs) > n, req.version)

    async def _lock(self, req: StorageLock) -> Response:
        if req.epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        state = StorageFileState(req.epoch, req.locked)
        if state != self._state:
            self._state = state
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self._writes, lambda: statefile.save(self._state_path, state, fsync=self._fsync)
            )
        return self._status()

    # -- fills: serving a snapshot -------------------------------------------------------

    async def _snapshot(self, req: StorageSnapshot) -> Response:
        loop = asyncio.get_running_loop()
        now = self._clock.monotonic()
        for name, old in list(self._sessions.items()):
            if now - old.used > SNAPSHOT_IDLE:
                await self._end_session(name)
        if req.close:
            await self._end_session(req.session)
            return Done()
        if req.start:
            if not self._covers(req.begin, req.end):
                return Failed(
                    "wrong_shard", f"storage {self.ref.id} does not serve all of that range"
                )
            if req.session in self._sessions:
                return Failed("invalid", f"snapshot session {req.session!r} exists")
            if len(self._sessions) >= MAX_SNAPSHOTS:
                return Failed("unavailable", f"storage {self.ref.id} serves enough snapshots")
            snapshot = await loop.run_in_executor(self._reads, self._engine.snapshot)
            session = _Session(snapshot, req.end, now)
            self._sessions[req.session] = session
            begin, inclusive = req.begin, True
        else:
            found = self._sessions.get(req.session)
            if found is None:
                return Failed("invalid", f"no snapshot session {req.session!r}")
            session, begin, inclusive = found, req.after, False
        session.used = now
        budget = max(1, min(req.max_bytes, MAX_STREAM_BYTES))
        pairs, done = await loop.run_in_executor(
            self._reads,
            lambda: session.snapshot.chunk(
                begin, session.end, inclusive=inclusive, max_bytes=budget
            ),
        )
        if done:
            await self._end_session(req.session)
        return SnapshotChunk(session.snapshot.version, pairs, done)

    async def _end_session(self, name: str) -> None:
        session = self._sessions.pop(name, None)
        if session is not None:
            await asyncio.get_running_loop().run_in_executor(self._reads, session.snapshot.close)

    # -- fills: being filled -----------------------------------------------------------

    def _start_fill(self, req: StorageFill) -> Response:
        if req.epoch < self._state.epoch:
            return NewerEpoch(self._state.epoch)
        if self._filler is not None and not self._filler.done():
            return Done()  # already under way
        if self._fill == FILL_DONE:
            return Done()
        if self._ranges or self._durable > 0 or self._applied > 0 or len(self._map):
            return Failed("invalid", f"storage {self.ref.id} is not an empty spare")
        if self._layout is None:
            return Failed("unavailable", f"storage {self.ref.id} follows no layout yet")
        self._fill = FILL_RUNNING
        self._filler = asyncio.get_running_loop().create_task(
            self._run_fill(req, self._layout), name=f"fill-{self.ref.id}"
        )
        return Done()

    async def _run_fill(self, req: StorageFill, layout: Layout) -> None:
        loop = asyncio.get_running_loop()
        source, session = req.source, f"{self.ref.id}-{self._rng.randbytes(4).hex()}"
        try:
            await loop.run_in_executor(self._writes, self._engine.begin_fill)
            chunk = await self._dialer.call(
                source,
                StorageSnapshot(source.id, session, req.begin, req.end, start=True),
                10.0,
            )
            if not isinstance(chunk, SnapshotChunk):
                raise RuntimeError(f"{source.id} refused a snapshot: {chunk}")
            version = chunk.version
            # Before anything above the snapshot can be discarded: the logs keep it for us.
            joins = await asyncio.gather(
                *(
                    self._dialer.call(r, LogPop(r.id, self.ref.id, version, join=True), 5.0)
                    for r in layout.logs
                ),
                return_exceptions=True,
            )
            refused = [
                f"{r.id}: {a}" for r, a in zip(layout.logs, joins, strict=True) if a != Done()
            ]
            if refused:
                raise RuntimeError(f"logs would not keep versions after {version}: {refused}")
            copied = 0
            while True:
                await loop.run_in_executor(self._writes, self._engine.put, chunk.pairs)
                copied += len(chunk.pairs)
                if chunk.done:
                    break
                chunk = await self._dialer.call(
                    source,
                    StorageSnapshot(
                        source.id, session, req.begin, req.end, after=chunk.pairs[-1][0]
                    ),
                    10.0,
                )
                if not isinstance(chunk, SnapshotChunk) or chunk.version != version:
                    raise RuntimeError(f"{source.id} broke off the snapshot: {chunk}")
            await loop.run_in_executor(self._writes, self._engine.end_fill, version)
        except Exception as exc:
            self._fill = f"failed: {type(exc).__name__}: {exc}"
            log.warning("storage %s: fill from %s failed: %s", self.ref.id, source.id, exc)
            with contextlib.suppress(Exception):
                await self._dialer.call(
                    source, StorageSnapshot(source.id, session, b"", b"", close=True), 2.0
                )
            return
        self._durable = self._applied = self._committed = version
        self._fill = FILL_DONE
        self._report_wake.set()
        log.info(
            "storage %s: filled from %s: %d pairs at version %d",
            self.ref.id,
            source.id,
            copied,
            version,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._pulse.fire()
        for task in (self._puller, self._persister, self._reporter, self._filler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for name in list(self._sessions):
            with contextlib.suppress(Exception):
                await self._end_session(name)
        # A flush cancelled mid-write still finishes in the executor before close.
        if self._owns_executor:
            self._writes.shutdown(wait=True)
            self._reads.shutdown(wait=True)
        self._engine.close()
