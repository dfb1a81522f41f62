"""The sequencer: the single source of commit and read versions of one epoch.

Commit versions follow time: ``v = max(prev + 1, start_version + elapsed * 1e6)``
(elapsed seconds since the sequencer started), so a distance in versions is a
distance in time and the 5 s MVCC window is
:data:`~bedrock_cp.protocol.MVCC_WINDOW_VERSIONS`.
Each answer names the previous version handed out, which chains the batches on
the logs and at the resolvers. ``start_version`` is the recovery version, so
versions increase across epochs.

The read version is the highest version a proxy reported durable on every log;
reads at it see every acknowledged commit of this epoch (I7). But a newer epoch
may already be live — this sequencer's node was cut off or paused while the
Director of the next epoch locked the logs — and acknowledge commits this
sequencer never hears of. So a read version is handed out only after a
**confirmation round** that started after the request arrived: every log of the
layout answered :class:`~bedrock_cp.protocol.ConfirmEpoch` with ``Done``. A
newer epoch locks at least one of them before it commits anything, so a round
that succeeds proves that no commit of a newer epoch was acknowledged before the
request arrived. A log that refuses (``NewerEpoch``, ``Locked``) supersedes this
sequencer: the request is answered ``NewerEpoch`` (``Locked`` while only a
lock is known); one that does not answer within ``confirm_timeout`` fails the
round with ``Failed("unavailable")``. The first log that does not confirm
decides the round: the others are not waited for.

Concurrent requests share rounds (as FoundationDB batches read-version
requests): one round is in flight at a time; requests arriving meanwhile wait
for the next one, which starts as soon as it ends. Each reader pays at most two
log round trips, and the logs see one small request per round, not per reader.

The sequencer is not durable: a new epoch starts a new one above everything the
old one could have handed out as committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..protocol import (
    VERSIONS_PER_SECOND,
    CommitVersion,
    ConfirmEpoch,
    Done,
    Failed,
    GetCommitVersion,
    GetReadVersion,
    Locked,
    NewerEpoch,
    ReadVersion,
    ReportCommitted,
    Request,
    Response,
    WorkerRef,
)
from .gather import until_refused
from .worker import Dialer

_SequencerRequest = GetReadVersion | GetCommitVersion | ReportCommitted

#: How long a confirmation round waits for the logs before it fails.
CONFIRM_TIMEOUT = 1.0


class Sequencer:
    def __init__(
        self,
        ref: WorkerRef,
        epoch: int,
        start_version: int,
        *,
        clock: Callable[[], float],
        logs: list[WorkerRef],
        dialer: Dialer,
        confirm_timeout: float = CONFIRM_TIMEOUT,
    ) -> None:
        self.ref = ref
        self.epoch = epoch
        self.stopped = False
        self._start_version = start_version
        self._clock = clock
        self._started = clock()
        self._seen_epoch = epoch
        self._last = start_version  # last commit version handed out
        self._committed = start_version
        self._logs = list(logs)
        self._dialer = dialer
        self._confirm_timeout = confirm_timeout
        # Read-version requests waiting for the next confirmation round, and
        # those the round in flight will answer.
        self._waiting: list[asyncio.Future[Response]] = []
        self._in_round: list[asyncio.Future[Response]] = []
        self._rounds: asyncio.Task[None] | None = None
        #: Confirmation rounds run so far (for tests and status).
        self.rounds = 0

    @property
    def committed(self) -> int:
        return self._committed

    async def handle(self, body: Request) -> Response:
        if self.stopped:
            return Failed("unavailable", f"sequencer {self.ref.id} is stopped")
        if not isinstance(body, _SequencerRequest):
            return Failed("invalid", f"a sequencer does not handle {type(body).__name__}")
        if refusal := self._refusal(body):
            return refusal
        if isinstance(body, GetReadVersion):
            return await self._read_version()
        return self._answer(body)

    def answer_now(self, body: Request) -> Response | None:
        """A commit version or a report, at once; None for anything else (a read
        version waits for a confirmation round): see :meth:`handle`."""
        if not isinstance(body, GetCommitVersion | ReportCommitted):
            return None
        return self._refusal(body) or self._answer(body)

    def _refusal(self, body: _SequencerRequest) -> Response | None:
        if self.stopped:
            return Failed("unavailable", f"sequencer {self.ref.id} is stopped")
        if body.epoch < self._seen_epoch:
            return NewerEpoch(self._seen_epoch)
        if body.epoch > self.epoch:
            # A newer generation exists: this sequencer serves nobody any more (I6).
            self._seen_epoch = body.epoch
            return Failed("invalid", f"sequencer {self.ref.id} belongs to epoch {self.epoch}")
        return None

    def _answer(self, body: GetCommitVersion | ReportCommitted) -> Response:
        if isinstance(body, GetCommitVersion):
            prev = self._last
            elapsed = max(0.0, self._clock() - self._started)
            self._last = max(prev + 1, self._start_version + int(elapsed * VERSIONS_PER_SECOND))
            return CommitVersion(prev, self._last)
        if body.version > self._last:
            return Failed("invalid", f"version {body.version} was never handed out")
        self._committed = max(self._committed, body.version)
        return ReadVersion(self._committed)

    # -- read versions ----------------------------------------------------------------

    async def _read_version(self) -> Response:
        """A read version, once a confirmation round started after now succeeded."""
        answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        if self._rounds is None or self._rounds.done():
            self._rounds = asyncio.get_running_loop().create_task(
                self._run_rounds(), name=f"confirm-{self.ref.id}"
            )
        # No shield (one wake-up less): a cancelled request cancels its
        # future, and _answer skips the futures already done.
        return await answer

    async def _run_rounds(self) -> None:
        while self._waiting and not self.stopped:
            self._in_round, self._waiting = self._waiting, []
            try:
                refusal = await self._confirm()
            except Exception as exc:  # a bug: answer, never leave a reader waiting
                refusal = Failed("internal", f"confirmation failed: {exc!r}")
            self.rounds += 1
            result = refusal if refusal is not None else ReadVersion(self._committed)
            _answer(self._in_round, result)
            self._in_round = []

    async def _confirm(self) -> Response | None:
        """One round: None if every log still accepts this epoch, else the refusal."""
        if self._seen_epoch > self.epoch:
            return NewerEpoch(self._seen_epoch)
        # The first log that does not confirm decides the round (another may be stopped).
        answers = await until_refused(
            [self._ask(ref) for ref in self._logs], lambda a: isinstance(a, Done)
        )
        refusal: Response | None = None
        for ref, answer in zip(self._logs, answers, strict=True):
            if answer is None or isinstance(answer, Done):
                continue  # not waited for, or confirmed
            if isinstance(answer, NewerEpoch):
                self._seen_epoch = max(self._seen_epoch, answer.epoch)
                return NewerEpoch(self._seen_epoch)
            if isinstance(answer, Locked):
                refusal = Locked(f"log {ref.id} is locked: epoch {self.epoch} is over")
            elif refusal is None:
                why = answer if not isinstance(answer, BaseException) else repr(answer)
                refusal = Failed("unavailable", f"log {ref.id} did not confirm the epoch: {why}")
        return refusal

    async def _ask(self, ref: WorkerRef) -> Response:
        # The dialer enforces the timeout (TimeoutError).
        return await self._dialer.call(ref, ConfirmEpoch(ref.id, self.epoch), self._confirm_timeout)

    async def stop(self) -> None:
        self.stopped = True
        task, self._rounds = self._rounds, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        stopped = Failed("unavailable", f"sequencer {self.ref.id} is stopped")
        _answer(self._in_round + self._waiting, stopped)
        self._in_round, self._waiting = [], []


def _answer(waiting: list[asyncio.Future[Response]], result: Response) -> None:
    for answer in waiting:
        if not answer.done():
            answer.set_result(result)
