"""Calls a node makes to itself are served in-process, authorized as the node.

The leader's node runs the Director, the sequencer, the proxies and a log:
most calls of a commit go from that node to itself. They must not pay a TLS
round trip through the node's own listener, and they must still go through
the same authorization and deadline as a call from outside.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import msgspec
import pytest

from bedrock_cp import protocol
from bedrock_cp.client import open_database
from bedrock_cp.node import Node
from bedrock_cp.node.local_channel import Handler, LocalFirstChannel
from bedrock_cp.transport import ConnInfo, RpcChannel, RpcPool
from bedrock_cp.wire import Request
from tests.clusters import eventually, single_node


async def _committed(db: object) -> None:
    async for tr in db.attempts():  # type: ignore[attr-defined]
        async with tr:
            await tr.read_version()
            tr.set(b"k", b"v")


async def test_a_commit_on_one_node_never_dials_that_node(tmp_path: Path) -> None:
    config = single_node(tmp_path)
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
    config = single_node(tmp_path)
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


def _channel(handler: Handler) -> LocalFirstChannel:
    # Only calls to its own address: the remote channel is never used.
    return LocalFirstChannel(cast(RpcChannel, None), "127.0.0.1:1", 1, handler)


async def test_a_caller_that_gives_up_does_not_cancel_the_local_handler() -> None:
    """As behind the listener: an abandoned answer leaves the handler running
    (a log's lock or push is not cut halfway through what it persists)."""
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(request: Request, info: ConnInfo) -> msgspec.Raw:
        started.set()
        await release.wait()
        finished.set()
        return msgspec.Raw(b"\x90")

    channel = _channel(handler)
    call = asyncio.ensure_future(channel.call("127.0.0.1:1", msgspec.Raw(b"\x90"), 5.0))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()  # the handler goes on after its caller gave up
    async with asyncio.timeout(5):
        await finished.wait()


async def test_a_local_deadline_cancels_the_handler_not_the_caller() -> None:
    cancelled = asyncio.Event()

    async def handler(request: Request, info: ConnInfo) -> msgspec.Raw:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return msgspec.Raw(b"\x90")

    channel = _channel(handler)
    with pytest.raises(TimeoutError):
        await channel.call("127.0.0.1:1", msgspec.Raw(b"\x90"), 0.02)
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # nothing left to uncancel here
