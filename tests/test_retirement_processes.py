"""What an epoch leaves behind once the next one is live, on real node processes.

A live epoch must not leave older epochs' transaction roles running (an old
sequencer would keep handing out read versions), nor workers that no layout
will ever use (the orphans of a recovery that was killed before it stored its
layout). Both showed up as a directory that grew with every epoch.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from bedrock_cp.client import Client
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import Layout

from .clusters import eventually, recovered, running

pytestmark = pytest.mark.slow

ROLES = ("sequencer", "commit_proxy", "resolver")


def layout_ids(layout: Layout) -> dict[str, set[str]]:
    """The worker ids a layout uses, by kind."""
    return {
        "log": {r.id for r in layout.logs},
        "storage": {r.id for t in layout.storage for r in t.replicas},
        "sequencer": {layout.sequencer.id},
        "commit_proxy": {r.id for r in layout.proxies},
        "resolver": {a.worker.id for a in layout.resolvers},
    }


async def registered(client: Client) -> dict[str, set[str]]:
    """The data-plane services in the directory, by kind."""
    out: dict[str, set[str]] = {k: set() for k in ("log", "storage", *ROLES)}
    for s in await client.services():
        if s.kind in out:
            out[s.kind].add(s.id)
    return out


async def live_layout(client: Client, epoch: int) -> Layout:
    async def check() -> Layout | None:
        layout = await client.fetch_layout()
        return layout if layout is not None and layout.epoch >= epoch else None

    return await eventually(check, what=f"the layout of epoch {epoch}")


async def test_the_previous_epochs_roles_are_stopped_once_a_new_epoch_is_live() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            st = await recovered(client)
            epoch = int(st["recovery"]["epoch"])
            # A follower's node dies: its log is gone, the leader's Director ends
            # the epoch and the next one (on the same, still running, leader node)
            # starts new roles. The old ones must go.
            victim = next(i for i in cluster.addresses if i != int(st["leader"]))
            cluster.kill(victim, signal.SIGKILL)
            st = await recovered(client, newer_than=epoch)
            layout = await live_layout(client, int(st["recovery"]["epoch"]))
            want = layout_ids(layout)

            async def only_current_roles() -> dict[str, set[str]] | None:
                have = await registered(client)
                return have if all(have[k] == want[k] for k in ROLES) else None

            await eventually(only_current_roles, what="only the live epoch's roles registered")
        finally:
            await client.close()


async def test_orphans_of_a_first_recovery_killed_before_it_stored_its_layout_are_removed() -> None:
    # Epoch 1's Director stops before `persist`: workers and roles exist, no layout.
    cluster = LocalCluster(3, env={"BEDROCK_DIRECTOR_PAUSE_BEFORE": "persist@1"})
    async with running(cluster):
        client = await cluster.client()
        try:

            async def paused() -> dict[str, Any] | None:
                st = await client.status(timeout=1.0)
                rec = st["recovery"]
                ok = rec["epoch"] == 1 and rec["phase"] == "persist"
                return st if ok else None

            await eventually(paused, what="epoch 1 paused before persist")
            orphans = await registered(client)
            assert len(orphans["log"]) == 3 and len(orphans["storage"]) == 3, orphans
            # Every node dies at once: no rollback runs anywhere.
            for node_id in cluster.addresses:
                cluster.kill(node_id, signal.SIGKILL)
            cluster.env.clear()
            for node_id in cluster.addresses:
                cluster.restart(node_id)
            await cluster.wait_ready()
            st = await recovered(client, timeout=30)
            layout = await live_layout(client, int(st["recovery"]["epoch"]))
            want = layout_ids(layout)
            assert not (want["log"] | want["storage"]) & (orphans["log"] | orphans["storage"])

            async def no_orphans() -> dict[str, set[str]] | None:
                have = await registered(client)
                return have if have == want else None

            await eventually(no_orphans, what="only the live layout's workers registered")
        finally:
            await client.close()


async def test_a_restart_of_every_node_keeps_the_directory_and_leaves_no_orphans() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            st = await recovered(client)
            epoch = int(st["recovery"]["epoch"])
            old = layout_ids(await live_layout(client, epoch))
            for i in range(5):
                await client.register(f"keep-{i}", kind="web", address="127.0.0.1:1")
            before = {s.id: s for s in await client.services() if s.kind == "web"}

            cluster.stop()
            for node_id in cluster.addresses:
                cluster.restart(node_id)
            await cluster.wait_ready()
            st = await recovered(client, newer_than=epoch, timeout=30)
            layout = await live_layout(client, int(st["recovery"]["epoch"]))
            want = layout_ids(layout)
            # The storage replicas are kept across the restart; the previous
            # generation's logs stay until their retirement.
            assert want["storage"] == old["storage"]

            async def settled() -> dict[str, set[str]] | None:
                have = await registered(client)
                logs_ok = want["log"] <= have["log"] <= want["log"] | old["log"]
                others = all(have[k] == want[k] for k in ("storage", *ROLES))
                return have if logs_ok and others else None

            await eventually(settled, what="the live layout's workers and no orphans")
            after = {s.id: s for s in await client.services() if s.kind == "web"}
            assert after == before
        finally:
            await client.close()
