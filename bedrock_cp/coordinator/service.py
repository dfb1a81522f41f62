"""The coordinator role of a node: its replica, its membership, and its API.

:class:`Coordinator` answers client requests (:mod:`~bedrock_cp.protocol.coordinator`)
from its :class:`~.replica.Replica` (state, writes, reads, readiness; see that
module) and its :class:`~.membership.Membership` (adding and removing
coordinators):

- writes are answered after they commit and apply; a follower answers
  ``NotLeader`` with the leader's address; a ``WriteBatch`` is answered once
  all of its writes applied, each with its own result;
- reads are linearizable by default (ReadIndex); ``stale`` reads are served by
  any coordinator from its state;
- **layout watches**: a gateway long-polls the leader with ``WatchLayout``,
  answered when the layout changes or when its wait ends with the current one;
  waiters are bounded (:data:`MAX_LAYOUT_WATCHERS`);
- **leader watches**: a ``Ping`` with ``wait_ms`` is answered when this
  coordinator names another leader than the one the caller is stuck at (or
  when the wait ends); any coordinator answers, waiters are bounded
  (:data:`MAX_LEADER_WATCHERS`).
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from .. import protocol
from ..raft.role import RaftRole
from .limits import MAX_SERVICES_PAGE
from .membership import Membership
from .replica import EpochListener, Network, Retry
from .writes import write_proposal, write_reply

#: Most ``WatchLayout`` long polls one leader holds at once (one per gateway).
MAX_LAYOUT_WATCHERS = 10_000
#: Longest a ``WatchLayout`` waits before answering with the current layout.
MAX_LAYOUT_WAIT_MS = 30_000
#: Most long-polling ``Ping`` requests one coordinator holds at once (a client
#: or Gateway holds one per other coordinator while its leader is slow).
MAX_LEADER_WATCHERS = 10_000
#: Longest a long-polling ``Ping`` waits before answering with the current view.
MAX_LEADER_WAIT_MS = 5_000


class Coordinator(Membership):
    """Replicated coordinator state, its Raft runner and its request handlers."""

    async def handle_body(self, body: protocol.CoordinatorRequest) -> protocol.Response:
        """Answer one decoded request (the node decodes every request and calls this)."""
        try:
            return await self._dispatch(body)
        except Retry as retry:
            return retry.reply

    async def _dispatch(self, body: protocol.CoordinatorRequest) -> protocol.Response:
        match body:
            case protocol.Ping(wait_ms=wait_ms) if wait_ms > 0:
                return await self._watch_leader(body)
            case protocol.Ping():
                return self.ping()
            case protocol.NodeStatus():
                return self.node_status()
            case protocol.ListServices(stale=stale, after=after, limit=limit):
                if not stale:
                    await self.linearizable_barrier()
                size = MAX_SERVICES_PAGE if limit <= 0 else min(limit, MAX_SERVICES_PAGE)
                page, more = self.state.services_page(after, size)
                return protocol.ServicesReply(self.state.applied_index, page, more)
            case protocol.ListNodes(stale=stale):
                if not stale:
                    await self.linearizable_barrier()
                nodes = sorted(self.state.nodes.values(), key=lambda n: n.node)
                return protocol.NodesReply(self.state.applied_index, nodes)
            case protocol.GetConfig(stale=stale):
                if not stale:
                    await self.linearizable_barrier()
                config = msgspec.structs.asdict(self.state.config)
                return protocol.ConfigReply(self.state.applied_index, config)
            case protocol.WatchLayout():
                return await self._watch_layout(body)
            case protocol.AddCoordinator():
                return await self._add_coordinator(body)
            case protocol.RemoveCoordinator():
                return await self._remove_coordinator(body)
            case (
                protocol.Register()
                | protocol.Deregister()
                | protocol.RegisterNodeRequest()
                | protocol.UpdateConfigRequest()
                | protocol.StoreLayoutRequest()
            ):
                proposal = write_proposal(body, self.clock.wall_ms(), protocol.CLIENT_NODE)
                return write_reply(await self._commit(proposal))
            case protocol.WriteBatch(writes=writes):
                at_ms = self.clock.wall_ms()
                proposals = [write_proposal(w, at_ms, protocol.CLIENT_NODE) for w in writes]
                results = await self._commit_all(proposals)
                return protocol.WriteResults([write_reply(r) for r in results])
        return protocol.Rejected(f"unsupported request {type(body).__name__}")

    def ping(self) -> protocol.PingReply:
        return protocol.PingReply(
            self.node_id,
            self.runner.consensus.term,
            self.state.epoch,
            self.leader_id,
            self.advertised_address(self.leader_id),
            self.readiness,
        )

    def _has_news(self, body: protocol.Ping) -> bool:
        """True if this coordinator names a leader other than the one ``body`` is
        stuck at, or knows a newer epoch than ``body.epoch``."""
        if body.epoch is not None and self.state.epoch > body.epoch:
            return True
        if not self.leader_id:
            return False  # an election is under way: nobody to name yet
        term = self.runner.consensus.term
        if body.term and term < body.term:
            return False  # this coordinator lags: what it names is older than the caller's
        if self.leader_id != body.leader_id:
            return True
        # The same leader again at a higher term. A caller that does not know
        # the term (0) compares ids only: otherwise every answer would be news.
        return body.term != 0 and term > body.term

    async def _watch_leader(self, body: protocol.Ping) -> protocol.Response:
        if self._has_news(body):
            return self.ping()
        if len(self._leader_waiters) >= MAX_LEADER_WATCHERS:
            return protocol.Unavailable(f"more than {MAX_LEADER_WATCHERS} leader watches; retry")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(body.wait_ms, MAX_LEADER_WAIT_MS) / 1000
        while not self._has_news(body):
            remaining = deadline - loop.time()
            if remaining <= 0 or not self.runner.running:
                break  # the wait ended, or this node is stopping
            fut: asyncio.Future[None] = loop.create_future()
            self._leader_waiters[fut] = None
            try:
                # asyncio.wait does not raise on timeout (the request's own deadline may).
                await asyncio.wait((fut,), timeout=remaining)
            finally:
                self._leader_waiters.pop(fut, None)
        return self.ping()

    def node_status(self) -> protocol.NodeStatusReply:
        st = self.runner.consensus.status()
        return protocol.NodeStatusReply(
            self.node_id,
            self.address,
            st["role"],
            st["term"],
            st["commit"],
            self.state.applied_index,
            self.leader_id,
            self.state.epoch,
            self.readiness,
            os.getpid(),
            self.state.service_count,
            self.recovery_status()
            if self.recovery_status is not None
            else {"state": "none", "epoch": self.state.epoch},
            {v: self.advertised_address(v) for v in st["voters"]},
            st["forged_dropped"],
        )

    async def _watch_layout(self, body: protocol.WatchLayout) -> protocol.Response:
        if self.role is not RaftRole.LEADER:
            raise Retry(self._not_leader())
        record = self.state.layout
        if record is not None and record.epoch > body.after_epoch:
            return self.layout_reply()
        if len(self._layout_waiters) >= MAX_LAYOUT_WATCHERS:
            return protocol.Unavailable(f"more than {MAX_LAYOUT_WATCHERS} layout watches; retry")
        wait = min(max(body.wait_ms, 0), MAX_LAYOUT_WAIT_MS) / 1000
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._layout_waiters[fut] = None
        try:
            # asyncio.wait does not raise on timeout (the request's own deadline may).
            await asyncio.wait((fut,), timeout=wait)
        finally:
            self._layout_waiters.pop(fut, None)
        failure = fut.exception() if fut.done() else None
        if failure is not None:
            raise failure
        return self.layout_reply()


__all__ = ["Coordinator", "EpochListener", "Network"]
