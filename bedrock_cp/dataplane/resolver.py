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
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

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
        # Admitted writes by batch version, oldest first (parallel lists for bisect).
        self._versions: list[int] = []
        self._writes: list[list[KeyRange]] = []
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
        if body.epoch < self._seen_epoch:
            return NewerEpoch(self._seen_epoch)
        if body.epoch > self.epoch:
            self._seen_epoch = body.epoch
            return Failed("invalid", f"resolver {self.ref.id} belongs to epoch {self.epoch}")
        return await self._resolve(body)

    async def _resolve(self, req: Resolve) -> Response:
        if req.version <= req.prev_version:
            return Failed("invalid", f"version {req.version} <= prev {req.prev_version}")
        if req.version <= self._last:
            seen = self._answers.get(req.version)
            if seen is not None and seen[0] == req.prev_version:
                return seen[1]  # a replay: the same answer again
            return Failed("invalid", f"version {req.version} is already resolved differently")
        if req.prev_version > self._last and not await self._pulse.wait_for(
            lambda: req.prev_version <= self._last or self.stopped, self._order_wait
        ):
            return Failed("gap", f"version {req.prev_version} never resolved (last {self._last})")
        if self.stopped:
            return Failed("unavailable", f"resolver {self.ref.id} is stopped")
        if req.version <= self._last:  # resolved by a concurrent replay meanwhile
            return await self._resolve(req)
        if req.prev_version != self._last:
            return Failed(
                "invalid", f"batch chains from {req.prev_version}, resolver at {self._last}"
            )

        floor = max(self._start_version, req.version - MVCC_WINDOW_VERSIONS)
        self._forget_below(floor)
        admitted: list[bool] = []
        batch_writes: list[KeyRange] = []
        for txn in req.transactions:
            reads = clip(txn.reads, self._served)
            writes = clip(txn.writes, self._served)
            ok = not reads or (
                txn.read_version >= floor
                and not self._conflicts(reads, txn.read_version)
                and not any(r.intersects(w) for r in reads for w in batch_writes)
            )
            admitted.append(ok)
            if ok:
                batch_writes.extend(writes)
        if batch_writes:
            self._versions.append(req.version)
            self._writes.append(batch_writes)
        answer = Resolved(admitted)
        self._answers[req.version] = (req.prev_version, answer)
        while len(self._answers) > ANSWER_MEMORY:
            self._answers.popitem(last=False)
        self._last = req.version
        self._pulse.fire()
        return answer

    def _conflicts(self, reads: list[KeyRange], read_version: int) -> bool:
        start = bisect.bisect_right(self._versions, read_version)
        for writes in self._writes[start:]:
            for w in writes:
                for r in reads:
                    if r.intersects(w):
                        return True
        return False

    def _forget_below(self, floor: int) -> None:
        """Drop writes at or below ``floor``: no admissible read can conflict with them."""
        n = bisect.bisect_right(self._versions, floor)
        if n:
            del self._versions[:n]
            del self._writes[:n]

    async def stop(self) -> None:
        self.stopped = True
        self._pulse.fire()
