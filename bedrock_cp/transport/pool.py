"""How requests leave a process: :class:`RpcChannel`, and :class:`RpcPool` over TCP.

:class:`bedrock_cp.protocol.Caller`, which clients, Gateways, Directors and
data-plane workers all use, reaches nodes through an ``RpcChannel``. The real
one is an :class:`RpcPool` of :class:`RpcClient` connections, one per
address: opened on first use — one connect per address however many callers
wait — and replaced after it breaks. The deterministic simulation passes its
own (:mod:`bedrock_cp.sim.network`), which keeps the same contract.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import msgspec

from ..auth import ConnectorAuth
from .errors import ConnectionLost
from .rpc_client import RpcClient


class RpcChannel(Protocol):
    """Calls to nodes by address, over one connection per address.

    :meth:`call` raises ConnectionLost/OSError when the node cannot be reached
    or the connection broke (the request may or may not have been served),
    TimeoutError after ``timeout``, HandshakeRefused when the node refuses the
    connection, and RemoteError when its transport answered with an error
    (the handler missed its deadline or failed). Requests on one connection
    arrive in the order they were sent.
    """

    @property
    def cluster_id(self) -> str | None:
        """The cluster's id: given, or learned from the first node reached."""

    async def call(
        self,
        address: str,
        body: msgspec.Raw,
        timeout: float,  # noqa: ASYNC109 - one deadline for connect + call
    ) -> msgspec.Raw: ...

    async def connection(self, address: str) -> object:
        """Open (or reuse) the connection to ``address``; raises as :meth:`call`."""

    async def close(self) -> None: ...


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
        conn = self._conns.get(address)
        if conn is None or conn.closed:
            # Connecting counts against the same deadline as the call.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            async with asyncio.timeout(timeout):
                conn = await self.connection(address)
            timeout = deadline - loop.time()
            if timeout <= 0:
                raise TimeoutError()
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
