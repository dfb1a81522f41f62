"""The coordinator client's leader following, over a scripted fake of the
coordinators (no processes, no sockets): what it tries, and in what order."""

from __future__ import annotations

from bedrock_cp import protocol
from bedrock_cp.client import Client, resolve_cluster
from bedrock_cp.transport import ConnectionLost

A, B, C = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"


class Coordinators:
    """A is the old leader, dead (its port refuses); B and C still name it
    until ``elect_after`` pings have been answered, then B leads term 2."""

    def __init__(self, elect_after: int) -> None:
        self.elect_after = elect_after
        self.pings = 0
        self.writes: list[str] = []

    async def call(
        self,
        address: str,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        if address == A:
            if not isinstance(body, protocol.Ping):
                self.writes.append(address)
            raise ConnectionLost(f"{address} refused the connection")
        if isinstance(body, protocol.Ping):
            self.pings += 1
            node = 2 if address == B else 3
            if self.pings <= self.elect_after:
                return protocol.PingReply(node, 1, 0, 1, A, "follower")
            return protocol.PingReply(node, 2, 0, 2, B, "ready" if node == 2 else "follower")
        self.writes.append(address)
        if address != B:
            return protocol.NotLeader(2, B)
        return protocol.WriteOk(7, None)


async def test_a_leader_whose_connection_broke_is_skipped_while_its_peers_still_name_it() -> None:
    fake = Coordinators(elect_after=8)
    client = Client(resolve_cluster(f"{A},{B},{C}"))
    client.link.call = fake.call
    try:
        assert await client.register("svc", kind="log", address="x:1") == 7
    finally:
        await client.close()
    # One try at the dead leader; then discovery skips it (it answers no ping)
    # although B and C named it for several more rounds, and waits for B.
    assert fake.writes == [A, B], fake.writes
    assert fake.pings > 8, "the client kept looking while no live leader was named"
