"""The Director host on a real (single, in-process) node: one Director per epoch."""

from __future__ import annotations

from pathlib import Path

from bedrock_cp.client import connect
from bedrock_cp.director.host import DirectorHost
from bedrock_cp.node import Node
from bedrock_cp.transport import Backoff
from tests.clusters import eventually, single_node


async def test_an_epoch_that_went_live_is_followed_at_once_whatever_the_backoff(
    tmp_path: Path,
) -> None:
    """The backoff between epochs is for epochs that keep failing; one that went
    live and then ended (a component died, a fuller layout became possible) is
    followed by the next at once: clients are waiting for it."""
    node = await Node.start(single_node(tmp_path))
    try:
        host = node.recovery
        assert host is not None and node.foreman is not None
        host.backoff = Backoff(30.0, 30.0, host.rng)  # a wait no test would sit out

        async def live_epoch() -> int | None:
            st = host.status_dict()
            return int(st["epoch"]) if st["state"] == "running" else None

        epoch = await eventually(live_epoch, what="a live epoch")
        director = host.director
        assert director is not None and director.layout is not None
        # A role of the live epoch dies: its Director ends.
        await node.foreman.remove(director.layout.proxies[0].id)

        async def next_live() -> bool:
            later = await live_epoch()
            return later is not None and later > epoch

        await eventually(next_live, timeout=10, what="the next epoch live")
    finally:
        await node.stop()


async def test_a_node_vouches_for_a_peer_it_hears_until_the_peer_s_connections_break(
    tmp_path: Path,
) -> None:
    """What the Director's watch learns from the node: when Raft traffic last
    came from each peer (never from itself), forgotten once the peer's
    connections broke (a dead process's are reset at once)."""
    node = Node(single_node(tmp_path))
    assert node.last_heard("2") is None
    node._on_raft(2, [])
    heard = node.last_heard("2")
    assert heard is not None
    assert node.last_heard("1") is None and node.last_heard("3") is None
    node._on_raft(1, [])  # not a peer of itself, whatever arrives
    assert node.last_heard("1") is None
    node._on_peer_lost(2)
    assert node.last_heard("2") is None


async def test_the_epoch_after_a_peer_went_quiet_starts_with_that_peer_silent(
    tmp_path: Path,
) -> None:
    """Found in the availability bench: after a SIGSTOP of the leader, the new
    leader's first recovery waited the straggler grace (50 ms) in lock_logs for
    the stopped node's log: the silent set of the epoch that ended lived in
    the old leader's host. A node whose Raft traffic stopped two heartbeat
    intervals ago is silent for the next Director too."""
    node = await Node.start(single_node(tmp_path))
    try:
        host = node.recovery
        assert host is not None and node.foreman is not None

        async def live_epoch() -> int | None:
            st = host.status_dict()
            return int(st["epoch"]) if st["state"] == "running" else None

        epoch = await eventually(live_epoch, what="a live epoch")
        node._on_raft(2, [])  # a peer heard from once, a second ago
        node._heard[2] -= 1.0
        node._on_raft(3, [])  # and one heard just now: kept "just now" for a
        # minute, however late the next epoch starts on a loaded machine (seen
        # in CI: heard once, it had gone quiet too by then: silent {2, 3})
        node._heard[3] += 60.0
        director = host.director
        assert director is not None and director.layout is not None
        await node.foreman.remove(director.layout.proxies[0].id)

        async def next_director() -> bool:
            later = host.director
            return later is not None and later is not director and later.ctx.epoch > epoch

        await eventually(next_director, timeout=10, what="the next epoch's Director")
        assert host.director is not None
        assert host.director.silent_at_start == {"2"}
    finally:
        await node.stop()


async def test_services_a_client_registers_do_not_wake_the_director(tmp_path: Path) -> None:
    """Found profiling one client's directory writes: every Register woke the
    Director, whose look for a better layout and sweep of retired workers then
    called every node (the leader spent ~1.1 ms of CPU per write, the
    followers ~0.6 ms each). The Director reads node records and the services
    bound to a node; a service registered without a node changes neither."""
    config = single_node(tmp_path)
    node = await Node.start(config)
    client = await connect(config.listen)
    try:
        host = node.recovery
        coordinator = node.coordinator
        assert host is not None and coordinator is not None

        async def live() -> bool:
            return host.status_dict()["state"] == "running"

        await eventually(live, what="a live epoch")
        woken: list[int] = []
        coordinator.epoch_listener = _Counting(host, woken)
        for i in range(20):
            await client.register(f"svc-{i}", kind="cache", address="127.0.0.1:9000")
        await client.deregister("svc-0")
        assert woken == []
        # What the Director does read still wakes it: a service bound to a node.
        await client.register("bound", kind="storage", address="127.0.0.1:9001", node="1")
        assert woken == [1]
    finally:
        await client.close()
        await node.stop()


class _Counting:
    """The node's epoch listener, counting the directory changes it is told of."""

    def __init__(self, host: DirectorHost, woken: list[int]) -> None:
        self.host, self.woken = host, woken

    def epoch_begun(self, epoch: int) -> None:
        self.host.epoch_begun(epoch)

    def leadership_lost(self) -> None:
        self.host.leadership_lost()

    def directory_changed(self) -> None:
        self.woken.append(1)
        self.host.directory_changed()
