"""The Gateway of a node: finds the leader, registers the node, follows the layout.

One per node. Its loop, from :meth:`Gateway.start` to :meth:`Gateway.stop`:

1. **Discovery** — through the node's
   :class:`~bedrock_cp.client.coordinators.CoordinatorLink` (the one the
   client uses too): the newest leader any coordinator names (highest term),
   or the one a ``NotLeader`` answer or a hedged try just pointed to. While
   none is named, retry after the link's backoff.
2. **Following** the leader found, three bounded loops run together until one of
   them sees the leader go: the *registration* loop sends one
   ``RegisterNodeRequest`` (capabilities + services, in the Gateway's session) and
   again on every :meth:`Gateway.refresh`; the *watch* loop long-polls
   ``WatchLayout``; the *ping* loop checks the leader still leads within
   ``attempt_timeout`` (a stopped or cut-off leader answers nothing at all;
   registrations and pings are hedged, so a newer leader its peers name is
   found while the try is still waiting). On a node that runs a coordinator
   (``own_coordinator``) the ping loop instead long-polls that coordinator
   (``Ping`` with ``wait_ms``, served in-process): its Raft follows the leader
   already, and tells of a new leader, term or epoch the moment it knows, with
   no periodic request at all. A lost connection, a timeout, a
   ``NotLeader`` answer, a reply naming another leader or a higher epoch ends
   the follow: back to 1, then re-registration.

The layout is cached as received (:meth:`current_layout`, :meth:`layout_reply`
for ``GetLayout``); each new epoch's layout is decoded strictly and handed to
``on_layout``. A corrupt one is logged with the reason and not applied (nor
asked for again: the watch moves past its epoch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Protocol

import msgspec

from .. import protocol
from ..client.coordinators import CoordinatorLink, Leader, TryFailed
from ..protocol import Layout, Service, decode_layout

log = logging.getLogger("bedrock_cp.gateway")

#: How long one long poll of the node's own coordinator waits (the coordinator caps it).
OWN_VIEW_WAIT_MS = 5_000


class CoordinatorCaller(Protocol):
    """How a Gateway calls coordinators: :class:`~bedrock_cp.protocol.Caller`, or
    whatever a test or the simulator provides.

    Raises ConnectionError/OSError/ConnectionLost when the address cannot be
    reached, TimeoutError after ``timeout``, RemoteError for a transport error.
    """

    async def call(self, to: str, body: protocol.Request, timeout: float) -> protocol.Response: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


class _LeaderLost(Exception):
    """The leader being followed is gone (or no longer leads); rediscover."""


class Gateway:
    """See the module docstring."""

    def __init__(
        self,
        node: str,
        address: str,
        coordinators: list[str],
        cluster_id: str,
        *,
        capabilities: Callable[[], list[str]],
        services: Callable[[], list[Service]],
        on_layout: Callable[[Layout], None] | None = None,
        rng: random.Random | None = None,
        caller: CoordinatorCaller,
        attempt_timeout: float = 0.5,
        write_timeout: float = 2.0,
        watch_wait_ms: int = 5_000,
        ping_interval: float = 0.25,
        own_coordinator: bool = False,
    ) -> None:
        if not coordinators:
            raise ValueError("a gateway needs at least one coordinator address")
        self.node = node
        self.address = address
        self.coordinators = list(coordinators)
        self.capabilities = capabilities
        self.services = services
        self.on_layout = on_layout
        self.rng = rng or random.Random()
        self.caller: CoordinatorCaller = caller
        self.attempt_timeout = attempt_timeout
        self.write_timeout = write_timeout
        self.watch_wait_ms = watch_wait_ms
        self.ping_interval = ping_interval
        #: This node runs a coordinator at ``address``: follow its view of the
        #: leader instead of pinging the leader (see the module docstring).
        self.own_coordinator = own_coordinator
        #: How this Gateway finds and follows the leader.
        self.link = CoordinatorLink(
            self.coordinators, caller.call, rng=self.rng, attempt_timeout=attempt_timeout
        )
        # The registration session: one write at a time, seq numbered from 1.
        self._session = self.rng.getrandbits(62) | 1
        self._seq = 0
        self._leader: tuple[int, str] | None = None
        self._epoch = 0  # the highest coordinator epoch seen in any reply
        self._layout_seen = 0  # the newest layout epoch received (even if corrupt)
        self._layout: Layout | None = None
        self._layout_record = protocol.LayoutReply(0, None, 0)
        #: Set (and replaced) each time a new layout arrives: GetLayout long polls.
        self._layout_arrived = asyncio.Event()
        self._refresh = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Successful registrations so far, and the index of the last one.
        self.registrations = 0
        self.registered_index = 0

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.caller.close()

    def abort(self) -> None:
        """Stop at once (the node is crashing): cancel the loop, close nothing."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def refresh(self) -> None:
        """Re-register the node (its capabilities or services changed)."""
        self._refresh.set()

    def leader(self) -> tuple[int, str] | None:
        """(id, address) of the leader being followed, or None while discovering."""
        return self._leader

    @property
    def epoch(self) -> int:
        """The newest epoch a coordinator reported to this Gateway (one they issued)."""
        return max(self._epoch, self._layout_seen)

    def current_layout(self) -> Layout | None:
        """The newest valid layout received, or None."""
        return self._layout

    def layout_reply(self) -> protocol.LayoutReply:
        """The answer to ``GetLayout``: the cached layout as stored, and the leader."""
        leader_id = self._leader[0] if self._leader else 0
        return protocol.LayoutReply(
            self._layout_record.epoch, self._layout_record.layout, leader_id
        )

    async def layout_after(self, after_epoch: int, wait_ms: int) -> protocol.LayoutReply:
        """:meth:`layout_reply` once it holds a layout newer than ``after_epoch``,
        or after ``wait_ms`` (capped) with what it holds: a client waiting for the
        next epoch learns it as soon as this node does, not at its next poll."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait_ms, 0), protocol.MAX_LAYOUT_WAIT_MS) / 1000
        while self._layout_record.epoch <= after_epoch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._layout_arrived.wait()
        return self.layout_reply()

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            registrations = self.registrations
            leader: Leader | None = None
            try:
                leader = self.link.leader or await self.link.discover(self.attempt_timeout)
                self._epoch = max(self._epoch, self.link.epoch)
                if leader is not None:
                    self._leader = (leader.id, leader.address)
                    log.info("node %s follows leader %d at %s", self.node, *self._leader)
                    await self._follow(leader)
            except* _LeaderLost as group:
                log.info("node %s: leader lost: %s", self.node, group.exceptions[0])
            except* Exception:
                log.exception("node %s: gateway loop failed; retrying", self.node)
            self._leader = None
            if self._stopping:
                # Stopped as the leader was lost: the TaskGroup of _follow
                # raised its tasks' errors, which win over a cancellation,
                # and except* took them. The stop must still win. (A flag,
                # not Task.cancelling(): on Python 3.11 a TaskGroup whose
                # task failed leaves its parent's cancel count raised.)
                return
            if self.registrations != registrations:
                attempt = 0  # that leader served us: look for the next one at once
            if self.link.leader is None or self.link.leader == leader:
                # Rediscover after a pause (else a redirect or a hedge named
                # the next leader: go there now).
                self.link.leader = None
                await asyncio.sleep(self.link.retry_delay(attempt))
                attempt += 1

    async def _follow(self, leader: Leader) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._register_loop(leader))
            tg.create_task(self._watch_loop(leader))
            tg.create_task(self._ping_loop(leader))

    async def _call(
        self,
        leader: Leader,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
        *,
        hedged: bool = True,
    ) -> protocol.Response:
        try:
            return await self.link.try_leader(leader, body, timeout, hedged=hedged)
        except TryFailed as failed:
            raise _LeaderLost(str(failed)) from None

    # -- registration ---------------------------------------------------------------------------

    async def _register_loop(self, leader: Leader) -> None:
        while True:
            self._refresh.clear()
            await self._register(leader)
            await self._refresh.wait()

    async def _register(self, leader: Leader) -> None:
        self._seq += 1
        body = protocol.RegisterNodeRequest(
            self.node,
            self.address,
            sorted(self.capabilities()),
            self.services(),
            self._session,
            self._seq,
        )
        attempt = 0
        while True:
            # A retry keeps the seq: the coordinators apply it exactly once.
            reply = await self._call(leader, body, self.write_timeout)
            match reply:
                case protocol.WriteOk(index=index):
                    self.registrations += 1
                    self.registered_index = index
                    log.info(
                        "node %s registered (%d capabilities, %d services) at index %d",
                        self.node,
                        len(body.capabilities),
                        len(body.services),
                        index,
                    )
                    return
                case protocol.Rejected(reason=reason):
                    # Retrying the same declaration cannot help; wait for a refresh.
                    log.error("node %s: registration rejected: %s", self.node, reason)
                    return
                case _:
                    await asyncio.sleep(self.link.retry_delay(attempt))
                    attempt += 1

    # -- layout ---------------------------------------------------------------------------------

    async def _watch_loop(self, leader: Leader) -> None:
        attempt = 0
        while True:
            body = protocol.WatchLayout(self._layout_seen, self.watch_wait_ms)
            timeout = self.watch_wait_ms / 1000 + self.attempt_timeout
            # A long poll is slow on purpose: not hedged (the ping loop watches the leader).
            reply = await self._call(leader, body, timeout, hedged=False)
            if isinstance(reply, protocol.LayoutReply):
                if reply.leader_id and reply.leader_id != leader.id:
                    raise _LeaderLost(f"{leader.address} now names leader {reply.leader_id}")
                self._accept_layout(reply)
                attempt = 0
            else:  # Unavailable (too many watchers), or a Rejected from an older build
                await asyncio.sleep(self.link.retry_delay(attempt))
                attempt += 1

    def _accept_layout(self, reply: protocol.LayoutReply) -> None:
        if reply.epoch <= self._layout_seen or reply.layout is None:
            return
        self._layout_seen = reply.epoch
        try:
            layout = decode_layout(reply.layout)
        except msgspec.DecodeError as exc:
            log.error(
                "node %s: the layout of epoch %d is corrupt and was not applied: %s",
                self.node,
                reply.epoch,
                exc,
            )
            return
        self._layout = layout
        self._layout_record = reply
        arrived, self._layout_arrived = self._layout_arrived, asyncio.Event()
        arrived.set()
        log.info("node %s: layout of epoch %d", self.node, reply.epoch)
        if self.on_layout is not None:
            try:
                self.on_layout(layout)
            except Exception:
                log.exception("node %s: on_layout failed", self.node)

    # -- leader health ----------------------------------------------------------------------------

    async def _ping_loop(self, leader: Leader) -> None:
        while True:
            if self.own_coordinator:
                reply = await self._own_view(leader)
                source = f"this node's coordinator ({self.address})"
            else:
                await asyncio.sleep(self.ping_interval)
                reply = await self._call(leader, protocol.Ping(), self.attempt_timeout)
                source = leader.address
            if not isinstance(reply, protocol.PingReply):
                continue
            if reply.leader_id != leader.id and (reply.leader_id or not self.own_coordinator):
                raise _LeaderLost(f"{source} now names leader {reply.leader_id}")
            if leader.term and reply.term > leader.term and reply.leader_id == leader.id:
                raise _LeaderLost(f"{source} names leader {leader.id} again in term {reply.term}")
            if reply.epoch > self._epoch:
                self._epoch = reply.epoch
                if self.own_coordinator:
                    # The same leader began an epoch: the layout watch brings
                    # its layout. Re-following (and re-registering) right now
                    # would only compete with the new epoch's first commits.
                    continue
                raise _LeaderLost(f"epoch advanced to {reply.epoch}")

    async def _own_view(self, leader: Leader) -> protocol.Response | None:
        """Wait until this node's coordinator names another leader (or
        ``leader`` in a newer term) or knows a newer epoch: one in-process long
        poll, renewed when it ends quietly. None after a failed try (a pause
        first: the coordinator is starting or stopping)."""
        wait_ms = OWN_VIEW_WAIT_MS
        body = protocol.Ping(wait_ms, leader.id, leader.term, self._epoch)
        try:
            return await self.caller.call(self.address, body, wait_ms / 1000 + self.attempt_timeout)
        except Exception as exc:  # starting, stopping, overloaded: try again soon
            log.debug("node %s: own coordinator: %s: %s", self.node, type(exc).__name__, exc)
        await asyncio.sleep(self.ping_interval)
        return None
