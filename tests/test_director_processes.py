"""The Director on real node processes: cold start, failover, zombie, restarts.

Every node offers ``log`` and ``storage``; the leader's Director builds (and
rebuilds) the transaction system. Tests kill nodes for real and check that
every acknowledged transaction is still there in the next epoch.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from bedrock_cp.client import Database, open_database
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.director.phases import RecoveryPhase

from .clusters import eventually, recovered, running

pytestmark = pytest.mark.slow


async def write_some(db: Database, prefix: str, n: int, acked: dict[bytes, bytes]) -> None:
    for i in range(n):
        key, value = f"{prefix}/{i:04d}".encode(), f"{prefix}-{i}".encode()
        async for tr in db.attempts(timeout=20):
            async with tr:
                tr.set(key, value)
        acked[key] = value


async def assert_all_present(db: Database, acked: dict[bytes, bytes]) -> None:
    async for tr in db.attempts(timeout=20):
        async with tr:
            rows = dict(await tr.get_range(b"", b"\xff", limit=len(acked) + 100))
    missing = [k for k, v in acked.items() if rows.get(k) != v]
    assert not missing, f"{len(missing)} acknowledged transactions lost, e.g. {missing[:3]}"


async def test_cold_start_reaches_running_and_kill_9_of_the_director_node_recovers() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            st = await recovered(client)
            rec = st["recovery"]
            assert rec["timeline"][-1]["outcome"] == "completed"
            phases = [p["phase"] for p in rec["timeline"][-1]["phases"]]
            assert len(phases) >= 8, phases
            acked: dict[bytes, bytes] = {}
            await write_some(db, "e1", 30, acked)

            leader = int(st["leader"])
            cluster.kill(leader, signal.SIGKILL)
            st2 = await recovered(client, newer_than=int(rec["epoch"]))
            assert int(st2["leader"]) != leader
            await write_some(db, "e2", 10, acked)
            await assert_all_present(db, acked)
        finally:
            await db.close()
            await client.close()


async def test_kill_9_of_a_log_node_ends_the_epoch_and_the_next_recovers() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            st = await recovered(client)
            epoch = int(st["recovery"]["epoch"])
            acked: dict[bytes, bytes] = {}
            await write_some(db, "a", 20, acked)
            victim = next(i for i in cluster.addresses if i != int(st["leader"]))
            cluster.kill(victim, signal.SIGKILL)
            await recovered(client, newer_than=epoch)
            await write_some(db, "b", 10, acked)
            await assert_all_present(db, acked)
        finally:
            await db.close()
            await client.close()


async def test_restart_of_all_nodes_recovers_from_the_stored_layout() -> None:
    cluster = LocalCluster(3)
    async with running(cluster):
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        acked: dict[bytes, bytes] = {}
        try:
            st = await recovered(client)
            await write_some(db, "r", 25, acked)
        finally:
            await db.close()
            await client.close()
        cluster.stop()
        for node_id in cluster.addresses:
            cluster.restart(node_id)
        await cluster.wait_ready()
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            await recovered(client, newer_than=int(st["recovery"]["epoch"]))
            await assert_all_present(db, acked)
        finally:
            await db.close()
            await client.close()


async def test_a_zombie_director_cannot_change_anything() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            st = await recovered(client)
            old_epoch = int(st["recovery"]["epoch"])
            acked: dict[bytes, bytes] = {}
            await write_some(db, "z1", 10, acked)
            zombie = int(st["leader"])
            cluster.pause(zombie)
            try:
                await recovered(client, newer_than=old_epoch)
                await write_some(db, "z2", 10, acked)
            finally:
                cluster.resume(zombie)

            async def zombie_stood_down() -> bool:
                st = await client.status(timeout=1.0)
                me = next(n for n in st["nodes"] if n["id"] == zombie)
                return bool(me["reachable"] and me["role"] == "follower")

            await eventually(zombie_stood_down, what="the zombie's node follows")
            await write_some(db, "z3", 10, acked)
            await assert_all_present(db, acked)
            log = cluster.log_path(zombie).read_text()
            assert f"director of epoch {old_epoch}" in log or "superseded" in log, (
                "the zombie Director left no trace of stopping"
            )
        finally:
            await db.close()
            await client.close()


#: Every phase a recovery of a stored layout runs (the first only reads).
PHASES = [p.value for p in RecoveryPhase if p != RecoveryPhase.VALIDATE_LAYOUT]


@pytest.mark.parametrize("phase", PHASES)
async def test_the_director_killed_in_each_phase_is_replaced(phase: str) -> None:
    # Only epoch 2's Director pauses (before `phase`); it is then killed -9.
    cluster = LocalCluster(3, env={"BEDROCK_DIRECTOR_PAUSE_BEFORE": f"{phase}@2"})
    async with running(cluster):
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            st = await recovered(client)
            acked: dict[bytes, bytes] = {}
            await write_some(db, "p", 10, acked)
            first = int(st["leader"])
            cluster.kill(first, signal.SIGKILL)

            async def paused() -> dict[str, Any] | None:
                st = await client.status(timeout=1.0)
                rec = st["recovery"]
                ok = rec["epoch"] == 2 and rec["phase"] == phase and rec["state"] == "recovering"
                return st if ok else None

            st2 = await eventually(paused, what=f"epoch 2 paused before {phase}")
            cluster.restart(first)
            second = int(st2["leader"])
            cluster.kill(second, signal.SIGKILL)
            await recovered(client, newer_than=2, timeout=30)
            await write_some(db, "q", 5, acked)
            await assert_all_present(db, acked)
        finally:
            await db.close()
            await client.close()


async def test_a_restarted_node_rejoins_the_next_generation_of_logs() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            st = await recovered(client)
            acked: dict[bytes, bytes] = {}
            await write_some(db, "s1", 10, acked)
            first = int(st["leader"])
            cluster.kill(first, signal.SIGKILL)
            st = await recovered(client, newer_than=int(st["recovery"]["epoch"]))
            await write_some(db, "s2", 10, acked)  # node `first` misses these
            layout = await db.refresh_layout(newer_than=int(st["recovery"]["epoch"]) - 1)
            # Its log is gone from the new generation; its storage replica stays a
            # member of the team, absent (until replaced): the logs keep what it
            # has not made durable.
            assert str(first) not in {r.node for r in layout.logs}
            assert str(first) not in {r.node for r in layout.storage[0].replicas}
            assert str(first) in {r.node for r in layout.storage[0].absent}

            cluster.restart(first)
            # Its return makes a fuller layout possible: the Director ends the
            # degraded epoch and the next one takes the node's log and replica back.
            st = await recovered(client, newer_than=int(st["recovery"]["epoch"]))
            layout = await db.refresh_layout(newer_than=layout.epoch)
            assert {r.node for r in layout.logs} == {"1", "2", "3"}
            assert str(first) in {r.node for r in layout.storage[0].replicas}
            # Now one more node can go: the coordinators keep a majority.
            second = int(st["leader"])
            cluster.kill(second, signal.SIGKILL)
            await recovered(client, newer_than=int(st["recovery"]["epoch"]))
            await write_some(db, "s3", 5, acked)
            await assert_all_present(db, acked)
        finally:
            await db.close()
            await client.close()


async def test_raft_traffic_spares_health_checks_and_a_stopped_log_node_still_ends_the_epoch() -> (
    None
):
    # The Director runs on the Raft leader, which hears every other coordinator
    # answer its heartbeats: while they come, that node's log needs a Health
    # check only now and then. Stopped (SIGSTOP: no connection reset, only
    # silence), the node's log is dead all the same and the next epoch recovers.
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            st = await recovered(client)
            epoch, leader = int(st["recovery"]["epoch"]), int(st["leader"])
            layout = await db.refresh_layout(newer_than=epoch - 1)
            victim = next(r for r in layout.logs if r.node != str(leader))
            watched = [layout.sequencer, *layout.proxies, *layout.logs]
            watched += [r.worker for r in layout.resolvers]
            on_victim = sum(1 for r in watched if r.node == victim.node)
            first = st["recovery"]["monitor"]

            async def rounds_later() -> dict[str, Any] | None:
                st = await client.status(timeout=1.0)
                monitor: dict[str, Any] = st["recovery"]["monitor"]
                return monitor if monitor["rounds"] >= first["rounds"] + 60 else None

            last = await eventually(rounds_later, timeout=30, what="60 rounds of the watch")
            rounds = last["rounds"] - first["rounds"]
            sent = last["health_checks"].get(victim.node, 0)
            sent -= first["health_checks"].get(victim.node, 0)
            # Every round checked every component: rounds * on_victim calls.
            assert sent <= rounds * on_victim // 4, (sent, rounds, on_victim)

            cluster.pause(int(victim.node))
            try:
                await recovered(client, newer_than=epoch)
            finally:
                cluster.resume(int(victim.node))
            log = cluster.log_path(leader).read_text()
            assert f"component log {victim.id} died (timed out)" in log
        finally:
            await db.close()
            await client.close()
