"""Helpers for data-plane tests: real workers wired over the loopback dialer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

from bedrock_cp.dataplane.commit_proxy import CommitProxy
from bedrock_cp.dataplane.log import LogWorker
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
    idempotency,
)

from .loopback import LoopbackDialer

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


#: Decides, per call a proxy makes, an error to raise instead (None: make the call).
Fault = Callable[[WorkerRef, Request], BaseException | None]


class FaultyDialer:
    """The proxies' dialer: the pipeline's loopback, with ``pipeline.fault`` applied."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        fault = self.pipeline.fault
        if fault is not None and (error := fault(ref, body)) is not None:
            raise error
        return await self.pipeline.dialer.call(ref, body, timeout)


async def until_async(
    condition: Callable[[], Awaitable[bool]],
    timeout: float = 5.0,  # noqa: ASYNC109
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


class Pipeline:
    """Two logs, one storage, a sequencer, two resolvers split at b"m", and proxies.

    ``fault`` (settable at any time) injects failures into the proxies' calls.
    """

    def __init__(
        self,
        root: Path,
        *,
        proxies: int = 1,
        epoch: int = 1,
        idempotency_retention: float = idempotency.RETENTION_SECONDS,
        window_seconds: float = 5.0,
        proxy_call_timeout: float = 5.0,
        proxy_idle_interval: float = 1.0,
    ) -> None:
        self.dialer = LoopbackDialer()
        self.fault: Fault | None = None
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
        self.sequencer = Sequencer(
            ref("seq", "sequencer"),
            epoch,
            0,
            clock=time.monotonic,
            logs=[w.ref for w in self.logs],
            dialer=self.dialer,
        )
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
            CommitProxy(
                p,
                epoch,
                self.layout,
                FaultyDialer(self),
                token=TOKEN,
                idempotency_retention=idempotency_retention,
                call_timeout=proxy_call_timeout,
                idle_interval=proxy_idle_interval,
            )
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
        idempotency_id: bytes = b"",
    ) -> Response:
        rv = await self.read_version() if read_version is None else read_version
        body = Commit(
            self.proxies[proxy].ref.id, rv, reads or [], [], mutations, b"", idempotency_id
        )
        return await self.call(body)

    async def close(self) -> None:
        await self.dialer.stop_all()


T = TypeVar("T")


def done_now(coro: Coroutine[Any, Any, T]) -> T:
    """The result of ``coro``, which must finish without waiting (a resolution
    whose predecessor is resolved, say): run without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    raise AssertionError(f"{coro} waited")
