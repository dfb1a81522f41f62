"""The one typed caller: send a request body to a node, get its answer decoded.

Gateways, clients, Directors and data-plane workers all reach nodes through a
:class:`Caller`: it encodes the body, sends it over a pooled connection to the
node's address (:class:`~bedrock_cp.transport.RpcPool`: one connection per
address, opened on first use, replaced after it breaks) and decodes the answer
as a :data:`~bedrock_cp.protocol.codec.Response`. A request for a data-plane
worker is addressed by its :class:`~bedrock_cp.protocol.layout.WorkerRef`; the
node at ``ref.address`` routes it to the worker by id.

The connections come from an :class:`~bedrock_cp.transport.RpcChannel`: a TCP
pool by default, the simulated network's in the deterministic simulation.

It lives here rather than in the transport because the transport carries
opaque bodies and knows no message type; this is the protocol's typed face
over it.
"""

from __future__ import annotations

import asyncio

import msgspec

from ..auth import ConnectorAuth
from ..transport import RpcChannel, RpcPool
from .codec import Request, Response, decode_response, encode
from .layout import WorkerRef


class Caller:
    """Calls nodes by address (``"host:port"``) or workers by :class:`WorkerRef`.

    ``cluster_id`` None accepts, then holds every node to, the cluster the first
    node reached names. ``auth`` is how every connection proves who is calling
    (a node calling as ``node_id``, or a client with 0). ``channel``, if given,
    carries the calls instead of a TCP pool built from those.
    """

    def __init__(
        self,
        cluster_id: str | None,
        *,
        auth: ConnectorAuth,
        node_id: int = 0,
        connect_timeout: float = 1.0,
        channel: RpcChannel | None = None,
    ) -> None:
        self._pool: RpcChannel = channel or RpcPool(
            cluster_id, auth=auth, node_id=node_id, connect_timeout=connect_timeout
        )

    @property
    def cluster_id(self) -> str | None:
        """The cluster's id: given, or learned from the first node reached."""
        return self._pool.cluster_id

    async def call(
        self,
        to: str | WorkerRef,
        body: Request,
        timeout: float,  # noqa: ASYNC109 - one deadline for connect + call
    ) -> Response:
        """Send ``body`` to ``to`` and return the decoded answer.

        Raises ConnectionLost/OSError/TimeoutError when the node cannot be reached
        in time, HandshakeRefused when it refuses the connection, RemoteError for a
        transport error answer, and WireError for an undecodable answer.
        """
        address = to if isinstance(to, str) else to.address
        raw = await self._pool.call(address, msgspec.Raw(encode(body)), timeout)
        return decode_response(bytes(raw))

    async def connect(
        self,
        to: str | WorkerRef,
        timeout: float,  # noqa: ASYNC109 - bounds connect and handshake together
    ) -> None:
        """Open (or reuse) the connection to ``to``'s node within ``timeout``.

        A caller that must know whether a request was sent at all (a commit)
        connects first: a failure here means nothing was sent. Raises as
        :meth:`call` does.
        """
        address = to if isinstance(to, str) else to.address
        async with asyncio.timeout(timeout):
            await self._pool.connection(address)

    async def close(self) -> None:
        await self._pool.close()
