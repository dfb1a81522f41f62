"""A client's concurrent writes share requests (``WriteBatch``), on real nodes.

What must hold: the writes of many tasks through one client go out as a few
requests, and each is still applied exactly once with its own answer; a batch
is authorized write by write and refused whole, before anything is proposed; a
retried batch is answered from the sessions, not applied again; a batch over
its bound is refused naming the bound.
"""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.client import Client, resolve_cluster
from bedrock_cp.client.client import client_credentials
from bedrock_cp.cluster import LocalCluster
from bedrock_cp.transport import RpcChannel, RpcPool

from .clusters import caller, eventually, leader_of, running

pytestmark = pytest.mark.slow


class CountingChannel:
    """The client's real TCP pool, counting the requests it sends by type."""

    def __init__(self, pool: RpcChannel) -> None:
        self.pool = pool
        self.sent: dict[str, int] = {}

    @property
    def cluster_id(self) -> str | None:
        return self.pool.cluster_id

    async def call(self, address: str, body: msgspec.Raw, timeout: float) -> msgspec.Raw:  # noqa: ASYNC109
        name = type(protocol.decode_request(bytes(body))).__name__
        self.sent[name] = self.sent.get(name, 0) + 1
        return await self.pool.call(address, body, timeout)

    async def connection(self, address: str) -> object:
        return await self.pool.connection(address)

    async def close(self) -> None:
        await self.pool.close()


async def test_write_batches() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    async with running(LocalCluster(3)) as cluster:
        cf = resolve_cluster(str(cluster.cluster_file))
        channel = CountingChannel(RpcPool(cluster.cluster, auth=client_credentials(cf)))
        client = Client(cf, channel=channel, rng=random.Random(rng.getrandbits(64)))
        app = caller(cluster, "client")
        try:
            await client.ping_any(5.0)
            await concurrent_writes_share_requests(client, channel)
            leader, _ = await leader_of(client)
            at = cluster.addresses[leader]
            await a_batch_is_refused_whole(client, app, at)
            await a_retried_batch_is_applied_once(client, app, at, rng)
            await an_oversized_batch_is_refused(client, app, at)
        finally:
            await app.close()
            await client.close()


async def concurrent_writes_share_requests(client: Client, channel: CountingChannel) -> None:
    writers = 64
    indexes = await asyncio.gather(
        *(client.register(f"mux-{w}", kind="log", address="127.0.0.1:9000") for w in range(writers))
    )
    assert len(set(indexes)) == writers  # each its own entry
    directory = {s.id: s for s in await client.services()}
    assert all(f"mux-{w}" in directory for w in range(writers))
    requests = channel.sent.get("Register", 0) + channel.sent.get("WriteBatch", 0)
    # One pass of the loop submits all 64: one batch (a retry may add one or two).
    assert requests <= 4, channel.sent
    # A write alone goes alone, as itself.
    before = dict(channel.sent)
    await client.deregister("mux-0")
    assert channel.sent.get("Deregister", 0) == before.get("Deregister", 0) + 1
    assert channel.sent.get("WriteBatch", 0) == before.get("WriteBatch", 0)
    # A rejected write fails its own caller only.
    results = await asyncio.gather(
        client.register("ok-1", kind="log", address="127.0.0.1:9000"),
        client.register("bad-1", kind="log", address="no port"),
        return_exceptions=True,
    )
    assert isinstance(results[0], int), results
    assert isinstance(results[1], Exception) and "not host:port" in str(results[1]), results


async def a_batch_is_refused_whole(client: Client, app: protocol.Caller, at: str) -> None:
    batch = protocol.WriteBatch(
        [
            protocol.Register("inscope", "log", "127.0.0.1:1", "", 11, 1),
            protocol.Register("outofscope", "log", "127.0.0.1:1", "1", 12, 1),
        ]
    )
    reply = await app.call(at, batch, 5.0)
    assert isinstance(reply, protocol.Unauthorized), reply
    assert reply.request == "WriteBatch"
    assert "its write 1 (Register)" in reply.reason and "'1'" in reply.reason, reply.reason
    ids = {s.id for s in await client.services()}
    # The write it could send was not proposed either.
    assert "inscope" not in ids and "outofscope" not in ids


async def a_retried_batch_is_applied_once(
    client: Client, app: protocol.Caller, at: str, rng: random.Random
) -> None:
    sessions = [rng.getrandbits(62) | 1 for _ in range(3)]
    batch = protocol.WriteBatch(
        [
            protocol.Register(f"once-{i}", "log", "127.0.0.1:1", "", s, 1)
            for i, s in enumerate(sessions)
        ]
        + [protocol.Deregister("once-0", sessions[0] + 2, 1)]
    )
    first = await app.call(at, batch, 5.0)
    assert isinstance(first, protocol.WriteResults), first
    assert all(isinstance(r, protocol.WriteOk) for r in first.results), first
    index = max(r.index for r in first.results if isinstance(r, protocol.WriteOk))
    again = await app.call(at, batch, 5.0)
    assert again == first  # the first answers, from the sessions
    ids = {s.id for s in await client.services()}
    assert {"once-1", "once-2"} <= ids and "once-0" not in ids
    # Registering once-0 again after the deregistration would have brought it back.

    async def applied_everywhere() -> bool:
        st = await client.status()
        return all(n["applied_index"] >= index for n in st["nodes"] if n["reachable"])

    # Every node applies it: a follower learns the commit with the next append
    # (awaited, not assumed at once).
    await eventually(applied_everywhere, what=f"every reachable node applied index {index}")


async def an_oversized_batch_is_refused(client: Client, app: protocol.Caller, at: str) -> None:
    too_many = protocol.MAX_BATCH_WRITES + 1
    batch = protocol.WriteBatch([protocol.Deregister(f"x-{i}") for i in range(too_many)])
    reply = await app.call(at, batch, 5.0)
    assert isinstance(reply, protocol.Rejected), reply
    assert f"length <= {protocol.MAX_BATCH_WRITES}" in reply.reason, reply.reason
