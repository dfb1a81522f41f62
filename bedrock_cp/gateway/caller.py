"""How a Gateway calls coordinators: one pooled connection per address.

:class:`CoordinatorCaller` is the seam (tests and the simulator may provide their
own); :class:`TcpCaller` is the real one, over :class:`~bedrock_cp.transport.RpcClient`.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..coordinator import api
from ..transport import RpcPool


class CoordinatorCaller(Protocol):
    """Sends one coordinator API request and returns the decoded answer.

    Raises ConnectionError/OSError/ConnectionLost when the address cannot be
    reached, TimeoutError after ``timeout``, RemoteError for a transport error.
    """

    async def call(self, address: str, body: api.ApiRequest, timeout: float) -> api.ApiResponse: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


class TcpCaller:
    """Coordinator calls over a pool of TCP connections (one per address)."""

    def __init__(self, cluster_id: str, *, connect_timeout: float = 1.0) -> None:
        self.cluster_id = cluster_id
        self._pool = RpcPool(cluster_id, connect_timeout=connect_timeout)

    async def call(self, address: str, body: api.ApiRequest, timeout: float) -> api.ApiResponse:  # noqa: ASYNC109
        raw = await self._pool.call(address, msgspec.Raw(api.encode(body)), timeout)
        return api.decode_response(bytes(raw))

    async def close(self) -> None:
        await self._pool.close()
