"""How a Gateway calls coordinators: one pooled connection per address.

:class:`CoordinatorCaller` is the seam (tests and the simulator may provide their
own); :class:`TcpCaller` is the real one, over :class:`~bedrock_cp.transport.RpcClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import msgspec

from ..coordinator import api
from ..transport import ConnectionLost, RpcClient


class CoordinatorCaller(Protocol):
    """Sends one coordinator API request and returns the decoded answer.

    Raises ConnectionError/OSError/ConnectionLost when the address cannot be
    reached, TimeoutError after ``timeout``, RemoteError for a transport error.
    """

    async def call(self, address: str, body: api.ApiRequest, timeout: float) -> api.ApiResponse: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


class TcpCaller:
    """A connection per coordinator address, opened on first use and after a loss."""

    def __init__(self, cluster_id: str, *, connect_timeout: float = 1.0) -> None:
        self.cluster_id = cluster_id
        self.connect_timeout = connect_timeout
        self._conns: dict[str, RpcClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def call(self, address: str, body: api.ApiRequest, timeout: float) -> api.ApiResponse:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            conn = await self._connection(address)
            try:
                raw = await conn.call(msgspec.Raw(api.encode(body)), timeout)
            except ConnectionLost:
                self._conns.pop(address, None)
                raise
        return api.decode_response(bytes(raw))

    async def _connection(self, address: str) -> RpcClient:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:  # one connect per address, however many callers wait
            conn = self._conns.get(address)
            if conn is None or conn.closed:
                conn = await RpcClient.connect(
                    address, self.cluster_id, timeout=self.connect_timeout
                )
                self._conns[address] = conn
            return conn

    async def close(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
