"""The log worker: durable chained appends, locking, recovery copies, long-poll pulls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bedrock_cp import protocol
from bedrock_cp._native import native
from bedrock_cp.dataplane import log as log_module
from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.protocol import (
    MAX_STREAM_BYTES,
    CommitBatch,
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
    WorkerRef,
)

from .dataplane_pipeline import CLUSTER, MeasuringDialer, disk_bytes, ref, set_, until
from .loopback import LoopbackDialer


def batch(prev: int, version: int) -> CommitBatch:
    return CommitBatch(prev, version, [set_(b"k%d" % version, b"v%d" % version)])


def push(prev: int, version: int, *, epoch: int = 1, committed: int = 0) -> LogPush:
    return LogPush("log", epoch, batch(prev, version), committed)


def open_log(path: Path, **kw: object) -> LogWorker:
    return LogWorker(ref("log", "log"), path, cluster_id=CLUSTER, **kw)  # type: ignore[arg-type]


async def pull_all(log: LogWorker, after: int = 0) -> list[int]:
    resp = await log.handle(LogPull("log", after))
    assert isinstance(resp, LogBatches), resp
    return [b.version for b in resp.batches]


async def test_pushes_are_durable_and_survive_a_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    prev = 0
    for v in (10, 20, 30):
        assert await log.handle(push(prev, v, committed=prev)) == LogPushed(v, v)
        prev = v
    await log.stop()
    log = open_log(tmp_path)
    assert await pull_all(log) == [10, 20, 30]
    assert (log.last, log.durable) == (30, 30)
    assert await log.handle(push(30, 40)) == LogPushed(40, 40)
    await log.stop()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_acknowledged_pushes_survive_a_power_loss(tmp_path: Path, seed: int) -> None:
    # The log appends on its WAL's own thread (no executor given): a push is
    # answered only once that thread's fsync returned. The power loss keeps
    # only what was synced (a log opened without fsync loses these pushes).
    disk = native.MemDisk()
    log = open_log(tmp_path, disk=disk)
    answers = await asyncio.gather(*(log.handle(push(v * 10, v * 10 + 10)) for v in range(20)))
    assert all(isinstance(a, LogPushed) for a in answers), answers
    disk.power_loss(seed)
    await log.stop()
    log = open_log(tmp_path, disk=disk)
    assert await pull_all(log) == [v * 10 + 10 for v in range(20)]
    await log.stop()


async def test_a_failed_fsync_on_the_wal_thread_fails_the_log_for_good(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert await log.handle(push(0, 10)) == LogPushed(10, 10)
    assert log._wal is not None
    log._wal._inject_sync_failure()
    for prev, v in ((10, 20), (20, 30)):
        failed = await log.handle(push(prev, v))
        assert isinstance(failed, Failed) and failed.code == "internal", failed
        assert "WAL failed" in failed.message and "fsync" in failed.message
    assert log.durable == 10
    await log.stop()


async def test_concurrent_pushes_share_fsyncs(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    answers = await asyncio.gather(*(log.handle(push(v * 10, v * 10 + 10)) for v in range(50)))
    assert all(isinstance(a, LogPushed) for a in answers)
    assert log._wal is not None and log._wal.sync_count < 50  # group commit
    await log.stop()


async def test_the_chain_rejects_a_gap_and_waits_for_a_late_predecessor(tmp_path: Path) -> None:
    log = open_log(tmp_path, gap_wait=0.2)
    assert await log.handle(push(0, 10)) == LogPushed(10, 10)
    gap = await log.handle(push(20, 30))
    assert isinstance(gap, Failed) and gap.code == "gap"
    # A predecessor arriving within the wait lets the early batch through.
    early = asyncio.ensure_future(log.handle(push(20, 30)))
    await asyncio.sleep(0.05)
    assert await log.handle(push(10, 20)) == LogPushed(20, 20)
    assert await early == LogPushed(30, 30)
    # A batch that forks the chain is refused; an exact retry is acknowledged.
    fork = await log.handle(push(10, 25))
    assert isinstance(fork, Failed) and fork.code == "invalid"
    assert await log.handle(push(10, 20)) == LogPushed(20, 30)
    assert await pull_all(log) == [10, 20, 30]
    await log.stop()


async def test_a_locked_log_refuses_pushes_for_good(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    await log.handle(push(0, 10))
    await log.handle(push(10, 20))
    assert await log.handle(LogLock("log", 2)) == LogLocked(10, 20, 20)
    refused = await log.handle(push(20, 30, epoch=2))
    assert isinstance(refused, Locked)
    assert await log.handle(push(20, 30, epoch=1)) == NewerEpoch(2)
    assert await log.handle(push(20, 30, epoch=3)) == Locked("log log is locked (epoch 3)")
    await log.stop()
    log = open_log(tmp_path)  # the lock and the epoch are durable
    assert log.locked and log.epoch == 3
    assert isinstance(await log.handle(push(20, 30, epoch=3)), Locked)
    assert await log.handle(LogLock("log", 2)) == NewerEpoch(3)
    assert await pull_all(log) == [10, 20]  # a locked log still serves its batches
    await log.stop()


async def test_an_older_epoch_is_refused_after_a_restart(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert await log.handle(push(0, 10, epoch=5)) == LogPushed(10, 10)
    await log.stop()
    log = open_log(tmp_path)
    assert await log.handle(push(10, 20, epoch=4)) == NewerEpoch(5)
    assert await log.handle(LogLock("log", 4)) == NewerEpoch(5)
    assert await log.handle(LogRecover("log", 4, [], 1, 0)) == NewerEpoch(5)
    await log.stop()


async def test_recover_copies_exactly_first_to_last(tmp_path: Path) -> None:
    dialer = LoopbackDialer()
    old = LogWorker(ref("old", "log"), tmp_path / "old", cluster_id=CLUSTER, fsync=False)
    new = LogWorker(
        ref("new", "log"), tmp_path / "new", cluster_id=CLUSTER, fsync=False, dialer=dialer
    )
    dialer.register(old)
    dialer.register(new)
    prev = 0
    for v in range(10, 60, 10):
        await old.handle(LogPush("old", 1, batch(prev, v), 0))
        prev = v
    assert await old.handle(LogLock("old", 2)) == LogLocked(10, 50, 50)
    answer = await new.handle(LogRecover("new", 2, [old.ref], 20, 40))
    assert answer == LogRecovered(20, 40, 3)
    assert await pull_all(new, 10) == [20, 30, 40]  # not 10, not 50
    assert (new.last, new.committed) == (40, 40)
    # Below the copied range the log knows nothing: it says so instead of skipping.
    too_old = await new.handle(LogPull("new", 0))
    assert isinstance(too_old, Failed) and too_old.code == "version_too_old"
    # The new generation chains from `last`.
    assert await new.handle(LogPush("new", 2, batch(40, 45), 40)) == LogPushed(45, 45)
    await new.stop()
    new = LogWorker(ref("new", "log"), tmp_path / "new", cluster_id=CLUSTER, dialer=dialer)
    dialer.register(new)
    assert await pull_all(new, 10) == [20, 30, 40, 45]
    # A range no source holds fails clearly; a failed recovery leaves the log unchanged.
    missing = await new.handle(LogRecover("new", 2, [old.ref], 20, 60))
    assert isinstance(missing, Failed) and missing.code == "unavailable"
    assert await pull_all(new, 10) == [20, 30, 40, 45]
    await dialer.stop_all()


async def test_pull_long_polls_until_a_batch_is_durable(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    start = time.monotonic()
    empty = await log.handle(LogPull("log", 0, wait_ms=100))
    assert isinstance(empty, LogBatches) and empty.batches == []
    assert time.monotonic() - start >= 0.09
    waiting = asyncio.ensure_future(log.handle(LogPull("log", 0, wait_ms=5000)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await log.handle(push(0, 10))
    resp = await asyncio.wait_for(waiting, 1.0)
    assert isinstance(resp, LogBatches) and [b.version for b in resp.batches] == [10]
    await log.stop()


async def test_an_empty_recovery_starts_the_chain_at_last(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert await log.handle(LogLock("log", 1)) == LogLocked(0, 0, 0)
    assert await log.handle(LogRecover("log", 2, [], 101, 100)) == LogRecovered(101, 100, 0)
    stale = await log.handle(push(0, 10, epoch=2))
    assert isinstance(stale, Failed) and stale.code == "invalid"
    assert await log.handle(push(100, 110, epoch=2)) == LogPushed(110, 110)
    await log.stop()
    log = open_log(tmp_path)
    assert (log.last, log.epoch, log.locked) == (110, 2, False)
    assert await pull_all(log, 100) == [110]
    await log.stop()


# -- bounded history and bounded streams ------------------------------------------------


def big_batch(prev: int, version: int, size: int = 100_000, n: int = 1) -> CommitBatch:
    muts = [set_(b"k%d-%d" % (version, i), bytes([i % 256]) * size) for i in range(n)]
    return CommitBatch(prev, version, muts)


def served(replicas: dict[str, int]) -> list[ReplicaProgress]:
    return [ReplicaProgress(r, v) for r, v in replicas.items()]


async def recovered_log(path: Path, replicas: dict[str, int], **kw: object) -> LogWorker:
    """A log that joined epoch 1 at version 0, serving ``replicas``."""
    log = open_log(path, **kw)
    assert await log.handle(LogRecover("log", 1, [], 1, 0, served(replicas))) == LogRecovered(
        1, 0, 0
    )
    return log


async def test_a_pull_answer_is_bounded_in_bytes_and_resumable(tmp_path: Path) -> None:
    log = open_log(tmp_path, fsync=False)
    prev = 0
    for v in range(1, 41):  # 40 batches of 500 KB: 20 MB, more than a frame may carry
        pushed = await log.handle(LogPush("log", 1, big_batch(prev, v, n=5), 0))
        assert isinstance(pushed, LogPushed)
        prev = v
    got: list[int] = []
    after = 0
    while after < 40:
        resp = await log.handle(LogPull("log", after, limit=10_000))
        assert isinstance(resp, LogBatches) and resp.batches
        size = len(protocol.encode(resp))
        assert size <= MAX_STREAM_BYTES + 1024, size
        got += [b.version for b in resp.batches]
        after = resp.batches[-1].version
    assert got == list(range(1, 41))
    # A budget below one batch still returns one (the stream always moves on).
    one = await log.handle(LogPull("log", 0, max_bytes=1))
    assert isinstance(one, LogBatches) and [b.version for b in one.batches] == [1]
    await log.stop()


async def test_a_log_discards_what_every_replica_it_serves_made_durable(tmp_path: Path) -> None:
    log = await recovered_log(tmp_path, {"ss-a": 0, "ss-b": 0}, generation_bytes=300_000)
    prev = 0
    for v in range(1, 31):  # 30 batches of 100 KB, ~10 generations
        await log.handle(LogPush("log", 1, big_batch(prev, v), prev))
        prev = v
    full = disk_bytes(tmp_path)
    assert full > 3_000_000 and log.held == 30
    # One replica's progress alone discards nothing: the other still needs it all.
    assert await log.handle(LogPop("log", "ss-a", 25)) == Done()
    assert log.held == 30 and log.base == 0
    # A replica the log does not serve holds nothing back and moves nothing.
    assert await log.handle(LogPop("log", "ss-stranger", 30)) == Done()
    assert log.held == 30
    assert await log.handle(LogPop("log", "ss-b", 20)) == Done()
    assert (log.base, log.held) == (20, 10)
    await until(lambda: disk_bytes(tmp_path) < full // 2)
    too_old = await log.handle(LogPull("log", 10))
    assert isinstance(too_old, Failed) and too_old.code == "version_too_old"
    assert await pull_all(log, 20) == list(range(21, 31))
    # Nothing is read back from disk that was discarded; the rest survives a restart.
    await log.stop()
    log = open_log(tmp_path)
    assert log.held <= 15 and log.base <= 20 and log.last == 30
    assert await pull_all(log, 20) == list(range(21, 31))
    assert log.replicas == {"ss-a": 0, "ss-b": 0}  # what the Director gave survives
    await log.stop()


async def test_a_log_without_replicas_to_serve_never_discards(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for v in range(1, 6):
        await log.handle(push(v - 1, v))
    await log.handle(LogPop("log", "ss-a", 5))
    assert await pull_all(log) == [1, 2, 3, 4, 5]
    await log.stop()


async def test_a_replica_joins_only_above_what_was_discarded(tmp_path: Path) -> None:
    log = await recovered_log(tmp_path, {"ss-a": 0})
    for v in range(1, 11):
        await log.handle(push(v - 1, v))
    await log.handle(LogPop("log", "ss-a", 6))
    assert log.base == 6
    late = await log.handle(LogPop("log", "ss-new", 4, join=True))
    assert isinstance(late, Failed) and late.code == "version_too_old"
    assert await log.handle(LogPop("log", "ss-new", 7, join=True)) == Done()
    await log.handle(LogPop("log", "ss-a", 10))
    assert log.base == 7  # the new replica holds it now
    await log.stop()
    log = open_log(tmp_path)  # and still after a restart
    assert log.replicas["ss-new"] == 7
    await log.handle(LogPop("log", "ss-a", 10))
    assert log.base <= 7
    await log.stop()


async def test_a_locked_log_discards_nothing_and_reports_each_replica(tmp_path: Path) -> None:
    log = await recovered_log(tmp_path, {"ss-a": 0, "ss-b": 0})
    for v in range(1, 6):
        await log.handle(push(v - 1, v))
    await log.handle(LogPop("log", "ss-a", 3))
    locked = await log.handle(LogLock("log", 2))
    assert locked == LogLocked(1, 5, 5, served({"ss-a": 3, "ss-b": 0}))
    await log.handle(LogPop("log", "ss-b", 5))
    await log.handle(LogPop("log", "ss-a", 5))
    assert await pull_all(log) == [1, 2, 3, 4, 5]  # a recovery may still copy them
    await log.stop()


async def test_the_committed_hint_of_an_idle_proxy_reaches_pullers(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    await log.handle(push(0, 10))
    resp = await log.handle(LogPull("log", 10))
    assert isinstance(resp, LogBatches) and resp.committed == 0
    waiting = asyncio.ensure_future(log.handle(LogPull("log", 10, wait_ms=5000)))
    await asyncio.sleep(0.05)
    assert await log.handle(LogCommitted("log", 1, 10)) == Done()
    resp = await asyncio.wait_for(waiting, 1.0)
    assert isinstance(resp, LogBatches) and resp.committed == 10 and resp.batches == []
    assert await log.handle(LogCommitted("log", 0, 10)) == NewerEpoch(1)
    await log.stop()


async def test_a_push_answers_a_waiting_pull_once_with_its_batch(tmp_path: Path) -> None:
    # A push carries the committed version of the batch before it; the pull
    # waiting for the new batch is answered once, when the batch is durable
    # (with that committed version), not first for the committed version alone
    # (which cost every replica a second pull per commit).
    log = open_log(tmp_path)
    answers: list[LogBatches] = []

    async def puller() -> None:
        after = 0
        while after < 200:
            resp = await log.handle(LogPull("log", after, wait_ms=5000))
            assert isinstance(resp, LogBatches), resp
            answers.append(resp)
            after = max([after, *(b.version for b in resp.batches)])

    pulling = asyncio.ensure_future(puller())
    prev = 0
    for v in range(10, 201, 10):
        assert await log.handle(push(prev, v, committed=prev)) == LogPushed(v, v)
        # As in a cluster: the next push comes after the replica got this one.
        await until(lambda v=v: any(b.version == v for a in answers for b in a.batches))
        prev = v
    await asyncio.wait_for(pulling, 10.0)
    seen = [(a.committed, [b.version for b in a.batches]) for a in answers]
    assert seen == [(v - 10, [v]) for v in range(10, 201, 10)], seen
    await log.stop()


async def test_a_recovery_copies_more_than_a_frame_holds_in_bounded_pulls(tmp_path: Path) -> None:
    dialer = MeasuringDialer()
    old = LogWorker(ref("old", "log"), tmp_path / "old", cluster_id=CLUSTER, fsync=False)
    new = LogWorker(
        ref("new", "log"), tmp_path / "new", cluster_id=CLUSTER, fsync=False, dialer=dialer
    )
    dialer.register(old)
    dialer.register(new)
    for v in range(1, 41):  # 20 MB
        await old.handle(LogPush("old", 1, big_batch(v - 1, v, n=5), 0))
    await old.handle(LogLock("old", 2))
    answer = await new.handle(LogRecover("new", 2, [old.ref], 1, 40, served({"ss": 0})))
    assert answer == LogRecovered(1, 40, 40)
    assert max(dialer.sizes) <= MAX_STREAM_BYTES + 1024 and len(dialer.sizes) > 4
    assert len(new.generations) > 1  # written in bounded generations too
    await new.stop()
    new = LogWorker(ref("new", "log"), tmp_path / "new", cluster_id=CLUSTER, dialer=dialer)
    dialer.register(new)
    assert (new.last, new.held) == (40, 40)
    await dialer.stop_all()


class SilencingDialer(LoopbackDialer):
    """The loopback network where the workers in ``silent`` stop answering (a
    SIGSTOPped node: no reset, no answer, whatever the timeout) after answering
    ``answers`` pulls; counts the pulls each source was sent."""

    def __init__(self, silent: set[str], answers: int = 0) -> None:
        super().__init__()
        self.silent = silent
        self.answers = answers
        self.pulls: dict[str, int] = {}
        self.held = 0  # calls waiting on a silent worker now

    async def call(
        self,
        ref: WorkerRef,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        if isinstance(body, LogPull):
            self.pulls[ref.id] = self.pulls.get(ref.id, 0) + 1
            if ref.id in self.silent and self.pulls[ref.id] > self.answers:
                self.held += 1
                try:
                    await asyncio.Event().wait()  # until cancelled
                finally:
                    self.held -= 1
        return await super().call(ref, body, timeout)


async def _two_locked_sources(
    tmp_path: Path, dialer: LoopbackDialer, versions: int, size: int
) -> tuple[LogWorker, LogWorker, LogWorker]:
    olds = []
    for name in ("old1", "old2"):
        old = LogWorker(ref(name, "log"), tmp_path / name, cluster_id=CLUSTER, fsync=False)
        dialer.register(old)
        for v in range(1, versions + 1):
            await old.handle(LogPush(name, 1, big_batch(v - 1, v, size=size), 0))
        assert isinstance(await old.handle(LogLock(name, 2)), LogLocked)
        olds.append(old)
    new = LogWorker(
        ref("new", "log"), tmp_path / "new", cluster_id=CLUSTER, fsync=False, dialer=dialer
    )
    dialer.register(new)
    return olds[0], olds[1], new


@pytest.mark.parametrize("answers", [0, 1], ids=["silent-at-once", "silent-mid-copy"])
async def test_a_recovery_copy_moves_on_from_a_silent_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: int
) -> None:
    # A source on a stopped node (SIGSTOP: no reset) answers nothing, at once or
    # after some pulls: the copy must not wait a pull timeout (none this test
    # waits out) for it when another source holds the range.
    monkeypatch.setattr(log_module, "COPY_PULL_TIMEOUT", 3600.0)
    dialer = SilencingDialer({"old1"}, answers=answers)
    old1, old2, new = await _two_locked_sources(tmp_path, dialer, 40, 100_000)
    async with asyncio.timeout(10):  # a bound, not a measure: without the fix it hangs
        answer = await new.handle(LogRecover("new", 2, [old1.ref, old2.ref], 3, 38))
    assert answer == LogRecovered(3, 38, 36)
    held, after = [], 2
    while after < 38:  # pulls are bounded in bytes
        held += await pull_all(new, after)
        after = held[-1]
    assert held == list(range(3, 39)) and new.base == 2  # exactly the range
    assert dialer.pulls["old1"] == answers + 1 and dialer.held == 0  # asked, then let go
    assert dialer.pulls["old2"] > 1  # a copy in bounded pulls, from the one that answers
    await dialer.stop_all()


async def test_a_recovery_copy_asks_one_source_while_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "COPY_HEDGE", 3600.0)  # however slow the test
    dialer = SilencingDialer(set())
    old1, old2, new = await _two_locked_sources(tmp_path, dialer, 10, 10)
    answer = await new.handle(LogRecover("new", 2, [old1.ref, old2.ref], 1, 10))
    assert answer == LogRecovered(1, 10, 10)
    assert dialer.pulls == {"old1": 1}
    await dialer.stop_all()
