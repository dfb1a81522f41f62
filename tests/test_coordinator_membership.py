"""Membership requests answered by a coordinator that is not the leader."""

from __future__ import annotations

from pathlib import Path

from bedrock_cp import protocol
from bedrock_cp.auth import AuthConfig
from bedrock_cp.cluster import free_ports
from bedrock_cp.node import Node, NodeConfig


async def test_a_follower_refers_membership_changes_to_the_leader(tmp_path: Path) -> None:
    # A node started to join a cluster knows no voters yet. It used to answer a
    # removal it had not made with WriteOk (and, seeing a single voter, refuse
    # with "the only coordinator"): only the leader's view of the membership counts.
    mine, other = (f"127.0.0.1:{p}" for p in free_ports(2))
    config = NodeConfig(
        id=4,
        data_dir=str(tmp_path / "n4"),
        listen=mine,
        coordinators={"1": other, "4": mine},
        join=True,
        fsync=False,
        capabilities=[],
        auth=AuthConfig(mode="none"),
    )
    node = await Node.start(config)
    try:
        for body in (protocol.RemoveCoordinator(1), protocol.RemoveCoordinator(4)):
            reply = await node.handle(body)
            assert isinstance(reply, protocol.NotLeader), reply
    finally:
        await node.stop()
