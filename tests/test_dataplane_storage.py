"""The storage worker against a real log: versioned reads, committed-only persistence,
rollback above a new epoch's recovery version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bedrock_cp import protocol
from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.storage import StorageWorker
from bedrock_cp.protocol import (
    MAX_STREAM_BYTES,
    MVCC_WINDOW_VERSIONS,
    CommitBatch,
    Done,
    Failed,
    KeyRange,
    Layout,
    Locked,
    LogLock,
    LogPull,
    LogPush,
    LogPushed,
    LogRecover,
    LogRecovered,
    Mutation,
    MutationKind,
    NewerEpoch,
    ReplicaProgress,
    Request,
    Response,
    StorageFill,
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
from bedrock_cp.sim import InlineExecutor, SimClock, run_simulation
from bedrock_cp.transport import RemoteError

from .dataplane_pipeline import CLUSTER, MeasuringDialer, ref, set_, until
from .loopback import LoopbackDialer

SS = ref("ss", "storage")
#: Another replica of the team (never started): a layout may list it instead of SS.
OTHER = ref("other", "storage")


def layout(
    logs: list[WorkerRef],
    *,
    epoch: int = 1,
    recovery: int = 0,
    begin: bytes = b"",
    replicas: tuple[WorkerRef, ...] = (SS,),
) -> Layout:
    team = StorageTeam(begin, b"\xff", list(replicas))
    return Layout(epoch, recovery, ref("seq", "sequencer"), [], [], logs, [team])


class World:
    def __init__(
        self, root: Path, dialer: LoopbackDialer | None = None, **storage_kw: float
    ) -> None:
        self.root = root
        self.dialer = dialer or LoopbackDialer()
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


class PullRecorder(LoopbackDialer):
    """The loopback network, recording which log each pull went to."""

    def __init__(self) -> None:
        super().__init__()
        self.pulled_from: list[str] = []

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        if isinstance(body, LogPull):
            self.pulled_from.append(ref.id)
        return await super().call(ref, body, timeout)


async def test_a_replica_pulls_from_the_log_on_its_own_node(tmp_path: Path) -> None:
    # Every log holds every batch: the one on the replica's node answers
    # without a network hop, and the layout's first log's node is not made to
    # serve every replica of the cluster.
    dialer = PullRecorder()
    logs = [
        LogWorker(WorkerRef(name, "log", node, "127.0.0.1:1"), tmp_path / name, cluster_id=CLUSTER)
        for name, node in (("far", "n1"), ("near", "n2"))
    ]
    ss = StorageWorker(
        WorkerRef("ss", "storage", "n2", "127.0.0.1:2"), tmp_path / "ss", dialer, cluster_id=CLUSTER
    )
    for worker in (*logs, ss):
        dialer.register(worker)
    for log in logs:
        assert await log.handle(
            LogPush(log.ref.id, 1, CommitBatch(0, 10, [set_(b"a", b"1")]), 0)
        ) == LogPushed(10, 10)
    ss.set_layout(layout([log.ref for log in logs]))
    await until(lambda: ss.applied == 10)
    assert dialer.pulled_from and set(dialer.pulled_from) == {"near"}, dialer.pulled_from
    await dialer.stop_all()


async def test_future_and_too_old_versions_and_wrong_shard_fail_clearly(tmp_path: Path) -> None:
    w = World(tmp_path, read_wait=0.1, window_seconds=0.0)
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
    await w.push(late, late + 1, [], late)  # now `late` is known committed: it is flushed
    await until(lambda: w.storage.durable == late)
    old = await w.get(b"a", 10)
    assert isinstance(old, Failed) and old.code == "version_too_old"
    assert await w.get(b"a", late) == Value(b"2", late)
    await w.dialer.stop_all()


async def test_only_committed_versions_are_persisted(tmp_path: Path) -> None:
    w = World(tmp_path, window_seconds=0.0)
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    await w.push(10, 20, [set_(b"a", b"2")], 10)
    await w.push(20, 30, [set_(b"a", b"3")], 10)  # 20 and 30 are not known committed
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.applied == 30 and w.storage.durable == 10)
    assert await w.get(b"a", 30) == Value(b"3", 30)
    status = await w.storage.handle(StorageStatus("ss"))
    assert status == StorageState(30, 10, 10, False)
    await w.storage.stop()
    w.storage = w.new_storage(window_seconds=0.0)
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
    w.storage.set_layout(layout([w.log.ref], epoch=2, recovery=10, replicas=(OTHER,)))
    await w.push(10, 20, [set_(b"a", b"2")], 10)
    await w.push(20, 30, [set_(b"b", b"3")], 20)
    state = await w.storage.handle(StorageStatus("ss"))
    assert isinstance(state, StorageState)
    # It must not claim versions whose mutations it did not keep.
    assert state.applied == 10, state
    # Taken back into the team, it catches up from the log with the real data.
    w.storage.set_layout(layout([w.log.ref], epoch=3, recovery=30, replicas=(SS, OTHER)))
    assert await w.get(b"a", 30) == Value(b"2", 30)
    assert await w.get(b"b", 30) == Value(b"3", 30)
    await w.dialer.stop_all()


async def test_a_pull_answered_as_the_layout_changes_is_not_applied_by_the_old_puller(
    tmp_path: Path,
) -> None:
    """The puller of the old layout is cancelled when a layout comes; a pull whose
    answer is ready in the same loop iteration must not be applied under the new
    layout's ranges (here none: the replica is absent). Python 3.11's
    ``asyncio.wait_for`` returns the answer instead of raising the cancellation
    then, so the puller must not rely on being cancelled. Every interleaving of a
    few loop iterations between the push and the layout is tried."""
    for k in range(8):
        w = World(tmp_path / str(k))
        await w.push(0, 10, [set_(b"a", b"1")], 0)
        w.storage.set_layout(layout([w.log.ref]))
        await until(lambda w=w: w.storage.applied == 10)
        for _ in range(5):  # the puller is back in its long poll
            await asyncio.sleep(0)
        push = asyncio.ensure_future(w.push(10, 20, [set_(b"a", b"2")], 10))
        for _ in range(k):
            await asyncio.sleep(0)
        w.storage.set_layout(layout([w.log.ref], epoch=2, recovery=10, replicas=(OTHER,)))
        claimed = w.storage.applied  # what it held when it left the team
        await push
        await w.push(20, 30, [set_(b"b", b"3")], 20)
        for _ in range(20):
            await asyncio.sleep(0)
        assert w.storage.applied == claimed, (k, claimed, w.storage.applied)
        w.storage.set_layout(layout([w.log.ref], epoch=3, recovery=30, replicas=(SS, OTHER)))
        assert await w.get(b"a", 30) == Value(b"2", 30), k
        assert await w.get(b"b", 30) == Value(b"3", 30), k
        await w.dialer.stop_all()


# -- checkpoints, continuity, bounded streams, fills ----------------------------------------


async def start_serving(log: LogWorker, replicas: list[str], *, epoch: int = 1) -> None:
    progress = [ReplicaProgress(r, 0) for r in replicas]
    answer = await log.handle(LogRecover(log.ref.id, epoch, [], 1, 0, progress))
    assert answer == LogRecovered(1, 0, 0)


async def test_a_restart_reads_its_checkpoint_without_the_logs(tmp_path: Path) -> None:
    w = World(tmp_path, window_seconds=0.0)
    await start_serving(w.log, ["ss"])
    prev = 0
    for v in range(1, 21):  # every batch writes several keys, one of them clears another
        muts = [set_(b"k%02d-%d" % (v, i), b"v%d" % v) for i in range(4)]
        muts.append(Mutation(MutationKind.CLEAR, b"k%02d-0" % (v - 1)))
        await w.push(prev, v, muts, prev)
        prev = v
    await w.push(prev, 21, [], 20)  # 20 is now known committed
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.durable == 20)
    # The log learns it and discards everything the replica made durable.
    await until(lambda: w.log.replicas["ss"] == 20 and w.log.base == 20)
    await w.storage.stop()
    await w.log.stop()  # no log to replay from: the checkpoint alone must hold it all
    w.dialer.unregister("log1")
    w.storage = w.new_storage(read_wait=0.1)
    assert (w.storage.applied, w.storage.durable) == (20, 20)
    w.storage.set_layout(layout([w.log.ref]))
    rows = await w.storage.handle(StorageGetRange("ss", b"", b"\xff", 20))
    assert isinstance(rows, Values)
    want = {b"k%02d-%d" % (v, i): b"v%d" % v for v in range(1, 21) for i in range(4)}
    for v in range(1, 20):
        del want[b"k%02d-0" % v]
    assert dict(rows.pairs) == want and not rows.more
    assert await w.get(b"k20-3", 20) == Value(b"v20", 20)
    assert await w.get(b"k05-0", 20) == Value(None, 20)
    await w.dialer.stop_all()


async def test_reads_merge_the_window_above_the_base(tmp_path: Path) -> None:
    w = World(tmp_path, window_seconds=0.0)
    base = [set_(k, b"base") for k in (b"a", b"b", b"c", b"d", b"e", b"q")]
    await w.push(0, 10, base, 0)
    await w.push(10, 11, [], 10)
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.durable == 10)
    await w.storage.stop()  # a long window from now on: what follows stays in memory
    w.storage = w.new_storage()
    w.storage.set_layout(layout([w.log.ref]))
    await w.push(11, 20, [set_(b"c", b"20"), Mutation(MutationKind.CLEAR, b"d")], 11)
    await w.push(20, 30, [Mutation(MutationKind.CLEAR_RANGE, b"b", b"p"), set_(b"f", b"30")], 20)
    await until(lambda: w.storage.applied == 30)
    assert w.storage.durable == 10 and len(w.storage.window) > 0
    assert await w.get(b"a", 30) == Value(b"base", 30)  # from the base
    assert await w.get(b"c", 15) == Value(b"base", 15)
    assert await w.get(b"c", 20) == Value(b"20", 20)
    assert await w.get(b"e", 25) == Value(b"base", 25)
    assert await w.get(b"e", 30) == Value(None, 30)  # hidden by the range clear
    expect = {
        10: [(b"a", b"base"), (b"b", b"base"), (b"c", b"base"), (b"d", b"base"), (b"e", b"base")],
        20: [(b"a", b"base"), (b"b", b"base"), (b"c", b"20"), (b"e", b"base"), (b"q", b"base")],
        30: [(b"a", b"base"), (b"f", b"30"), (b"q", b"base")],
    }
    for version, pairs in expect.items():
        got = await w.storage.handle(StorageGetRange("ss", b"", b"\xff", version, limit=5))
        assert got == Values(pairs[:5], version == 10 or len(pairs) > 5, version), version
    page = await w.storage.handle(StorageGetRange("ss", b"", b"\xff", 30, limit=2))
    assert page == Values([(b"a", b"base"), (b"f", b"30")], True, 30)
    older = await w.get(b"a", 9)
    assert isinstance(older, Failed) and older.code == "version_too_old"
    await w.dialer.stop_all()


async def test_a_replica_that_missed_an_epoch_drops_what_was_never_committed(
    tmp_path: Path,
) -> None:
    w = World(tmp_path, window_seconds=0.0)
    await w.push(0, 10, [set_(b"a", b"10")], 0)
    await w.push(10, 20, [set_(b"b", b"20")], 10)
    await w.push(20, 30, [set_(b"never", b"30")], 10)  # only on this log: never acknowledged
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.applied == 30 and w.storage.durable == 10)
    # Epoch 2 recovers [1, 20] and commits 25 and 35 ... while this replica sees nothing.
    await w.log.handle(LogLock("log1", 2))
    log2 = w.new_log("log2")
    await log2.handle(LogRecover("log2", 2, [w.log.ref], 1, 20))
    await w.push(20, 25, [set_(b"c", b"25")], 20, log=log2, epoch=2)
    await w.push(25, 35, [set_(b"d", b"35")], 25, log=log2, epoch=2)
    # Epoch 3 recovers [11, 35]: the replica joins it directly, skipping epoch 2.
    await log2.handle(LogLock("log2", 3))
    log3 = w.new_log("log3")
    await log3.handle(LogRecover("log3", 3, [log2.ref], 11, 35))
    w.storage.set_layout(layout([log3.ref], epoch=3, recovery=35))
    await until(lambda: w.storage.applied == 35)
    assert await w.get(b"never", 35) == Value(None, 35)
    for key, value in ((b"a", b"10"), (b"b", b"20"), (b"c", b"25"), (b"d", b"35")):
        assert await w.get(key, 35) == Value(value, 35), key
    await w.dialer.stop_all()


async def test_the_pull_loop_survives_any_error_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(LoopbackDialer):
        failures = 2

        async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
            if isinstance(body, LogPull) and self.failures:
                self.failures -= 1
                raise RemoteError("frame_too_large", "Response frame exceeds the limit")
            return await super().call(ref, body, timeout)

    w = World(tmp_path, Flaky())
    await w.push(0, 10, [set_(b"a", b"1")], 0)
    w.storage.set_layout(layout([w.log.ref]))
    assert await w.get(b"a", 10) == Value(b"1", 10)
    assert "cannot pull" in caplog.text and "frame exceeds" in caplog.text
    await w.dialer.stop_all()


async def test_a_replica_far_behind_catches_up_in_bounded_answers(tmp_path: Path) -> None:
    dialer = MeasuringDialer()
    w = World(tmp_path, dialer)
    for v in range(1, 41):  # 20 MB behind
        muts = [set_(b"k%d-%d" % (v, i), bytes(100_000)) for i in range(5)]
        await w.push(v - 1, v, muts, v - 1)
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.applied == 40, timeout=20)
    assert max(dialer.sizes) <= MAX_STREAM_BYTES + 1024
    await w.dialer.stop_all()


async def test_a_new_replica_is_filled_from_a_healthy_one_while_commits_go_on(
    tmp_path: Path,
) -> None:
    w = World(tmp_path, window_seconds=0.0)
    await start_serving(w.log, ["ss"])
    prev = 0
    for v in range(1, 31):  # 3 MB in the healthy replica's base
        await w.push(prev, v, [set_(b"k%03d" % v, bytes([v]) * 100_000)], prev)
        prev = v
    await w.push(prev, 31, [], 30)
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.durable == 30 and w.log.base == 30)
    new_ref = ref("ss-new", "storage")
    new = StorageWorker(new_ref, tmp_path / "new", w.dialer, cluster_id=CLUSTER, window_seconds=0)
    w.dialer.register(new)
    new.set_layout(layout([w.log.ref]))  # a spare: in no team yet
    fill = StorageFill("ss-new", 1, SS, b"", b"\xff")
    assert await new.handle(fill) == Done()
    # Commits go on while it copies.
    for v in range(32, 40):
        await w.push(v - 1, v, [set_(b"k%03d" % v, b"late")], v - 1)
    await until(lambda: new._status().fill != "filling", timeout=20)
    status = await new.handle(StorageStatus("ss-new"))
    assert isinstance(status, StorageState) and status.fill == "filled", status
    assert status.durable >= 30
    assert w.log.replicas["ss-new"] == status.durable  # the log keeps what it needs
    # A recovery takes it into the team: it follows the log from its snapshot on.
    both = Layout(
        2,
        39,
        ref("seq", "sequencer"),
        [],
        [],
        [w.log.ref],
        [StorageTeam(b"", b"\xff", [SS, new_ref])],
    )
    new.set_layout(both)
    assert await new.handle(StorageGet("ss-new", b"k001", 39)) == Value(bytes([1]) * 100_000, 39)
    assert await new.handle(StorageGet("ss-new", b"k039", 39)) == Value(b"late", 39)
    got = await new.handle(StorageGetRange("ss-new", b"", b"\xff", 39, limit=100))
    assert isinstance(got, Values) and len(got.pairs) == 38  # (batch 31 wrote nothing)
    await w.dialer.stop_all()


async def test_a_fill_cut_short_by_a_restart_is_reported_failed(tmp_path: Path) -> None:
    w = World(tmp_path, window_seconds=0.0)
    await w.push(0, 1, [set_(b"a", b"1")], 0)
    await w.push(1, 2, [], 1)
    w.storage.set_layout(layout([w.log.ref]))
    await until(lambda: w.storage.durable == 1)
    new_ref = ref("ss-new", "storage")
    new = StorageWorker(new_ref, tmp_path / "new", w.dialer, cluster_id=CLUSTER)
    new._engine.begin_fill()  # as a fill leaves it when the node dies halfway
    new._engine.put([(b"a", b"1")])
    await new.stop()
    new = StorageWorker(new_ref, tmp_path / "new", w.dialer, cluster_id=CLUSTER)
    status = await new.handle(StorageStatus("ss-new"))
    assert isinstance(status, StorageState) and status.fill.startswith("failed")
    assert status.durable == 0 and new._engine.scan([KeyRange(b"", b"\xff")], set(), 10)[0] == []
    await new.stop()
    await w.dialer.stop_all()


def test_the_data_directory_is_private(tmp_path: Path) -> None:
    async def make() -> None:
        ss = StorageWorker(SS, tmp_path / "ss", LoopbackDialer(), cluster_id=CLUSTER)
        await ss.stop()

    asyncio.run(make())
    assert (tmp_path / "ss").stat().st_mode & 0o077 == 0
    assert (tmp_path / "ss" / "data.sqlite3").stat().st_mode & 0o077 == 0


async def test_a_range_read_answer_is_bounded_in_bytes(tmp_path: Path) -> None:
    w = World(tmp_path)
    await w.push(0, 10, [set_(b"k%03d" % i, bytes(100_000)) for i in range(100)], 0)  # 10 MB
    w.storage.set_layout(layout([w.log.ref]))
    got: list[bytes] = []
    begin = b""
    while True:
        page = await w.storage.handle(StorageGetRange("ss", begin, b"\xff", 10, limit=1000))
        assert isinstance(page, Values) and page.pairs
        assert len(protocol.encode(page)) <= MAX_STREAM_BYTES + 1024
        got += [k for k, _ in page.pairs]
        if not page.more:
            break
        begin = page.pairs[-1][0] + b"\x00"
    assert got == [b"k%03d" % i for i in range(100)]
    await w.dialer.stop_all()


def test_a_clock_slower_than_the_loop_never_spins_the_flush_loop(tmp_path: Path) -> None:
    """Found by the simulation (a leader cut off with a slow clock): the flush
    loop slept out the window by the loop's time, saw less of its own clock go
    by, and slept ever less, down to a wait that moves no time at all: it spun
    at one instant for ever (on a real loop, a spin until the window ends)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        dialer = LoopbackDialer()
        inline = InlineExecutor()
        log = LogWorker(ref("log1", "log"), tmp_path / "log1", cluster_id=CLUSTER, executor=inline)
        dialer.register(log)
        storage = StorageWorker(
            SS,
            tmp_path / "ss",
            dialer,
            cluster_id=CLUSTER,
            window_seconds=0.2,
            clock=SimClock(loop, rate=0.25),
            executor=inline,
        )
        dialer.register(storage)
        waits = 0
        next_flush_in = storage._next_flush_in

        def counted(now: float) -> float | None:
            nonlocal waits
            waits += 1
            assert waits < 10_000, "the flush loop spins"
            return next_flush_in(now)

        storage._next_flush_in = counted  # type: ignore[method-assign]
        for prev, version in ((0, 10), (10, 11)):
            batch = CommitBatch(prev, version, [set_(b"a", b"%d" % version)])
            await log.handle(LogPush(log.ref.id, 1, batch, prev))
        storage.set_layout(layout([log.ref]))
        start = loop.time()
        await until(lambda: storage.durable == 10)
        assert loop.time() - start < 1.5  # 0.2 s of a clock at a quarter of the loop's speed
        await dialer.stop_all()

    run_simulation(main())
