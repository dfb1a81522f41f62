"""PeerLink: the one persistent outbound connection from this node to a peer.

Raft messages to a peer go out on its link. :meth:`PeerLink.send` never blocks:
messages queued during one event-loop iteration leave as one
:class:`RaftBatch`, flushed by ``loop.call_soon`` (so a Ready's messages to a
peer cost one frame and one write). While the link is down, or the peer is not
reading and its socket buffer is over ``write_buffer_limit``, messages are
dropped and counted: Raft retransmits, and a slow peer cannot grow our memory
without bound (invariant I9, docs/architecture.md).

The link connects at start and reconnects forever with capped exponential
backoff (:class:`Backoff`) until closed; a connection the peer opens to us
(:meth:`PeerLink.peer_seen`) ends the wait at once: a restarted peer dials its
peers first, and waiting out a backoff that grew while it was down (up to the
cap, a second) would leave a restarted majority without links meanwhile.

When an established link is broken by the remote (EOF, reset, error) the host
hears ``link_broken`` — the fast failure detector: a dead process's sockets are
closed by its kernel at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Final, Protocol

from ..auth import ConnectorAuth
from ..wire import HEADER_SIZE, RaftBatch
from .backoff import Backoff
from .connector import ConnectorProtocol, establish

log = logging.getLogger("bedrock_cp.transport")

# Upper bounds of msgpack overhead: the batch's array/tag/list headers, and each
# message's bin header. Used to keep a batch under the frame cap without encoding it.
_BATCH_OVERHEAD: Final = HEADER_SIZE + 16
_MESSAGE_OVERHEAD: Final = 5


class LinkHost(Protocol):
    """What a link needs from its node (the Transport)."""

    node_id: int
    cluster_id: str
    stats: Counter[str]
    max_frame: int
    handshake_timeout: float
    write_buffer_limit: int
    backoff: Backoff
    connector_auth: ConnectorAuth

    def peer_up(self, peer_id: int) -> None: ...
    def link_broken(self, peer_id: int) -> None: ...


class _LinkProtocol(ConnectorProtocol):
    def __init__(self, link: PeerLink) -> None:
        host = link.host
        super().__init__(
            auth=host.connector_auth,
            cluster_id=host.cluster_id,
            node_id=host.node_id,
            kind="peer",
            expect_cluster=host.cluster_id,
            expect_node=link.peer_id,
            max_frame=host.max_frame,
            stats=host.stats,
        )
        self._peer_id = link.peer_id

    def who(self) -> str:
        return f"link to peer {self._peer_id} {self.peername}"


class PeerLink:
    """Outbound link to one peer: connect, batch, reconnect."""

    def __init__(self, host: LinkHost, peer_id: int, address: str) -> None:
        self.host = host
        self.peer_id = peer_id
        self.address = address
        self._proto: _LinkProtocol | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Set when the peer connected to us while this link was down.
        self._seen = asyncio.Event()

    def peer_seen(self) -> None:
        """The peer just connected to us: if this link is waiting to reconnect, go now."""
        if self._proto is None:
            self._seen.set()

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or until the peer is seen (or was, meanwhile)."""
        if not self._seen.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._seen.wait()
        self._seen.clear()

    @property
    def connected(self) -> bool:
        """Whether the handshake is done and the link is up."""
        return self._proto is not None

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"peer-link-{self.peer_id}"
        )

    # -- sending --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one encoded Raft message; it leaves in this iteration's batch."""
        proto = self._proto
        stats = self.host.stats
        if proto is None or proto.transport is None:
            stats["raft_dropped.link_down"] += 1
            return
        if proto.transport.get_write_buffer_size() > self.host.write_buffer_limit:
            stats["raft_dropped.backpressure"] += 1
            return
        n = len(data) + _MESSAGE_OVERHEAD
        max_frame = self.host.max_frame
        if n + _BATCH_OVERHEAD > max_frame:
            stats["raft_dropped.oversize"] += 1
            log.error("raft message of %d bytes to peer %d dropped: over the cap", n, self.peer_id)
            return
        if self._pending_bytes + n + _BATCH_OVERHEAD > max_frame:
            self._flush()  # keep every batch under the cap
        self._pending.append(data)
        self._pending_bytes += n
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._pending_bytes = 0
        proto = self._proto
        stats = self.host.stats
        if proto is None:
            stats["raft_dropped.link_down"] += len(pending)
            return
        proto.write(RaftBatch(pending))
        stats["raft.batches_sent"] += 1
        stats["raft.messages_sent"] += len(pending)

    # -- connecting -----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                proto = await self._connect()
            except (OSError, TimeoutError, ValueError) as e:
                self.host.stats["links.connect_failed"] += 1
                log.log(
                    logging.INFO if attempt == 0 else logging.DEBUG,
                    "link to peer %d at %s: connect failed (attempt %d): %s",
                    self.peer_id,
                    self.address,
                    attempt + 1,
                    str(e) or type(e).__name__,
                )
                await self._wait(self.host.backoff.delay(attempt))
                attempt += 1
                continue
            self._proto = proto
            self._seen.clear()
            self.host.stats["links.established"] += 1
            log.info("link to peer %d at %s: up", self.peer_id, self.address)
            self.host.peer_up(self.peer_id)
            try:
                remote_broke = await asyncio.shield(proto.closed)
            finally:
                self._proto = None
                self._drop_pending()
            if remote_broke:
                self.host.link_broken(self.peer_id)
            # Reconnect soon, but not at once: the peer may be restarting.
            await self._wait(self.host.backoff.delay(0))
            attempt = 1

    async def _connect(self) -> _LinkProtocol:
        async with asyncio.timeout(self.host.handshake_timeout):
            return await establish(
                lambda: _LinkProtocol(self), self.address, self.host.connector_auth
            )

    def _drop_pending(self) -> None:
        if self._pending:
            self.host.stats["raft_dropped.link_down"] += len(self._pending)
            self._pending = []
            self._pending_bytes = 0

    # -- closing --------------------------------------------------------------

    async def close(self) -> None:
        """Stop reconnecting and close the connection deliberately (no ``link_broken``)."""
        self._closed = True
        proto = self._proto
        if proto is not None:
            self._flush()
            proto.close("link closed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def abort(self) -> None:
        """Reset the connection and stop at once, as if this process had died."""
        self._closed = True
        if self._proto is not None:
            self._proto.abort(rst=True)
        if self._task is not None:
            self._task.cancel()
