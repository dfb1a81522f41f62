"""A pool of :class:`RpcClient` connections, one per address.

Opened on first use — one connect per address however many callers wait —
and replaced after it breaks. :class:`bedrock_cp.protocol.Caller`, which clients,
Gateways, Directors and data-plane workers all use, reaches nodes through one.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from ..auth import ConnectorAuth
from .errors import ConnectionLost
from .rpc_client import RpcClient


class RpcPool:
    """Connections by address; ``cluster_id`` None accepts (and then adopts) any cluster.

    Every connection proves ``auth`` (as node ``node_id`` when a node calls, 0 for clients).
    """

    def __init__(
        self,
        cluster_id: str | None,
        *,
        auth: ConnectorAuth,
        node_id: int = 0,
        connect_timeout: float = 1.0,
    ) -> None:
        self.cluster_id = cluster_id
        self.auth = auth
        self.node_id = node_id
        self.connect_timeout = connect_timeout
        self._conns: dict[str, RpcClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def call(
        self,
        address: str,
        body: msgspec.Raw,
        timeout: float,  # noqa: ASYNC109 - one deadline for connect + call
    ) -> msgspec.Raw:
        """Send ``body`` to ``address``; raises ConnectionLost/OSError/TimeoutError,
        HandshakeRefused, or RemoteError (a transport error answer)."""
        async with asyncio.timeout(timeout):
            conn = await self.connection(address)
            try:
                return await conn.call(body, timeout)
            except ConnectionLost:
                self._conns.pop(address, None)
                raise

    async def connection(self, address: str) -> RpcClient:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._conns.get(address)
            if conn is None or conn.closed:
                conn = await RpcClient.connect(
                    address,
                    self.cluster_id,
                    auth=self.auth,
                    node_id=self.node_id,
                    timeout=self.connect_timeout,
                )
                if self.cluster_id is None:
                    # The first node reached names the cluster; hold the others to it.
                    self.cluster_id = conn.remote_cluster_id
                self._conns[address] = conn
            return conn

    async def close(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
