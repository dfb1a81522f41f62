"""The Director's effects on a real node: :class:`NodeRecoveryContext`.

The :class:`~.context.RecoveryContext` a Director runs with on the leader: its
calls go through the node's dialer; workers are created and removed through
the nodes' Foremen; the layout, retirements and the directory are read from
and written through this node's coordinator (consensus). Its clock,
randomness and tokens are the node's seams; ``last_heard`` is the node's
record of the Raft traffic it received (:meth:`~bedrock_cp.node.Node.last_heard`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import Awaitable, Callable

from .. import protocol
from ..clock import SYSTEM_CLOCK, Clock
from ..coordinator.results import Applied
from ..coordinator.service import Coordinator
from ..dataplane.worker import Dialer
from ..foreman import Foreman
from ..protocol import WorkerRef
from .context import NodeInfo, Parameters, Superseded


class NodeRecoveryContext:
    """The Director's effects on a real node (see ``director/context.py``)."""

    def __init__(
        self,
        *,
        epoch: int,
        coordinator: Coordinator,
        foreman: Foreman,
        dialer: Dialer,
        lock_timeout: float = 1.0,
        call_timeout: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        token_bytes: Callable[[int], bytes] = os.urandom,
        last_heard: Callable[[str], float | None] = lambda node: None,
        next_round: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.node = str(coordinator.node_id)
        self.last_heard = last_heard
        self._next_round = next_round
        self.address = coordinator.address
        self.epoch = epoch
        self._lock_timeout = lock_timeout
        self._call_timeout = call_timeout
        self._coordinator = coordinator
        self._foreman = foreman
        self._dialer = dialer
        self._ids = itertools.count(1)
        self._clock = clock
        self._token_bytes = token_bytes
        # Ids of workers a Director that died before recording them may have
        # left behind must differ from this one's: a random part besides the epoch.
        self._nonce = (rng or random.Random()).randbytes(3).hex()

    async def next_round(self, interval: float) -> None:
        await self._next_round(interval)

    @property
    def parameters(self) -> Parameters:
        """From the cluster config as it is now (a change reaches a running Director)."""
        return Parameters.from_config(
            self._coordinator.state.config,
            lock_timeout=self._lock_timeout,
            call_timeout=self._call_timeout,
            expected_nodes=len(self._coordinator.voters()),
        )

    async def stored_layout(self) -> bytes | None:
        record = self._coordinator.state.layout
        return None if record is None else record.layout

    async def nodes(self) -> list[NodeInfo]:
        state = self._coordinator.state
        return [
            NodeInfo(
                n.node,
                n.address,
                list(n.capabilities),
                [
                    WorkerRef(s.id, s.kind, s.node, s.address)
                    for s in state.services(n.node)
                    if s.kind in ("log", "storage")
                ],
            )
            for n in state.nodes.values()
        ]

    async def call(
        self,
        ref: WorkerRef,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
    ) -> protocol.Response:
        return await self._dialer.call(ref, body, timeout)

    async def create_worker(self, node: NodeInfo, kind: str, worker_id: str) -> WorkerRef:
        target = WorkerRef("", "node", node.node, node.address)
        reply = await self._dialer.call(
            target, protocol.CreateWorker(kind, worker_id, self.epoch), self.parameters.call_timeout
        )
        if not isinstance(reply, protocol.WorkerCreated):
            raise ConnectionError(f"node {node.node} did not create {kind} {worker_id}: {reply}")
        return reply.ref

    async def remove_worker(self, ref: WorkerRef) -> None:
        target = WorkerRef("", "node", ref.node, ref.address)
        reply = await self._dialer.call(
            target, protocol.RemoveWorker(ref.id, self.epoch), self.parameters.call_timeout
        )
        if isinstance(reply, protocol.Failed) and reply.code != "no_such_worker":
            raise ConnectionError(f"node {ref.node} did not remove {ref.id}: {reply.message}")

    async def start_role(
        self, kind: str, worker_id: str, version: int, layout: bytes, token: bytes
    ) -> WorkerRef:
        return await self._foreman.start_role(
            protocol.StartRole(kind, worker_id, self.epoch, version, layout, token)
        )

    async def stop_role(self, ref: WorkerRef) -> None:
        body = protocol.StopRole(ref.id, self.epoch)
        if ref.node == self.node:
            await self._foreman.stop_role(body)
            return
        target = WorkerRef("", "node", ref.node, ref.address)
        reply = await self._dialer.call(target, body, self.parameters.call_timeout)
        if isinstance(reply, protocol.Failed) and reply.code != "no_such_worker":
            raise ConnectionError(f"node {ref.node} did not stop {ref.id}: {reply.message}")

    async def store_layout(self, layout: bytes) -> None:
        result = await self._coordinator.store_layout(self.epoch, layout)
        if not isinstance(result, Applied):
            raise Superseded(f"layout of epoch {self.epoch} not stored: {result}")

    async def retiring(self) -> list[protocol.RetiredWorker]:
        return self._coordinator.state.retiring

    async def retire_workers(self, workers: list[protocol.RetiredWorker]) -> None:
        result = await self._coordinator.retire_workers(self.epoch, workers)
        if not isinstance(result, Applied):
            raise Superseded(f"retirement by epoch {self.epoch} not recorded: {result}")

    async def forget_retired(self, ids: list[str]) -> None:
        result = await self._coordinator.forget_retired(self.epoch, ids)
        if not isinstance(result, Applied):
            raise Superseded(f"removal of retired workers not recorded: {result}")

    def clock(self) -> float:
        return self._clock.monotonic()

    def random_token(self) -> bytes:
        return self._token_bytes(16)

    def new_worker_id(self, kind: str) -> str:
        return f"{kind}-e{self.epoch}-{self._nonce}-{next(self._ids)}"
