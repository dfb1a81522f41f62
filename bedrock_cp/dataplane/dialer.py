"""The network :class:`~bedrock_cp.dataplane.worker.Dialer`: worker calls over TCP.

One connection per node address (:class:`~bedrock_cp.transport.RpcPool`); the
request names the worker, and the node at ``ref.address`` routes it there.
"""

from __future__ import annotations

import msgspec

from ..transport import RpcPool
from . import api
from .types import WorkerRef


class NetworkDialer:
    """Calls workers on other nodes (and on this one) through their node's port."""

    def __init__(self, cluster_id: str | None, *, connect_timeout: float = 1.0) -> None:
        self._pool = RpcPool(cluster_id, connect_timeout=connect_timeout)

    async def call(
        self,
        ref: WorkerRef,
        body: api.DataRequest,
        timeout: float,  # noqa: ASYNC109 - one deadline for connect + call
    ) -> api.DataResponse:
        raw = await self._pool.call(ref.address, msgspec.Raw(api.encode(body)), timeout)
        return api.decode_response(bytes(raw))

    async def close(self) -> None:
        await self._pool.close()
