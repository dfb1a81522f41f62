"""Each node's Prometheus endpoint on real processes: what it reports about
Raft, the epoch, its Director's last recovery, transactions and its disk."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bedrock_cp.client import open_database
from bedrock_cp.cluster import LocalCluster

from .clusters import eventually, leader_of, recovered, running, scrape_metrics

pytestmark = pytest.mark.slow


def total(samples: dict[str, float], pattern: str) -> float:
    return sum(v for k, v in samples.items() if re.fullmatch(pattern, k))


async def test_every_node_reports_raft_recovery_transactions_and_disk() -> None:
    async with running(LocalCluster(3, metrics=True)) as cluster:
        client = await cluster.client()
        db = await open_database(str(cluster.cluster_file))
        try:
            await recovered(client)
            for i in range(20):

                async def put(tr: Any, i: int = i) -> None:
                    tr.set(f"m{i}".encode(), b"v")

                await db.run(put)
            leader, _ = await leader_of(client)
            st = await client.status()
        finally:
            await db.close()
            await client.close()
        scraped = {i: await scrape_metrics(p) for i, p in cluster.metrics_ports.items()}

        async def probed() -> bool:
            # Each node pings every other coordinator once a second.
            for i, port in cluster.metrics_ports.items():
                s = await scrape_metrics(port)
                for peer in cluster.addresses:
                    if peer != i and not s.get(f'bedrock_peer_rtt_seconds_count{{peer="{peer}"}}'):
                        return False
            return True

        await eventually(probed, timeout=20, what="a round trip to every peer measured")

    leaders = [i for i, s in scraped.items() if s['bedrock_raft_role{role="leader"}'] == 1]
    assert leaders == [leader]
    for s in scraped.values():
        assert s["bedrock_raft_term"] == st["term"]
        assert s["bedrock_epoch"] == st["epoch"]
        assert s["bedrock_raft_applied_index"] > 0
        assert s["bedrock_raft_persist_seconds_count"] > 0, "fsyncs are timed"
        assert s['bedrock_worker_disk_bytes{kind="log"}'] > 0
        assert s['bedrock_worker_disk_bytes{kind="storage"}'] > 0
        assert s["bedrock_coordinator_disk_bytes"] > 0
    on_leader = scraped[leader]
    assert on_leader["bedrock_raft_proposals_total"] > 0
    # The Director runs on the leader, and so do its commit proxies.
    assert on_leader['bedrock_transactions_total{outcome="committed"}'] >= 20
    assert on_leader['bedrock_transaction_commit_seconds_count{outcome="committed"}'] >= 20
    assert total(on_leader, r'bedrock_recovery_phase_seconds\{phase="[a-z_]+"\}') > 0
    assert on_leader['bedrock_recovery_attempts{outcome="completed"}'] >= 1
