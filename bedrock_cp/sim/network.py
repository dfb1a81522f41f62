"""An in-memory network for simulated nodes: seeded latency, partitions, crashes.

Each node gets a :class:`SimEndpoint` (through ``Node.start(network_factory=
net.factory)``) with the same shape as the TCP transport. Messages are delivered
by ``loop.call_later`` after a latency drawn from the simulation's seeded RNG, so
on a :class:`~bedrock_cp.sim.loop.VirtualClockLoop` a run is a pure function of
its seed. A crash tells the other nodes at once (as the EOF of a TCP connection
would); a partition silently drops messages in both directions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping

import msgspec

from .. import protocol
from ..auth import Principal
from ..node.config import NodeConfig
from ..node.node import NetworkCallbacks, NodeCredentials
from ..transport import ConnInfo
from ..wire import Request


class SimEndpoint:
    """One node's attachment to the simulated network."""

    def __init__(self, net: SimNetwork, node_id: int, callbacks: NetworkCallbacks) -> None:
        self.net = net
        self.node_id = node_id
        self.callbacks = callbacks
        self.peers: dict[int, str] = {}

    async def start(self) -> None:
        self.net.down.discard(self.node_id)

    async def stop(self) -> None:
        self.net.crash(self.node_id)

    def send_raft(self, to: int, data: bytes) -> None:
        self.net.deliver(self.node_id, to, data)

    def set_peers(self, peers: Mapping[int, str]) -> None:
        self.peers = dict(peers)


class SimNetwork:
    """The network shared by every node of one simulation."""

    def __init__(
        self, rng: random.Random, *, min_latency: float = 0.0002, max_latency: float = 0.002
    ) -> None:
        self.rng = rng
        self.min_latency = min_latency
        self.max_latency = max_latency
        self.endpoints: dict[int, SimEndpoint] = {}
        self.down: set[int] = set()
        self.cut: set[frozenset[int]] = set()
        self.delivered = 0
        self.dropped = 0
        self._request_ids = 0

    def factory(
        self, config: NodeConfig, callbacks: NetworkCallbacks, credentials: NodeCredentials
    ) -> SimEndpoint:
        """A node's endpoint; the simulated network authenticates nobody (its
        requests come from a client principal)."""
        endpoint = SimEndpoint(self, config.id, callbacks)
        self.endpoints[config.id] = endpoint
        return endpoint

    def _latency(self) -> float:
        return self.rng.uniform(self.min_latency, self.max_latency)

    def deliver(self, src: int, dst: int, data: bytes) -> None:
        if src in self.down or frozenset((src, dst)) in self.cut:
            self.dropped += 1
            return
        asyncio.get_running_loop().call_later(self._latency(), self._arrive, src, dst, data)

    def _arrive(self, src: int, dst: int, data: bytes) -> None:
        target = self.endpoints.get(dst)
        if target is None or dst in self.down or frozenset((src, dst)) in self.cut:
            self.dropped += 1
            return
        self.delivered += 1
        target.callbacks.on_raft(src, [data])

    def crash(self, node_id: int) -> None:
        """The node is gone; its peers see their connections to it break.

        As over TCP, what it sent before dying still arrives first: the break is
        reported once every message in flight from it has been delivered.
        """
        if node_id in self.down:
            return
        self.down.add(node_id)
        loop = asyncio.get_running_loop()
        for other in self.endpoints:
            if other != node_id:
                loop.call_later(self.max_latency * 1.01, self._report_lost, other, node_id)

    def _report_lost(self, observer: int, lost: int) -> None:
        endpoint = self.endpoints.get(observer)
        if endpoint is not None and observer not in self.down and lost in self.down:
            endpoint.callbacks.on_peer_lost(lost)

    def partition(self, a: int, b: int) -> None:
        self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut.clear()

    async def request(
        self, to: int, body: protocol.Request, *, principal: Principal | None = None
    ) -> protocol.Response:
        """A request to node ``to`` from ``principal`` (default: a client), with a
        network hop each way."""
        if to in self.down:
            raise ConnectionRefusedError(f"node {to} is down")
        await asyncio.sleep(self._latency())
        self._request_ids += 1
        req = Request(self._request_ids, 5000, msgspec.Raw(protocol.encode(body)))
        info = ConnInfo("client", 0, "sim", principal or Principal.client("sim"))
        raw = await self.endpoints[to].callbacks.on_request(req, info)
        await asyncio.sleep(self._latency())
        return protocol.decode_response(bytes(raw))
