"""Transport: a node's network endpoint — one listener, one link per peer.

The listener serves both peers (Raft traffic in, delivered to ``on_raft``) and
clients (requests, served by ``on_request``). Raft traffic out goes through one
persistent :class:`PeerLink` per peer. ``on_peer_lost(peer)`` fires once when a
connection to or from an established peer is broken by the other side (a dead
process's kernel closes its sockets at once: the fast failure detector); it is
not called for closes we make ourselves (stop, membership change, a bad frame),
and again only after a link to that peer has been up since.

Every connection authenticates (``auth``: what the listener accepts;
``connector_auth``: how this node proves itself on its links) before anything
else is read from it; see :mod:`.handshake`.

Limits (invariant I9, docs/architecture.md): at most
``max_connections_per_address`` connections from one source address (more are
reset at once), and at most ``max_handshaking`` connections still in their
handshake (``max_handshaking_per_address`` from one address): a new one over
either cap evicts the oldest one still handshaking, so a flood of slow or
silent connections costs bounded memory and cannot keep a real peer, which
completes its handshake in milliseconds, out for long. An established
connection is never evicted.

Clock-free and loop-agnostic: runs on uvloop or the stock asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import msgspec

from ..auth import AcceptorAuth, ConnectorAuth
from ..wire import MAX_FRAME, Hello, Request
from .backoff import Backoff
from .handshake import ConnInfo, Problem, check_hello
from .inbound import InboundConnection
from .peer_link import PeerLink
from .pool import RpcPool

log = logging.getLogger("bedrock_cp.transport")

OnRaft = Callable[[int, list[bytes]], None]
OnPeerLost = Callable[[int], None]
OnRequest = Callable[[Request, ConnInfo], Awaitable[msgspec.Raw]]

#: Unsent bytes to one peer beyond which Raft messages to it are dropped.
WRITE_BUFFER_LIMIT: Final = 64 * 1024 * 1024
#: Connections from one source address (a local cluster's nodes and clients share one).
MAX_CONNECTIONS_PER_ADDRESS: Final = 1024
#: Connections still in their handshake, in all and from one address.
MAX_HANDSHAKING: Final = 128
MAX_HANDSHAKING_PER_ADDRESS: Final = 64


class Transport:
    """The node's network endpoint. Create, ``await start()``, ``await stop()``."""

    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: str,
        listen_host: str,
        listen_port: int,
        peers: Mapping[int, str],
        on_raft: OnRaft,
        on_peer_lost: OnPeerLost,
        on_request: OnRequest,
        auth: AcceptorAuth,
        connector_auth: ConnectorAuth,
        max_frame: int = MAX_FRAME,
        handshake_timeout: float = 2.0,
        reconnect_base: float = 0.01,
        reconnect_cap: float = 1.0,
        rng: random.Random | None = None,
        write_buffer_limit: int = WRITE_BUFFER_LIMIT,
        max_inflight: int = 1024,
        max_connections_per_address: int = MAX_CONNECTIONS_PER_ADDRESS,
        max_handshaking: int = MAX_HANDSHAKING,
        max_handshaking_per_address: int = MAX_HANDSHAKING_PER_ADDRESS,
    ) -> None:
        if auth.cluster != cluster_id:
            raise ValueError(f"credentials are for cluster {auth.cluster!r}, not {cluster_id!r}")
        self.node_id = node_id
        self.auth = auth
        self.connector_auth = connector_auth
        self.max_connections_per_address = max_connections_per_address
        self.max_handshaking = max_handshaking
        self.max_handshaking_per_address = max_handshaking_per_address
        self.cluster_id = cluster_id
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.write_buffer_limit = write_buffer_limit
        self.max_inflight = max_inflight
        self.backoff = Backoff(reconnect_base, reconnect_cap, rng or random.Random())
        #: Counters: ``closed.<reason>``, ``raft_dropped.<why>``, ``requests.<outcome>``, ...
        self.stats: Counter[str] = Counter()
        self._on_raft = on_raft
        self._on_peer_lost = on_peer_lost
        self._on_request = on_request
        self._peers: dict[int, str] = {p: a for p, a in peers.items() if p != node_id}
        self._links: dict[int, PeerLink] = {}
        self._inbound: set[InboundConnection] = set()
        # Connections still handshaking, oldest first; connections by source address.
        self._handshaking: dict[InboundConnection, None] = {}
        self._by_source: Counter[str] = Counter()
        self._handshaking_by_source: Counter[str] = Counter()
        self._lost_reported: set[int] = set()
        self._server: asyncio.Server | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        """The port the listener is bound to (the real one when ``listen_port`` was 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("transport not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def peers(self) -> Mapping[int, str]:
        """The current peers (id -> address), this node excluded."""
        return dict(self._peers)

    def channel(self) -> RpcPool:
        """A new pool of client connections for calls from this node, which
        prove themselves with ``connector_auth`` as node ``node_id``."""
        return RpcPool(self.cluster_id, auth=self.connector_auth, node_id=self.node_id)

    def connected(self, peer_id: int) -> bool:
        """Whether the outbound link to ``peer_id`` is up."""
        link = self._links.get(peer_id)
        return link is not None and link.connected

    async def start(self) -> None:
        """Bind the listener, then start connecting to every peer."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: InboundConnection(self), self.listen_host, self.listen_port, reuse_address=True
        )
        for peer_id, address in self._peers.items():
            self._start_link(peer_id, address)

    async def stop(self) -> None:
        """Close the listener, every connection and every link (no ``on_peer_lost``)."""
        self._stopped = True
        if self._server is not None:
            self._server.close()
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links))
        conns = list(self._inbound)
        for conn in conns:
            conn.close("node stopping")
        if conns:
            await asyncio.wait([conn.closed for conn in conns], timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()

    def abort(self) -> None:
        """Reset every connection and close the listener at once, as a crash would.

        For tests and fault injection; the other side sees connection resets.
        """
        self._stopped = True
        if self._server is not None:
            self._server.close()
        for link in self._links.values():
            link.abort()
        self._links = {}
        for conn in list(self._inbound):
            conn.abort(rst=True)

    # -- Raft traffic ---------------------------------------------------------

    def send_raft(self, to: int, data: bytes) -> None:
        """Queue one encoded Raft message for peer ``to``; never blocks.

        Messages to a peer within one loop iteration leave as one RaftBatch.
        Dropped (and counted in ``stats``) when the link is down or backed up.
        """
        link = self._links.get(to)
        if link is None:
            self.stats["raft_dropped.unknown_peer"] += 1
            return
        link.send(data)

    def set_peers(self, peers: Mapping[int, str]) -> None:
        """Membership changed: link to new peers, close links to removed or moved ones."""
        new = {p: a for p, a in peers.items() if p != self.node_id}
        old = self._peers
        self._peers = new
        if self._server is None or self._stopped:
            return
        for peer_id, address in old.items():
            if new.get(peer_id) != address:
                link = self._links.pop(peer_id, None)
                if link is not None:
                    asyncio.get_running_loop().create_task(link.close())
        for conn in list(self._inbound):
            info = conn.info
            if info is not None and info.kind == "peer" and info.node_id not in new:
                conn.close("peer removed")
        for peer_id, address in new.items():
            if peer_id not in self._links:
                self._start_link(peer_id, address)

    def _start_link(self, peer_id: int, address: str) -> None:
        link = PeerLink(self, peer_id, address)
        self._links[peer_id] = link
        link.start()

    # -- callbacks from connections (InboundHost, LinkHost) ---------------------

    def check_hello(self, hello: Hello) -> Problem | None:
        return check_hello(
            hello,
            cluster_id=self.cluster_id,
            node_id=self.node_id,
            is_peer=self._peers.__contains__,
        )

    def inbound_opened(self, conn: InboundConnection) -> bool:
        """Admit a new connection (True), or reset it: stopping, or over a limit."""
        if self._stopped:
            conn.close("node stopping")
            return False
        source = conn.source
        if self._by_source[source] >= self.max_connections_per_address:
            self.stats["closed.too_many_from_address"] += 1
            if self.stats["closed.too_many_from_address"] % 100 == 1:
                log.warning(
                    "refusing connections from %s: %d open (the limit)",
                    source,
                    self._by_source[source],
                )
            conn.abort(rst=True)
            return False
        if self._handshaking_by_source[source] >= self.max_handshaking_per_address:
            self._evict(next(c for c in self._handshaking if c.source == source))
        if len(self._handshaking) >= self.max_handshaking:
            self._evict(next(iter(self._handshaking)))
        self._inbound.add(conn)
        self._by_source[source] += 1
        self._handshaking[conn] = None
        self._handshaking_by_source[source] += 1
        return True

    def _evict(self, conn: InboundConnection) -> None:
        self.stats["closed.evicted"] += 1
        if self.stats["closed.evicted"] % 100 == 1:
            log.warning("too many connections in handshake: evicting the oldest (%s)", conn.who())
        self._handshake_over(conn)
        conn.abort(rst=True)

    def _handshake_over(self, conn: InboundConnection) -> None:
        if self._handshaking.pop(conn, False) is None:
            self._handshaking_by_source[conn.source] -= 1
            if self._handshaking_by_source[conn.source] <= 0:
                del self._handshaking_by_source[conn.source]

    def inbound_authenticated(self, conn: InboundConnection) -> None:
        self._handshake_over(conn)
        info = conn.info
        if info is not None and info.kind == "peer" and (link := self._links.get(info.node_id)):
            link.peer_seen()  # it is back: do not wait out our link's backoff

    def inbound_closed(self, conn: InboundConnection, remote_broke: bool) -> None:
        self._handshake_over(conn)
        if conn in self._inbound:
            self._inbound.discard(conn)
            self._by_source[conn.source] -= 1
            if self._by_source[conn.source] <= 0:
                del self._by_source[conn.source]
        info = conn.info
        if remote_broke and info is not None and info.kind == "peer":
            self.link_broken(info.node_id)

    def peer_up(self, peer_id: int) -> None:
        self._lost_reported.discard(peer_id)

    def link_broken(self, peer_id: int) -> None:
        # One report per failure, and only once no connection with the peer is
        # left: a dead peer's inbound and outbound connections break together,
        # and messages it sent just before dying may still be read from the
        # inbound one. Reporting on the first break could let such a late
        # heartbeat revive the dead leader's lease in the Raft core.
        if self._stopped or peer_id in self._lost_reported or self._still_connected(peer_id):
            return
        self._lost_reported.add(peer_id)
        self.stats["peers_lost"] += 1
        try:
            self._on_peer_lost(peer_id)
        except Exception:
            log.exception("on_peer_lost(%d) failed", peer_id)

    def _still_connected(self, peer_id: int) -> bool:
        link = self._links.get(peer_id)
        if link is not None and link.connected:
            return True
        return any(
            c.info is not None and c.info.kind == "peer" and c.info.node_id == peer_id
            for c in self._inbound
        )

    def raft_received(self, peer_id: int, messages: list[bytes]) -> None:
        self.stats["raft.batches_received"] += 1
        try:
            self._on_raft(peer_id, messages)
        except Exception:
            log.exception("on_raft from peer %d failed", peer_id)

    def handle_request(self, request: Request, info: ConnInfo) -> Awaitable[msgspec.Raw]:
        return self._on_request(request, info)
