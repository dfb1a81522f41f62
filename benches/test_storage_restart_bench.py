"""Storage restart with 512 MiB stored: the time does not depend on the history.

One storage replica (in process, fsync on) follows one log; it is filled with
512 MiB of 100 KB values either written once, or the same keys written four
times over (2 GiB of history for the same 512 MiB). Once everything is durable
(the log has discarded it all), the replica is stopped. The timed interval is
one restart: open the replica's directory (its checkpoint), follow the layout,
and serve a read at the durable version of the last key written. Five restarts
per history; ``extra_info`` has the history written, the data stored, and how
many batches the restarted replica had to pull (none: the log holds nothing).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.loopback import LoopbackDialer
from bedrock_cp.dataplane.storage import StorageWorker
from bedrock_cp.protocol import (
    CommitBatch,
    Layout,
    LogPush,
    LogPushed,
    LogRecover,
    Mutation,
    MutationKind,
    ReplicaProgress,
    StorageGet,
    StorageTeam,
    Value,
    WorkerRef,
)
from tests.dataplane_pipeline import disk_bytes, until

MIB = 1 << 20
STORED = 512 * MIB
VALUE_SIZE = 100_000
PER_BATCH = 10  # 1 MB batches
ROUNDS = 5
CLUSTER = "bench"


def ref(name: str, kind: str) -> WorkerRef:
    return WorkerRef(name, kind, "n1", "127.0.0.1:1")


LOG, SS = ref("log", "log"), ref("ss", "storage")
LAYOUT = Layout(1, 0, ref("seq", "sequencer"), [], [], [LOG], [StorageTeam(b"", b"\xff", [SS])])


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        yield r


class _Replica:
    """A log and a replica in a temporary directory, filled with a given history."""

    def __init__(self, rewrites: int) -> None:
        self.rewrites = rewrites
        self.root = Path(tempfile.mkdtemp(prefix="bedrock-restart-"))
        self.dialer = LoopbackDialer()
        self.log = LogWorker(LOG, self.root / "log", cluster_id=CLUSTER, dialer=self.dialer)
        self.dialer.register(self.log)
        self.storage = self._open()
        self.last_key = b""
        self.pulled = 0

    def _open(self) -> StorageWorker:
        ss = StorageWorker(SS, self.root / "ss", self.dialer, cluster_id=CLUSTER, window_seconds=0)
        self.dialer.register(ss)
        return ss

    async def fill(self) -> None:
        await self.log.handle(LogRecover("log", 1, [], 1, 0, [ReplicaProgress("ss", 0)]))
        self.storage.set_layout(LAYOUT)
        keys = STORED // VALUE_SIZE
        version = 0
        for _ in range(self.rewrites):
            for first in range(0, keys, PER_BATCH):
                muts = [
                    Mutation(MutationKind.SET, b"k%07d" % k, bytes([version % 256]) * VALUE_SIZE)
                    for k in range(first, min(keys, first + PER_BATCH))
                ]
                self.last_key = muts[-1].key
                batch = CommitBatch(version, version + 1, muts)
                pushed = await self.log.handle(LogPush("log", 1, batch, version))
                assert isinstance(pushed, LogPushed), pushed
                version += 1
                # Let storage keep up (what the log holds is bounded too).
                await until(lambda: self.log.held <= 64, timeout=60)
        await self.log.handle(LogPush("log", 1, CommitBatch(version, version + 1, []), version))
        await until(lambda: self.storage.durable >= version <= self.log.base, timeout=120)
        await self.storage.stop()

    async def restart(self) -> None:
        self.storage = self._open()
        self.storage.set_layout(LAYOUT)
        version = self.storage.durable
        answer = await self.storage.handle(StorageGet("ss", self.last_key, version))
        assert isinstance(answer, Value) and answer.value is not None, answer
        self.pulled = self.storage.applied - version
        await self.storage.stop()

    async def close(self) -> None:
        await self.dialer.stop_all()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.parametrize("rewrites", [1, 4], ids=["history-1x", "history-4x"])
def test_storage_restart_with_512_mib_stored(
    benchmark: Any, runner: asyncio.Runner, rewrites: int
) -> None:
    benchmark.group = "storage restart, 512 MiB stored (open -> first read at its durable version)"
    replica = _Replica(rewrites)
    try:
        runner.run(replica.fill())
        benchmark.pedantic(lambda: runner.run(replica.restart()), rounds=ROUNDS, iterations=1)
        benchmark.extra_info["history_mib"] = rewrites * STORED // MIB
        benchmark.extra_info["stored_mib"] = STORED // MIB
        benchmark.extra_info["replica_dir_bytes"] = disk_bytes(replica.root / "ss")
        benchmark.extra_info["log_dir_bytes"] = disk_bytes(replica.root / "log")
        benchmark.extra_info["batches_pulled_on_restart"] = replica.pulled
    finally:
        runner.run(replica.close())
