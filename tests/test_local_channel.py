"""Calls a node makes to itself are served in-process, authorized as the node.

The leader's node runs the Director, the sequencer, the proxies and a log:
most calls of a commit go from that node to itself. They must not pay a TLS
round trip through the node's own listener, and they must still go through
the same authorization and deadline as a call from outside.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.auth import AuthConfig
from bedrock_cp.client import open_database
from bedrock_cp.cluster import free_ports
from bedrock_cp.node import Node, NodeConfig
from bedrock_cp.transport import RpcPool
from tests.clusters import eventually


def _single_node(tmp_path: Path) -> NodeConfig:
    (address,) = (f"127.0.0.1:{p}" for p in free_ports(1))
    return NodeConfig(
        id=1,
        data_dir=str(tmp_path / "n1"),
        listen=address,
        coordinators={"1": address},
        fsync=False,
        capabilities=["log", "storage"],
        auth=AuthConfig(mode="none"),
    )


async def _committed(db: object) -> None:
    async for tr in db.attempts():  # type: ignore[attr-defined]
        async with tr:
            await tr.read_version()
            tr.set(b"k", b"v")


async def test_a_commit_on_one_node_never_dials_that_node(tmp_path: Path) -> None:
    config = _single_node(tmp_path)
    node = await Node.start(config)
    try:
        db = await open_database(config.listen)
        try:
            await asyncio.wait_for(_committed(db), 30)
        finally:
            await db.close()
        channel = node.local_channel
        assert channel is not None
        # The proxy asked the sequencer, the resolver and the log on this node.
        assert channel.local_calls > 0
        remote = channel.remote
        assert isinstance(remote, RpcPool)
        assert config.listen not in remote._conns, "a call to this node went through its listener"
    finally:
        await node.stop()


async def test_local_calls_are_authorized_as_the_node_and_bounded_by_their_deadline(
    tmp_path: Path,
) -> None:
    config = _single_node(tmp_path)
    node = await Node.start(config)
    try:
        channel = node.local_channel
        assert channel is not None
        # A request that does not decode is refused the same way as over the wire.
        raw = await channel.call(config.listen, msgspec.Raw(b"\xc1"), 1.0)
        assert isinstance(protocol.decode_response(bytes(raw)), protocol.Rejected)
        # A node is no admin, whatever the listener's mode would let through.
        admin_only = msgspec.Raw(protocol.encode(protocol.RemoveCoordinator(1)))
        raw = await channel.call(config.listen, admin_only, 1.0)
        assert isinstance(protocol.decode_response(bytes(raw)), protocol.Unauthorized)
        # A long poll with a deadline shorter than its wait ends at the deadline.
        await eventually(lambda: _has_layout(node), what="the first layout")
        epoch = node.gateway.layout_reply().epoch if node.gateway else 0
        body = msgspec.Raw(protocol.encode(protocol.GetLayout(epoch, 5_000)))
        with pytest.raises(TimeoutError):
            await channel.call(config.listen, body, 0.05)
    finally:
        await node.stop()


async def _has_layout(node: Node) -> bool:
    return node.gateway is not None and node.gateway.current_layout() is not None
