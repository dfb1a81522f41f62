"""The storage worker against a real log: versioned reads, committed-only persistence,
rollback above a new epoch's recovery version."""

from __future__ import annotations

from pathlib import Path

from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.loopback import LoopbackDialer
from bedrock_cp.dataplane.storage import StorageWorker
from bedrock_cp.protocol import (
    MVCC_WINDOW_VERSIONS,
    CommitBatch,
    Failed,
    KeyRange,
    Layout,
    Locked,
    LogLock,
    LogPush,
    LogPushed,
    LogRecover,
    LogRecovered,
    Mutation,
    MutationKind,
    NewerEpoch,
    StorageGet,
    StorageGetRange,
    StorageLock,
    StorageState,
    StorageStatus,
    StorageTeam,
    Value,
    Values,
    WorkerRef,
)

from .dataplane_pipeline import CLUSTER, ref, set_, until

SS = ref("ss", "storage")


def layout(
    logs: list[WorkerRef], *, epoch: int = 1, recovery: int = 0, begin: bytes = b""
) -> Layout:
    return Layout(
        epoch, recovery, ref("seq", "sequencer"), [], [], logs, [StorageTeam(begin, b"\xff", [SS])]
    )


class World:
    def __init__(self, root: Path, **storage_kw: float) -> None:
        self.root = root
        self.dialer = LoopbackDialer()
        self.log = self.new_log("log1")
        self.storage = self.new_storage(**storage_kw)

    def new_log(self, name: str) -> LogWorker:
        log = LogWorker(ref(name, "log"), self.root / name, cluster_id=CLUSTER, dialer=self.dialer)
        self.dialer.register(log)
        return log

    def new_storage(self, **kw: float) -> StorageWorker:
        ss = StorageWorker(SS, self.root / "ss", self.dialer, cluster_id=CLUSTER, **kw)  # type: ignore[arg-type]
        self.dialer.register(ss)
        return ss

    async def push(
        self,
        prev: int,
        version: int,
        muts: list[Mutation],
        committed: int,
        *,
        log: LogWorker | None = None,
        epoch: int = 1,
    ) -> None:
        target = log or self.log
        answer = await target.handle(
            LogPush(target.ref.id, epoch, CommitBatch(prev, version, muts), committed)
        )
        assert answer == LogPushed(version, version)

    async def get(self, key: bytes, version: int) -> object:
        return await self.storage.handle(StorageGet("ss", key, version))


async def test_reads_at_a_version_see_exactly_what_was_applied(tmp_path: Path) -> None:
    w = World(tmp_path)
    await w.push(0, 10, [set_(b"a", b"1"), set_(b"b", b"1")], 0)
    await w.push(10, 20, [set_(b"a", b"2"), Mutation(MutationKind.CLEAR, b"b")], 10)
    await w.push(20, 30, [Mutation(MutationKind.CLEAR_RANGE, b"a", b"b"), set_(b"c", b"3")], 20)
    w.storage.set_layout(layout([w.log.ref]))
    assert await w.get(b"a", 20) == Value(b"2", 20)  # waits for the pull
    assert await w.get(b"a", 10) == Value(b"1", 10)
    assert await w.get(b"a", 5) == Value(None, 5)
    assert await w.get(b"b", 20) == Value(None, 20)
    assert await w.get(b"a", 30) == Value(None, 30)
    rng = await w.storage.handle(StorageGetRange("ss", b"", b"z", 10))
    assert rng == Values([(b"a", b"1"), (b"b", b"1")], False, 10)
    rng = await w.storage.handle(StorageGetRange("ss", b"", b"z", 10, limit=1))
    assert rng == Values([(b"a", b"1")], True, 10)
    await w.dialer.stop_all()


async def test_future_and_too_old_versions_and_wrong_shard_fail_clearly(tmp_path: Path) -> None:
    w = World(tmp_path, read_wait=0.1, compact_interval=0.0)
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    w.storage.set_layout(layout([w.log.ref], begin=b"a"))
    assert await w.get(b"a", 10) == Value(b"1", 10)
    future = await w.get(b"a", 10**12)
    assert isinstance(future, Failed) and future.code == "future_version"
    wrong = await w.get(b"\x00", 10)
    assert isinstance(wrong, Failed) and wrong.code == "wrong_shard"
    late = 20 + MVCC_WINDOW_VERSIONS
    await w.push(10, late, [set_(b"a", b"2")], 10)
    await until(lambda: w.storage.applied == late)
    await w.push(late, late + 1, [], late)  # one more pull: compaction runs after it
    await until(lambda: w.storage.applied == late + 1)
    old = await w.get(b"a", 10)
    assert isinstance(old, Failed) and old.code == "version_too_old"
    assert await w.get(b"a", late) == Value(b"2", late)
    await w.dialer.stop_all()


async def test_only_committed_versions_are_persisted(tmp_path: Path) -> None:
    w = World(tmp_path)
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    await w.push(10, 20, [set_(b"a", b"2")], 10)
    await w.push(20, 30, [set_(b"a", b"3")], 10)  # 20 and 30 are not known committed
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.applied == 30 and w.storage.durable == 10)
    assert await w.get(b"a", 30) == Value(b"3", 30)
    status = await w.storage.handle(StorageStatus("ss"))
    assert status == StorageState(30, 10, 0, False)
    await w.storage.stop()
    w.storage = w.new_storage()
    assert (w.storage.applied, w.storage.durable) == (10, 10)
    w.storage.set_layout(layout([w.log.ref]))
    assert await w.get(b"a", 10) == Value(b"1", 10)
    await w.push(30, 40, [], 30)  # now 30 is committed: storage persists it
    await until(lambda: w.storage.durable == 30)
    await w.dialer.stop_all()


async def test_a_newer_layout_rolls_back_versions_above_its_recovery_version(
    tmp_path: Path,
) -> None:
    w = World(tmp_path)
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    await w.push(10, 20, [set_(b"a", b"2")], 10)
    await w.push(20, 30, [set_(b"a", b"never")], 10)  # durable on this log only
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.applied == 30)
    # Recovery: epoch 2 locks the old log, keeps [1, 20] (30 was never acknowledged).
    await w.log.handle(LogLock("log1", 2))
    new = w.new_log("log2")
    assert await new.handle(LogRecover("log2", 2, [w.log.ref], 1, 20)) == LogRecovered(1, 20, 2)
    w.storage.set_layout(layout([new.ref], epoch=2, recovery=20))
    assert w.storage.applied == 20
    await w.push(20, 40, [set_(b"b", b"x")], 20, log=new, epoch=2)
    await until(lambda: w.storage.applied == 40)
    assert await w.get(b"a", 30) == Value(b"2", 30)  # the rolled-back value is gone
    assert await w.get(b"a", 40) == Value(b"2", 40)
    assert await w.get(b"b", 40) == Value(b"x", 40)
    # An old layout arriving late changes nothing.
    w.storage.set_layout(layout([w.log.ref], epoch=1))
    assert w.storage.epoch == 2
    await w.dialer.stop_all()


async def test_storage_lock_fences_older_epochs_and_refuses_reads(tmp_path: Path) -> None:
    w = World(tmp_path)
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    w.storage.set_layout(layout([w.log.ref]))
    assert await w.get(b"a", 10) == Value(b"1", 10)
    locked = await w.storage.handle(StorageLock("ss", 3, True))
    assert isinstance(locked, StorageState) and locked.locked
    assert isinstance(await w.get(b"a", 10), Locked)
    assert await w.storage.handle(StorageLock("ss", 2, False)) == NewerEpoch(3)
    await w.storage.stop()
    w.storage = w.new_storage()  # the epoch survives a restart
    assert await w.storage.handle(StorageLock("ss", 2, False)) == NewerEpoch(3)
    unlocked = await w.storage.handle(StorageLock("ss", 3, False))
    assert isinstance(unlocked, StorageState) and not unlocked.locked
    await w.dialer.stop_all()


def test_key_ranges_merge() -> None:
    from bedrock_cp.dataplane.storage import _merge

    assert _merge([KeyRange(b"c", b"d"), KeyRange(b"a", b"c"), KeyRange(b"x", b"x")]) == [
        KeyRange(b"a", b"d")
    ]


async def test_a_replica_outside_every_team_stands_still_and_keeps_its_data_honest(
    tmp_path: Path,
) -> None:
    w = World(tmp_path)
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    w.storage.set_layout(layout([w.log.ref]))
    assert await w.get(b"a", 10) == Value(b"1", 10)
    # A layout whose team no longer lists this replica (its node was down).
    other = ref("other", "storage")
    out = Layout(
        2, 10, ref("seq", "sequencer"), [], [], [w.log.ref], [StorageTeam(b"", b"\xff", [other])]
    )
    w.storage.set_layout(out)
    await w.push(10, 20, [set_(b"a", b"2")], 10)
    await w.push(20, 30, [set_(b"b", b"3")], 20)
    state = await w.storage.handle(StorageStatus("ss"))
    assert isinstance(state, StorageState)
    # It must not claim versions whose mutations it did not keep.
    assert state.applied == 10, state
    # Taken back into the team, it catches up from the log with the real data.
    back = Layout(
        3,
        30,
        ref("seq", "sequencer"),
        [],
        [],
        [w.log.ref],
        [StorageTeam(b"", b"\xff", [SS, other])],
    )
    w.storage.set_layout(back)
    assert await w.get(b"a", 30) == Value(b"2", 30)
    assert await w.get(b"b", 30) == Value(b"3", 30)
    await w.dialer.stop_all()
