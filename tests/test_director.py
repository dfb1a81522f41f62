"""The Director driver over real workers: completion, a second epoch over the
first one's layout (I3), rollback and retry on a stall, stop, fail fast."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from bedrock_cp import protocol
from bedrock_cp.director import Director, Failed, PhaseEvent, RecoveryStatus
from bedrock_cp.director import director as director_module
from bedrock_cp.director import retire as retire_module
from bedrock_cp.director.context import NodeInfo, RecoveryContext
from bedrock_cp.director.director import HEALTH_INTERVAL
from bedrock_cp.director.phases import RecoveryPhase
from bedrock_cp.director.phases import _calls as calls_module
from bedrock_cp.director.phases.monitor import components
from bedrock_cp.director.retire import retire, to_retire
from bedrock_cp.protocol import Layout, ResolverAssignment, StorageTeam, WorkerInfo, WorkerRef

from .clusters import eventually
from .director_harness import PARAMS, TestCluster, TestContext, closes_clusters, epoch_one


def _conforms(ctx: TestContext) -> RecoveryContext:
    return ctx  # mypy: the test context is a RecoveryContext


async def _live(
    director: Director, task: asyncio.Task[object] | None = None
) -> asyncio.Task[object]:
    """Run ``director`` in a task (or wait for the running ``task``) until its epoch is live."""
    if task is None:
        task = asyncio.create_task(director.run())
    for _ in range(500):
        if director.layout is not None or task.done():
            break
        await asyncio.sleep(0.01)
    assert director.layout is not None, task.result() if task.done() else "not live"
    return task


@closes_clusters
async def test_a_new_cluster_completes_and_the_timeline_records_every_phase(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    events: list[PhaseEvent] = []
    director = Director(cluster.context(1), on_event=events.append)
    task = await _live(director)
    layout = director.layout
    assert layout is not None and layout.epoch == 1 and layout.recovery_version == 0
    assert cluster.current() == layout
    assert len(layout.logs) == 3 and len(layout.proxies) == 2 and len(layout.resolvers) == 2
    assert len({r.node for r in layout.logs}) == 3  # round-robin over the nodes
    assert len(layout.storage[0].replicas) == 2
    assert [e.phase for e in events] == [p.value for p in RecoveryPhase]
    skipped = {e.phase for e in events if e.outcome == "skipped"}
    assert skipped == {"lock_logs", "plan_log_recovery"}
    assert all(e.outcome in ("ok", "skipped") for e in events)
    status = director.status.to_dict()
    assert status["state"] == "running" and status["epoch"] == 1
    (record,) = status["timeline"]
    assert record["outcome"] == "completed" and len(record["phases"]) == 11
    assert record["duration_ms"] >= sum(p["duration_ms"] for p in record["phases"]) * 0.99
    # The pipeline commits, and only the layout's workers exist (no orphans).
    assert isinstance(await cluster.commit(layout, b"k", b"v"), protocol.Committed)
    assert await cluster.get(layout, b"k") == b"v"
    assert cluster.running() == {r.id for r in components(layout)}
    await director.stop()
    assert task.cancelled()
    await cluster.close()


@closes_clusters
async def test_epoch_two_recovers_every_commit_of_epoch_one(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    status = RecoveryStatus()
    first = Director(cluster.context(1), status=status)
    task1 = await _live(first)
    layout1 = first.layout
    assert layout1 is not None
    committed: dict[bytes, bytes] = {}
    for i in range(20):
        key, value = f"key{i:02}".encode(), f"v{i}".encode()
        assert isinstance(await cluster.commit(layout1, key, value), protocol.Committed)
        committed[key] = value
    high = bytes([0xF0]) + b"x"  # on the second resolver's range
    assert isinstance(await cluster.commit(layout1, high, b"hi"), protocol.Committed)
    committed[high] = b"hi"
    last_version = await cluster.read_version(layout1)
    await first.stop()
    assert task1.cancelled()

    second = Director(cluster.context(2, node="n2"), status=status)
    task2 = await _live(second)
    layout2 = second.layout
    assert layout2 is not None and layout2.epoch == 2
    assert layout2.recovery_version >= last_version
    assert not {r.id for r in layout1.logs} & {r.id for r in layout2.logs}
    assert layout2.sequencer.node == "n2"
    for key, value in committed.items():
        assert await cluster.get(layout2, key) == value, key
    # The old generation is over (fenced, then retired); the new one commits and reads.
    try:
        late = await cluster.commit(layout1, b"late", b"x")
    except ConnectionRefusedError:
        late = protocol.NewerEpoch(2)  # its roles are retired already
    assert late == protocol.NewerEpoch(2)
    assert isinstance(await cluster.commit(layout2, b"key00", b"new"), protocol.Committed)
    assert await cluster.get(layout2, b"key00") == b"new"
    assert [r["epoch"] for r in status.to_dict()["timeline"]] == [1, 2]
    await second.stop()
    task2.cancel()
    await cluster.close()


@closes_clusters
async def test_a_stall_rolls_back_the_attempt_and_retries(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    director = Director(cluster.context(1), pause_before="monitor", backoff_base=0.01)
    task: asyncio.Task[object] = asyncio.create_task(director.run())
    await asyncio.wait_for(director.paused.wait(), 5)
    attempt1 = set(cluster.running())
    assert len(attempt1) == 3 + 2 + 1 + 2 + 2  # logs, storage, sequencer, resolvers, proxies
    # A role dies before going live: monitoring stalls the attempt.
    sequencer = next(i for i in attempt1 if i.startswith("sequencer"))
    await cluster.workers[sequencer].stop()
    director.paused.clear()
    director.resume()
    await _live(director, task)
    layout = director.layout
    assert layout is not None
    running = cluster.running()
    assert running == {r.id for r in components(layout)}
    assert not running & attempt1, "attempt 1 left components behind"
    timeline = director.status.to_dict()["timeline"]
    assert [r["outcome"].split(":")[0] for r in timeline] == ["stalled", "completed"]
    assert "sequencer" in timeline[0]["outcome"]
    assert timeline[0]["phases"][-1]["phase"] == "monitor"
    await director.stop()
    assert task.cancelled() or task.done()
    await cluster.close()


@closes_clusters
async def test_stop_in_a_phase_rolls_back_everything_the_attempt_started(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    director = Director(cluster.context(1), pause_before="build_layout")
    task = asyncio.create_task(director.run())
    await asyncio.wait_for(director.paused.wait(), 5)
    assert cluster.running()
    await director.stop()
    assert task.cancelled()
    assert cluster.running() == set()
    assert cluster.layout is None
    assert director.status.state == "failed"
    await cluster.close()


@closes_clusters
async def test_a_director_with_an_older_epoch_fails_and_leaves_nothing(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    first = Director(cluster.context(1))
    task1 = await _live(first)
    await first.stop()
    task1.cancel()
    layout1 = cluster.current()
    assert layout1 is not None
    before = cluster.running()
    # Epoch 3 locked the logs already; a late Director of epoch 2 is superseded.
    for log in layout1.logs:
        await cluster.call(log, protocol.LogLock(log.id, 3))
    outcome = await Director(cluster.context(2)).run()
    assert outcome == Failed("superseded by epoch 3")
    assert cluster.running() == before
    await cluster.close()


def _with_capabilities(cluster: TestCluster, capabilities: list[str]) -> None:
    for name, info in cluster.nodes.items():
        cluster.nodes[name] = NodeInfo(info.node, info.address, capabilities)


def _stalling(cluster: TestCluster) -> tuple[Director, asyncio.Task[object]]:
    """A Director of a new cluster with no node able to host a log (it stalls),
    running with a backoff no test would sit out: only a directory change retries it."""
    _with_capabilities(cluster, ["storage"])
    director = Director(cluster.context(1), backoff_base=30.0, backoff_cap=30.0)
    return director, asyncio.create_task(director.run())


@closes_clusters
async def test_a_stalled_director_does_not_spin_on_directory_changes(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    director, task = _stalling(cluster)
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while loop.time() < end:  # a directory that changes every millisecond
        director.directory_changed()
        await asyncio.sleep(0.001)
    assert director.status.state == "stalled"
    # One attempt per MIN_RETRY_INTERVAL at most (a loaded machine makes fewer).
    assert director.status.attempt <= 0.5 / director_module.MIN_RETRY_INTERVAL + 2
    await director.stop()
    assert task.done()
    await cluster.close()


@closes_clusters
async def test_a_directory_change_retries_a_stalled_attempt_at_once(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    director, task = _stalling(cluster)
    for _ in range(200):
        if director.status.state == "stalled":
            break
        await asyncio.sleep(0.01)
    assert director.status.state == "stalled"
    assert "no node can host a log" in director.status.reason
    _with_capabilities(cluster, ["log", "storage"])
    director.directory_changed()
    await _live(director, task)
    assert director.status.attempt == 2
    await director.stop()
    assert task.done()
    await cluster.close()


@closes_clusters
async def test_a_live_epoch_fails_fast_when_a_component_dies(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    director = Director(cluster.context(1), monitor_interval=0.02)
    task = await _live(director)
    layout = director.layout
    assert layout is not None
    await cluster.workers[layout.logs[1].id].stop()
    outcome = await asyncio.wait_for(task, 5)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith(f"component log {layout.logs[1].id} died")
    assert director.status.state == "failed"
    # The next epoch recovers without the dead log (one locked log is enough).
    nxt = Director(cluster.context(2))
    task2 = await _live(nxt)
    assert nxt.layout is not None
    assert layout.logs[1].id not in {r.id for r in nxt.layout.logs}
    await nxt.stop()
    task2.cancel()
    await cluster.close()


#: Timeouts no test waits out: only what does not wait for a silent node passes.
PATIENT = dataclasses.replace(PARAMS, lock_timeout=60.0, call_timeout=60.0)


@closes_clusters
async def test_a_live_epoch_ends_when_a_log_s_node_stops_answering(tmp_path: Path) -> None:
    # Stopped, not dead: no connection is reset, the log just never answers, and
    # every commit waits for it. The watch must not wait a call timeout for it.
    await _a_stopped_log_ends_the_epoch(tmp_path)


async def _a_stopped_log_ends_the_epoch(tmp_path: Path, *, directory_changes: bool = False) -> None:
    cluster = TestCluster(tmp_path)
    director = Director(cluster.context(1, parameters=PATIENT), monitor_interval=0.02)
    task = await _live(director)
    layout = director.layout
    assert layout is not None
    silent = layout.logs[1]
    cluster.stopped.add(silent.node)
    if directory_changes:
        director.directory_changed()
    outcome = await asyncio.wait_for(task, 10)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith(f"component log {silent.id} died (timed out)")
    await cluster.close()


async def _watched_rounds(director: Director, rounds: int) -> int:
    """Wait for ``rounds`` more rounds of ``director``'s watch; how many there were."""
    status = director.status
    start = status.watch_rounds

    async def enough() -> bool:
        return status.watch_rounds >= start + rounds

    await eventually(enough, what=f"{rounds} rounds of the watch")
    return status.watch_rounds - start


@closes_clusters
async def test_raft_traffic_spares_health_checks_and_a_stopped_node_still_ends_the_epoch(
    tmp_path: Path,
) -> None:
    await _raft_vouches_until(tmp_path, "pause")


@closes_clusters
async def test_raft_traffic_spares_health_checks_and_a_killed_node_still_ends_the_epoch(
    tmp_path: Path,
) -> None:
    await _raft_vouches_until(tmp_path, "kill")


async def _live_heard_by_raft(
    tmp_path: Path,
) -> tuple[TestCluster, Director, asyncio.Task[object], Layout]:
    """A live Director on n1 whose node hears n2 and n3 answer its Raft
    heartbeats, watching every 20 ms; with its layout."""
    cluster = TestCluster(tmp_path)
    cluster.raft_peers = {"n2", "n3"}
    director = Director(cluster.context(1, parameters=PATIENT), monitor_interval=0.02)
    task = await _live(director)
    layout = director.layout
    assert layout is not None
    return cluster, director, task, layout


async def _raft_vouches_until(tmp_path: Path, fault: str) -> None:
    # The Director's node hears n2 and n3 answer its Raft heartbeats: while they
    # do, their components (and this node's) need a Health check only now and
    # then. Once one stops (SIGSTOP: silent) or dies, its log is dead all the same.
    cluster, director, task, layout = await _live_heard_by_raft(tmp_path)
    before = dict(cluster.health_calls)
    started = time.monotonic()
    rounds = await _watched_rounds(director, 10)
    elapsed = time.monotonic() - started
    # While every node vouches, a round has something to do only once one
    # could go quiet (health_timeout / 2 after its traffic) or needs its
    # periodic check: not every monitor_interval (20 ms here: 50 a second).
    assert rounds <= 20 * elapsed + 1, (rounds, elapsed)
    for node in ("n1", "n2", "n3"):
        # The watch's checks and the data distribution's of storage replicas,
        # each every HEALTH_INTERVAL, not one every round (20 ms here).
        on_node = sum(1 for r in components(layout) if r.node == node)
        sent = cluster.health_calls[node] - before.get(node, 0)
        periodic = on_node * (int(elapsed / HEALTH_INTERVAL) + 1)
        assert sent <= periodic, (node, sent, elapsed, on_node)
    silent = next(r for r in layout.logs if r.node != "n1")
    checked = cluster.health_calls[silent.node]

    async def just_checked() -> bool:  # the next check it would get is 0.5 s away
        return cluster.health_calls[silent.node] > checked

    await eventually(just_checked, what=f"a check of {silent.node}'s components")
    rounds = director.status.watch_rounds
    getattr(cluster, fault)(silent.node)
    outcome = await asyncio.wait_for(task, 10)
    assert isinstance(outcome, Failed)
    why = "timed out" if fault == "pause" else "unreachable"
    assert outcome.reason.startswith(f"component log {silent.id} died ({why}"), outcome.reason
    if fault == "kill":  # its connections broke: no waiting for it to go quiet
        assert director.status.watch_rounds - rounds <= 2
    await cluster.close()


@closes_clusters
async def test_a_node_whose_raft_traffic_stops_while_it_answers_is_asked_not_dropped(
    tmp_path: Path,
) -> None:
    # Raft silence alone is no death (a follower's Raft loop waits on its WAL's
    # fsync): its components are asked every round again, and they answer.
    cluster, director, task, layout = await _live_heard_by_raft(tmp_path)
    on_n2 = sum(1 for r in components(layout, storage=False) if r.node == "n2")
    assert on_n2
    cluster.mute("n2")
    await _watched_rounds(director, 10)  # 200 ms: past the time it still vouches
    before = cluster.health_calls["n2"]
    rounds = await _watched_rounds(director, 30)
    assert cluster.health_calls["n2"] - before >= (rounds - 1) * on_n2
    assert not task.done()
    await director.stop()
    await cluster.close()


@closes_clusters
async def test_the_next_epoch_recovers_past_a_stopped_node_without_waiting_for_it(
    tmp_path: Path,
) -> None:
    # Every phase that calls the stopped node (locking its log, asking its
    # replica how far it got and whether it is healthy, creating a log there)
    # goes on once enough others answered.
    cluster = TestCluster(tmp_path)
    first = Director(cluster.context(1, parameters=PATIENT))
    await _live(first)
    layout1 = first.layout
    assert layout1 is not None
    assert isinstance(await cluster.commit(layout1, b"k", b"v1"), protocol.Committed)
    await first.stop()
    silent = layout1.storage[0].replicas[1]
    assert silent.node in {r.node for r in layout1.logs}
    cluster.stopped.add(silent.node)

    cluster.creations.clear()
    second = Director(
        cluster.context(2, node="n1" if silent.node != "n1" else "n2", parameters=PATIENT)
    )
    task = await _live(second)
    # Found silent while locking: nothing is created there (the others are enough).
    assert silent.node not in cluster.creations
    layout2 = second.layout
    assert layout2 is not None and layout2.epoch == 2
    assert silent.node not in {r.node for r in layout2.logs} and len(layout2.logs) == 2
    (team,) = layout2.storage
    assert silent.id not in {r.id for r in team.replicas}
    assert silent.id in {r.id for r in team.absent}
    assert await cluster.get(layout2, b"k") == b"v1"
    await second.stop()
    task.cancel()
    await cluster.close()


@closes_clusters
async def test_the_epoch_after_one_a_stopped_node_ended_does_not_wait_for_that_node(
    tmp_path: Path,
) -> None:
    # The watch that ends an epoch because a node stopped answering names it;
    # the next epoch starts with it silent, so no phase gives it a straggler's
    # grace again (here an hour: a phase that waited would never finish).
    cluster = TestCluster(tmp_path)
    first = Director(cluster.context(1, parameters=PATIENT), monitor_interval=0.02)
    task = await _live(first)
    assert first.layout is not None
    stopped = next(r.node for r in first.layout.logs if r.node != "n1")
    cluster.stopped.add(stopped)
    outcome = await asyncio.wait_for(task, 10.0)
    assert isinstance(outcome, Failed) and outcome.silent == {stopped}, outcome
    second = Director(cluster.context(2, parameters=PATIENT), silent=outcome.silent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calls_module, "STRAGGLER_GRACE", 3600.0)
        second_task = asyncio.create_task(second.run())
        try:
            await _live(second, second_task)
            assert second.layout is not None and second.layout.epoch == 2
            assert stopped not in {r.node for r in second.layout.logs}
        finally:
            await second.stop()
            second_task.cancel()
            await cluster.close()


@closes_clusters
async def test_a_two_log_layout_recovers_from_the_one_log_left(tmp_path: Path) -> None:
    # Every acknowledged commit is durable on every log of its layout, so one
    # locked log holds them all: a layout built while a node was stopped (two
    # logs) must not wait for a second one when one more node stops.
    cluster = TestCluster(tmp_path)
    first = Director(cluster.context(1, parameters=PATIENT))
    await _live(first)
    await first.stop()
    cluster.stopped.add("n3")
    second = Director(cluster.context(2, node="n1", parameters=PATIENT))
    await _live(second)
    layout2 = second.layout
    assert layout2 is not None and sorted(r.node for r in layout2.logs) == ["n1", "n2"]
    assert isinstance(await cluster.commit(layout2, b"k", b"v2"), protocol.Committed)
    acknowledged = await cluster.read_version(layout2)
    await second.stop()
    # n3 is back; n2 stops: one of the two logs answers.
    cluster.stopped = {"n2"}
    third = Director(cluster.context(3, node="n1", parameters=PATIENT))
    task = await _live(third)
    layout3 = third.layout
    assert layout3 is not None and layout3.epoch == 3
    assert layout3.recovery_version >= acknowledged
    assert "n2" not in {r.node for r in layout3.logs}
    assert await cluster.get(layout3, b"k") == b"v2"
    await third.stop()
    task.cancel()
    await cluster.close()


@closes_clusters
async def test_a_live_epoch_stops_the_older_roles_at_once_and_retires_the_rest_later(
    tmp_path: Path,
) -> None:
    # A client may still wait on the old proxy (its push held by a stopped log's
    # node): stopping it answers that client now, whatever the stopped node
    # does with its listing. Old logs wait for the sweep.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retire_module, "LIST_TIMEOUT", 3600.0)
        await _stops_old_roles_at_once(tmp_path)


async def _stops_old_roles_at_once(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout1 = await epoch_one(cluster)
    cluster.stopped.add("n3")
    old_roles = {layout1.sequencer.id, *(r.id for r in layout1.proxies)}
    old_roles |= {a.worker.id for a in layout1.resolvers}
    assert old_roles <= cluster.running()
    second = Director(cluster.context(2), retire_delay=3600)
    task = await _live(second)
    for _ in range(500):
        if not old_roles & cluster.running():
            break
        await asyncio.sleep(0.01)
    assert not old_roles & cluster.running()
    assert {r.id for r in layout1.logs} <= cluster.running()  # retired after the delay
    await second.stop()
    task.cancel()
    await cluster.close()


@closes_clusters
async def test_a_layout_built_without_a_stopped_node_gives_way_once_it_answers_again(
    tmp_path: Path,
) -> None:
    # A SIGCONT changes nothing in the directory: the Director must look by itself.
    cluster = TestCluster(tmp_path)
    await epoch_one(cluster)
    cluster.stopped.add("n3")
    second = Director(cluster.context(2))
    task = await _live(second)
    assert second.layout is not None and len(second.layout.logs) == 2
    cluster.stopped.clear()
    outcome = await asyncio.wait_for(task, 10)
    assert isinstance(outcome, Failed)
    assert outcome.reason == "layout degraded: 2 logs, 3 possible now"
    await cluster.close()


@closes_clusters
async def test_a_look_for_a_better_layout_never_holds_up_the_watch(tmp_path: Path) -> None:
    # Services register all the time (each a directory change), and a look asks
    # every node's Foreman, a stopped one too: the watch goes on meanwhile.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(director_module, "LOOK_TIMEOUT", 3600.0)
        await _a_stopped_log_ends_the_epoch(tmp_path, directory_changes=True)


def test_the_status_keeps_the_last_ten_recoveries() -> None:
    status = RecoveryStatus()
    for i in range(12):
        record = status.begin(epoch=i + 1, attempt=1, now=float(i))
        record.outcome = "completed"
    out = status.to_dict()
    assert [r["epoch"] for r in out["timeline"]] == list(range(3, 13))
    assert out["state"] == "recovering" and out["epoch"] == 12


def test_retirement_picks_older_epochs_leftovers_and_nothing_the_live_layouts_need() -> None:

    def ref(kind: str, i: str) -> WorkerRef:
        return WorkerRef(f"{kind}-{i}", kind, "1", "127.0.0.1:1")

    def layout(epoch: int, i: str, logs: list[str], storage: list[str]) -> Layout:
        return Layout(
            epoch,
            0,
            ref("sequencer", i),
            [ref("commit_proxy", i)],
            [ResolverAssignment(b"", b"\xff", ref("resolver", i))],
            [ref("log", n) for n in logs],
            [StorageTeam(b"", b"\xff", [ref("storage", n) for n in storage])],
        )

    live = layout(4, "e4", ["e4"], ["s1"])
    workers = [
        WorkerInfo(r, "running", "", epoch)
        for r, epoch in [
            (ref("sequencer", "e3"), 3),  # the old epoch's roles: retired
            (ref("commit_proxy", "e3"), 3),
            (ref("resolver", "e4"), 4),  # the live ones: kept
            (ref("sequencer", "e4"), 4),
            (ref("log", "e3"), 3),  # the generation recovered from: copied, retired
            (ref("log", "e2"), 2),  # older: retired
            (ref("log", "orphan"), 3),  # a killed attempt's: retired
            (ref("storage", "s1"), 1),  # in the team
            (ref("storage", "lost"), 2),  # replaced, or an orphan: retired
            (ref("storage", "filling"), 3),  # being filled now: kept
            (ref("sequencer", "e5"), 5),  # a newer epoch's: never touched
            (ref("log", "e5"), 5),
        ]
    ]
    assert {r.id for r in to_retire(workers, 4, live, {"storage-filling"})} == {
        "sequencer-e3",
        "commit_proxy-e3",
        "log-e3",
        "log-e2",
        "log-orphan",
        "storage-lost",
    }


async def test_retirement_asks_a_node_that_did_not_answer_again_until_it_does() -> None:
    # A node cut off (or paused) while the epoch went live still runs the old
    # epoch's roles: retirement must not take its silence for death.
    def ref(kind: str, i: str, node: str) -> WorkerRef:
        return WorkerRef(f"{kind}-{i}", kind, node, f"127.0.0.1:{node}")

    live = Layout(
        4,
        0,
        ref("sequencer", "e4", "1"),
        [ref("commit_proxy", "e4", "1")],
        [ResolverAssignment(b"", b"\xff", ref("resolver", "e4", "1"))],
        [ref("log", "e4", "1")],
        [StorageTeam(b"", b"\xff", [ref("storage", "s1", "1")])],
    )
    old_roles = [ref("sequencer", "e3", "2"), ref("commit_proxy", "e3", "2")]
    unanswered = [3]  # node 2 stays silent for its first 3 listings

    class Context:
        epoch = 4

        def __init__(self) -> None:
            self.stopped: list[str] = []

        async def nodes(self) -> list[NodeInfo]:
            return [NodeInfo("1", "127.0.0.1:1"), NodeInfo("2", "127.0.0.1:2")]

        async def call(
            self,
            target: WorkerRef,
            body: protocol.Request,
            timeout: float,  # noqa: ASYNC109
        ) -> protocol.Response:
            assert isinstance(body, protocol.ListWorkers)
            if target.node == "1":
                return protocol.Workers([])
            if unanswered[0] > 0:
                unanswered[0] -= 1
                raise TimeoutError
            running = [r for r in old_roles if r.id not in self.stopped]
            return protocol.Workers([WorkerInfo(r, "running", "", 3) for r in running])

        async def stop_role(self, ref: WorkerRef) -> None:
            self.stopped.append(ref.id)

        async def retiring(self) -> list[protocol.RetiredWorker]:
            return []

    ctx = Context()
    retired = await asyncio.wait_for(retire(ctx, live, None), 30)  # type: ignore[arg-type]
    assert sorted(ctx.stopped) == ["commit_proxy-e3", "sequencer-e3"]
    assert sorted(retired) == ["commit_proxy commit_proxy-e3", "sequencer sequencer-e3"]
    assert unanswered == [0]
