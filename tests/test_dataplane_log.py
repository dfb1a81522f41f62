"""The log worker: durable chained appends, locking, recovery copies, long-poll pulls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.loopback import LoopbackDialer
from bedrock_cp.protocol import (
    CommitBatch,
    Failed,
    Locked,
    LogBatches,
    LogLock,
    LogLocked,
    LogPull,
    LogPush,
    LogPushed,
    LogRecover,
    LogRecovered,
    NewerEpoch,
)

from .dataplane_pipeline import CLUSTER, ref, set_


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


async def test_concurrent_pushes_share_fsyncs(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    answers = await asyncio.gather(*(log.handle(push(v * 10, v * 10 + 10)) for v in range(50)))
    assert all(isinstance(a, LogPushed) for a in answers)
    assert log._wal.sync_count < 50  # group commit
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
