"""The commit proxy: turns client transactions into durable commit batches.

Batches adapt to the load: an idle proxy commits a request at once (only the
requests of the same turn of the event loop join it), and what arrives while
batches are in flight forms the next one, at once, up to
:data:`PIPELINE_DEPTH` batches in flight (then what queued meanwhile waits for
a slot, so the batch size grows with the load); no request waits for a fixed
window (``batch_interval``, 0 by default, adds one before each batch). The
batches' versions chain, and resolvers and logs take them in that order, so a
batch never waits here for the one before it. Per batch (in order):

1. a commit version (and its predecessor) from the sequencer;
2. conflict checks on every resolver (each gets every transaction, its ranges
   clipped to the resolver's key range, so every resolver's version chain
   advances); a transaction commits only if every resolver admits it;
3. one :class:`~bedrock_cp.protocol.CommitBatch` of the admitted transactions'
   mutations, in order, pushed to EVERY log of the layout with the proxy's known
   committed version;
4. only once every log has made it durable: ``ReportCommitted`` to the
   sequencer, then ``Committed(version)`` to the admitted transactions and
   ``NotCommitted`` to the others (I3: nothing is acknowledged before it is
   durable everywhere).

Any failure of the sequencer, a resolver or a log breaks the proxy for good
(the versions chain is broken; the Director starts a new epoch), and
``NewerEpoch`` from any component means this generation is superseded. Either
way every batch in flight is answered by how far it got (and one that had not
begun its push never begins it): before the push
to the logs began, ``unavailable`` (or ``NewerEpoch``) — definitely not
committed; after, ``commit_unknown_result`` for every transaction the
resolvers admitted, since the batch may be durable on enough logs for the next
recovery to keep it (conflicting ones still get ``NotCommitted``). Every
``idle_interval`` without a transaction it checks the sequencer (a read
version, whose confirmation round reaches every log) and, once per committed
version, tells every log that version
(:class:`~bedrock_cp.protocol.LogCommitted`, a hint kept in memory, so storage
can persist the last batches), and an idle cluster writes nothing. That
check runs once a second, not faster: noticing a dead component quickly is the
Director's monitoring (every component, every 50 ms), and each check is a
round trip to every log (at 0.25 s it was a tenth of an idle node's requests).

Idempotency (:mod:`bedrock_cp.protocol.idempotency`): a transaction that
carries an id gets that id's conflict key added to its read and write ranges,
and each batch holding such transactions writes one record naming the ids of
those committed, at the batch's version. The layout's first proxy also clears
records older than ``idempotency_retention`` (in versions) with one range clear
in a batch, every tenth of that period; idle for a whole retention period after
the last commit, it clears what is left with one empty batch (and then writes
nothing more until the next commit).

The proxy starts locked and is unlocked by the Director with its epoch's token.
The same token, carried in ``Commit.system``, is the only way to write keys of
the reserved ``0xff`` space (the Director's system transaction, in its ``persist`` phase).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass, field

from ..clock import SYSTEM_CLOCK, Clock
from ..protocol import (
    MAX_KEY_SIZE,
    MAX_TRANSACTION_SIZE,
    MAX_VALUE_SIZE,
    MVCC_WINDOW_VERSIONS,
    SYSTEM_PREFIX,
    VERSIONS_PER_SECOND,
    Commit,
    CommitBatch,
    Committed,
    CommitVersion,
    Done,
    Failed,
    GetCommitVersion,
    GetReadVersion,
    KeyRange,
    Layout,
    Locked,
    LogCommitted,
    LogPush,
    LogPushed,
    Mutation,
    MutationKind,
    NewerEpoch,
    NotCommitted,
    ReadVersion,
    ReportCommitted,
    Request,
    Resolve,
    Resolved,
    ResolveTransaction,
    Response,
    UnlockProxy,
    WorkerRef,
    check_user_key,
    idempotency,
    served_range,
)
from .gather import until_refused
from .metrics import TransactionMetrics
from .resolver import clip
from .worker import Dialer

log = logging.getLogger(__name__)

#: Bounds on what waits in the proxy (I9) and on one batch's size.
MAX_QUEUED = 10_000
MAX_BATCH_BYTES = 8 << 20
MAX_BATCH_TRANSACTIONS = 2_000
#: Batches in flight at once. Each batch's versions chain to the one before it
#: (the sequencer hands out ``prev_version``), and resolvers and logs take
#: batches only in chain order, so batches need not wait for each other here:
#: while one is being made durable, the next gets its version and is resolved.
PIPELINE_DEPTH = 8
_KINDS = frozenset(int(k) for k in MutationKind)


class _Unavailable(Exception):
    """A component failed or did not answer: the batch cannot be made durable."""


class _Superseded(Exception):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"superseded by epoch {epoch}")
        self.epoch = epoch


@dataclass
class _Txn:
    req: Commit
    reads: list[KeyRange]
    writes: list[KeyRange]
    size: int
    reply: asyncio.Future[Response] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(eq=False)
class _Batch:
    """A batch in flight: the answers decided so far, and whether the push began."""

    txns: list[_Txn]
    answers: list[Response | None]
    pushing: bool = False
    version: int = 0  # its commit version, once the sequencer gave one
    #: Answered by :meth:`fail`: it must not begin its push any more.
    failed: bool = False

    def fail(self, failure: Response, detail: str) -> None:
        """Answer every transaction of the batch that the batch did not answer.

        Once the push began, an admitted transaction may be committed after all:
        it gets ``commit_unknown_result``, never the definite ``failure``.
        """
        self.failed = True
        unknown = Failed("commit_unknown_result", f"the commit may have happened: {detail}")
        for txn, answer in zip(self.txns, self.answers, strict=True):
            if txn.reply.done():
                continue
            if isinstance(answer, Committed):
                txn.reply.set_result(unknown if self.pushing else failure)
            else:
                txn.reply.set_result(answer if answer is not None else failure)


def _refused_before_append(result: Response | BaseException) -> bool:
    """Did a log's answer to a push prove it never appended the batch?"""
    if isinstance(result, _Superseded):
        return True  # NewerEpoch: refused before anything else
    return isinstance(result, Locked) or (
        isinstance(result, Failed) and result.code in ("gap", "invalid")
    )


def _mutation_range(m: Mutation) -> KeyRange:
    return (
        KeyRange(m.key, m.param) if m.kind == MutationKind.CLEAR_RANGE else KeyRange.single(m.key)
    )


def _check_range(r: KeyRange, what: str) -> str | None:
    if r.begin > r.end:
        return f"{what} range begins after its end"
    if r.end > SYSTEM_PREFIX:
        return f"{what} range ends outside the user key space"
    if r.begin < r.end:
        return check_user_key(r.begin)
    return None


def validate(req: Commit, *, system: bool = False) -> str | None:
    """Why ``req`` is not a valid transaction, or None.

    ``system``: the commit carries this epoch's unlock token (the Director's
    system transaction), so its SET and CLEAR mutations may name ``0xff`` keys.
    Everything else (ranges, sizes, reads) is checked as for any client.
    """
    if req.read_version < 0:
        return "negative read version"
    if why := idempotency.check_id(req.idempotency_id):
        return why
    size = 0
    for m in req.mutations:
        if m.kind not in _KINDS:
            return f"unknown mutation kind {m.kind}"
        if system and m.kind != MutationKind.CLEAR_RANGE and m.key.startswith(SYSTEM_PREFIX):
            if len(m.key) > MAX_KEY_SIZE:
                return f"key of {len(m.key)} bytes exceeds the {MAX_KEY_SIZE} byte limit"
        elif why := check_user_key(m.key):
            return why
        if m.kind == MutationKind.SET and len(m.param) > MAX_VALUE_SIZE:
            return f"value of {len(m.param)} bytes exceeds the {MAX_VALUE_SIZE} byte limit"
        if m.kind == MutationKind.CLEAR_RANGE and (
            why := _check_range(_mutation_range(m), "clear")
        ):
            return why
        size += len(m.key) + len(m.param)
    for what, ranges in (("read", req.reads), ("write", req.writes)):
        for r in ranges:
            if why := _check_range(r, what):
                return why
            size += len(r.begin) + len(r.end)
    if size > MAX_TRANSACTION_SIZE:
        return f"transaction of {size} bytes exceeds the {MAX_TRANSACTION_SIZE} byte limit"
    return None


class CommitProxy:
    def __init__(
        self,
        ref: WorkerRef,
        epoch: int,
        layout: Layout,
        dialer: Dialer,
        *,
        token: bytes,
        batch_interval: float = 0.0,
        idle_interval: float = 1.0,
        call_timeout: float = 5.0,
        idempotency_retention: float = idempotency.RETENTION_SECONDS,
        metrics: TransactionMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.ref = ref
        self.epoch = epoch
        self._clock = clock
        self.layout = layout
        self.stopped = False
        self._dialer = dialer
        self._token = token
        self._batch_interval = batch_interval
        self._idle_interval = idle_interval
        self._call_timeout = call_timeout
        self._locked = True
        self._seen_epoch = epoch
        self._broken: str | None = None
        self._committed = layout.recovery_version  # durable on every log of the layout
        self._told = 0  # the committed version every log acknowledged from an idle check
        self._queue: list[_Txn] = []
        self._inflight: set[_Batch] = set()
        self._slots = asyncio.Semaphore(PIPELINE_DEPTH)
        self._batch_tasks: set[asyncio.Task[None]] = set()
        # Idempotency records older than this many versions are cleared (first proxy only).
        self._cleans = bool(layout.proxies) and layout.proxies[0].id == ref.id
        self._retention = int(idempotency_retention * VERSIONS_PER_SECOND)
        self._cleaned_at = 0  # the commit version of the last clearing
        # Idle: the newest version committed by anyone but this proxy's own idle
        # clearing, when it was first seen, and what the last idle clearing covered.
        self._activity = (-1, 0.0)
        self._idle_cleared = 0
        self._idle_clearing = -1  # the version of that clearing batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Counts and times the transactions answered (the node's metrics).
        self.metrics = metrics

    @property
    def broken(self) -> str | None:
        """Why this proxy stopped committing, or None while it works."""
        return self._broken

    @property
    def committed(self) -> int:
        return self._committed

    # -- requests ------------------------------------------------------------------------

    async def handle(self, body: Request) -> Response:
        if isinstance(body, UnlockProxy):
            return self._unlock(body)
        if isinstance(body, Commit):
            return await self._commit(body)
        return Failed("invalid", f"a commit proxy does not handle {type(body).__name__}")

    def _unlock(self, req: UnlockProxy) -> Response:
        if req.epoch < self._seen_epoch:
            return NewerEpoch(self._seen_epoch)
        if req.epoch != self.epoch or not hmac.compare_digest(req.token, self._token):
            return Failed("invalid", "wrong epoch or unlock token")
        if self.stopped:
            return Failed("unavailable", f"proxy {self.ref.id} is stopped")
        if self._locked:
            self._locked = False
            self._task = asyncio.get_running_loop().create_task(
                self._batch_loop(), name=f"proxy-{self.ref.id}"
            )
        return Done()

    def _refusal(self) -> Response | None:
        if self._seen_epoch > self.epoch:
            return NewerEpoch(self._seen_epoch)
        if self._broken is not None:
            return Failed("unavailable", f"proxy {self.ref.id} is broken: {self._broken}")
        if self.stopped:
            return Failed("unavailable", f"proxy {self.ref.id} is stopped")
        if self._locked:
            return Locked(f"proxy {self.ref.id} awaits its unlock")
        return None

    async def _commit(self, req: Commit) -> Response:
        if refused := self._refusal():
            return refused
        system = bool(req.system) and hmac.compare_digest(req.system, self._token)
        if req.system and not system:
            return Failed("invalid", "wrong system token")
        if why := validate(req, system=system):
            return Failed("invalid", why)
        if len(self._queue) >= MAX_QUEUED:
            return Failed("unavailable", f"proxy {self.ref.id} is overloaded")
        reads = list(req.reads)
        writes = list(req.writes) + [_mutation_range(m) for m in req.mutations]
        if req.idempotency_id:
            conflict = KeyRange.single(idempotency.conflict_key(req.idempotency_id))
            reads.append(conflict)
            writes.append(conflict)
        size = sum(len(m.key) + len(m.param) + 8 for m in req.mutations)
        txn = _Txn(req, reads, writes, size)
        self._queue.append(txn)
        self._wake.set()
        # Awaited without a shield (one wake-up less): a cancelled request
        # cancels its reply, and whoever answers skips a reply already done.
        if self.metrics is None:
            return await txn.reply
        started = self._clock.monotonic()
        answer = await txn.reply
        self.metrics.observe(answer, self._clock.monotonic() - started)
        return answer

    # -- batching ------------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while self._running():
            if not self._queue:
                try:
                    async with asyncio.timeout(self._idle_interval):
                        await self._wake.wait()
                except TimeoutError:
                    if not self._inflight:
                        await self._check_idle()
                    continue
            self._wake.clear()
            # Let this turn's requests join (and a configured window's); under
            # load, what queued while every slot was busy is the next batch.
            await asyncio.sleep(self._batch_interval)
            await self._slots.acquire()
            if not self._running() or not self._queue:
                self._slots.release()
                continue
            batch = _Batch(txns := self._take_batch(), [None] * len(txns))
            self._inflight.add(batch)
            task = asyncio.get_running_loop().create_task(self._pipelined(batch))
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_tasks.discard)

    def _running(self) -> bool:
        return not self.stopped and self._broken is None and self._seen_epoch == self.epoch

    async def _pipelined(self, batch: _Batch) -> None:
        try:
            await self._run_batch(batch)
        finally:
            self._inflight.discard(batch)
            self._slots.release()
            self._wake.set()  # the loop may wait for a slot's batch to form

    async def _check_idle(self) -> None:
        """Idle: are the sequencer and the logs still there? (No write anywhere.)"""
        layout = self.layout
        calls: list[tuple[WorkerRef, Request]] = [
            (layout.sequencer, GetReadVersion(layout.sequencer.id, self.epoch))
        ]
        # The read version's confirmation round reaches every log already: the
        # committed hint goes along only when it moved since the logs took it.
        telling = self._committed
        tell = telling > self._told
        if tell:
            calls += [(t, LogCommitted(t.id, self.epoch, telling)) for t in layout.logs]
        try:
            answers = await self._all(calls)
            if not isinstance(answers[0], ReadVersion):
                raise _Unavailable(f"sequencer answered {answers[0]}")
            for answer in answers[1:]:
                if not isinstance(answer, Done):
                    raise _Unavailable(f"log answered {answer}")
            if tell:
                self._told = telling
            await self._clear_when_idle(answers[0].version)
        except _Superseded as exc:
            self._seen_epoch = max(self._seen_epoch, exc.epoch)
            log.info("proxy %s: %s", self.ref.id, exc)
            self._fail(None, NewerEpoch(self._seen_epoch), str(exc))
        except _Unavailable as exc:
            self._broken = str(exc)
            log.warning("proxy %s: broken: %s", self.ref.id, exc)
            self._fail(None, Failed("unavailable", str(exc)), str(exc))

    async def _clear_when_idle(self, committed: int) -> None:
        """The first proxy, idle for a whole retention period after the last commit,
        clears every record left with one empty batch: one write per burst of
        activity, then nothing (an idle proxy does not write)."""
        if not self._cleans:
            return
        now = self._clock.monotonic()
        if committed > self._activity[0] and committed != self._idle_clearing:
            self._activity = (committed, now)
        version, seen = self._activity
        if version <= self._idle_cleared or now - seen < self._retention / VERSIONS_PER_SECOND:
            return
        batch = _Batch([], [])
        await self._run_batch(batch)
        if batch.version:
            self._idle_cleared, self._idle_clearing = version, batch.version

    def _take_batch(self) -> list[_Txn]:
        n, size = 0, 0
        while n < len(self._queue) and n < MAX_BATCH_TRANSACTIONS:
            size += self._queue[n].size
            if n > 0 and size > MAX_BATCH_BYTES:
                break
            n += 1
        batch, self._queue = self._queue[:n], self._queue[n:]
        return batch

    async def _run_batch(self, batch: _Batch) -> None:
        try:
            await self._commit_batch(batch)
        except _Superseded as exc:
            self._seen_epoch = max(self._seen_epoch, exc.epoch)
            log.info("proxy %s: %s", self.ref.id, exc)
            self._fail(batch, NewerEpoch(self._seen_epoch), str(exc))
            return
        except _Unavailable as exc:
            self._broken = str(exc)
            log.warning("proxy %s: broken: %s", self.ref.id, exc)
            self._fail(batch, Failed("unavailable", str(exc)), str(exc))
            return
        except Exception as exc:  # a bug: fail safe, answer everyone
            self._broken = f"{type(exc).__name__}: {exc}"
            log.exception("proxy %s: batch failed", self.ref.id)
            self._fail(batch, Failed("unavailable", self._broken), self._broken)
            return
        for txn, answer in zip(batch.txns, batch.answers, strict=True):
            if not txn.reply.done():
                txn.reply.set_result(answer or Failed("internal", "no answer"))

    def _fail(self, batch: _Batch | None, failure: Response, detail: str) -> None:
        """Answer ``batch``, every other batch in flight (see :meth:`_Batch.fail`:
        their chain cannot go on past a failed one) and everything queued."""
        for b in [*([batch] if batch is not None else []), *self._inflight]:
            b.fail(failure, detail)
        queued, self._queue = self._queue, []
        for txn in queued:
            if not txn.reply.done():
                txn.reply.set_result(failure)

    async def _call(self, target: WorkerRef, body: Request) -> Response:
        try:
            resp = await self._dialer.call(target, body, self._call_timeout)
        except (OSError, TimeoutError) as exc:
            raise _Unavailable(f"{target.kind} {target.id}: {type(exc).__name__} {exc}") from exc
        if isinstance(resp, NewerEpoch):
            raise _Superseded(resp.epoch)
        return resp

    async def _all(self, calls: list[tuple[WorkerRef, Request]]) -> list[Response]:
        if len(calls) == 1:  # one resolver: no task, no gather
            target, body = calls[0]
            return [await self._call(target, body)]
        results = await asyncio.gather(
            *(self._call(target, body) for target, body in calls), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if isinstance(err, _Superseded):
                raise err
        if errors:
            raise errors[0]
        return [r for r in results if not isinstance(r, BaseException)]

    async def _commit_batch(self, b: _Batch) -> None:
        """Commit batch ``b``, deciding ``b.answers``; raises if it cannot (see _run_batch)."""
        layout = self.layout
        batch, answers = b.txns, b.answers
        cv = await self._call(layout.sequencer, GetCommitVersion(layout.sequencer.id, self.epoch))
        if not isinstance(cv, CommitVersion):
            raise _Unavailable(f"sequencer answered {cv}")
        b.version = cv.version
        floor = max(layout.recovery_version, cv.version - MVCC_WINDOW_VERSIONS)
        candidates: list[int] = []
        for i, txn in enumerate(batch):
            if txn.req.read_version >= cv.version:
                answers[i] = Failed(
                    "future_version",
                    f"read version {txn.req.read_version} was never committed (now {cv.version})",
                )
            elif txn.reads and txn.req.read_version < floor:
                answers[i] = NotCommitted("too_old")
            else:
                candidates.append(i)

        resolves: list[tuple[WorkerRef, Request]] = []
        for assignment in layout.resolvers:
            key_range = served_range(assignment.begin, assignment.end)
            txns = [
                ResolveTransaction(
                    batch[i].req.read_version,
                    clip(batch[i].reads, key_range),
                    clip(batch[i].writes, key_range),
                )
                for i in candidates
            ]
            body = Resolve(assignment.worker.id, self.epoch, cv.prev_version, cv.version, txns)
            resolves.append((assignment.worker, body))
        admitted = [True] * len(candidates)
        for resolved in await self._all(resolves):
            if not isinstance(resolved, Resolved) or len(resolved.committed) != len(candidates):
                raise _Unavailable(f"resolver answered {resolved}")
            admitted = [x and y for x, y in zip(admitted, resolved.committed, strict=True)]

        mutations = self._expiry(cv.version)
        ids: list[bytes] = []
        for i, ok in zip(candidates, admitted, strict=True):
            if ok:
                mutations.extend(batch[i].req.mutations)
                if batch[i].req.idempotency_id:
                    ids.append(batch[i].req.idempotency_id)
                answers[i] = Committed(cv.version)
            else:
                answers[i] = NotCommitted("conflict")
        if ids:
            record = idempotency.record_key(cv.version)
            mutations.append(Mutation(MutationKind.SET, record, idempotency.encode_ids(ids)))
        commit_batch = CommitBatch(cv.prev_version, cv.version, mutations)
        pushes: list[tuple[WorkerRef, Request]] = [
            (target, LogPush(target.id, self.epoch, commit_batch, self._committed))
            for target in layout.logs
        ]
        if b.failed:
            # Another batch failed meanwhile and this one's clients were told it
            # did not commit: it must not reach a log now.
            raise _Unavailable("an earlier batch failed")
        b.pushing = True  # from here on, a failure may leave the outcome unknown
        # A log that failed decides it: do not wait on the others (one may be stopped).
        results = await until_refused(
            [self._call(target, body) for target, body in pushes],
            lambda r: isinstance(r, LogPushed),
        )
        if not all(isinstance(r, LogPushed) for r in results):
            # Unknown unless every log refused before appending the batch (a
            # push still unanswered may yet be appended).
            b.pushing = not all(r is not None and _refused_before_append(r) for r in results)
            superseded = [r for r in results if isinstance(r, _Superseded)]
            failed = [r for r in results if isinstance(r, BaseException)]
            raise (superseded or failed or [_Unavailable(f"logs answered {results}")])[0]
        # Durable on every log: now (and only now) it is committed.
        self._committed = max(self._committed, cv.version)
        reported = await self._call(
            layout.sequencer, ReportCommitted(layout.sequencer.id, self.epoch, cv.version)
        )
        if not isinstance(reported, ReadVersion):
            raise _Unavailable(f"sequencer answered {reported}")

    def _expiry(self, version: int) -> list[Mutation]:
        """The first proxy's clearing of expired idempotency records, when one is due."""
        if not self._cleans or version - self._cleaned_at < max(1, self._retention // 10):
            return []
        self._cleaned_at = version
        cutoff = version - self._retention
        if cutoff <= 0:
            return []
        end = idempotency.record_key(cutoff)
        return [Mutation(MutationKind.CLEAR_RANGE, idempotency.PREFIX, end)]

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        why = f"proxy {self.ref.id} is stopped"
        self._fail(None, Failed("unavailable", why), why)
        for task in list(self._batch_tasks):
            task.cancel()
