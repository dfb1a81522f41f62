"""The in-process network of tests: a ``Dialer`` over real worker objects.

Calls go to worker objects registered here, by ``ref.id``. Each request and each
answer is encoded to msgpack and decoded again on the way, exactly as the TCP
transport would, so tests also prove that every body serializes. A stopped or
unknown worker refuses the connection, like a dead node.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from bedrock_cp.protocol import (
    Request,
    Response,
    WorkerRef,
    decode_request,
    decode_response,
    encode,
)


class StoppableWorker(Protocol):
    """A worker as the loopback needs it: the reference workers all say if they stopped."""

    ref: WorkerRef
    stopped: bool

    async def handle(self, body: Request) -> Response: ...

    async def stop(self) -> None: ...


class LoopbackDialer:
    def __init__(self) -> None:
        self._workers: dict[str, StoppableWorker] = {}

    def register(self, worker: StoppableWorker) -> None:
        self._workers[worker.ref.id] = worker

    def unregister(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        worker = self._workers.get(ref.id)
        if worker is None or worker.stopped:
            raise ConnectionRefusedError(f"worker {ref.id} is not reachable")
        request = decode_request(encode(body))
        answer = await asyncio.wait_for(worker.handle(request), timeout)
        return decode_response(encode(answer))

    async def stop_all(self) -> None:
        for worker in list(self._workers.values()):
            await worker.stop()
        self._workers.clear()
