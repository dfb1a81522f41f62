"""A FIXED transaction-system layout wired by hand, for data-plane tests only.

Until the Director exists (a later issue), this creates the workers through
the nodes' Foremen, starts the roles of the current epoch on one node, unlocks
the proxy and stores the layout through the coordinators, so the data plane
can be tested end to end. It is NOT a recovery path: it never locks old logs,
never replays, and is used nowhere outside tests and benches.
"""

from __future__ import annotations

import asyncio
import os

from bedrock_cp.client import Client, ClusterFile
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.dataplane import api as dp
from bedrock_cp.dataplane.dialer import NetworkDialer
from bedrock_cp.dataplane.types import (
    Layout,
    ResolverAssignment,
    StorageTeam,
    WorkerRef,
    encode_layout,
)


async def wire_fixed_layout(cluster: LocalCluster, client: Client) -> Layout:
    """Logs and storage on every node, roles on the lowest node; store; wait for gateways."""
    dialer = NetworkDialer(cluster.cluster)
    try:
        nodes = sorted(cluster.addresses)
        logs: list[WorkerRef] = []
        storage: list[WorkerRef] = []
        for n in nodes:
            node_ref = WorkerRef("", "node", str(n), cluster.addresses[n])
            for kind, out in (("log", logs), ("storage", storage)):
                reply = await dialer.call(node_ref, dp.CreateWorker(kind, f"{kind}-{n}"), 5.0)
                assert isinstance(reply, dp.WorkerCreated), reply
                out.append(reply.ref)
        epoch = (await client.ping_any(2.0)).epoch
        assert epoch >= 1, "the leader has not begun an epoch yet"
        home = str(nodes[0])
        address = cluster.addresses[nodes[0]]
        sequencer = WorkerRef(f"sequencer-e{epoch}", "sequencer", home, address)
        proxy = WorkerRef(f"proxy-e{epoch}", "commit_proxy", home, address)
        resolver = WorkerRef(f"resolver-e{epoch}", "resolver", home, address)
        layout = Layout(
            epoch=epoch,
            recovery_version=0,
            sequencer=sequencer,
            proxies=[proxy],
            resolvers=[ResolverAssignment(b"", b"\xff", resolver)],
            logs=logs,
            storage=[StorageTeam(b"", b"\xff", storage)],
        )
        encoded = encode_layout(layout)
        token = os.urandom(16)
        for ref in (sequencer, resolver, proxy):
            reply = await dialer.call(
                ref, dp.StartRole(ref.kind, ref.id, epoch, 0, encoded, token), 5.0
            )
            assert isinstance(reply, dp.WorkerCreated), reply
        reply = await dialer.call(proxy, dp.UnlockProxy(proxy.id, epoch, token), 5.0)
        assert isinstance(reply, dp.Done), reply
        await client.store_layout(epoch, encoded)
        for n in nodes:  # every node's gateway has it (bounded: ~10 s each)
            one = Client(ClusterFile(cluster=cluster.cluster, coordinators=[cluster.addresses[n]]))
            try:
                for _ in range(500):
                    fetched = await one.fetch_layout()
                    if fetched is not None and fetched.epoch == epoch:
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError(f"the stored layout never reached node {n}")
            finally:
                await one.close()
        return layout
    finally:
        await dialer.close()
