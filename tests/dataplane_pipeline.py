"""Helpers for data-plane tests: real workers wired over the loopback dialer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from bedrock_cp.dataplane.commit_proxy import CommitProxy
from bedrock_cp.dataplane.log import LogWorker
from bedrock_cp.dataplane.loopback import LoopbackDialer
from bedrock_cp.dataplane.resolver import Resolver
from bedrock_cp.dataplane.sequencer import Sequencer
from bedrock_cp.dataplane.storage import StorageWorker
from bedrock_cp.protocol import (
    Commit,
    Done,
    GetReadVersion,
    KeyRange,
    Layout,
    Mutation,
    MutationKind,
    ReadVersion,
    Request,
    ResolverAssignment,
    Response,
    StorageTeam,
    UnlockProxy,
    WorkerRef,
    encode,
)

CLUSTER = "test-cluster"
TOKEN = b"secret-token"


def ref(worker_id: str, kind: str) -> WorkerRef:
    return WorkerRef(worker_id, kind, "n1", "127.0.0.1:1")


def set_(key: bytes, value: bytes) -> Mutation:
    return Mutation(MutationKind.SET, key, value)


class MeasuringDialer(LoopbackDialer):
    """The loopback network, recording the encoded size of every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        answer = await super().call(ref, body, timeout)
        self.sizes.append(len(encode(answer)))
        return answer


def disk_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (files that vanish meanwhile count as 0)."""
    total = 0
    for root, _, files in os.walk(path):  # os.walk skips directories that vanish
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


class Pipeline:
    """Two logs, one storage, a sequencer, two resolvers split at b"m", and proxies."""

    def __init__(
        self, root: Path, *, proxies: int = 1, epoch: int = 1, window_seconds: float = 5.0
    ) -> None:
        self.dialer = LoopbackDialer()
        self.epoch = epoch
        self.logs = [
            LogWorker(ref(f"log{i}", "log"), root / f"log{i}", cluster_id=CLUSTER, fsync=False)
            for i in range(2)
        ]
        self.storage = StorageWorker(
            ref("ss0", "storage"),
            root / "ss0",
            self.dialer,
            cluster_id=CLUSTER,
            fsync=False,
            window_seconds=window_seconds,
        )
        self.sequencer = Sequencer(ref("seq", "sequencer"), epoch, 0, clock=time.monotonic)
        halves = [KeyRange(b"", b"m"), KeyRange(b"m", b"\xff")]
        self.resolvers = [
            Resolver(ref(f"res{i}", "resolver"), epoch, 0, r) for i, r in enumerate(halves)
        ]
        self.layout = Layout(
            epoch=epoch,
            recovery_version=0,
            sequencer=self.sequencer.ref,
            proxies=[ref(f"proxy{i}", "commit_proxy") for i in range(proxies)],
            resolvers=[
                ResolverAssignment(r.key_range.begin, r.key_range.end, r.ref)
                for r in self.resolvers
            ],
            logs=[w.ref for w in self.logs],
            storage=[StorageTeam(b"", b"\xff", [self.storage.ref])],
        )
        self.proxies = [
            CommitProxy(p, epoch, self.layout, self.dialer, token=TOKEN)
            for p in self.layout.proxies
        ]
        for w in [*self.logs, self.storage, self.sequencer, *self.resolvers, *self.proxies]:
            self.dialer.register(w)

    async def start(self) -> None:
        self.storage.set_layout(self.layout)
        for p in self.proxies:
            assert await self.call(UnlockProxy(p.ref.id, self.epoch, TOKEN)) == Done()

    async def call(self, body: Request, timeout: float = 10.0) -> Response:  # noqa: ASYNC109
        worker = {w.ref.id: w.ref for w in self._all()}[body.worker]  # type: ignore[union-attr]
        return await self.dialer.call(worker, body, timeout)

    def _all(self) -> list[LogWorker | StorageWorker | Sequencer | Resolver | CommitProxy]:
        return [*self.logs, self.storage, self.sequencer, *self.resolvers, *self.proxies]

    async def read_version(self) -> int:
        rv = await self.call(GetReadVersion("seq", self.epoch))
        assert isinstance(rv, ReadVersion)
        return rv.version

    async def commit(
        self,
        mutations: list[Mutation],
        *,
        reads: list[KeyRange] | None = None,
        read_version: int | None = None,
        proxy: int = 0,
    ) -> Response:
        rv = await self.read_version() if read_version is None else read_version
        body = Commit(self.proxies[proxy].ref.id, rv, reads or [], [], mutations)
        return await self.call(body)

    async def close(self) -> None:
        await self.dialer.stop_all()
