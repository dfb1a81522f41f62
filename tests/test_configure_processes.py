"""Changing a running cluster: ``bedrock-cp configure`` and ``exclude``/``include``
on real node processes, through consensus."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bedrock_cp.client import open_database
from bedrock_cp.cluster import LocalCluster

from .clusters import eventually, leader_of, recovered, running
from .test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.slow


async def _cli(*args: str) -> Any:
    return await asyncio.to_thread(cli, *args, timeout=180)


async def test_status_and_configure_show_and_change_a_running_cluster() -> None:
    async with running(LocalCluster(3)) as cluster:
        where = ["--cluster", str(cluster.cluster_file)]
        # The human view: tables of the nodes and of the last recoveries, and
        # --watch refreshing it (one snapshot per refresh when piped).
        watched = await _cli("status", *where, "--watch", "0.1", "--count", "2")
        assert watched.returncode == 0, watched.stderr
        assert watched.stdout.count("leader: node") == 2
        assert watched.stdout.count("last recoveries") == 2
        assert "completed" in watched.stdout
        ticks = await _cli("status", *where, "--json", "--watch", "0.1", "--count", "3")
        views = [json.loads(line) for line in ticks.stdout.splitlines()]
        assert len(views) == 3 and all(v["leader"] for v in views)
        shown = await _cli("configure", *where, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["config"]["desired_logs"] == 3

        changed = await _cli("configure", *where, "--json", "resolvers=2", "excluded_nodes=")
        assert changed.returncode == 0, changed.stderr
        config = json.loads(changed.stdout)["config"]
        assert (config["resolvers"], config["excluded_nodes"]) == (2, [])

        # One bad setting and nothing applies; each error names what was wrong.
        bad = await _cli("configure", *where, "resolvers=3", "heartbeat_ms=10")
        assert_one_line_error(bad, "unknown config parameter 'heartbeat_ms'")
        assert_one_line_error(await _cli("configure", *where, "resolvers=0"), "outside 1..64")
        assert_one_line_error(await _cli("configure", *where, "resolvers=x"), "integer")
        assert_one_line_error(await _cli("configure", *where, "resolvers"), "key=value")
        after = json.loads((await _cli("configure", *where, "--json")).stdout)["config"]
        assert after["resolvers"] == 2

        # A change of sizes reaches the running Director: it ends its epoch and
        # the next one is built to the new sizes.
        client = await cluster.client()
        try:
            await _cli("configure", *where, "desired_logs=2", "commit_proxies=2")
            layout = await eventually(
                lambda: _layout_with(
                    client,
                    lambda lay: (len(lay.resolvers), len(lay.proxies), len(lay.logs)) == (2, 2, 2),
                ),
                timeout=60,
                what="a layout with 2 resolvers, 2 commit proxies and 2 logs",
            )
            assert layout.epoch >= 2
        finally:
            await client.close()


async def _layout_with(client: Any, check: Any) -> Any:
    layout = await client.fetch_layout()
    return layout if layout is not None and check(layout) else None


async def test_excluding_the_leaders_node_drains_it_and_loses_nothing() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            await recovered(client)
            acked: list[bytes] = []
            for i in range(30):
                key = f"k{i:03}".encode()

                async def put(tr: Any, key: bytes = key) -> None:
                    tr.set(key, key)

                await db.run(put)
                acked.append(key)

            leader, _ = await leader_of(client)
            node = str(leader)
            drained = await _cli("exclude", "--cluster", str(cluster.cluster_file), "--json", node)
            assert drained.returncode == 0, drained.stderr
            answer = json.loads(drained.stdout)
            assert answer["drained"] is True and answer["excluded_nodes"] == [node]

            layout = await client.fetch_layout()
            assert layout is not None
            assert all(r.node != node for r in layout.workers()), layout
            new_leader, _ = await leader_of(client)
            assert new_leader != leader, "an excluded node hands leadership on"
            assert cluster.alive(leader), "draining stops no process"

            async def read_all(tr: Any) -> list[bytes | None]:
                return [await tr.get(k) for k in acked]

            assert await db.run(read_all) == acked, "every acknowledged write is still there"

            async def one_more(tr: Any) -> None:
                tr.set(b"after-drain", b"1")

            await db.run(one_more)

            back = await _cli("include", "--cluster", str(cluster.cluster_file), "--json", node)
            assert back.returncode == 0, back.stderr
            assert json.loads(back.stdout)["excluded_nodes"] == []
        finally:
            await db.close()
            await client.close()
