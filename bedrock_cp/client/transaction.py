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
Retryable failures — a conflict (``not_committed``), an unreachable component
(``unavailable``), a new epoch (``epoch_changed``), a read version outside the
MVCC window — raise a :class:`TransactionError` with ``retryable`` set;
:meth:`Database.attempts` and :meth:`Database.run` retry those with backoff.
The layout of the transaction system (TSL) comes from any node's gateway.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from .. import protocol
from ..protocol import (
    MAX_TRANSACTION_SIZE,
    MAX_VALUE_SIZE,
    Caller,
    KeyRange,
    Layout,
    Mutation,
    MutationKind,
    WorkerRef,
    check_user_key,
)
from .client import Client, ClientError

T = TypeVar("T")


class TransactionError(ClientError):
    """A transaction failed; ``code`` names why and ``retryable`` whether to try again."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = retryable


def _retryable(code: str, message: str) -> TransactionError:
    return TransactionError(code, message, retryable=True)


def _fatal(code: str, message: str) -> TransactionError:
    return TransactionError(code, message, retryable=False)


# A storage replica that has not yet seen the layout answers wrong_shard: retry.
_RETRYABLE_FAILED = {"unavailable", "future_version", "version_too_old", "gap", "wrong_shard"}
_CALL_TIMEOUT = 5.0


class Database:
    """A handle on the data plane of one cluster; see the module docstring."""

    def __init__(self, client: Client, dialer: Caller) -> None:
        self.client = client
        self.dialer = dialer
        self.layout: Layout | None = None
        self._layout_lock = asyncio.Lock()

    # -- layout ------------------------------------------------------------------------

    async def refresh_layout(self, newer_than: int = 0, timeout: float = 10.0) -> Layout:  # noqa: ASYNC109
        """Ask the nodes' gateways for the TSL; wait for one newer than ``newer_than``."""
        async with self._layout_lock:
            if self.layout is not None and self.layout.epoch > newer_than:
                return self.layout
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            delay = 0.01
            while True:
                layout = await self.client.fetch_layout()
                if layout is not None and layout.epoch > newer_than:
                    self.layout = layout
                    return layout
                if loop.time() + delay > deadline:
                    raise _retryable(
                        "unavailable", f"no transaction system layout newer than epoch {newer_than}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)

    async def current_layout(self) -> Layout:
        return self.layout or await self.refresh_layout()

    # -- transactions --------------------------------------------------------------------

    def transaction(self) -> Transaction:
        return Transaction(self)

    async def attempts(
        self,
        *,
        max_attempts: int = 100,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> AsyncIterator[Transaction]:
        """Yield a fresh transaction until one is used in ``async with`` and commits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.005
        for attempt in range(max_attempts):
            tr = Transaction(self, swallow_retryable=True)
            yield tr
            if tr.committed_version is not None:
                return
            if tr.error is None:
                raise _fatal("invalid", "the transaction was not used in `async with`")
            await self._after_failure(tr.error)
            if loop.time() + delay > deadline or attempt == max_attempts - 1:
                raise tr.error
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.5)
        raise _fatal("invalid", "max_attempts must be positive")

    async def run(
        self,
        fn: Callable[[Transaction], Awaitable[T]],
        *,
        max_attempts: int = 100,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> T:
        """Run ``fn(tr)`` and commit, retrying on retryable errors; return its result."""
        result: T | None = None
        async for tr in self.attempts(max_attempts=max_attempts, timeout=timeout):
            async with tr:
                result = await fn(tr)
        return result  # type: ignore[return-value]

    async def _after_failure(self, error: TransactionError) -> None:
        if error.code in ("epoch_changed", "unavailable") and self.layout is not None:
            try:
                await self.refresh_layout(newer_than=self.layout.epoch, timeout=0.5)
            except TransactionError:
                self.layout = None  # fetch whatever is current next time

    # -- plumbing ------------------------------------------------------------------

    async def call(self, ref: WorkerRef, body: protocol.Request) -> protocol.Response:
        try:
            reply = await self.dialer.call(ref, body, _CALL_TIMEOUT)
        except (OSError, ConnectionError, TimeoutError) as exc:
            raise _retryable(
                "unavailable", f"{ref.kind} {ref.id} at {ref.address}: {exc}"
            ) from None
        match reply:
            case protocol.NewerEpoch(epoch=epoch):
                raise _retryable("epoch_changed", f"{ref.kind} {ref.id} is at epoch {epoch}")
            case protocol.Locked(reason=reason):
                raise _retryable("epoch_changed", f"{ref.kind} {ref.id} is locked: {reason}")
            case protocol.Failed(code="no_such_worker", message=message):
                # The layout this client holds names a worker that is gone (its
                # node restarted, or a newer epoch replaced it): refresh, retry.
                raise _retryable("epoch_changed", message)
            case protocol.Failed(code=code, message=message):
                if code in _RETRYABLE_FAILED:
                    raise _retryable(code, message)
                raise _fatal(code, message)
        return reply

    async def close(self) -> None:
        await self.dialer.close()
        await self.client.close()


class Transaction:
    """One attempt. Use as ``async with``: commits on a normal exit."""

    def __init__(self, db: Database, *, swallow_retryable: bool = False) -> None:
        self.db = db
        self._swallow = swallow_retryable
        self._layout: Layout | None = None
        self._read_version: int | None = None
        self._writes: dict[bytes, bytes | None] = {}
        self._cleared: list[KeyRange] = []
        self._mutations: list[Mutation] = []
        self._reads: list[KeyRange] = []
        self._size = 0
        self.committed_version: int | None = None
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
            reply = await self.db.call(
                layout.sequencer, protocol.GetReadVersion(layout.sequencer.id, layout.epoch)
            )
            if not isinstance(reply, protocol.ReadVersion):
                raise _fatal("internal", f"unexpected {type(reply).__name__} for a read version")
            self._layout = layout
            self._read_version = reply.version
        assert self._layout is not None
        return self._layout, self._read_version

    async def read_version(self) -> int:
        return (await self._snapshot())[1]

    def _team(self, layout: Layout, key: bytes) -> list[WorkerRef]:
        begins = [t.begin for t in layout.storage]
        i = bisect.bisect_right(begins, key) - 1
        if i < 0 or not layout.storage[i].begin <= key < layout.storage[i].end:
            raise _fatal("invalid", f"no storage team serves key {key[:32]!r}")
        return layout.storage[i].replicas

    async def _storage_call(
        self, layout: Layout, key: bytes, make: Callable[[str], protocol.Request]
    ) -> protocol.Response:
        replicas = list(self._team(layout, key))
        random.shuffle(replicas)
        last: TransactionError | None = None
        for ref in replicas:
            try:
                return await self.db.call(ref, make(ref.id))
            except TransactionError as err:
                if err.code not in ("unavailable", "wrong_shard"):
                    raise
                last = err  # try another replica
        raise last or _retryable("unavailable", "no storage replica")

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
            layout, key, lambda worker: protocol.StorageGet(worker, key, version)
        )
        if not isinstance(reply, protocol.Value):
            raise _fatal("internal", f"unexpected {type(reply).__name__} for a read")
        return reply.value

    async def get_range(
        self, begin: bytes, end: bytes, *, limit: int = 1000
    ) -> list[tuple[bytes, bytes]]:
        """Key-value pairs in ``[begin, end)``, sorted, at most ``limit``."""
        _check_key(begin)
        if end > b"\xff":
            end = b"\xff"
        if begin >= end or limit <= 0:
            return []
        layout, version = await self._snapshot()
        self._reads.append(KeyRange(begin, end))
        rows: dict[bytes, bytes] = {}
        for team in layout.storage:
            lo, hi = max(begin, team.begin), min(end, team.end)
            got = 0
            while lo < hi and got < limit:
                reply = await self._storage_call(
                    layout, lo, functools.partial(_range_request, lo, hi, version, limit - got)
                )
                if not isinstance(reply, protocol.Values):
                    raise _fatal("internal", f"unexpected {type(reply).__name__} for a range read")
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

    # -- writes --------------------------------------------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        _check_key(key)
        if len(value) > MAX_VALUE_SIZE:
            raise _fatal("invalid", f"value of {len(value)} bytes exceeds {MAX_VALUE_SIZE}")
        self._add(Mutation(MutationKind.SET, key, value))
        self._writes[key] = value

    def clear(self, key: bytes) -> None:
        _check_key(key)
        self._add(Mutation(MutationKind.CLEAR, key))
        self._writes[key] = None

    def clear_range(self, begin: bytes, end: bytes) -> None:
        _check_key(begin)
        end = min(end, b"\xff")
        if begin >= end:
            return
        self._add(Mutation(MutationKind.CLEAR_RANGE, begin, end))
        self._cleared.append(KeyRange(begin, end))
        for key in [k for k in self._writes if begin <= k < end]:
            del self._writes[key]

    def _add(self, m: Mutation) -> None:
        self._size += len(m.key) + len(m.param) + 16
        if self._size > MAX_TRANSACTION_SIZE:
            raise _fatal(
                "invalid", f"transaction exceeds the {MAX_TRANSACTION_SIZE} byte size limit"
            )
        self._mutations.append(m)

    # -- commit --------------------------------------------------------------------

    async def commit(self) -> int | None:
        """Commit; return the commit version (None for a read-only transaction)."""
        if not self._mutations:
            self.committed_version = self._read_version or 0
            return None
        layout, version = await self._snapshot()
        writes = [
            KeyRange(m.key, m.param)
            if m.kind == MutationKind.CLEAR_RANGE
            else KeyRange.single(m.key)
            for m in self._mutations
        ]
        proxy = random.choice(layout.proxies)
        reply = await self.db.call(
            proxy, protocol.Commit(proxy.id, version, self._reads, writes, self._mutations)
        )
        match reply:
            case protocol.Committed(version=committed):
                self.committed_version = committed
                return committed
            case protocol.NotCommitted(reason=reason):
                raise _retryable("not_committed", reason)
        raise _fatal("internal", f"unexpected {type(reply).__name__} for a commit")


def _range_request(
    begin: bytes, end: bytes, version: int, limit: int, worker: str
) -> protocol.Request:
    return protocol.StorageGetRange(worker, begin, end, version, limit)


def _check_key(key: bytes) -> None:
    problem = check_user_key(key)
    if problem is not None:
        raise _fatal("invalid", problem)


async def open_database(cluster: str, **kwargs: float) -> Database:
    """A :class:`Database` for ``cluster`` (a cluster.toml path or ``host:port,...``)."""
    from .client import connect

    client = await connect(cluster, **kwargs)
    return Database(client, Caller(client.cluster_id))
