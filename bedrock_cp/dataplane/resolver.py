"""The resolver: read-write conflict detection for one key range.

Batches are resolved strictly in version order (``prev_version`` must be the
last resolved version; a batch that arrives early waits a bounded time for its
predecessor, then fails with ``gap``). A transaction is refused if one of its
reads, clipped to this resolver's range, intersects a write of a transaction
admitted at a version above its read version — including earlier transactions
of the same batch, which commit at the batch's version. Reads older than the
window (or older than the epoch's start, whose history this resolver never saw)
are refused as too old. Admitted writes are recorded at the batch version;
history older than the window is dropped, so memory stays bounded.

A transaction admitted here may be refused by another resolver; its writes stay
recorded (a possible false conflict later, never a missed one).

The resolver whose range reaches the end of the user key space also checks the
system keys (:func:`~bedrock_cp.protocol.served_range`): the idempotency
conflict keys that keep two attempts of one transaction from both committing.

A read of one key (most reads: every transaction with an idempotency id reads
its conflict key) costs one lookup of the newest version that key was written
at, plus the range writes (clears of ranges) above its read version, instead
of a pass over every write admitted above its read version: that pass grew
with the commit rate times the time a transaction takes, so under load each
transaction paid for all the others. A read of a range still takes the pass.
``benches/test_resolver_bench.py`` (32 transactions a batch, one key read and
two written each): 76 us per transaction before, 10 us after, with read
versions 10 batches old; 1,381 us before, 11 us after, 100 batches old.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque

from ..protocol import (
    MVCC_WINDOW_VERSIONS,
    Failed,
    KeyRange,
    NewerEpoch,
    Request,
    Resolve,
    Resolved,
    Response,
    WorkerRef,
    served_range,
)
from .pulse import Pulse

#: Answers remembered for idempotent replays of already-resolved batches.
ANSWER_MEMORY = 1024


def _point(r: KeyRange) -> bytes | None:
    """The key ``r`` holds if it holds exactly one, else None."""
    end = r.end
    return (
        r.begin if len(end) == len(r.begin) + 1 and end[-1] == 0 and end[:-1] == r.begin else None
    )


class _Writes:
    """Writes by version: the newest version of each single key written, and
    the range writes in version order (a batch's writes go in together)."""

    __slots__ = ("_by_version", "_key_version", "_range_versions", "_ranges")

    def __init__(self) -> None:
        self._key_version: dict[bytes, int] = {}
        #: ``(version, keys written)``, oldest first: what :meth:`forget_below` walks.
        self._by_version: deque[tuple[int, list[bytes]]] = deque()
        self._range_versions: list[int] = []
        self._ranges: list[list[KeyRange]] = []

    def add(self, version: int, keys: list[bytes], ranges: list[KeyRange]) -> None:
        if keys:
            for key in keys:
                self._key_version[key] = version
            self._by_version.append((version, keys))
        if ranges:
            self._range_versions.append(version)
            self._ranges.append(ranges)

    def conflicts(self, key: bytes, read_version: int) -> bool:
        """Whether a write above ``read_version`` touched ``key``."""
        if self._key_version.get(key, -1) > read_version:
            return True
        start = bisect.bisect_right(self._range_versions, read_version)
        return any(r.contains(key) for rs in self._ranges[start:] for r in rs)

    def forget_below(self, floor: int) -> None:
        """Drop writes at or below ``floor``."""
        by_version, newest = self._by_version, self._key_version
        while by_version and by_version[0][0] <= floor:
            version, keys = by_version.popleft()
            for key in keys:
                if newest.get(key) == version:
                    del newest[key]
        n = bisect.bisect_right(self._range_versions, floor)
        if n:
            del self._range_versions[:n]
            del self._ranges[:n]


def clip(ranges: list[KeyRange], to: KeyRange) -> list[KeyRange]:
    """The non-empty parts of ``ranges`` inside ``to``."""
    out: list[KeyRange] = []
    for r in ranges:
        begin, end = max(r.begin, to.begin), min(r.end, to.end)
        if begin < end:
            out.append(KeyRange(begin, end))
    return out


class Resolver:
    def __init__(
        self,
        ref: WorkerRef,
        epoch: int,
        start_version: int,
        key_range: KeyRange,
        *,
        order_wait: float = 2.0,
    ) -> None:
        self.ref = ref
        self.epoch = epoch
        self.key_range = key_range
        self._served = served_range(key_range.begin, key_range.end)
        self.stopped = False
        self._seen_epoch = epoch
        self._start_version = start_version
        self._order_wait = order_wait
        self._last = start_version
        # Admitted writes by batch version, oldest first (parallel lists for
        # bisect): what a read of a range is checked against.
        self._versions: list[int] = []
        self._writes: list[list[KeyRange]] = []
        # The same writes, indexed for reads of one key.
        self._index = _Writes()
        self._answers: OrderedDict[int, tuple[int, Resolved]] = OrderedDict()
        self._pulse = Pulse()

    @property
    def last(self) -> int:
        return self._last

    async def handle(self, body: Request) -> Response:
        if self.stopped:
            return Failed("unavailable", f"resolver {self.ref.id} is stopped")
        if not isinstance(body, Resolve):
            return Failed("invalid", f"a resolver does not handle {type(body).__name__}")
        answer = self.answer_now(body)
        if answer is not None:
            return answer
        return await self._after_earlier(body)

    def answer_now(self, body: Request) -> Response | None:
        """The answer to a batch that is next in order (or a replay), at once; None
        for a batch whose predecessor has not been resolved (it waits for it, see
        :meth:`handle`) and for anything that is not a :class:`Resolve`."""
        if not isinstance(body, Resolve):
            return None
        if self.stopped:
            return Failed("unavailable", f"resolver {self.ref.id} is stopped")
        if body.epoch < self._seen_epoch:
            return NewerEpoch(self._seen_epoch)
        if body.epoch > self.epoch:
            self._seen_epoch = body.epoch
            return Failed("invalid", f"resolver {self.ref.id} belongs to epoch {self.epoch}")
        if body.version <= body.prev_version:
            return Failed("invalid", f"version {body.version} <= prev {body.prev_version}")
        if body.version <= self._last:
            seen = self._answers.get(body.version)
            if seen is not None and seen[0] == body.prev_version:
                return seen[1]  # a replay: the same answer again
            return Failed("invalid", f"version {body.version} is already resolved differently")
        if body.prev_version > self._last:
            return None  # an earlier batch is still on its way
        if body.prev_version != self._last:
            return Failed(
                "invalid", f"batch chains from {body.prev_version}, resolver at {self._last}"
            )
        return self._resolve_next(body)

    async def _after_earlier(self, req: Resolve) -> Response:
        """Resolve ``req`` once the batch it chains from has been resolved."""
        arrived = await self._pulse.wait_for(
            lambda: req.prev_version <= self._last or self.stopped, self._order_wait
        )
        # Next in order now, or resolved by a concurrent replay meanwhile (or stopped).
        answer = self.answer_now(req) if arrived else None
        if answer is None:
            return Failed("gap", f"version {req.prev_version} never resolved (last {self._last})")
        return answer

    def _resolve_next(self, req: Resolve) -> Response:
        """Check batch ``req``, which chains from the last one resolved."""
        floor = max(self._start_version, req.version - MVCC_WINDOW_VERSIONS)
        self._forget_below(floor)
        admitted: list[bool] = []
        batch_writes: list[KeyRange] = []
        # This batch's admitted writes so far, as the index holds them.
        batch_keys: dict[bytes, None] = {}
        batch_ranges: list[KeyRange] = []
        for txn in req.transactions:
            reads = clip(txn.reads, self._served)
            writes = clip(txn.writes, self._served)
            ok = not reads or (
                txn.read_version >= floor
                and not self._conflicts(
                    reads, txn.read_version, batch_writes, batch_keys, batch_ranges
                )
            )
            admitted.append(ok)
            if ok:
                batch_writes.extend(writes)
                for w in writes:
                    key = _point(w)
                    if key is None:
                        batch_ranges.append(w)
                    else:
                        batch_keys[key] = None
        if batch_writes:
            self._versions.append(req.version)
            self._writes.append(batch_writes)
            self._index.add(req.version, list(batch_keys), batch_ranges)
        answer = Resolved(admitted)
        self._answers[req.version] = (req.prev_version, answer)
        while len(self._answers) > ANSWER_MEMORY:
            self._answers.popitem(last=False)
        self._last = req.version
        self._pulse.fire()
        return answer

    def _conflicts(
        self,
        reads: list[KeyRange],
        read_version: int,
        batch_writes: list[KeyRange],
        batch_keys: dict[bytes, None],
        batch_ranges: list[KeyRange],
    ) -> bool:
        """Whether a write admitted above ``read_version`` (those of this batch
        so far included) touches one of ``reads``."""
        ranges: list[KeyRange] = []
        for r in reads:
            key = _point(r)
            if key is None:
                ranges.append(r)
            elif (
                key in batch_keys
                or any(w.contains(key) for w in batch_ranges)
                or self._index.conflicts(key, read_version)
            ):
                return True
        if not ranges:
            return False
        if any(r.intersects(w) for r in ranges for w in batch_writes):
            return True
        start = bisect.bisect_right(self._versions, read_version)
        for writes in self._writes[start:]:
            for w in writes:
                for r in ranges:
                    if r.intersects(w):
                        return True
        return False

    def _forget_below(self, floor: int) -> None:
        """Drop writes at or below ``floor``: no admissible read can conflict with them."""
        n = bisect.bisect_right(self._versions, floor)
        if n:
            del self._versions[:n]
            del self._writes[:n]
        self._index.forget_below(floor)

    async def stop(self) -> None:
        self.stopped = True
        self._pulse.fire()
