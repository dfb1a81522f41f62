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
from bedrock_cp.client import Client, RequestRejected
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.protocol import Caller, GetLayout, Layout, WorkerRef, encode_layout

from .clusters import direct_client, eventually, leader_of, running

pytestmark = pytest.mark.slow


async def get_layout(address: str) -> protocol.LayoutReply:
    """Ask the node at ``address`` (not the leader) for its Gateway's layout."""
    one = direct_client(address)
    try:
        reply = await one._call(address, GetLayout(), 1.0)
    finally:
        await one.close()
    assert isinstance(reply, protocol.LayoutReply), reply
    return reply


async def data_call(address: str, body: protocol.Request) -> protocol.Response:
    caller = Caller("bedrock")
    try:
        return await caller.call(address, body, 1.0)
    finally:
        await caller.close()


async def store(client: Client, recovery_version: int) -> tuple[int, bytes]:
    """Store a layout at the cluster's current epoch (as a Director would)."""

    async def attempt() -> tuple[int, bytes] | None:
        epoch = (await client.status())["epoch"]
        seq = WorkerRef(f"seq-{epoch}", "sequencer", "1", "127.0.0.1:1")
        raw = encode_layout(Layout(epoch, recovery_version, seq, [], [], [], []))
        try:
            await client.store_layout(epoch, raw)
        except RequestRejected:  # the epoch moved on between status and store
            return None
        return epoch, raw

    return await eventually(attempt, what="a stored layout")


async def layout_everywhere(
    cluster: LocalCluster, nodes: list[int], epoch: int, raw: bytes, leader: int | None = None
) -> None:
    async def check() -> bool:
        for node_id in nodes:
            reply = await get_layout(cluster.addresses[node_id])
            if (reply.epoch, reply.layout) != (epoch, raw):
                return False
            if leader is not None and reply.leader_id != leader:
                return False
        return True

    await eventually(check, timeout=5, what=f"layout of epoch {epoch} on nodes {nodes}")


async def test_gateways_register_and_receive_the_layout() -> None:
    async with running(LocalCluster(3, capabilities=())) as cluster:
        client = await cluster.client()
        try:

            async def all_registered() -> list[protocol.NodeRecord] | None:
                nodes = await client.nodes()
                return nodes if [n.node for n in nodes] == ["1", "2", "3"] else None

            nodes = await eventually(all_registered, what="every node registered")
            assert {n.address for n in nodes} == set(cluster.addresses.values())
            assert all(n.capabilities == [] for n in nodes), "no worker kinds configured"

            for node_id in cluster.addresses:
                reply = await get_layout(cluster.addresses[node_id])
                assert reply.epoch == 0 and reply.layout is None

            loop = asyncio.get_running_loop()
            epoch, raw = await store(client, recovery_version=1000)
            started = loop.time()
            await layout_everywhere(cluster, list(cluster.addresses), epoch, raw)
            assert loop.time() - started < 2.0, "the layout is pushed, not polled slowly"

            with pytest.raises(RequestRejected, match=f"but the current epoch is {epoch}"):
                await client.store_layout(epoch - 1, raw)

            # Only the leader answers layout watches.
            leader, _ = await leader_of(client)
            follower = next(i for i in cluster.addresses if i != leader)
            one = direct_client(cluster.addresses[follower])
            try:
                body = protocol.WatchLayout(0, 100)
                watch = await one._call(cluster.addresses[follower], body, 1.0)
            finally:
                await one.close()
            assert isinstance(watch, protocol.NotLeader) and watch.leader_id == leader

            # The node routes data-plane bodies: Foreman requests, and workers by id.
            address = cluster.addresses[follower]
            assert await data_call(address, protocol.ListWorkers()) == protocol.Workers([])
            missing = await data_call(address, protocol.StorageStatus("nope"))
            assert isinstance(missing, protocol.Failed) and missing.code == "no_such_worker"
            refused = await data_call(address, protocol.CreateWorker("log", "log-1"))
            assert isinstance(refused, protocol.Failed) and "does not offer" in refused.message
        finally:
            await client.close()


async def test_gateways_follow_a_new_leader_after_kill_9() -> None:
    async with running(LocalCluster(3, capabilities=())) as cluster:
        client = await cluster.client()
        try:
            epoch, raw = await store(client, recovery_version=1)
            await layout_everywhere(cluster, list(cluster.addresses), epoch, raw)
            old, _ = await leader_of(client)
            before = {n.node: n.registered_index for n in await client.nodes()}

            cluster.kill(old, signal.SIGKILL)
            new, _ = await leader_of(client)
            assert new != old
            survivors = [i for i in cluster.addresses if i != old]

            async def reregistered() -> bool:
                now = {n.node: n.registered_index for n in await client.nodes()}
                return all(now[str(i)] > max(before.values()) for i in survivors)

            await eventually(reregistered, what="survivors re-registered with the new leader")
            # Same layout, now followed through the new leader.
            await layout_everywhere(cluster, survivors, epoch, raw, leader=new)

            # The new leader began a newer epoch: the old one is fenced off.
            with pytest.raises(RequestRejected, match="layout is for epoch"):
                await client.store_layout(epoch, raw)

            # A corrupt layout (stored at the new epoch) is reported and not applied:
            # every gateway keeps serving the last valid one.
            async def store_garbage() -> bool:
                try:
                    await client.store_layout((await client.status())["epoch"], b"\x93garbage")
                except RequestRejected:
                    return False
                return True

            await eventually(store_garbage, what="garbage stored")

            async def reported() -> bool:
                return all(
                    "is corrupt and was not applied" in cluster.log_path(i).read_text()
                    for i in survivors
                )

            await eventually(reported, timeout=5, what="corrupt layout reported")
            for i in survivors:
                assert (await get_layout(cluster.addresses[i])).layout == raw
        finally:
            await client.close()
