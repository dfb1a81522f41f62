"""The sequencer: the single source of commit and read versions of one epoch.

Commit versions follow time: ``v = max(prev + 1, start_version + elapsed * 1e6)``
(elapsed seconds since the sequencer started), so a distance in versions is a
distance in time and the 5 s MVCC window is
:data:`~bedrock_cp.protocol.MVCC_WINDOW_VERSIONS`.
Each answer names the previous version handed out, which chains the batches on
the logs and at the resolvers. ``start_version`` is the recovery version, so
versions increase across epochs.

The read version is the highest version a proxy reported durable on every log;
reads at it see every acknowledged commit (I7). The sequencer is not durable:
a new epoch starts a new one above everything the old one could have handed out
as committed.
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import (
    VERSIONS_PER_SECOND,
    CommitVersion,
    Failed,
    GetCommitVersion,
    GetReadVersion,
    NewerEpoch,
    ReadVersion,
    ReportCommitted,
    Request,
    Response,
    WorkerRef,
)


class Sequencer:
    def __init__(
        self, ref: WorkerRef, epoch: int, start_version: int, *, clock: Callable[[], float]
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

    @property
    def committed(self) -> int:
        return self._committed

    async def handle(self, body: Request) -> Response:
        if self.stopped:
            return Failed("unavailable", f"sequencer {self.ref.id} is stopped")
        if not isinstance(body, GetReadVersion | GetCommitVersion | ReportCommitted):
            return Failed("invalid", f"a sequencer does not handle {type(body).__name__}")
        if body.epoch < self._seen_epoch:
            return NewerEpoch(self._seen_epoch)
        if body.epoch > self.epoch:
            # A newer generation exists: this sequencer serves nobody any more (I6).
            self._seen_epoch = body.epoch
            return Failed("invalid", f"sequencer {self.ref.id} belongs to epoch {self.epoch}")
        if isinstance(body, GetCommitVersion):
            prev = self._last
            elapsed = max(0.0, self._clock() - self._started)
            self._last = max(prev + 1, self._start_version + int(elapsed * VERSIONS_PER_SECOND))
            return CommitVersion(prev, self._last)
        if isinstance(body, ReportCommitted):
            if body.version > self._last:
                return Failed("invalid", f"version {body.version} was never handed out")
            self._committed = max(self._committed, body.version)
            return ReadVersion(self._committed)
        return ReadVersion(self._committed)

    async def stop(self) -> None:
        self.stopped = True
