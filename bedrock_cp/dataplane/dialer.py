"""The network :class:`~bedrock_cp.dataplane.worker.Dialer`: worker calls over TCP.

One :class:`~bedrock_cp.transport.RpcClient` per node address, opened on first
use and replaced after it breaks; the request names the worker, and the node at
``ref.address`` routes it there.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from ..transport import ConnectionLost, RpcClient
from . import api
from .types import WorkerRef


class NetworkDialer:
    """Calls workers on other nodes (and on this one) through their node's port."""

    def __init__(self, cluster_id: str | None, *, connect_timeout: float = 1.0) -> None:
        self.cluster_id = cluster_id
        self.connect_timeout = connect_timeout
        self._conns: dict[str, RpcClient] = {}
        self._connecting: dict[str, asyncio.Future[RpcClient]] = {}

    async def call(
        self,
        ref: WorkerRef,
        body: api.DataRequest,
        timeout: float,  # noqa: ASYNC109 - one deadline for connect + call
    ) -> api.DataResponse:
        async with asyncio.timeout(timeout):
            conn = await self._connection(ref.address)
            try:
                raw = await conn.call(msgspec.Raw(api.encode(body)), timeout)
            except ConnectionLost:
                self._conns.pop(ref.address, None)
                raise
        return api.decode_response(bytes(raw))

    async def _connection(self, address: str) -> RpcClient:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[RpcClient] = asyncio.get_running_loop().create_future()
        self._connecting[address] = fut
        try:
            conn = await RpcClient.connect(address, self.cluster_id, timeout=self.connect_timeout)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: concurrent waiters re-raise it themselves
            raise
        finally:
            self._connecting.pop(address, None)
        self._conns[address] = conn
        fut.set_result(conn)
        return conn

    async def close(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
