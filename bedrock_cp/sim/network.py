"""The simulated network: Raft messages and requests between in-process nodes.

Every node gets a :class:`SimEndpoint` (``Node.start(network_factory=
net.factory)``): its Raft messages, its listener, and the
:class:`~bedrock_cp.transport.RpcChannel` its Gateway, Director and workers
call other nodes through. Clients get a :class:`SimChannel` of their own
(:meth:`SimNetwork.channel`). Everything is delivered by ``loop.call_at`` after
a latency drawn from the simulation's seeded RNG, so on a
:class:`~bedrock_cp.sim.loop.VirtualClockLoop` a run is a pure function of its
seed.

**Faults** (set on :attr:`SimNetwork.faults`, or per link with
:meth:`SimNetwork.cut`):

- *crash* (:meth:`crash`): the node is gone; as with TCP, what it sent
  before still arrives, then its peers see their connections break (Raft
  links report ``on_peer_lost``, calls in flight fail with ConnectionLost)
  and calls to it are refused;
- *partitions*: a cut link, one way or both ways, passes nothing and tells
  nobody (no reset);
- *drop*, *duplicate*, *delay* (spikes): per message.

Raft traffic takes every fault as it is: messages are lost, duplicated and
reordered freely (a peer link may do all of that across reconnects, and Raft
must not care). Requests travel on connections with TCP's guarantees, which
the product relies on and the faults keep: a connection delivers in order,
exactly once, or breaks. So on a connection a *drop* breaks it (both ways: the
caller's calls in flight fail with ConnectionLost, whether or not the server
got the request, and the server's handlers of that connection are cancelled,
as the TCP listener does); a *duplicate* cannot happen (retries on a new
connection, the callers' own, can); a *delay* holds the messages behind it;
a cut link holds its messages (TCP retransmits) and delivers them once it
heals — late requests — unless it stays cut longer than the connection's
give-up time, which breaks it.

Who calls is known, as an authenticated handshake would prove it: a node's
channel calls as that node, a client's as the principal it was made with.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import msgspec

from .. import protocol
from ..auth import Principal
from ..node.config import NodeConfig
from ..node.node import NetworkCallbacks, NodeCredentials
from ..transport import ConnectionLost, ConnInfo, RemoteError
from ..transport.inbound import serve_request
from ..wire import Request, TransportError, encode_body, transport_error_of

#: An endpoint of the network: a node (its id) or a client process (its name).
Endpoint = int | str


@dataclass
class Faults:
    """Per-message faults of the whole network (see the module docstring)."""

    #: Probability that a message is lost (a request or reply: its connection breaks).
    drop: float = 0.0
    #: Probability that a Raft message is delivered twice.
    duplicate: float = 0.0
    #: Probability that a message is held ``spike`` seconds more (later ones overtake
    #: it on Raft links; on a connection, the ones behind it wait).
    delay: float = 0.0
    spike: float = 0.05


class SimEndpoint:
    """One node's attachment to the simulated network (a ``NodeNetwork``)."""

    def __init__(self, net: SimNetwork, node_id: int, callbacks: NetworkCallbacks) -> None:
        self.net = net
        self.node_id = node_id
        self.callbacks = callbacks
        self.peers: dict[int, str] = {}

    async def start(self) -> None:
        self.net._up(self)

    async def stop(self) -> None:
        self.net.crash(self.node_id)

    def send_raft(self, to: int, data: bytes) -> None:
        self.net._send_raft(self, to, data)

    def set_peers(self, peers: Mapping[int, str]) -> None:
        self.peers = dict(peers)

    def channel(self) -> SimChannel:
        return SimChannel(self.net, self.node_id, Principal.node(self.node_id), self)


class _Conn:
    """One connection from a channel to a node's listener."""

    def __init__(
        self, net: SimNetwork, channel: SimChannel, target: SimEndpoint, address: str
    ) -> None:
        self.net = net
        self.channel = channel
        self.src = channel.src
        self.dst = target.node_id
        #: The incarnation of the node connected to (a restarted one is another).
        self.target = target
        self.address = address
        self.closed = False
        self.reason = ""
        self.pending: dict[int, asyncio.Future[msgspec.Raw]] = {}
        # Ordered (a dict): cancelled in the order they came.
        self.served: dict[asyncio.Task[None], None] = {}
        # Arrival time of the last message each way (FIFO), and messages held
        # while a cut link keeps them.
        self.last = {True: 0.0, False: 0.0}
        self.held: dict[bool, list[Callable[[], None]]] = {True: [], False: []}
        self.give_up = net.rng.uniform(0.5, 10.0)
        self.ids = itertools.count(1)

    def break_(self, reason: str) -> None:
        """Both ends see the connection close."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        self.held = {True: [], False: []}
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(reason))
        for task in list(self.served):
            task.cancel()
        self.net._forget(self)


class SimChannel:
    """Calls from one process (a node, or a client) to nodes by address (an
    :class:`~bedrock_cp.transport.RpcChannel`)."""

    def __init__(
        self,
        net: SimNetwork,
        src: Endpoint,
        principal: Principal,
        endpoint: SimEndpoint | None = None,
    ) -> None:
        self.net = net
        self.src = src
        self.principal = principal
        # A node's channel dies with the incarnation of the node that made it.
        self._endpoint = endpoint
        self._conns: dict[str, _Conn] = {}
        self.cluster_id: str | None = net.cluster_id

    def alive(self) -> bool:
        """False once the process that made this channel is dead: it sends nothing more."""
        if self._endpoint is None:
            return self.src not in self.net.down
        return self.net.endpoints.get(self._endpoint.node_id) is self._endpoint and (
            self._endpoint.node_id not in self.net.down
        )

    async def connection(self, address: str) -> _Conn:
        if not self.alive():
            raise ConnectionLost("this process is down")
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        dst = self.net.addresses.get(address)
        if dst is None:
            raise OSError(f"no node listens at {address}")
        # The handshake: one round trip, once the link lets it through.
        await self.net._passable(self.src, dst)
        await asyncio.sleep(2 * self.net.latency())
        await self.net._passable(self.src, dst)
        if not self.alive():
            raise ConnectionLost("this process is down")
        if dst in self.net.down:
            raise ConnectionRefusedError(f"node {dst} at {address} is down")
        conn = self._conns.get(address)
        if conn is None or conn.closed:
            conn = _Conn(self.net, self, self.net.endpoints[dst], address)
            self._conns[address] = conn
            self.net._conns[conn] = None
        return conn

    async def call(
        self,
        address: str,
        body: msgspec.Raw,
        timeout: float,  # noqa: ASYNC109 - one deadline for connect + call
    ) -> msgspec.Raw:
        async with asyncio.timeout(timeout):
            conn = await self.connection(address)
            if conn.closed:
                raise ConnectionLost(conn.reason)
            rid = next(conn.ids)
            fut: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
            conn.pending[rid] = fut
            request = Request(rid, max(1, math.ceil(timeout * 1000)), body)
            try:
                self.net._transmit(conn, True, lambda: self.net._serve(conn, request, self))
                raw = await fut
            finally:
                conn.pending.pop(rid, None)
        err = transport_error_of(raw)
        if err is not None:
            raise RemoteError(err.code, err.message)
        return raw

    async def close(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn.break_("closed by the client")


class SimNetwork:
    """The network shared by every node and client of one simulation."""

    def __init__(
        self,
        rng: random.Random,
        *,
        min_latency: float = 0.0002,
        max_latency: float = 0.002,
        cluster_id: str = "bedrock",
    ) -> None:
        self.rng = rng
        self.min_latency = min_latency
        self.max_latency = max_latency
        self.cluster_id = cluster_id
        self.faults = Faults()
        self.endpoints: dict[int, SimEndpoint] = {}
        self.addresses: dict[str, int] = {}
        self.down: set[Endpoint] = set()
        #: Cut links, as (from, to): nothing passes from ``from`` to ``to``.
        self.cuts: set[tuple[Endpoint, Endpoint]] = set()
        #: Called with (src, dst, request body, answer, arrival time) for every
        #: request served (``answer`` None when the handler was cancelled): the
        #: simulator's tap.
        self.observers: list[Callable[[Endpoint, int, bytes, bytes | None, float], None]] = []
        self.delivered = 0
        self.dropped = 0
        # Every open connection, in the order they opened (a dict: deterministic).
        self._conns: dict[_Conn, None] = {}
        self._heal_waiters: list[asyncio.Future[None]] = []

    # -- building --------------------------------------------------------------------

    def factory(
        self, config: NodeConfig, callbacks: NetworkCallbacks, credentials: NodeCredentials
    ) -> SimEndpoint:
        """A node's endpoint (``Node.start(network_factory=net.factory)``)."""
        endpoint = SimEndpoint(self, config.id, callbacks)
        self.addresses[config.listen] = config.id
        self.down.add(config.id)  # until it starts listening
        self.endpoints[config.id] = endpoint
        return endpoint

    def channel(self, name: str, principal: Principal | None = None) -> SimChannel:
        """A client process ``name`` (a client principal by default)."""
        return SimChannel(self, name, principal or Principal.client(name))

    def latency(self) -> float:
        return self.rng.uniform(self.min_latency, self.max_latency)

    def _delay(self) -> float:
        extra = self.faults.spike if self.rng.random() < self.faults.delay else 0.0
        return self.latency() + extra * self.rng.random()

    # -- faults ----------------------------------------------------------------------

    def cut(self, src: Endpoint, dst: Endpoint) -> None:
        """Nothing passes from ``src`` to ``dst`` (one way) until healed."""
        self.cuts.add((src, dst))

    def partition(self, a: Endpoint, b: Endpoint) -> None:
        """Nothing passes between ``a`` and ``b``."""
        self.cut(a, b)
        self.cut(b, a)

    def isolate(self, groups: Iterable[Iterable[Endpoint]]) -> None:
        """Cut every link between endpoints of different groups."""
        sides = [set(g) for g in groups]
        for i, a in enumerate(sides):
            for b in sides[i + 1 :]:
                for x in a:
                    for y in b:
                        self.partition(x, y)

    def heal(self) -> None:
        """Every link passes again; what connections held is delivered."""
        self.cuts.clear()
        waiters, self._heal_waiters = self._heal_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        for conn in list(self._conns):
            for forward in (True, False):
                held, conn.held[forward] = conn.held[forward], []
                for deliver in held:
                    self._transmit(conn, forward, deliver)

    def passes(self, src: Endpoint, dst: Endpoint) -> bool:
        return (src, dst) not in self.cuts

    def crash(self, node_id: int) -> None:
        """The node is gone; its peers see their connections to it break.

        As over TCP, what it sent before dying still arrives first: the break is
        reported once every message in flight from it has been delivered.
        """
        if node_id in self.down:
            return
        self.down.add(node_id)
        loop = asyncio.get_running_loop()
        later = loop.time() + self.max_latency * 1.01 + self.faults.spike
        for other in sorted(self.endpoints):
            if other != node_id:
                loop.call_at(later, self._report_lost, other, node_id)
        for conn in list(self._conns):
            if node_id in (conn.src, conn.dst):
                at = max(later, conn.last[True], conn.last[False]) + 1e-6
                loop.call_at(at, conn.break_, f"node {node_id} crashed")

    def _up(self, endpoint: SimEndpoint) -> None:
        self.endpoints[endpoint.node_id] = endpoint
        self.down.discard(endpoint.node_id)

    def _report_lost(self, observer: int, lost: int) -> None:
        endpoint = self.endpoints.get(observer)
        if endpoint is not None and observer not in self.down and lost in self.down:
            endpoint.callbacks.on_peer_lost(lost)

    async def _passable(self, src: Endpoint, dst: Endpoint) -> None:
        """Wait until the link is not cut either way (a connect's SYN and SYN-ACK)."""
        while not (self.passes(src, dst) and self.passes(dst, src)):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._heal_waiters.append(fut)
            await fut

    # -- Raft ------------------------------------------------------------------------

    def _send_raft(self, endpoint: SimEndpoint, to: int, data: bytes) -> None:
        src = endpoint.node_id
        if src in self.down or self.endpoints.get(src) is not endpoint:
            return  # a dead incarnation sends nothing
        if not self.passes(src, to) or self.rng.random() < self.faults.drop:
            self.dropped += 1
            return
        loop = asyncio.get_running_loop()
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        for _ in range(copies):
            loop.call_at(loop.time() + self._delay(), self._arrive, src, to, data)

    def _arrive(self, src: int, dst: int, data: bytes) -> None:
        target = self.endpoints.get(dst)
        if target is None or dst in self.down or not self.passes(src, dst):
            self.dropped += 1
            return
        self.delivered += 1
        target.callbacks.on_raft(src, [data])

    # -- requests --------------------------------------------------------------------

    def _transmit(self, conn: _Conn, forward: bool, deliver: Callable[[], None]) -> None:
        """Send one message on ``conn`` (``forward``: a request, else a reply)."""
        if conn.closed:
            return
        sender_alive = (
            conn.channel.alive()
            if forward
            else self.endpoints.get(conn.dst) is conn.target and conn.dst not in self.down
        )
        if not sender_alive:
            return  # a dead process sends nothing (what it sent before is in flight)
        src, dst = (conn.src, conn.dst) if forward else (conn.dst, conn.src)
        if not self.passes(src, dst):
            conn.held[forward].append(deliver)
            loop = asyncio.get_running_loop()
            loop.call_later(conn.give_up, self._give_up, conn, forward, deliver)
            return
        if self.rng.random() < self.faults.drop:
            self.dropped += 1
            conn.break_("connection reset")
            return
        loop = asyncio.get_running_loop()
        at = max(loop.time() + self._delay(), conn.last[forward] + 1e-6)
        conn.last[forward] = at
        loop.call_at(at, self._on_arrival, conn, forward, deliver)

    def _on_arrival(self, conn: _Conn, forward: bool, deliver: Callable[[], None]) -> None:
        if conn.closed:
            return
        src, dst = (conn.src, conn.dst) if forward else (conn.dst, conn.src)
        if not self.passes(src, dst):
            conn.held[forward].append(deliver)  # in flight when the link was cut
            asyncio.get_running_loop().call_later(
                conn.give_up, self._give_up, conn, forward, deliver
            )
            return
        self.delivered += 1
        deliver()

    def _give_up(self, conn: _Conn, forward: bool, deliver: Callable[[], None]) -> None:
        if any(d is deliver for d in conn.held[forward]):
            conn.break_("connection timed out")

    def _serve(self, conn: _Conn, request: Request, channel: SimChannel) -> None:
        endpoint = conn.target
        if self.endpoints.get(conn.dst) is not endpoint or conn.dst in self.down:
            conn.break_(f"node {conn.dst} restarted")  # a new process answers with a reset
            return
        info = ConnInfo(
            "client",
            conn.src if isinstance(conn.src, int) else 0,
            f"sim:{conn.src}",
            channel.principal,
        )
        task = asyncio.get_running_loop().create_task(self._answer(conn, request, info, endpoint))
        conn.served[task] = None
        task.add_done_callback(lambda t: conn.served.pop(t, None))

    async def _answer(
        self, conn: _Conn, request: Request, info: ConnInfo, endpoint: SimEndpoint
    ) -> None:
        body = bytes(request.body)
        arrived = asyncio.get_running_loop().time()
        try:
            answer = await serve_request(endpoint.callbacks.on_request, request, info)
        except asyncio.CancelledError:
            self._observe(conn.src, conn.dst, body, None, arrived)
            raise
        raw = encode_body(answer) if isinstance(answer, TransportError) else answer
        self._observe(conn.src, conn.dst, body, bytes(raw), arrived)
        rid = request.id

        def deliver() -> None:
            fut = conn.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(raw)

        if self.endpoints.get(conn.dst) is endpoint and conn.dst not in self.down:
            self._transmit(conn, False, deliver)

    def _observe(
        self, src: Endpoint, dst: int, body: bytes, answer: bytes | None, arrived: float
    ) -> None:
        for observer in self.observers:
            observer(src, dst, body, answer, arrived)

    def _forget(self, conn: _Conn) -> None:
        self._conns.pop(conn, None)

    # -- a convenience for tests -----------------------------------------------------

    async def request(
        self,
        to: int,
        body: protocol.Request,
        *,
        principal: Principal | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> protocol.Response:
        """One request to node ``to`` from a client (or ``principal``)."""
        name = f"test-{principal or 'client'}"
        channel = self.channel(name, principal)
        address = next(a for a, n in self.addresses.items() if n == to)
        try:
            raw = await channel.call(address, msgspec.Raw(protocol.encode(body)), timeout)
        finally:
            await channel.close()
        return protocol.decode_response(bytes(raw))
