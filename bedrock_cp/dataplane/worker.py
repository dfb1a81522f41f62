"""What every data-plane worker is, and how workers reach each other.

A worker is an asyncio object inside a node process (the node is one failure
domain). The node routes each request to the worker it names; a worker calls
other workers through a :class:`Dialer`, which the node provides (its
:class:`~bedrock_cp.protocol.Caller`, over TCP) and tests may replace with an
in-process one that runs the same worker objects (:mod:`.loopback`).
"""

from __future__ import annotations

from typing import Protocol

from ..protocol import Request, Response, WorkerRef


class Dialer(Protocol):
    """Sends a request to the worker ``ref`` and returns its answer.

    Raises ConnectionError/OSError if the worker's node cannot be reached and
    TimeoutError after ``timeout`` seconds.
    """

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response: ...  # noqa: ASYNC109


class Worker(Protocol):
    """A running worker."""

    ref: WorkerRef

    async def handle(self, body: Request) -> Response:
        """Answer one request addressed to this worker (never raises for bad input:
        answers ``Failed``/``NewerEpoch``/``Locked`` instead)."""

    async def stop(self) -> None:
        """Stop background tasks and close files."""


def broken(worker: Worker) -> str | None:
    """Why ``worker`` can no longer do its job, or None while it can.

    A worker may say so with a ``broken`` attribute (a commit proxy whose
    version chain broke, a log or storage whose WAL failed); one without it
    works as long as it runs. The node answers ``Health`` with this.
    """
    why = getattr(worker, "broken", None)
    return why if isinstance(why, str) else None
