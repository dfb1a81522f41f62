"""Partitions (through a fault-injecting proxy), membership changes under load,
and hostile input to a node's port — all against real node processes."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.client import ClusterUnavailable, RequestRejected
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.wire import PROTOCOL_VERSION, Hello, Request, Response, encode

from .clusters import direct_client, eventually, leader_of, running
from .faultproxy import FaultProxy, Link, fault_proxy

pytestmark = pytest.mark.slow


def _proxied_cluster(
    proxy: FaultProxy, n: int = 3
) -> tuple[LocalCluster, dict[tuple[int, int], Link]]:
    """A cluster whose node-to-node traffic goes through one proxy link per direction."""
    cluster = LocalCluster(n)
    links: dict[tuple[int, int], Link] = {}
    for a in cluster.addresses:
        for b, address in cluster.addresses.items():
            if a != b:
                host, port = address.rsplit(":", 1)
                links[(a, b)] = proxy.link((host, int(port)))
    cluster.peer_address = lambda a, b, real: links[(a, b)].address
    return cluster, links


def _isolate(links: dict[tuple[int, int], Link], node: int, mode: str) -> None:
    for (a, b), link in links.items():
        if node in (a, b):
            link.set_mode(mode)  # type: ignore[arg-type]


async def test_minority_side_of_a_partition_cannot_commit() -> None:
    with fault_proxy() as proxy:
        cluster, links = _proxied_cluster(proxy)
        async with running(cluster):
            client = await cluster.client(request_timeout=10.0)
            try:
                acked = []
                for i in range(5):
                    await client.register(f"p{i}", kind="log", address="127.0.0.1:1")
                    acked.append(f"p{i}")
                old, _ = await leader_of(client)
                # A partition without a reset: bytes vanish, connections stay open.
                _isolate(links, old, "blackhole")

                minority = direct_client(cluster, cluster.addresses[old], request_timeout=1.5)
                try:
                    with pytest.raises((ClusterUnavailable, RequestRejected)):
                        await minority.register("minority", kind="log", address="127.0.0.1:2")
                finally:
                    await minority.close()

                await client.register("majority", kind="log", address="127.0.0.1:3")
                acked.append("majority")
                new, _ = await leader_of(client)
                assert new != old

                _isolate(links, old, "pass")

                async def healed() -> bool:
                    st = await direct_client(cluster, cluster.addresses[old]).status()
                    me = next(x for x in st["nodes"] if x["id"] == old)
                    return bool(me["leader"] == new and me["role"] == "follower")

                await eventually(healed, timeout=15, what="old leader rejoined as follower")
                ids = {s.id for s in await client.services()}
                assert set(acked) <= ids
                assert "minority" not in ids, "a write on the minority side committed"
            finally:
                await client.close()


async def test_add_two_coordinators_under_load_then_remove_the_leader() -> None:
    async with running(LocalCluster(3)) as cluster:
        client = await cluster.client(request_timeout=20.0)
        acked: list[str] = []
        stop = asyncio.Event()

        async def load() -> None:
            i = 0
            while not stop.is_set():
                await client.register(f"load-{i}", kind="log", address="127.0.0.1:1")
                acked.append(f"load-{i}")
                i += 1

        loader = asyncio.create_task(load())
        try:
            for _ in range(2):
                node_id = cluster.add_node()
                await client.add_coordinator(node_id, cluster.addresses[node_id])

            async def five_follow_one_leader() -> bool:
                st = await client.status()
                following = {n["id"] for n in st["nodes"] if n["reachable"] and n["leader"]}
                leaders = {n["leader"] for n in st["nodes"] if n["reachable"]}
                return following == {1, 2, 3, 4, 5} and len(leaders) == 1

            await eventually(five_follow_one_leader, timeout=15, what="5 coordinators")

            leader, _ = await leader_of(client)
            await client.remove_coordinator(leader)
            new_leader, _ = await leader_of(client)
            assert new_leader != leader
            # The load keeps committing across the change: 20 more writes.
            target = len(acked) + 20

            async def load_went_on() -> bool:
                return len(acked) >= target

            await eventually(load_went_on, what="20 more writes after the removal")
        finally:
            stop.set()
            await loader
        try:
            assert len(acked) > 20, "the load did not run"
            ids = {s.id for s in await client.services()}
            missing = [x for x in acked if x not in ids]
            assert not missing, f"acknowledged writes lost: {missing[:5]}"

            async def voters_settled() -> bool:
                st = await direct_client(cluster, cluster.addresses[new_leader]).status()
                me = next(x for x in st["nodes"] if x["id"] == new_leader)
                return bool(me["role"] == "leader")

            await eventually(voters_settled)
            # The removed node no longer counts: the 4 others still commit.
            cluster.kill(leader)
            await client.register("after-removal", kind="log", address="127.0.0.1:9")
        finally:
            await client.close()


def _raw_send(address: str, payload: bytes) -> bytes:
    """Send bytes to a node's port; return what it answered until it closed."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


async def test_hostile_input_closes_only_that_connection() -> None:
    # The shared-secret mode: frames travel in the clear, so hostile bytes reach
    # the framing (under TLS they fail the TLS layer first).
    async with running(LocalCluster(3, auth="secret")) as cluster:
        client = await cluster.client()
        try:
            target_id = 1
            target = cluster.addresses[target_id]
            hello = encode(Hello(PROTOCOL_VERSION, "bedrock", 0, "client"))
            wrong_cluster = encode(Hello(PROTOCOL_VERSION, "other-cluster", 0, "client"))
            unexpected = encode(Response(1, msgspec.Raw(protocol.encode(protocol.Ping()))))
            cases = {
                "random bytes": os.urandom(4096),
                "2**31 length prefix": struct.pack("<I", 2**31) + b"x" * 64,
                "wrong cluster id": wrong_cluster,
                "truncated frame": hello[: len(hello) - 3],
                "unexpected frame type": unexpected,
            }
            loop = asyncio.get_running_loop()
            for what, payload in cases.items():
                answer = await loop.run_in_executor(None, _raw_send, target, payload)
                if what == "wrong cluster id":
                    assert b"other-cluster" in answer, "the refusal names the cluster id"
                # The node still serves: a real request through it succeeds.
                one = direct_client(cluster, target)
                try:
                    pong = await one.ping_any(2.0)
                finally:
                    await one.close()
                assert pong.node_id == target_id, what
            await client.register("still-fine", kind="log", address="127.0.0.1:1")
            log = cluster.log_path(target_id).read_text()
            for reason in ("cluster id 'other-cluster'", "exceeds", "expected Hello, got Response"):
                assert reason in log, f"no logged reason containing {reason!r}"
            assert cluster.alive(target_id)
        finally:
            await client.close()


async def test_a_request_with_a_bad_body_gets_a_rejection_not_a_crash() -> None:
    async with running(LocalCluster(1)) as cluster:
        from bedrock_cp.client.client import client_credentials
        from bedrock_cp.transport import RpcClient

        rpc = await RpcClient.connect(
            cluster.addresses[1], "bedrock", auth=client_credentials(cluster.client_cluster_file())
        )
        try:
            raw = await rpc.call(msgspec.Raw(msgspec.msgpack.encode(["nonsense", 1, 2])), 2.0)
            reply = protocol.decode_response(bytes(raw))
            assert isinstance(reply, protocol.Rejected)
            assert "bad request" in reply.reason
        finally:
            await rpc.close()
        assert cluster.alive(1)
        _ = Request  # the frame type carrying that body
