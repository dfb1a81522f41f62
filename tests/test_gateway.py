"""Gateways on real node processes: registration, layout push, leader failover.

Every node runs a Gateway: it registers its node with the leader, long-polls the
layout and serves it to local clients (``GetLayout``), and follows the leader
when it dies.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from bedrock_cp import protocol
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import GetLayout, decode_layout

from .clusters import direct_client, eventually, leader_of, node_caller, recovered, running

pytestmark = pytest.mark.slow


async def get_layout(cluster: LocalCluster, address: str) -> protocol.LayoutReply:
    """Ask the node at ``address`` (not the leader) for its Gateway's layout."""
    one = direct_client(cluster, address)
    try:
        reply = await one._call(address, GetLayout(), 1.0)
    finally:
        await one.close()
    assert isinstance(reply, protocol.LayoutReply), reply
    return reply


async def node_call(
    cluster: LocalCluster, node_id: int, body: protocol.Request
) -> protocol.Response:
    """Call node ``node_id``'s own address with node ``node_id``'s credentials."""
    caller = node_caller(cluster, node_id)
    try:
        return await caller.call(cluster.addresses[node_id], body, 1.0)
    finally:
        await caller.close()


async def layout_everywhere(
    cluster: LocalCluster, nodes: list[int], epoch: int, leader: int | None = None
) -> bytes:
    """Wait until every node's Gateway holds the same layout of ``epoch``; return it."""

    async def check() -> bytes | None:
        seen = set()
        for node_id in nodes:
            reply = await get_layout(cluster, cluster.addresses[node_id])
            if reply.epoch != epoch or reply.layout is None:
                return None
            if leader is not None and reply.leader_id != leader:
                return None
            seen.add(reply.layout)
        return seen.pop() if len(seen) == 1 else None

    return await eventually(check, timeout=10, what=f"layout of epoch {epoch} on nodes {nodes}")


async def test_gateways_register_and_receive_the_layout() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:

            async def all_registered() -> list[protocol.NodeRecord] | None:
                nodes = await client.nodes()
                return nodes if [n.node for n in nodes] == ["1", "2", "3"] else None

            nodes = await eventually(all_registered, what="every node registered")
            assert {n.address for n in nodes} == set(cluster.addresses.values())
            assert all(n.capabilities == ["log", "storage"] for n in nodes)

            # The Director stores its layout; every Gateway gets it pushed.
            epoch = int((await recovered(client))["recovery"]["epoch"])
            raw = await layout_everywhere(cluster, list(cluster.addresses), epoch)
            assert decode_layout(raw).epoch == epoch

            # Only the leader answers layout watches.
            leader, _ = await leader_of(client)
            follower = next(i for i in cluster.addresses if i != leader)
            one = direct_client(cluster, cluster.addresses[follower])
            try:
                body = protocol.WatchLayout(0, 100)
                watch = await one._call(cluster.addresses[follower], body, 1.0)
            finally:
                await one.close()
            assert isinstance(watch, protocol.NotLeader) and watch.leader_id == leader

            # The node routes data-plane bodies: Foreman requests, and workers by id.
            listed = await node_call(cluster, follower, protocol.ListWorkers())
            assert isinstance(listed, protocol.Workers) and listed.workers
            missing = await node_call(cluster, follower, protocol.StorageStatus("nope"))
            assert isinstance(missing, protocol.Failed) and missing.code == "no_such_worker"
            # A Director request for an epoch gone by: the sender is superseded.
            stale = await node_call(cluster, follower, protocol.CreateWorker("log", "x", epoch - 1))
            assert stale == protocol.NewerEpoch(epoch)
        finally:
            await client.close()


async def test_gateways_follow_a_new_leader_after_kill_9() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client()
        try:
            epoch = int((await recovered(client))["recovery"]["epoch"])
            await layout_everywhere(cluster, list(cluster.addresses), epoch)
            old, _ = await leader_of(client)
            before = {n.node: n.registered_index for n in await client.nodes()}
            # A long poll for the next epoch's layout, parked at a node that survives.
            survivor = next(i for i in cluster.addresses if i != old)
            at = cluster.addresses[survivor]
            held = direct_client(cluster, at)
            assert (await held._call(at, GetLayout(epoch - 1, 5000), 6.0)).epoch == epoch
            quiet = await held._call(at, GetLayout(epoch, 100), 6.0)
            assert isinstance(quiet, protocol.LayoutReply) and quiet.epoch == epoch
            # Longer than any recovery here: it must end with the new layout, not its timeout.
            parked = asyncio.ensure_future(held._call(at, GetLayout(epoch, 5000), 10.0))

            cluster.kill(old, signal.SIGKILL)
            new, _ = await leader_of(client)
            assert new != old
            survivors = [i for i in cluster.addresses if i != old]

            async def reregistered() -> bool:
                now = {n.node: n.registered_index for n in await client.nodes()}
                return all(now[str(i)] > max(before.values()) for i in survivors)

            await eventually(reregistered, what="survivors re-registered with the new leader")
            # The new leader's Director stores a newer layout; followed through it.
            newer = int((await recovered(client, newer_than=epoch))["recovery"]["epoch"])
            await layout_everywhere(cluster, survivors, newer, leader=new)
            # The survivor's Gateway holds it: the parked poll has its answer already
            # (a Gateway that sat out its wait would still be holding it).
            answer = await asyncio.wait_for(asyncio.shield(parked), 3.0)
            assert isinstance(answer, protocol.LayoutReply) and answer.epoch > epoch, answer
            await held.close()
        finally:
            await client.close()
