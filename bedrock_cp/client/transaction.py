"""Transactions on the reference data plane.

::

    db = await bedrock_cp.open_database(cluster)
    async with db.transaction() as tr:           # commits on exit
        v = await tr.get(b"k")
        tr.set(b"k", b"v2")

    async for tr in db.attempts():                # re-runs the block until it commits
        async with tr:
            n = int(await tr.get(b"counter") or b"0")
            tr.set(b"counter", str(n + 1).encode())

    await db.run(lambda tr: ...)                  # the same, as a function

A transaction reads at one read version (from the sequencer) from storage,
buffers its writes (reads see them), and commits through a commit proxy, which
checks with the resolvers that nothing it read changed since its read version.
The sequencer hands out a read version only once it has confirmed that its
epoch is still the current one, so a read never misses a commit acknowledged
before it began. The layout of the transaction system (TSL) comes from any
node's gateway.

Failures raise a :class:`~.errors.TransactionError` whose ``code`` is one of a
closed list (:class:`~.errors.ErrorCode`): each says whether a retry can
succeed, whether the attempt may have committed, and whether the layout held
may be out of date.

**Exactly once.** A commit may end without a definite answer
(``commit_unknown_result``): the request reached a proxy and the answer was
lost, or the proxy failed after it began pushing to the logs. It may have
committed. :meth:`Database.attempts` and :meth:`Database.run` are idempotent by
default: all attempts of one logical transaction carry one random id, which
the proxy records with the commit and makes conflict between attempts
(:mod:`bedrock_cp.protocol.idempotency`). After an unknown outcome, the next
attempt first looks the id up at a fresh read version: found, the transaction
committed at that version — the loop stops and reports it
(:attr:`Transaction.committed_version`, with
:attr:`Transaction.committed_earlier` set) without running the block again;
not found, the block runs again, and no earlier attempt can commit beside it.
The lookup is trusted for 20 s after the unknown attempt (records are kept for
at least twice that); past that, or with ``idempotent=False``, the loop raises
``commit_unknown_result`` instead of retrying. A bare :meth:`Database.transaction`
has no id: its commit raises ``commit_unknown_result`` to the caller, who must
decide (``maybe_committed`` is set).

**Layout.** Every error that suggests the layout is old (``epoch_changed``,
``unavailable``, ``version_too_old``, ``wrong_shard``, ``commit_unknown_result``)
makes the retry loop fetch the layout again before the next attempt, waiting up
to a second for a newer epoch after ``epoch_changed``.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from .. import protocol
from ..protocol import (
    MAX_TRANSACTION_SIZE,
    MAX_VALUE_SIZE,
    SYSTEM_PREFIX,
    Caller,
    KeyRange,
    Layout,
    Mutation,
    MutationKind,
    WorkerRef,
    check_user_key,
    idempotency,
    served_range,
)
from ..transport import Backoff, RemoteError, RpcChannel
from .cluster_file import ClusterFile
from .errors import ErrorCode, TransactionError, server_code
from .read_versions import ReadVersionBatcher

T = TypeVar("T")

__all__ = ["Database", "ErrorCode", "Transaction", "TransactionError", "open_database"]

_CALL_TIMEOUT = 5.0
#: A call unanswered for this long also waits for a newer epoch, and gives up
#: when one comes: a role on a stopped node answers nothing (no reset), while
#: the next epoch may be live already.
_RACE_AFTER = 0.05
#: How long one layout fetch may take, and how long to wait for a newer epoch.
_FETCH_TIMEOUT = 0.5
_NEWER_EPOCH_WAIT = 1.0
#: Pauses between a transaction's attempts (Backoff: jittered, capped exponential).
_RETRY_BASE = 0.005
_RETRY_CAP = 0.5
#: Pauses between layout fetches that no gateway answered.
_POLL_PAUSE_BASE = 0.01
_POLL_PAUSE_CAP = 0.2
#: Rows per storage range read when scanning idempotency records.
_SCAN_LIMIT = 1000


def _error(code: ErrorCode, message: str) -> TransactionError:
    return TransactionError(code, message)


class Dialer(Protocol):
    """How a :class:`Database` reaches workers (a :class:`~bedrock_cp.protocol.Caller`)."""

    async def call(
        self,
        to: WorkerRef,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response: ...

    async def connect(self, to: WorkerRef, timeout: float) -> None: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


class LayoutSource(Protocol):
    """Where a :class:`Database` gets the layout (a :class:`~bedrock_cp.client.Client`)."""

    async def fetch_layout(
        self,
        timeout: float = 2.0,  # noqa: ASYNC109
        *,
        newer_than: int = 0,
        wait: float = 0.0,
    ) -> Layout | None: ...

    async def close(self) -> None: ...


class Database:
    """A handle on the data plane of one cluster; see the module docstring.

    Its random choices (replicas, proxies, backoff jitter, idempotency ids)
    come from ``rng`` (default: OS-seeded), a seam of the simulation.
    """

    def __init__(
        self, client: LayoutSource, dialer: Dialer, *, rng: random.Random | None = None
    ) -> None:
        self.client = client
        self.dialer = dialer
        self.rng = rng or random.Random()
        self.layout: Layout | None = None
        #: Long polls in flight, by the epoch they wait to see passed: the
        #: transactions waiting for the same new epoch share one.
        self._polls: dict[int, asyncio.Future[Layout | None]] = {}
        #: Read versions asked for in one event-loop pass share one request.
        self.read_versions = ReadVersionBatcher(self._ask_read_version)

    # -- layout ------------------------------------------------------------------------

    async def _poll(self, newer_than: int, wait: float) -> Layout | None:
        """One fetch (a long poll when ``wait`` > 0), shared with concurrent callers."""
        if wait <= 0:
            return await self.client.fetch_layout(timeout=_FETCH_TIMEOUT)
        poll = self._polls.get(newer_than)
        if poll is None or poll.done():
            poll = asyncio.ensure_future(
                self.client.fetch_layout(timeout=_FETCH_TIMEOUT, newer_than=newer_than, wait=wait)
            )
            self._polls[newer_than] = poll
            poll.add_done_callback(lambda done: self._forget_poll(newer_than, done))
        try:
            async with asyncio.timeout(wait + _FETCH_TIMEOUT):
                return await asyncio.shield(poll)
        except TimeoutError:
            return None

    def _forget_poll(self, newer_than: int, done: asyncio.Future[Layout | None]) -> None:
        if self._polls.get(newer_than) is done:
            del self._polls[newer_than]
        if not done.cancelled():
            done.exception()  # retrieved: a failed poll is just no answer

    async def refresh_layout(self, newer_than: int = 0, timeout: float = 10.0) -> Layout:  # noqa: ASYNC109
        """Ask the nodes' gateways for the TSL; wait for one newer than ``newer_than``.

        Fetches at least once; while ``timeout`` lasts, the fetch is a long poll
        of the gateways, answered as soon as one of them learns a newer epoch
        (not at the next tick of a poll). Raises ``unavailable`` if none came
        within ``timeout``.
        """
        # No lock: concurrent transactions waiting for the same epoch share one
        # long poll (see _poll) instead of queueing behind one another.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = Backoff(_POLL_PAUSE_BASE, _POLL_PAUSE_CAP, self.rng)
        retry = 0
        while True:
            if self.layout is not None and self.layout.epoch > newer_than:
                return self.layout
            wait = max(0.0, deadline - loop.time()) if newer_than else 0.0
            try:
                layout = await self._poll(newer_than, wait)
            except Exception:  # no gateway reachable: as no answer
                layout = None
            if layout is not None and layout.epoch > newer_than:
                if self.layout is None or layout.epoch >= self.layout.epoch:
                    self.layout = layout
                return self.layout
            if loop.time() + pause.ceiling(retry) > deadline:
                raise _error(
                    ErrorCode.UNAVAILABLE,
                    f"no transaction system layout newer than epoch {newer_than}",
                )
            await asyncio.sleep(pause.delay(retry))  # no gateway answered: do not spin
            retry += 1

    async def current_layout(self) -> Layout:
        return self.layout or await self.refresh_layout()

    async def _after_failure(
        self, error: TransactionError, held: Layout | None, backoff: float
    ) -> None:
        """Wait before the next attempt: ``backoff`` seconds, cut short when the
        error suggests ``held`` is old and a newer layout arrives meanwhile (a
        recovery's new epoch is used as soon as a gateway learns it, not after a
        backoff that has grown while the recovery ran)."""
        if not error.code.refreshes_layout:
            await asyncio.sleep(backoff)
            return
        epoch = held.epoch if held is not None else 0
        wait = max(backoff, _NEWER_EPOCH_WAIT if error.code is ErrorCode.EPOCH_CHANGED else 0.0)
        try:
            await self.refresh_layout(newer_than=epoch, timeout=wait)
        except TransactionError:
            if error.code is ErrorCode.EPOCH_CHANGED and self.layout is held:
                self.layout = None  # fetch whatever is current next time

    # -- transactions --------------------------------------------------------------------

    def transaction(self) -> Transaction:
        """One attempt, without retries and without an idempotency id."""
        return Transaction(self)

    async def attempts(
        self,
        *,
        max_attempts: int = 100,
        timeout: float = 30.0,  # noqa: ASYNC109
        idempotent: bool = True,
    ) -> AsyncIterator[Transaction]:
        """Yield a fresh transaction until one is used in ``async with`` and commits.

        Retryable errors are retried with backoff; after a ``commit_unknown_result``
        the next attempt first learns whether the transaction committed (see the
        module docstring). When the loop ends because an earlier attempt turned
        out to have committed, the last transaction yielded says so
        (``committed_version`` set, ``committed_earlier`` true).
        """
        if max_attempts < 1:
            raise _error(ErrorCode.INVALID, "max_attempts must be positive")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        backoff = Backoff(_RETRY_BASE, _RETRY_CAP, self.rng)
        ident = idempotency.new_id(self.rng) if idempotent else b""
        unknown_since: int | None = None  # read version of the first unknown attempt
        yielded: Transaction | None = None
        for attempt in range(max_attempts):
            tr = Transaction(self, swallow_retryable=True, idempotency_id=ident)
            if unknown_since is not None:
                found = await tr._committed_since(unknown_since)
                if found is not None:
                    assert yielded is not None
                    yielded.error = None
                    yielded.committed_version = found
                    yielded.committed_earlier = True
                    return
            if tr.error is None:  # the lookup (if any) found nothing: run the block
                yielded = tr
                yield tr
                if tr.committed_version is not None:
                    return
                if tr.error is None:
                    raise _error(ErrorCode.INVALID, "the transaction was not used in `async with`")
            error = tr.error
            assert error is not None
            if error.code is ErrorCode.COMMIT_UNKNOWN_RESULT and error.retryable:
                if not idempotent:
                    raise error  # never re-run a transaction that may have committed
                if unknown_since is None:
                    unknown_since = tr._read_version or 0
            if not error.retryable:
                raise error
            if loop.time() + backoff.ceiling(attempt) > deadline or attempt == max_attempts - 1:
                if unknown_since is not None:
                    raise TransactionError(
                        ErrorCode.COMMIT_UNKNOWN_RESULT,
                        f"gave up; an earlier attempt may have committed (last error: {error})",
                        retryable=False,
                    )
                raise error
            await self._after_failure(error, tr._layout, backoff.delay(attempt))

    async def run(
        self,
        fn: Callable[[Transaction], Awaitable[T]],
        *,
        max_attempts: int = 100,
        timeout: float = 30.0,  # noqa: ASYNC109
        idempotent: bool = True,
    ) -> T:
        """Run ``fn(tr)`` and commit, retrying on retryable errors; return its result.

        If an earlier attempt turns out to have committed, ``fn`` is not run again
        and the result of the attempt that last ran it is returned.
        """
        result: T | None = None
        async for tr in self.attempts(
            max_attempts=max_attempts, timeout=timeout, idempotent=idempotent
        ):
            async with tr:
                result = await fn(tr)
        return result  # type: ignore[return-value]

    # -- plumbing ------------------------------------------------------------------

    async def _ask_read_version(self, layout: Layout) -> int:
        """One read-version request to ``layout``'s sequencer (see :mod:`.read_versions`)."""
        reply = await self.call(
            layout.sequencer,
            protocol.GetReadVersion(layout.sequencer.id, layout.epoch),
            layout.epoch,
        )
        if not isinstance(reply, protocol.ReadVersion):
            raise _error(
                ErrorCode.INTERNAL, f"unexpected {type(reply).__name__} for a read version"
            )
        return reply.version

    async def call(
        self, ref: WorkerRef, body: protocol.Request, epoch: int = 0
    ) -> protocol.Response:
        """Call a worker of the layout of ``epoch`` (0: whatever epoch is current)."""
        try:
            reply = await self._unless_superseded(self.dialer.call(ref, body, _CALL_TIMEOUT), epoch)
        except (OSError, TimeoutError, RemoteError) as exc:
            raise _error(ErrorCode.UNAVAILABLE, _unreachable(ref, exc)) from None
        if reply is None:
            raise _error(ErrorCode.EPOCH_CHANGED, f"{ref.kind} {ref.id}: epoch {epoch} is over")
        return _checked(ref, reply)

    async def commit_call(
        self, ref: WorkerRef, body: protocol.Commit, epoch: int = 0
    ) -> protocol.Response:
        """Send a commit: a failure once it may have been sent is ``commit_unknown_result``."""
        try:
            await self.dialer.connect(ref, _CALL_TIMEOUT)
        except (OSError, TimeoutError, RemoteError) as exc:
            raise _error(ErrorCode.UNAVAILABLE, _unreachable(ref, exc)) from None
        try:
            reply = await self._unless_superseded(self.dialer.call(ref, body, _CALL_TIMEOUT), epoch)
        except (OSError, TimeoutError, RemoteError) as exc:
            raise _error(
                ErrorCode.COMMIT_UNKNOWN_RESULT,
                f"no answer to the commit: {_unreachable(ref, exc)}",
            ) from None
        if reply is None:  # the new epoch recovered whatever this commit left on the logs
            raise _error(
                ErrorCode.COMMIT_UNKNOWN_RESULT,
                f"no answer to the commit from {ref.kind} {ref.id} before epoch {epoch} ended",
            )
        return _checked(ref, reply)

    async def _unless_superseded(
        self, call: Awaitable[protocol.Response], epoch: int
    ) -> protocol.Response | None:
        """``call``'s answer, or None if a layout newer than ``epoch`` comes first
        (the call is then abandoned). Only a call slower than ``_RACE_AFTER`` waits
        for layouts; all slow calls of this database share one long poll.

        The call runs in the caller's task, and a timer starts the watch only
        if it is slow: a prompt answer costs no task and no wake-up of its own
        (every read version, read and commit goes through here).
        """
        if epoch <= 0:
            return await call
        task = asyncio.current_task()
        assert task is not None
        race = _Race(self, task, epoch)
        timer = task.get_loop().call_later(_RACE_AFTER, race.begin)
        try:
            return await call
        except asyncio.CancelledError:
            if race.superseded and task.uncancel() == 0:
                return None  # the newer epoch's cancel, not someone else's
            raise
        finally:
            timer.cancel()
            race.end()

    async def close(self) -> None:
        await self.read_versions.close()
        await self.dialer.close()
        await self.client.close()


class _Race:
    """The watch of one slow call (see :meth:`Database._unless_superseded`): it
    polls for a layout newer than ``epoch`` and, once one comes, adopts it and
    cancels the calling task, which then answers None."""

    __slots__ = ("db", "epoch", "superseded", "task", "watcher")

    def __init__(self, db: Database, task: asyncio.Task[Any], epoch: int) -> None:
        self.db = db
        self.task = task
        self.epoch = epoch
        self.superseded = False
        self.watcher: asyncio.Task[None] | None = None

    def begin(self) -> None:
        self.watcher = self.task.get_loop().create_task(self._watch())

    def end(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()  # a no-op once it finished

    async def _watch(self) -> None:
        db = self.db
        while True:
            try:
                layout = await db._poll(self.epoch, _CALL_TIMEOUT)
            except Exception:  # no gateway answered: as no newer epoch
                layout = None
            if layout is not None and layout.epoch > self.epoch:
                if db.layout is None or layout.epoch > db.layout.epoch:
                    db.layout = layout
                self.superseded = True
                self.task.cancel()
                return
            await asyncio.sleep(_RACE_AFTER)  # no newer epoch yet: pace the next poll


def _unreachable(ref: WorkerRef, exc: BaseException) -> str:
    return f"{ref.kind} {ref.id} at {ref.address}: {type(exc).__name__} {exc}"


def _checked(ref: WorkerRef, reply: protocol.Response) -> protocol.Response:
    """``reply``, or the TransactionError a refusal means."""
    match reply:
        case protocol.NewerEpoch(epoch=epoch):
            raise _error(ErrorCode.EPOCH_CHANGED, f"{ref.kind} {ref.id} is at epoch {epoch}")
        case protocol.Locked(reason=reason):
            raise _error(ErrorCode.EPOCH_CHANGED, f"{ref.kind} {ref.id} is locked: {reason}")
        case protocol.Failed(code=code, message=message):
            raise _error(server_code(code), f"{ref.kind} {ref.id}: {message}")
    return reply


class Transaction:
    """One attempt. Use as ``async with``: commits on a normal exit."""

    def __init__(
        self, db: Database, *, swallow_retryable: bool = False, idempotency_id: bytes = b""
    ) -> None:
        self.db = db
        self._swallow = swallow_retryable
        self._layout: Layout | None = None
        self._read_version: int | None = None
        self._writes: dict[bytes, bytes | None] = {}
        self._cleared: list[KeyRange] = []
        self._mutations: list[Mutation] = []
        self._reads: list[KeyRange] = []
        self._size = 0
        #: The id all attempts of this logical transaction share (empty: none).
        self.idempotency_id = idempotency_id
        self.committed_version: int | None = None
        #: The commit was that of an earlier attempt, learned after an unknown outcome.
        self.committed_earlier = False
        self.error: TransactionError | None = None

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            try:
                await self.commit()
            except TransactionError as err:
                self.error = err
                if self._swallow and err.retryable:
                    return False
                raise
            return False
        if isinstance(exc, TransactionError):
            self.error = exc
            return self._swallow and exc.retryable
        return False

    # -- reads ---------------------------------------------------------------------

    async def _snapshot(self) -> tuple[Layout, int]:
        if self._read_version is None:
            layout = await self.db.current_layout()
            self._layout = layout
            self._read_version = await self.db.read_versions.read_version(layout)
        assert self._layout is not None
        return self._layout, self._read_version

    async def read_version(self) -> int:
        return (await self._snapshot())[1]

    def _team(self, layout: Layout, key: bytes) -> list[WorkerRef]:
        begins = [t.begin for t in layout.storage]
        i = bisect.bisect_right(begins, key) - 1
        if i < 0 or not served_range(layout.storage[i].begin, layout.storage[i].end).contains(key):
            raise _error(ErrorCode.INVALID, f"no storage team serves key {key[:32]!r}")
        return layout.storage[i].replicas

    async def _storage_call(
        self, layout: Layout, key: bytes, make: Callable[[str], protocol.Request]
    ) -> protocol.Response:
        replicas = list(self._team(layout, key))
        self.db.rng.shuffle(replicas)
        last: TransactionError | None = None
        for ref in replicas:
            try:
                return await self.db.call(ref, make(ref.id), layout.epoch)
            except TransactionError as err:
                if err.code not in (ErrorCode.UNAVAILABLE, ErrorCode.WRONG_SHARD):
                    raise
                last = err  # try another replica
        raise last or _error(ErrorCode.UNAVAILABLE, "no storage replica")

    def _buffered(self, key: bytes) -> tuple[bool, bytes | None]:
        if key in self._writes:
            return True, self._writes[key]
        if any(r.contains(key) for r in self._cleared):
            return True, None
        return False, None

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (None if absent), including this transaction's writes."""
        _check_key(key)
        hit, value = self._buffered(key)
        if hit:
            return value
        layout, version = await self._snapshot()
        self._reads.append(KeyRange.single(key))
        reply = await self._storage_call(
            layout, key, lambda worker: protocol.StorageGet(worker, key, version, layout.epoch)
        )
        if not isinstance(reply, protocol.Value):
            raise _error(ErrorCode.INTERNAL, f"unexpected {type(reply).__name__} for a read")
        return reply.value

    async def _read_range(
        self, layout: Layout, version: int, begin: bytes, end: bytes, limit: int
    ) -> protocol.Values:
        reply = await self._storage_call(
            layout,
            begin,
            functools.partial(_range_request, begin, end, version, limit, layout.epoch),
        )
        if not isinstance(reply, protocol.Values):
            raise _error(ErrorCode.INTERNAL, f"unexpected {type(reply).__name__} for a range read")
        return reply

    async def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 1000
    ) -> list[tuple[bytes, bytes]]:
        """Key-value pairs in ``[begin, end)``, sorted, at most ``limit``."""
        _check_key(begin)
        end = min(end, SYSTEM_PREFIX)
        if begin >= end or limit <= 0:
            return []
        layout, version = await self._snapshot()
        self._reads.append(KeyRange(begin, end))
        rows: dict[bytes, bytes] = {}
        for team in layout.storage:
            lo, hi = max(begin, team.begin), min(end, team.end)
            got = 0
            while lo < hi and got < limit:
                reply = await self._read_range(layout, version, lo, hi, limit - got)
                rows.update(reply.pairs)
                got += len(reply.pairs)
                if not reply.more or not reply.pairs:
                    break
                lo = reply.pairs[-1][0] + b"\x00"  # an answer is bounded in bytes: go on
        for key in list(rows):
            hit, value = self._buffered(key)
            if hit:
                if value is None:
                    del rows[key]
                else:
                    rows[key] = value
        for key, value in self._writes.items():
            if value is not None and begin <= key < end:
                rows[key] = value
        return sorted(rows.items())[:limit]

    async def _committed_since(self, after: int) -> int | None:
        """The version this transaction's id committed at above ``after``, or None.

        Reads the idempotency records in ``(after, read version]`` at this
        attempt's (fresh, confirmed) read version. A failure is recorded in
        :attr:`error` (and None returned); so is a lookup too late to trust.
        """
        try:
            layout, version = await self._snapshot()
            if version - after > idempotency.LOOKUP_WINDOW_VERSIONS:
                raise TransactionError(
                    ErrorCode.COMMIT_UNKNOWN_RESULT,
                    "an earlier attempt may have committed, too long ago to find out",
                    retryable=False,
                )
            begin = idempotency.record_key(after + 1)
            end = idempotency.record_key(version + 1)
            while begin < end:
                values = await self._read_range(layout, version, begin, end, _SCAN_LIMIT)
                for key, value in values.pairs:
                    if self.idempotency_id in idempotency.decode_ids(value):
                        return idempotency.record_version(key)
                if not values.more or not values.pairs:
                    return None
                begin = values.pairs[-1][0] + b"\x00"
        except TransactionError as err:
            self.error = err
        return None

    # -- writes --------------------------------------------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        _check_key(key)
        if len(value) > MAX_VALUE_SIZE:
            raise _error(ErrorCode.INVALID, f"value of {len(value)} bytes exceeds {MAX_VALUE_SIZE}")
        self._add(Mutation(MutationKind.SET, key, value))
        self._writes[key] = value

    def clear(self, key: bytes) -> None:
        _check_key(key)
        self._add(Mutation(MutationKind.CLEAR, key))
        self._writes[key] = None

    def clear_range(self, begin: bytes, end: bytes) -> None:
        _check_key(begin)
        end = min(end, SYSTEM_PREFIX)
        if begin >= end:
            return
        self._add(Mutation(MutationKind.CLEAR_RANGE, begin, end))
        self._cleared.append(KeyRange(begin, end))
        for key in [k for k in self._writes if begin <= k < end]:
            del self._writes[key]

    def _add(self, m: Mutation) -> None:
        self._size += len(m.key) + len(m.param) + 16
        if self._size > MAX_TRANSACTION_SIZE:
            raise _error(
                ErrorCode.INVALID,
                f"transaction exceeds the {MAX_TRANSACTION_SIZE} byte size limit",
            )
        self._mutations.append(m)

    # -- commit --------------------------------------------------------------------

    async def commit(self) -> int | None:
        """Commit; return the commit version (None for a read-only transaction).

        Raises ``commit_unknown_result`` if the outcome is unknown (see the module
        docstring).
        """
        if not self._mutations:
            self.committed_version = self._read_version or 0
            return None
        if self._read_version is None and not self._reads and not self.idempotency_id:
            # A blind write reads nothing a read version would check: it commits
            # without asking for one (an idempotency id is a read, at the proxy).
            layout, version = await self.db.current_layout(), 0
            self._layout = layout
        else:
            layout, version = await self._snapshot()
        writes = [
            KeyRange(m.key, m.param)
            if m.kind == MutationKind.CLEAR_RANGE
            else KeyRange.single(m.key)
            for m in self._mutations
        ]
        proxy = self.db.rng.choice(layout.proxies)
        body = protocol.Commit(
            proxy.id, version, self._reads, writes, self._mutations, b"", self.idempotency_id
        )
        reply = await self.db.commit_call(proxy, body, layout.epoch)
        match reply:
            case protocol.Committed(version=committed):
                self.committed_version = committed
                return committed
            case protocol.NotCommitted(reason=reason):
                raise _error(ErrorCode.NOT_COMMITTED, reason)
        raise _error(ErrorCode.INTERNAL, f"unexpected {type(reply).__name__} for a commit")


def _range_request(
    begin: bytes, end: bytes, version: int, limit: int, epoch: int, worker: str
) -> protocol.Request:
    return protocol.StorageGetRange(worker, begin, end, version, limit, epoch)


def _check_key(key: bytes) -> None:
    problem = check_user_key(key)
    if problem is not None:
        raise _error(ErrorCode.INVALID, problem)


async def open_database(
    cluster: str | ClusterFile,
    *,
    channel: RpcChannel | None = None,
    rng: random.Random | None = None,
    **kwargs: float,
) -> Database:
    """A :class:`Database` for ``cluster`` (a cluster.toml path or ``host:port,...``).

    ``channel`` and ``rng`` are the simulation's seams (see :class:`Database`).
    """
    from .client import connect

    rng = rng or random.Random()
    client = await connect(
        cluster, channel=channel, rng=random.Random(rng.getrandbits(64)), **kwargs
    )
    dialer = Caller(client.cluster_id, auth=client.auth, channel=channel)
    return Database(client, dialer, rng=rng)
