"""Bounded history on real node processes: large data across kills, a lost
replica replaced, retirement across restarts, no epoch storm, a quiet idle cluster.

Values are 100 KB, so 64 MiB is about 670 transactions: more than the frame
cap (16 MiB) many times over, so every stream (log pulls, recovery copies,
catch-up, range reads) must be bounded in bytes for any of this to work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_cp import protocol
from bedrock_cp.client import Client, Database, open_database
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import Layout

from .clusters import eventually, node_caller, recovered, running
from .dataplane_pipeline import disk_bytes

pytestmark = pytest.mark.slow

VALUE_SIZE = 100_000
MIB = 1 << 20


def value_of(key: bytes) -> bytes:
    """A 100 KB value only ``key`` produces (so nothing needs remembering but keys)."""
    seed = hashlib.sha256(key).digest()
    return (seed * (VALUE_SIZE // len(seed) + 1))[:VALUE_SIZE]


async def load(db: Database, prefix: str, size: int, acked: set[bytes], writers: int = 8) -> None:
    """Write ``size`` bytes of 100 KB values, one per transaction, ``writers`` at a time."""
    keys = [f"{prefix}/{i:06d}".encode() for i in range(size // VALUE_SIZE)]

    async def writer(mine: list[bytes]) -> None:
        for key in mine:
            async for tr in db.attempts(timeout=60):
                async with tr:
                    tr.set(key, value_of(key))
            acked.add(key)

    await asyncio.gather(*(writer(keys[i::writers]) for i in range(writers)))


async def assert_all_present(db: Database, acked: set[bytes]) -> None:
    """Read every key back (by range, in pages: the answers are bounded in bytes)."""
    found: dict[bytes, bytes] = {}
    async for tr in db.attempts(timeout=60):
        async with tr:
            found = dict(await tr.get_range(b"", b"\xff", limit=len(acked) + 10))
    missing = [k for k in acked if k not in found]
    wrong = [k for k in acked if k in found and found[k] != value_of(k)]
    assert not missing and not wrong, (
        f"{len(missing)} acknowledged transactions lost, {len(wrong)} wrong, "
        f"e.g. {(missing + wrong)[:3]}"
    )


async def layout_of(db: Database, epoch: int) -> Layout:
    async def check() -> Layout | None:
        layout = await db.client.fetch_layout()
        return layout if layout is not None and layout.epoch >= epoch else None

    return await eventually(check, timeout=30, what=f"the layout of epoch {epoch}")


async def settled(client: Client, db: Database, nodes: int = 3) -> tuple[int, Layout]:
    """Wait for a live epoch whose layout has a log and a serving replica on
    ``nodes`` nodes (nothing absent); returns (leader, layout)."""

    async def check() -> tuple[int, Layout] | None:
        st = await client.status(timeout=1.0)
        if st["recovery"]["state"] != "running":
            return None
        layout = await db.client.fetch_layout()
        if layout is None or layout.epoch != int(st["recovery"]["epoch"]):
            return None
        team = layout.storage[0]
        full = len({r.node for r in layout.logs}) == min(nodes, 3) and len(team.replicas) == 3
        return (int(st["leader"]), layout) if full and not team.absent else None

    return await eventually(check, timeout=60, what="a full layout")


@contextlib.asynccontextmanager
async def connected(cluster: LocalCluster) -> AsyncIterator[tuple[Client, Database]]:
    """A client of the coordinators and a database handle, closed afterwards."""
    client = await cluster.client()
    db = await open_database(str(cluster.cluster_file))
    try:
        yield client, db
    finally:
        await db.close()
        await client.close()


async def epoch_now(client: Client) -> int:
    st = await client.status(timeout=2.0)
    return int(st["recovery"]["epoch"] or 0)


def worker_dirs(cluster: LocalCluster, node: int) -> set[str]:
    workers = cluster.directory / f"data-{node}" / "workers"
    return {p.name for p in workers.iterdir()} if workers.is_dir() else set()


async def test_64_mib_survive_a_kill_9_of_each_node_in_turn() -> None:
    async with running(LocalCluster(3)) as cluster, connected(cluster) as (client, db):
        await recovered(client)
        acked: set[bytes] = set()
        await load(db, "big", 64 * MIB, acked)
        for victim in sorted(cluster.addresses):
            _, layout = await settled(client, db)
            cluster.kill(victim, signal.SIGKILL)
            await recovered(client, newer_than=layout.epoch, timeout=60)
            await load(db, f"after-{victim}", 10 * VALUE_SIZE, acked)
            cluster.restart(victim)
            await cluster.wait_ready()
        _, layout = await settled(client, db)
        await assert_all_present(db, acked)
        # History stays bounded: no more than the data (3 replicas) and a little,
        # once the old generations are retired and storage flushed what it applied.
        logical = len(acked) * VALUE_SIZE

        async def bounded() -> bool:
            used = sum(disk_bytes(cluster.directory / f"data-{n}") for n in cluster.addresses)
            return used <= 3 * logical + 3 * 16 * MIB and await storage_quiet(cluster, layout)

        await eventually(bounded, timeout=60, what="disk within 3x the data + 16 MiB a node")


async def test_a_replica_down_past_the_limit_is_replaced_and_its_data_copied() -> None:
    async with running(LocalCluster(4)) as cluster, connected(cluster) as (client, db):
        await recovered(client)
        await client.update_config({"storage_replacement_s": 2})
        acked: set[bytes] = set()
        await load(db, "r", 8 * MIB, acked)
        leader, layout = await settled(client, db, nodes=4)
        team = layout.storage[0].replicas
        lost = next(r for r in team if int(r.node) != leader)
        cluster.kill(int(lost.node), signal.SIGKILL)  # and it stays down

        async def replaced() -> Layout | None:
            now = await db.client.fetch_layout()
            if now is None or lost in now.storage[0].members():
                return None
            return now if len(now.storage[0].replicas) == 3 else None

        layout = await eventually(replaced, timeout=90, what=f"{lost.id} replaced")
        (new,) = [r for r in layout.storage[0].replicas if r not in team]
        assert new.node != lost.node
        # Its data is all there: read every key from the new replica itself.
        async for tr in db.attempts(timeout=30):
            async with tr:
                version = await tr.read_version()
        for key in sorted(acked):
            answer = await db.call(new, protocol.StorageGet(new.id, key, version))
            assert answer == protocol.Value(value_of(key), version), key
        await load(db, "later", 5 * VALUE_SIZE, acked)
        # The lost one comes back: it is removed, not taken back.
        cluster.restart(int(lost.node))

        async def removed() -> bool:
            services = {s.id for s in await client.services()}
            return lost.id not in worker_dirs(cluster, int(lost.node)) and (lost.id not in services)

        await eventually(removed, timeout=60, what=f"{lost.id} removed from its node")
        await assert_all_present(db, acked)


async def test_a_node_restarted_in_the_middle_of_a_retirement() -> None:
    # Epoch 2's Director records its retirement of epoch 1's logs, then pauses
    # before removing any; its node is then killed: epoch 3 must finish it.
    cluster = LocalCluster(3, env={"BEDROCK_DIRECTOR_PAUSE_BEFORE": "retire@2"})
    async with running(cluster), connected(cluster) as (client, db):
        st = await recovered(client)
        layout1 = await layout_of(db, int(st["recovery"]["epoch"]))
        acked: set[bytes] = set()
        await load(db, "a", 2 * MIB, acked)
        leader = int(st["leader"])
        away = next(i for i in cluster.addresses if i != leader)
        cluster.kill(away, signal.SIGKILL)

        async def paused() -> dict[str, Any] | None:
            st = await client.status(timeout=1.0)
            rec = st["recovery"]
            return st if rec["epoch"] == 2 and rec["state"] == "running" else None

        await eventually(paused, timeout=30, what="epoch 2 live (paused in its retirement)")
        layout2 = await layout_of(db, 2)
        # Recorded, and nothing removed yet: epoch 1's log is still on the leader's node.
        assert {r.id for r in layout1.logs if int(r.node) == leader} <= worker_dirs(cluster, leader)
        await load(db, "b", 1 * MIB, acked)
        # The node that was away comes back with a log of the retired generation.
        cluster.restart(away)
        await cluster.wait_ready()
        old_here = {r.id for r in layout1.logs if int(r.node) == away}
        assert old_here <= worker_dirs(cluster, away)
        # The Director dies mid-retirement; its node comes back too.
        cluster.kill(leader, signal.SIGKILL)
        cluster.restart(leader)
        await recovered(client, newer_than=2, timeout=60)
        retired = {r.id for r in layout1.logs} | {r.id for r in layout2.logs}

        async def finished() -> bool:
            # (Later epochs may follow as the nodes come back: judge by the live one.)
            _, layout = await settled(client, db)
            live = {r.id for r in layout.logs}
            on_disk = set().union(*(worker_dirs(cluster, n) for n in cluster.addresses))
            services = {s.id for s in await client.services()}
            # No retired log is left anywhere, and nothing needed went with them.
            return not retired & (on_disk | services | live) and live <= on_disk

        await eventually(finished, timeout=60, what="every retired log removed")
        await load(db, "c", 5 * VALUE_SIZE, acked)
        await assert_all_present(db, acked)


async def test_a_corrupt_manifest_on_one_node_causes_at_most_one_extra_epoch() -> None:
    async with running(LocalCluster(3)) as cluster, connected(cluster) as (client, db):
        await recovered(client)
        await client.update_config({"storage_replacement_s": 2})
        acked: set[bytes] = set()
        await load(db, "m", 2 * MIB, acked)
        leader, layout = await settled(client, db)
        victim = next(i for i in cluster.addresses if i != leader)
        broken = next(r for r in layout.storage[0].replicas if int(r.node) == victim)
        before = await epoch_now(client)
        cluster.kill(victim, signal.SIGKILL)
        manifest = cluster.directory / f"data-{victim}" / "workers" / broken.id
        (manifest / "manifest.json").write_text("{not json")
        cluster.restart(victim)
        await cluster.wait_ready()
        # A restart alone costs two epochs (the kill, then the fuller log set);
        # the broken replica may cost one more: its replacement, filled first.
        _, layout = await settled(client, db)
        assert broken not in layout.storage[0].members()
        assert victim in {int(r.node) for r in layout.storage[0].replicas}
        settled_epoch = await epoch_now(client)
        assert settled_epoch <= before + 3, (before, settled_epoch)
        # ... and then no more: watch a few replacement periods go by.
        loop = asyncio.get_running_loop()
        end = loop.time() + 6.0
        while loop.time() < end:
            assert await epoch_now(client) == settled_epoch
            await asyncio.sleep(0.2)

        async def swept() -> bool:
            return broken.id not in worker_dirs(cluster, victim)

        await eventually(swept, timeout=30, what="the broken replica's directory removed")
        await assert_all_present(db, acked)


async def storage_quiet(cluster: LocalCluster, layout: Layout) -> bool:
    """Every replica made everything it applied durable (nothing left to flush).
    (Storage status is for cluster nodes: ask as the replica's own node.)"""
    for ref in layout.storage[0].replicas:
        peer = node_caller(cluster, int(ref.node))
        try:
            state = await peer.call(ref, protocol.StorageStatus(ref.id), 2.0)
        finally:
            await peer.close()
        if not isinstance(state, protocol.StorageState) or state.durable < state.applied:
            return False
    return True


async def test_an_idle_cluster_writes_almost_nothing() -> None:
    async with running(LocalCluster(3)) as cluster, connected(cluster) as (client, db):
        await recovered(client)
        acked: set[bytes] = set()
        await load(db, "i", 20 * VALUE_SIZE, acked)
        _, layout = await settled(client, db)
        await eventually(lambda: storage_quiet(cluster, layout), timeout=30, what="storage flushed")
        dirs: list[Path] = [cluster.directory / f"data-{n}" for n in cluster.addresses]
        before = [disk_bytes(d) for d in dirs]
        window = 20.0  # a measuring window; the budget is in bytes
        await asyncio.sleep(window)
        grown = [disk_bytes(d) - b for d, b in zip(dirs, before, strict=True)]
        budget = 64 * 1024 * window / 3600  # 64 KiB per node per hour
        assert all(g <= budget for g in grown), (grown, budget)
        assert await epoch_now(client) == layout.epoch
