"""The asyncio RaftRunner over the native Consensus: compaction by bytes, and
a follower catching up from a snapshot four times the transport's frame cap,
through real TCP transports on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import msgspec

from bedrock_cp.auth import AcceptorAuth
from bedrock_cp.auth.credentials import NO_AUTH
from bedrock_cp.raft.runner import RaftRunner
from bedrock_cp.transport import ConnInfo, Transport
from bedrock_cp.wire import MAX_FRAME, Request
from bedrock_cp_native import Consensus, Entry, Snapshot, WalFatalError

CLUSTER = "runner-test"


class BlobHost:
    """A state machine of applied payloads; its snapshots carry `padding` extra bytes."""

    def __init__(self, padding: int = 0) -> None:
        self.applied: dict[int, bytes] = {}
        self.applied_index = 0
        self.restored: list[int] = []
        self.padding = padding
        self.send: Callable[[int, bytes], None] = lambda to, data: None

    def send_raft(self, to: int, data: bytes) -> None:
        self.send(to, data)

    def apply(self, entry: Entry) -> None:
        self.applied_index = entry.index
        if entry.kind == "normal" and entry.data:
            self.applied[entry.index] = entry.data

    def restore(self, snapshot: Snapshot) -> None:
        index, applied = msgspec.msgpack.decode(snapshot.data[: len(snapshot.data) - self.padding])
        assert index == snapshot.index
        self.applied = {int(k): v for k, v in applied.items()}
        self.applied_index = snapshot.index
        self.restored.append(snapshot.index)

    def on_read_state(self, index: int, ctx: bytes) -> None:
        pass

    def on_soft_state(self, leader_id: int, role: str) -> None:
        pass

    def snapshot_data(self) -> bytes:
        return msgspec.msgpack.encode((self.applied_index, self.applied)) + bytes(self.padding)


async def _until(cond: Callable[[], bool], what: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_compaction_is_triggered_by_bytes_as_well_as_by_count(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, CLUSTER, 1, [1], sync=False)
    host = BlobHost()
    runner = RaftRunner(
        c, host, tick_interval=0.005, compact_every=1_000_000, compact_bytes=4 << 20
    )
    runner.start()
    try:
        await _until(lambda: c.role == "leader", "leadership")
        last = 0
        for i in range(6):
            last = runner.propose(bytes([i]) * (1 << 20))
        await _until(lambda: host.applied_index >= last, "the writes to apply")
        await _until(lambda: runner.snapshot_index > 0, "a compaction")
        assert c.status()["first_index"] == runner.snapshot_index + 1
        assert runner.bytes_since_snapshot < 4 << 20
    finally:
        await runner.stop()
        c.close()


async def test_a_compaction_waits_for_half_the_last_snapshots_size(tmp_path: Path) -> None:
    """``compact_every`` entries are not enough once the state is large: the
    entries applied since the last snapshot must also reach half its size
    (each compaction encodes the whole state; at a fixed count a large state
    was encoded again every few thousand writes)."""
    c = Consensus.open(tmp_path, CLUSTER, 1, [1], sync=False)
    host = BlobHost(padding=256 << 10)  # every snapshot: 256 KiB and more
    runner = RaftRunner(c, host, tick_interval=0.005, compact_every=10)
    runner.start()

    async def write(n: int, size: int) -> None:
        last = 0
        for _ in range(n):
            last = runner.propose(b"x" * size)
        await _until(lambda: host.applied_index >= last, "the writes to apply")
        # The runner finishes a compaction before it takes the next Ready: once
        # an entry proposed after these applied, any they made due is done.
        marker = runner.propose(b"")
        await _until(lambda: host.applied_index >= marker, "a later entry to apply")

    try:
        await _until(lambda: c.role == "leader", "leadership")
        await write(20, 10)  # the first snapshot: after 10 entries, as ever
        first = runner.snapshot_index
        assert first > 0 and runner.snapshot_bytes > 256 << 10
        await write(100, 1000)  # 100 entries: ~103 KiB, under half of it
        assert runner.snapshot_index == first
        await write(40, 1000)  # past half of it
        assert runner.snapshot_index > first
        assert runner.compaction_seconds.count() >= 2
    finally:
        await runner.stop()
        c.close()


async def test_a_failed_fsync_on_the_wal_thread_stops_the_node(tmp_path: Path) -> None:
    c = Consensus.open(tmp_path, CLUSTER, 1, [1])
    runner = RaftRunner(c, BlobHost(), tick_interval=0.005)
    fatal: list[BaseException] = []
    runner.on_fatal = fatal.append
    runner.start()
    try:
        await _until(lambda: c.role == "leader", "leadership")
        applied = runner.applied_index
        c._inject_sync_failure()
        runner.propose(b"doomed")
        await _until(lambda: runner.fatal is not None, "the runner to stop", within=10.0)
        assert isinstance(runner.fatal, WalFatalError)
        assert fatal == [runner.fatal]
        assert runner.applied_index == applied, "nothing applied past the failed fsync"
    finally:
        runner.abort()
        c.close()


class _Member:
    def __init__(self, node_id: int, base: Path, padding: int) -> None:
        self.id = node_id
        self.dir = base / f"n{node_id}"
        self.padding = padding
        self.port = 0
        self.runner: RaftRunner | None = None
        self.transport: Transport | None = None
        self.host = BlobHost(padding)

    async def start(self, peers: dict[int, str]) -> None:
        c = Consensus.open(
            self.dir, CLUSTER, self.id, [1, 2, 3], sync=False, election_tick=20, heartbeat_tick=2
        )
        self.host = BlobHost(self.padding)
        snap = c.recovered_snapshot
        if snap is not None:
            self.host.restore(snap)
        runner = RaftRunner(c, self.host, tick_interval=0.005, compact_every=10)
        runner.applied_index = runner.snapshot_index = self.host.applied_index

        def on_raft(peer: int, messages: list[bytes]) -> None:
            for m in messages:
                runner.step(m, peer)

        async def on_request(request: Request, info: ConnInfo) -> msgspec.Raw:
            return msgspec.Raw(b"\xc0")

        t = Transport(
            node_id=self.id,
            cluster_id=CLUSTER,
            listen_host="127.0.0.1",
            listen_port=self.port,
            peers=peers,
            on_raft=on_raft,
            on_peer_lost=runner.peer_unreachable,
            on_request=on_request,
            reconnect_base=0.005,
            reconnect_cap=0.05,
            rng=random.Random(self.id),
            auth=AcceptorAuth("none", CLUSTER),
            connector_auth=NO_AUTH,
        )
        self.host.send = t.send_raft
        await t.start()
        self.port = t.port
        self.transport, self.runner = t, runner
        runner.start()

    def crash(self) -> None:
        assert self.runner is not None and self.transport is not None
        self.runner.abort()
        self.runner.consensus.close()
        self.transport.abort()
        self.runner = None

    async def stop(self) -> None:
        if self.runner is not None and self.transport is not None:
            await self.runner.stop()
            self.runner.consensus.close()
            await self.transport.stop()


async def test_a_follower_needing_a_64_mib_snapshot_catches_up_over_tcp(tmp_path: Path) -> None:
    """The snapshot is four times the frame cap: a single message would be
    dropped by the peer link; in 1 MiB chunks it gets through."""
    padding = 64 << 20
    members = {i: _Member(i, tmp_path, padding) for i in (1, 2, 3)}
    for m in members.values():
        await m.start({})
    addresses = {i: f"127.0.0.1:{m.port}" for i, m in members.items()}
    for i, m in members.items():
        assert m.transport is not None
        m.transport.set_peers({j: a for j, a in addresses.items() if j != i})
    try:

        def leader() -> _Member | None:
            for m in members.values():
                if m.runner is not None and m.runner.consensus.role == "leader":
                    return m
            return None

        await _until(lambda: leader() is not None, "a leader")
        lead = leader()
        assert lead is not None and lead.runner is not None
        lagging = next(m for m in members.values() if m is not lead)
        lagging.crash()
        last = 0
        for i in range(12):
            last = lead.runner.propose(f"k{i}".encode())
        await _until(lambda: lead.host.applied_index >= last, "the writes to apply")
        runner = lead.runner
        await _until(lambda: runner.snapshot_index > 0, "compaction")
        assert lead.runner.consensus.status()["first_index"] > 1
        await lagging.start({j: a for j, a in addresses.items() if j != lagging.id})
        await _until(lambda: lagging.host.applied_index >= last, "the lagging follower", 60)
        assert lagging.host.restored, "it caught up from the snapshot"
        assert {k: v for k, v in lagging.host.applied.items() if k <= last} == {
            k: v for k, v in lead.host.applied.items() if k <= last
        }
        assert lead.transport is not None
        assert lead.transport.stats["raft_dropped.oversize"] == 0
        assert padding >= 4 * MAX_FRAME
    finally:
        for m in members.values():
            await m.stop()
