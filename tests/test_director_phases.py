"""Each recovery phase alone, against the in-process context, with every stall
and failure reason."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.director import Attempt, Fail, Stall
from bedrock_cp.director.context import NodeInfo
from bedrock_cp.director.director import HEALTH_TIMEOUT
from bedrock_cp.director.phases import (
    _calls,
    _placement,
    build_layout,
    monitor,
    persist,
    plan_log_recovery,
    recruit_logs,
    recruit_storage,
    replay_logs,
    start_roles,
    vacancies,
    validate_layout,
)
from bedrock_cp.director.rollback import rollback
from bedrock_cp.protocol import (
    SYSTEM_PREFIX,
    KeyRange,
    Layout,
    Mutation,
    MutationKind,
    ResolverAssignment,
    StorageTeam,
    WorkerRef,
    decode_layout,
    encode_layout,
)

from .director_harness import (
    PARAMS,
    TestCluster,
    TestContext,
    closes_clusters,
    epoch_one,
    run_phases,
)

# -- 1. validate_layout ----------------------------------------------------------------------


@closes_clusters
async def test_validate_no_layout_is_a_new_cluster(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    await validate_layout.run(attempt, cluster.context(1))
    assert attempt.new_cluster and attempt.old_layout is None


@closes_clusters
async def test_validate_a_corrupt_layout_stalls(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    cluster.layout = b"\x93not a layout"
    with pytest.raises(Stall, match=r"^corrupt layout: "):
        await validate_layout.run(Attempt(1, 2), cluster.context(2))


@closes_clusters
async def test_validate_a_layout_of_this_epoch_or_newer_stalls(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    with pytest.raises(Stall, match="corrupt layout: the stored layout is of epoch 1"):
        await validate_layout.run(Attempt(1, 1), cluster.context(1))
    attempt = Attempt(1, 2)
    await validate_layout.run(attempt, cluster.context(2))
    assert attempt.old_layout == layout and not attempt.new_cluster
    await cluster.close()


# -- 2. lock_logs ------------------------------------------------------------------------------


@closes_clusters
async def test_lock_locks_every_old_log(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    attempt = Attempt(1, 2)
    ctx = cluster.context(2)
    await run_phases(attempt, ctx, "plan_log_recovery")
    assert set(attempt.locked) == {r.id for r in layout.logs}
    assert await cluster.commit(layout, b"x", b"y") == protocol.NewerEpoch(2)
    await cluster.close()


@closes_clusters
async def test_lock_a_newer_epoch_fails(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    await cluster.call(layout.logs[2], protocol.LogLock(layout.logs[2].id, 7))
    attempt = Attempt(1, 2)
    with pytest.raises(Fail, match=r"^superseded by epoch 7$"):
        await run_phases(attempt, cluster.context(2), "plan_log_recovery")
    await cluster.close()


@closes_clusters
async def test_lock_no_log_stalls_naming_them_and_one_is_enough(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    acknowledged = await cluster.read_version(layout)
    cluster.down |= {ref.node for ref in layout.logs}
    with pytest.raises(Stall, match="none of the 3 old logs locked") as info:
        await run_phases(Attempt(1, 2), cluster.context(2), "plan_log_recovery")
    assert all(ref.id in info.value.reason for ref in layout.logs)
    # One is enough: every acknowledged commit is durable on every log.
    cluster.down = {layout.logs[1].node, layout.logs[2].node}
    attempt = Attempt(2, 2)
    await run_phases(attempt, cluster.context(2), "vacancies")
    assert list(attempt.locked) == [layout.logs[0].id]
    assert attempt.recovery_version >= acknowledged
    await cluster.close()


@closes_clusters
async def test_lock_a_silent_log_times_out(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    ctx = cluster.context(
        2, parameters=dataclasses.replace(cluster.context(2).parameters, lock_timeout=0.1)
    )
    slow = cluster.workers[layout.logs[0].id]
    original = slow.handle

    async def hang(body: protocol.Request) -> protocol.Response:
        await asyncio.sleep(5)
        return await original(body)

    slow.handle = hang  # type: ignore[method-assign]
    attempt = Attempt(1, 2)
    await run_phases(attempt, ctx, "plan_log_recovery")
    assert layout.logs[0].id not in attempt.locked and len(attempt.locked) == 2
    await cluster.close()


@closes_clusters
async def test_a_node_found_silent_by_the_lock_is_not_waited_for_again(tmp_path: Path) -> None:
    # Planning and storage recruitment ask the silent node's replica too, but
    # give it no grace once the lock had to cut it off (a grace no test waits out).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_calls, "STRAGGLER_GRACE", 3600.0)
        cluster = TestCluster(tmp_path)
        layout = await epoch_one(cluster)
        silent = layout.storage[0].replicas[1]
        patient = dataclasses.replace(PARAMS, lock_timeout=60.0, call_timeout=60.0)
        ctx = cluster.context(2, parameters=patient)
        attempt = Attempt(1, 2)
        await run_phases(attempt, ctx, "plan_log_recovery")
        cluster.stopped.add(silent.node)
        attempt.silent.add(silent.node)  # as the lock would have found
        for phase in (plan_log_recovery, vacancies, recruit_logs, recruit_storage):
            await asyncio.wait_for(phase.run(attempt, ctx), 10)
        (team,) = attempt.storage
        assert [r.id for r in team.absent] == [silent.id]
        await cluster.close()


# -- 3. plan_log_recovery ----------------------------------------------------------------------


@closes_clusters
async def test_plan_recovery_version_covers_every_acknowledged_commit(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster, commits=10)
    acknowledged = await cluster.read_version(layout)
    attempt = Attempt(1, 2)
    await run_phases(attempt, cluster.context(2), "vacancies")
    durables = [locked.durable for _, locked in attempt.locked.values()]
    assert attempt.recovery_version == min(durables) >= acknowledged
    assert 1 <= attempt.first_version <= attempt.recovery_version + 1
    await cluster.close()


@closes_clusters
async def test_plan_recovery_version_is_the_lowest_durable_of_the_locked_logs(
    tmp_path: Path,
) -> None:
    """A batch a proxy pushed to one log only (it stopped before the others got
    it) was never acknowledged: the recovery version stays below it, at what
    every locked log holds, so any of them can serve the range."""
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster, commits=3)
    ahead = layout.logs[0]
    log = cluster.workers[ahead.id]
    assert isinstance(log, LogWorker)
    last = log.last
    batch = protocol.CommitBatch(last, last + 1, [Mutation(MutationKind.SET, b"k", b"v")])
    assert await cluster.call(ahead, protocol.LogPush(ahead.id, 1, batch, last)) == (
        protocol.LogPushed(last + 1, last + 1)
    )
    attempt = Attempt(1, 2)
    await run_phases(attempt, cluster.context(2), "vacancies")
    durables = {ref: locked.durable for ref, (_, locked) in attempt.locked.items()}
    assert durables[ahead.id] == last + 1 and min(durables.values()) == last
    assert attempt.recovery_version == last
    await cluster.close()


@closes_clusters
async def test_plan_a_storage_team_without_an_answering_replica_stalls(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    for replica in layout.storage[0].replicas:
        await cluster.workers[replica.id].stop()
    with pytest.raises(Stall, match="has no answering replica"):
        await run_phases(Attempt(1, 2), cluster.context(2), "vacancies")
    await cluster.close()


@closes_clusters
async def test_plan_a_range_no_locked_log_holds_stalls(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster, commits=5)
    ctx = cluster.context(2)
    # An old layout whose only log starts after version 1, and storage that has nothing.
    source = layout.logs[0]
    pulled = await cluster.call(source, protocol.LogPull(source.id, after=0))
    assert isinstance(pulled, protocol.LogBatches) and len(pulled.batches) >= 3
    node = cluster.nodes["n1"]
    short = await ctx.create_worker(node, "log", "short-log")
    first, last = pulled.batches[1].version, pulled.batches[-1].version
    assert isinstance(
        await cluster.call(short, protocol.LogRecover(short.id, 1, [source], first, last)),
        protocol.LogRecovered,
    )
    stored, cluster.layout = cluster.layout, None  # a replica that follows no layout yet
    empty = await ctx.create_worker(node, "storage", "empty-storage")
    cluster.layout = stored
    old = msgspec.structs.replace(
        layout, logs=[short], storage=[StorageTeam(b"", SYSTEM_PREFIX, [empty])]
    )
    cluster.layout = encode_layout(old)
    with pytest.raises(Stall, match=r"no locked log holds versions \[1, "):
        await run_phases(Attempt(1, 2), ctx, "vacancies")
    await cluster.close()


# -- 4. vacancies ------------------------------------------------------------------------------


def test_the_key_space_splits_into_contiguous_ranges() -> None:
    for n in (1, 2, 3, 7, 64):
        ranges = vacancies.split_key_space(n)
        assert len(ranges) == n and ranges[0].begin == b"" and ranges[-1].end == SYSTEM_PREFIX
        assert all(a.end == b.begin and a.begin < a.end for a, b in itertools.pairwise(ranges))
    assert vacancies.split_key_space(1) == [KeyRange(b"", SYSTEM_PREFIX)]


@closes_clusters
async def test_vacancies_describe_the_new_layout(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1, node="n3")
    await run_phases(attempt, ctx, "recruit_logs")
    v = attempt.vacancies
    assert v is not None
    assert (v.logs, v.new_storage, v.proxies, len(v.resolver_ranges)) == (3, 2, 2, 2)
    assert v.sequencer_node == "n3" and v.start_version == 0 and v.storage == []
    layout = await epoch_one(cluster)
    attempt = Attempt(1, 2)
    await run_phases(attempt, cluster.context(2), "recruit_logs")
    assert attempt.vacancies is not None
    assert attempt.vacancies.storage == layout.storage and attempt.vacancies.new_storage == 0
    assert attempt.vacancies.start_version == attempt.recovery_version > 0
    await cluster.close()


# -- 5. recruit_logs ---------------------------------------------------------------------------


@closes_clusters
async def test_recruit_logs_one_per_node_with_new_ids(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    attempt = Attempt(1, 2)
    ctx = cluster.context(
        2, parameters=dataclasses.replace(cluster.context(2).parameters, desired_logs=4)
    )
    await run_phases(attempt, ctx, "recruit_storage")
    # A node is one failure domain: never two logs on one node (4 wanted, 3 nodes).
    assert [r.node for r in attempt.logs] == ["n1", "n2", "n3"]
    assert not {r.id for r in attempt.logs} & {r.id for r in layout.logs}
    assert attempt.created_workers == attempt.logs
    await cluster.close()


@closes_clusters
async def test_recruit_logs_waits_for_the_expected_number_of_nodes(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    for name, info in list(cluster.nodes.items()):
        if name != "n1":
            cluster.nodes[name] = NodeInfo(info.node, info.address, ["storage"])
    ctx = cluster.context(
        1, parameters=dataclasses.replace(cluster.context(1).parameters, expected_nodes=3)
    )
    with pytest.raises(Stall, match="waiting for 3 nodes able to host a log; registered: n1"):
        await run_phases(Attempt(1, 1), ctx, "recruit_storage")


@closes_clusters
async def test_recruit_logs_without_capable_nodes_stalls(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    for name, info in list(cluster.nodes.items()):
        cluster.nodes[name] = NodeInfo(info.node, info.address, ["storage"])
    with pytest.raises(Stall, match="no node can host a log"):
        await run_phases(Attempt(1, 1), cluster.context(1), "recruit_storage")


@closes_clusters
async def test_recruit_logs_skips_excluded_nodes(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    base = cluster.context(1).parameters
    ctx = cluster.context(1, parameters=dataclasses.replace(base, excluded_nodes=frozenset({"n2"})))
    attempt = Attempt(1, 1)
    await run_phases(attempt, ctx, "recruit_storage")
    assert [r.node for r in attempt.logs] == ["n1", "n3"]  # one per node, n2 excluded
    await cluster.close()


@closes_clusters
async def test_recruit_logs_gives_a_silent_creation_less_than_the_health_timeout(
    tmp_path: Path,
) -> None:
    # A node that does not answer its creation (stopped, or restarting and not
    # serving yet) once enough others did is waited for less than a dead
    # component takes to notice: the wait it gets is the grace asked for here.
    graces: list[float | None] = []
    real = _placement.until_enough

    async def spy(*args: object, **kw: object) -> object:
        graces.append(kw.get("grace"))  # type: ignore[arg-type]
        return await real(*args, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_placement, "until_enough", spy)
        cluster = TestCluster(tmp_path)
        await epoch_one(cluster)
        patient = dataclasses.replace(
            PARAMS, lock_timeout=60.0, call_timeout=60.0, expected_nodes=3
        )
        ctx = cluster.context(2, parameters=patient)
        attempt = Attempt(1, 2)
        await run_phases(attempt, ctx, "recruit_logs")
        cluster.stopped.add("n3")  # not found silent before: it is asked
        async with asyncio.timeout(10):  # a bound, not a measure
            await recruit_logs.run(attempt, ctx)
        assert "n3" in cluster.creations and [r.node for r in attempt.logs] == ["n1", "n2"]
        assert graces and all(g is not None and g < HEALTH_TIMEOUT for g in graces), graces
        await cluster.close()


# -- 6. recruit_storage ------------------------------------------------------------------------


@closes_clusters
async def test_recruit_storage_new_cluster_creates_one_team(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    await run_phases(attempt, cluster.context(1), "replay_logs")
    (team,) = attempt.storage
    assert (team.begin, team.end) == (b"", SYSTEM_PREFIX)
    assert [r.node for r in team.replicas] == ["n1", "n2"]
    assert set(team.replicas) <= set(attempt.created_workers)
    await cluster.close()


@closes_clusters
async def test_recruit_storage_keeps_down_replicas_and_stalls_on_a_team_without_a_live_one(
    tmp_path: Path,
) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    replicas = layout.storage[0].replicas
    attempt = Attempt(1, 2)
    ctx = cluster.context(2)
    await run_phases(attempt, ctx, "recruit_storage")
    # A replica whose node died stays a member of its team, absent (until it is
    # replaced): it catches up from the logs when it returns.
    await cluster.workers[replicas[0].id].stop()
    await recruit_storage.run(attempt, ctx)
    assert attempt.storage == [StorageTeam(b"", SYSTEM_PREFIX, [replicas[1]], [replicas[0]])]
    # A retired one does not (the plan leaves it out).
    attempt.durables.pop(replicas[0].id)
    await recruit_storage.run(attempt, ctx)
    assert attempt.storage == [StorageTeam(b"", SYSTEM_PREFIX, [replicas[1]])]
    await cluster.workers[replicas[1].id].stop()
    with pytest.raises(Stall, match="has no live replica"):
        await recruit_storage.run(attempt, ctx)
    await cluster.close()


# -- 7. replay_logs ----------------------------------------------------------------------------


@closes_clusters
async def test_replay_copies_the_recoverable_range_into_every_new_log(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    await epoch_one(cluster, commits=8)
    attempt = Attempt(1, 2)
    await run_phases(attempt, cluster.context(2), "start_roles")
    first, last = attempt.first_version, attempt.recovery_version
    for ref in attempt.logs:
        pulled = await cluster.call(ref, protocol.LogPull(ref.id, after=first - 1))
        assert isinstance(pulled, protocol.LogBatches)
        assert pulled.last == last and pulled.committed == last
        assert all(first <= b.version <= last for b in pulled.batches)
        assert cluster.workers[ref.id].epoch == 2  # type: ignore[attr-defined]
    await cluster.close()


@closes_clusters
async def test_replay_failure_stalls(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    await epoch_one(cluster)
    attempt = Attempt(1, 2)
    ctx = cluster.context(2, parameters=dataclasses.replace(PARAMS, expected_nodes=3))
    await run_phases(attempt, ctx, "replay_logs")
    # Fewer than a majority of the wanted logs recover: the recovery stalls.
    cluster.down |= {attempt.logs[0].node, attempt.logs[1].node}
    with pytest.raises(Stall, match="log replay of"):
        await replay_logs.run(attempt, ctx)
    await cluster.close()


# -- 8-9. start_roles, build_layout --------------------------------------------------------------


@closes_clusters
async def test_roles_start_on_this_node_and_proxies_unlock(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1, node="n2")
    await run_phases(attempt, ctx, "build_layout")
    layout = attempt.layout
    assert layout is not None and decode_layout(attempt.encoded_layout) == layout
    assert {r.node for r in attempt.started_roles} == {"n2"}
    assert len(attempt.started_roles) == 1 + 2 + 2 and len(attempt.token) >= 16
    probe = protocol.Commit(layout.proxies[0].id, 0, [], [], [])
    assert isinstance(await cluster.call(layout.proxies[0], probe), protocol.Locked)
    await build_layout.run(attempt, ctx)
    assert isinstance(await cluster.call(layout.proxies[0], probe), protocol.Committed)
    await cluster.close()


def _ref(i: str, kind: str) -> WorkerRef:
    return WorkerRef(i, kind, "n1", "a")


def test_layout_check_rejects_bad_layouts() -> None:
    good = Layout(
        epoch=2,
        recovery_version=10,
        sequencer=_ref("s", "sequencer"),
        proxies=[_ref("p", "commit_proxy")],
        resolvers=[
            ResolverAssignment(b"", b"m", _ref("r1", "resolver")),
            ResolverAssignment(b"m", SYSTEM_PREFIX, _ref("r2", "resolver")),
        ],
        logs=[_ref("l2", "log")],
        storage=[StorageTeam(b"", SYSTEM_PREFIX, [_ref("ss", "storage")])],
    )
    assert build_layout.check(good, epoch=2, old=None) is None
    bad = {
        "epoch": msgspec.structs.replace(good, epoch=3),
        "resolvers": msgspec.structs.replace(good, resolvers=good.resolvers[:1]),
        "storage": msgspec.structs.replace(good, storage=[StorageTeam(b"", SYSTEM_PREFIX, [])]),
        "storage gap": msgspec.structs.replace(
            good, storage=[StorageTeam(b"", b"m", [_ref("ss", "storage")])]
        ),
        "duplicate id": msgspec.structs.replace(good, proxies=[_ref("s", "commit_proxy")]),
        "old log": msgspec.structs.replace(good, logs=[_ref("l1", "log")]),
    }
    old = msgspec.structs.replace(good, epoch=1, recovery_version=5, logs=[_ref("l1", "log")])
    for what, layout in bad.items():
        assert build_layout.check(layout, epoch=2, old=old) is not None, what


# -- 10. monitor -------------------------------------------------------------------------------


@closes_clusters
async def test_monitor_stalls_when_a_component_is_missing(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1)
    await run_phases(attempt, ctx, "monitor")
    await monitor.run(attempt, ctx)
    assert attempt.layout is not None
    resolver = attempt.layout.resolvers[1].worker
    await cluster.workers[resolver.id].stop()
    with pytest.raises(Stall, match=f"resolver {resolver.id}"):
        await monitor.run(attempt, ctx)
    await rollback(attempt, ctx)
    assert cluster.running() == set()
    await cluster.close()


async def _a_log_stopped_before(
    cluster: TestCluster, phase: str
) -> tuple[TestContext, Attempt, WorkerRef]:
    """Epoch 2's attempt run up to ``phase`` with calls that never time out, then
    the node of one of its logs (not the Director's) stopped: no reset."""
    await epoch_one(cluster)
    patient = dataclasses.replace(PARAMS, lock_timeout=60.0, call_timeout=60.0)
    ctx = cluster.context(2, parameters=patient)
    attempt = Attempt(1, 2)
    await run_phases(attempt, ctx, phase)
    assert attempt.layout is not None
    silent = next(r for r in attempt.layout.logs if r.node != ctx.node)
    cluster.stopped.add(silent.node)
    return ctx, attempt, silent


@closes_clusters
async def test_monitor_gives_a_stopped_node_the_health_timeout_not_a_call_timeout(
    tmp_path: Path,
) -> None:
    # Stopped between replay and monitor (SIGSTOP: no reset): its log is dead
    # for this attempt as it would be for the live epoch's watch; the monitor
    # must not wait a call timeout (none this test waits out) to find out.
    cluster = TestCluster(tmp_path)
    ctx, attempt, silent = await _a_log_stopped_before(cluster, "monitor")
    async with asyncio.timeout(10):  # a bound, not a measure: without the fix it hangs
        with pytest.raises(Stall, match=f"log {silent.id}: timed out"):
            await monitor.run(attempt, ctx)
    assert silent.node in attempt.silent
    # Nor does the rollback wait on that node (a removal there lasts a call
    # timeout): what it created there is left, reported, for a later epoch.
    removed: list[str] = []
    real_remove = ctx.remove_worker

    async def remove(ref: WorkerRef) -> None:
        removed.append(ref.node)
        await real_remove(ref)

    ctx.remove_worker = remove  # type: ignore[method-assign]
    left = await rollback(attempt, ctx)
    assert removed and silent.node not in removed
    assert left == [f"log {silent.id}: node {silent.node} silent, left to retire"]
    assert silent.id in cluster.running()
    await cluster.close()


# -- 11. persist -------------------------------------------------------------------------------


@closes_clusters
async def test_persist_commits_the_system_txn_then_stores_the_layout(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1)
    await run_phases(attempt, ctx, "end")
    assert cluster.layout == attempt.encoded_layout
    log = attempt.logs[0]
    pulled = await cluster.call(log, protocol.LogPull(log.id, after=0))
    assert isinstance(pulled, protocol.LogBatches)
    writes = [m for b in pulled.batches for m in b.mutations]
    assert Mutation(0, persist.EPOCH_KEY, b"1") in writes
    await cluster.close()


@closes_clusters
async def test_persist_gives_a_node_stopped_under_the_system_txn_the_health_timeout(
    tmp_path: Path,
) -> None:
    # Found by benches/test_availability_bench.py (5 nodes): a follower
    # SIGSTOPped while a recovery's system transaction was in flight held
    # commits for 2.7 s, the call timeout of that transaction; the monitor
    # phase just before had found every component alive. The transaction waits
    # on the logs of the new layout: a stopped one is found as the monitor and
    # the live epoch's watch find it, within the health timeout.
    cluster = TestCluster(tmp_path)
    ctx, attempt, silent = await _a_log_stopped_before(cluster, "persist")
    async with asyncio.timeout(10):  # a bound, not a measure: without the fix it waits 60 s
        with pytest.raises(Stall, match=f"log {silent.id}: timed out"):
            await persist.run(attempt, ctx)
    assert silent.node in attempt.silent
    assert not attempt.layout_offered and cluster.layout != attempt.encoded_layout
    await cluster.close()


@closes_clusters
async def test_persist_superseded_fails(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1)
    await run_phases(attempt, ctx, "persist")
    cluster.epoch = 2  # the coordinators began a newer epoch meanwhile
    with pytest.raises(Fail, match="superseded while storing the layout"):
        await persist.run(attempt, ctx)
    assert cluster.layout is None
    await cluster.close()


@closes_clusters
async def test_system_keys_need_the_epoch_token(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1)
    await run_phases(attempt, ctx, "end")
    proxy = attempt.proxies[0]
    write = [Mutation(0, b"\xff/x", b"y")]
    for token in (b"", b"guess"):
        answer = await cluster.call(proxy, protocol.Commit(proxy.id, 0, [], [], write, token))
        assert isinstance(answer, protocol.Failed) and answer.code == "invalid", token
    await cluster.close()


# -- rollback ----------------------------------------------------------------------------------


@closes_clusters
async def test_rollback_removes_every_worker_and_role_of_the_attempt(tmp_path: Path) -> None:
    cluster = TestCluster(tmp_path)
    layout = await epoch_one(cluster)
    before = cluster.running()
    attempt = Attempt(1, 2)
    ctx = cluster.context(2)
    await run_phases(attempt, ctx, "monitor")
    assert cluster.running() > before
    assert await rollback(attempt, ctx) == []
    assert cluster.running() == before
    assert cluster.current() == layout
    await cluster.close()


@closes_clusters
async def test_rollback_keeps_the_workers_of_a_layout_sent_to_be_stored(tmp_path: Path) -> None:
    """Found by the simulation: a Director stopped once it had sent its layout to
    be stored removed the logs and replicas that layout names. The layout may
    have been stored all the same (a leader that loses its leadership cannot
    tell), and then no later epoch could lock any of its logs."""
    cluster = TestCluster(tmp_path)
    attempt = Attempt(1, 1)
    ctx = cluster.context(1)
    await run_phases(attempt, ctx, "persist")
    layout = attempt.layout
    assert layout is not None and attempt.created_workers
    named = {r.id for r in layout.logs} | {r.id for t in layout.storage for r in t.replicas}
    attempt.layout_offered = True
    assert await rollback(attempt, ctx) == []
    assert named <= cluster.running()
    assert not attempt.started_roles  # its roles stop all the same
    await cluster.close()


@closes_clusters
async def test_replay_leaves_out_a_new_log_whose_node_stopped(tmp_path: Path) -> None:
    # Stopped after its log was created (SIGSTOP: no reset): the replay must not
    # wait a call timeout (none this test waits out) for that log, nor for the
    # old log on that node as a source, while the others recover.
    cluster = TestCluster(tmp_path)
    await epoch_one(cluster, commits=8)
    # Three nodes expected: two new logs must recover (a majority).
    patient = dataclasses.replace(PARAMS, lock_timeout=60.0, call_timeout=60.0, expected_nodes=3)
    ctx = cluster.context(2, parameters=patient)
    attempt = Attempt(1, 2)
    await run_phases(attempt, ctx, "replay_logs")
    assert len(attempt.logs) == 3
    silent = attempt.logs[0]
    cluster.stopped.add(silent.node)
    async with asyncio.timeout(10):  # a bound, not a measure: without the fix it hangs
        await replay_logs.run(attempt, ctx)
    assert [r.id for r in attempt.logs] == [r.id for r in attempt.logs if r.node != silent.node]
    assert len(attempt.logs) == 2 and silent.node in attempt.silent
    first, last = attempt.first_version, attempt.recovery_version
    for ref in attempt.logs:
        pulled = await cluster.call(ref, protocol.LogPull(ref.id, after=first - 1))
        assert isinstance(pulled, protocol.LogBatches)
        assert [b.version for b in pulled.batches][-1] == last == pulled.last
        assert pulled.batches[0].prev_version == first - 1
    cluster.stopped.clear()
    for phase in (start_roles, build_layout):
        await phase.run(attempt, ctx)
    assert attempt.layout is not None and attempt.layout.logs == attempt.logs
    await cluster.close()


@closes_clusters
async def test_replay_leaves_out_a_new_log_that_failed_while_enough_recovered(
    tmp_path: Path,
) -> None:
    cluster = TestCluster(tmp_path)
    await epoch_one(cluster)
    attempt = Attempt(1, 2)
    ctx = cluster.context(2, parameters=dataclasses.replace(PARAMS, expected_nodes=3))
    await run_phases(attempt, ctx, "replay_logs")
    dead = attempt.logs[2]
    cluster.down.add(dead.node)
    await replay_logs.run(attempt, ctx)
    assert dead.id not in {r.id for r in attempt.logs} and len(attempt.logs) == 2
    await cluster.close()
