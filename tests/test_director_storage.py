"""The Director and bounded history, over real workers in one process: what a
recovery copies, who the new logs keep versions for, retirement recorded before
removal, a lost replica replaced, one-line reasons for failed attempts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from bedrock_cp import protocol
from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.storage import StorageWorker
from bedrock_cp.director import Attempt, Director, Failed
from bedrock_cp.director import phases as phases_module
from bedrock_cp.director.context import RecoveryContext
from bedrock_cp.director.phases import RecoveryPhase, persist, vacancies
from bedrock_cp.protocol import CommitBatch, Layout, Mutation, MutationKind, WorkerRef

from .director_harness import (
    CLUSTER,
    PARAMS,
    TestCluster,
    closes_clusters,
    epoch_one,
    run_phases,
)


async def live(director: Director) -> tuple[Layout, asyncio.Task[object]]:
    task: asyncio.Task[object] = asyncio.create_task(director.run())
    for _ in range(500):
        if director.layout is not None or task.done():
            break
        await asyncio.sleep(0.01)
    assert director.layout is not None, task.result() if task.done() else "not live"
    return director.layout, task


async def eventually(check: object, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def log_of(cluster: TestCluster, ref: WorkerRef) -> LogWorker:
    worker = cluster.workers[ref.id]
    assert isinstance(worker, LogWorker)
    return worker


def storage_of(cluster: TestCluster, ref: WorkerRef) -> StorageWorker:
    worker = cluster.workers[ref.id]
    assert isinstance(worker, StorageWorker)
    return worker


@closes_clusters
async def test_the_recovery_version_is_the_lowest_durable_of_the_locked_logs(
    tmp_path: Path,
) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster, commits=3)
    # A batch that reached one log only (its proxy died mid-push): never acknowledged.
    first = log_of(cluster, layout.logs[0])
    ghost = CommitBatch(first.last, first.last + 1000, [Mutation(MutationKind.SET, b"ghost", b"x")])
    pushed = await cluster.call(first.ref, protocol.LogPush(first.ref.id, 1, ghost, 0))
    assert isinstance(pushed, protocol.LogPushed)
    attempt = Attempt(1, 2)
    await run_phases(attempt, cluster.context(2), "vacancies")
    durables = sorted(locked.durable for _, locked in attempt.locked.values())
    assert durables[0] < durables[-1] == ghost.version
    assert attempt.recovery_version == durables[0]
    # The whole recovery drops it: nobody can read what was never acknowledged.
    layout2, task = await live(Director(cluster.context(2)))
    assert await cluster.get(layout2, b"ghost") is None
    assert await cluster.get(layout2, b"k2") == b"v2"
    task.cancel()


@closes_clusters
async def test_a_replica_that_is_down_keeps_its_place_and_catches_up(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path, window_seconds=0.0)
    layout1 = await epoch_one(cluster, commits=5)
    up, down = layout1.storage[0].replicas
    logs1 = [log_of(cluster, r) for r in layout1.logs]
    await eventually(lambda: all(log.replicas[down.id] > 0 for log in logs1))
    await storage_of(cluster, down).stop()  # its node dies
    for i in range(5, 10):
        assert isinstance(await cluster.commit(layout1, b"k%d" % i, b"v%d" % i), protocol.Committed)
    reported = min(log.replicas[down.id] for log in logs1)
    await eventually(lambda: all(log.replicas[up.id] > reported for log in logs1))
    attempt = Attempt(1, 2)
    await run_phases(attempt, cluster.context(2), "vacancies")
    # What it last reported to the logs, not the lowest version anything holds.
    assert attempt.durables[down.id] == reported and attempt.first_version == reported + 1
    director2 = Director(cluster.context(2))
    layout2, task = await live(director2)
    # It stays a member (absent: serving no reads) and the new logs keep what it needs.
    assert (layout2.storage[0].replicas, layout2.storage[0].absent) == ([up], [down])
    for ref in layout2.logs:
        assert log_of(cluster, ref).replicas[down.id] == reported
    assert isinstance(await cluster.commit(layout2, b"k10", b"v10"), protocol.Committed)
    # Its node returns: the replica reopens its checkpoint; the Director sees it is
    # back and the next epoch takes it back into the team: it catches up.
    again = StorageWorker(
        down, tmp_path / down.node / down.id, cluster.dialer, cluster_id=CLUSTER, fsync=False
    )
    cluster.add(again)
    again.set_layout(layout2)
    director2.directory_changed()
    outcome = await asyncio.wait_for(task, 10)
    assert isinstance(outcome, Failed) and f"storage {down.id} is back" in outcome.reason
    layout3, task = await live(Director(cluster.context(3)))
    assert set(layout3.storage[0].replicas) == {up, down} and not layout3.storage[0].absent
    version = await cluster.read_version(layout3)
    for i in range(11):
        read = await again.handle(protocol.StorageGet(down.id, b"k%d" % i, version))
        assert read == protocol.Value(b"v%d" % i, version), i
    task.cancel()


@closes_clusters
async def test_retirement_is_recorded_first_and_finished_by_a_successor(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout1 = await epoch_one(cluster)
    old_logs = {r.id for r in layout1.logs}
    away = layout1.logs[2].node
    cluster.down.add(away)  # this node is away while epoch 2 retires epoch 1's logs
    layout2, task = await live(Director(cluster.context(2, node="n1")))
    left = next(r.id for r in layout1.logs if r.node == away)
    await eventually(lambda: set(cluster.retiring) == {left})
    assert not (old_logs - {left}) & cluster.running()  # the others are gone
    assert left in cluster.running()  # its node did not answer: still there, still recorded
    assert not {r.id for r in layout2.logs} & set(cluster.retiring)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # The node returns; the next epoch's Director finishes the recorded retirement.
    cluster.down.clear()
    _, task = await live(Director(cluster.context(3, node="n2")))
    await eventually(lambda: not cluster.retiring and left not in cluster.running())
    task.cancel()


@closes_clusters
async def test_a_lost_replica_is_replaced_by_one_filled_from_a_healthy_one(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path, window_seconds=0.0)
    params = dataclasses.replace(PARAMS, storage_replacement_s=0.3)
    director = Director(cluster.context(1, parameters=params), distribution_interval=0.05)
    layout1, task = await live(director)
    for i in range(20):
        assert isinstance(
            await cluster.commit(layout1, b"k%02d" % i, b"%d" % i), protocol.Committed
        )
    healthy, lost = layout1.storage[0].replicas
    await storage_of(cluster, lost).stop()  # broken for good (its node is up)
    outcome = await asyncio.wait_for(task, 20)
    assert isinstance(outcome, Failed) and f"storage {lost.id} lost for good" in outcome.reason
    assert "filled from" in outcome.reason and healthy.id in outcome.reason
    assert set(cluster.retiring) == {lost.id}
    layout2, task = await live(Director(cluster.context(2, parameters=params)))
    team = layout2.storage[0].replicas
    assert healthy in team and lost not in team and len(team) == 2
    (new,) = [r for r in team if r != healthy]
    assert new.node != healthy.node
    version = await cluster.read_version(layout2)
    for i in range(20):
        read = await cluster.call(new, protocol.StorageGet(new.id, b"k%02d" % i, version))
        assert read == protocol.Value(b"%d" % i, version)
    # The system keys it serves came along too (the epoch key of every persist).
    value, _ = storage_of(cluster, new)._engine.get(persist.EPOCH_KEY)
    assert value is not None
    await eventually(lambda: not cluster.retiring)  # the lost one's record is done with
    task.cancel()


@closes_clusters
async def test_a_lost_replica_with_no_node_to_refill_on_is_dropped(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path, window_seconds=0.0)
    params = dataclasses.replace(
        PARAMS, desired_logs=1, storage_replacement_s=0.3, excluded_nodes=frozenset({"n3"})
    )
    director = Director(cluster.context(1, parameters=params), distribution_interval=0.05)
    layout1, task = await live(director)
    assert [r.node for r in layout1.logs] == ["n1"]
    _, lost = layout1.storage[0].replicas
    cluster.down.add(lost.node)  # for good
    outcome = await asyncio.wait_for(task, 20)
    assert isinstance(outcome, Failed) and "no node to replace it on" in outcome.reason
    layout2, task = await live(Director(cluster.context(2, parameters=params)))
    assert [r.id for r in layout2.storage[0].replicas] == [layout1.storage[0].replicas[0].id]
    task.cancel()


async def test_a_phase_that_raises_ends_the_attempt_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = TestCluster(tmp_path)
    failures = 3

    async def broken(attempt: Attempt, ctx: RecoveryContext) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("Response frame of 18004317 bytes exceeds the 16777216 byte limit")
        await vacancies.run(attempt, ctx)

    monkeypatch.setitem(phases_module._RUN, RecoveryPhase.VACANCIES, broken)
    caplog.set_level(logging.INFO)
    try:
        _, task = await live(Director(cluster.context(1), backoff_base=0.01))
        task.cancel()
    finally:
        await cluster.close()
    stalled = [r for r in caplog.records if "stalled" in r.getMessage()]
    assert len(stalled) == 3
    assert all("vacancies: RuntimeError: Response frame" in r.getMessage() for r in stalled)
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
    assert "Traceback" not in caplog.text
