"""The replica: a coordinator's state on Raft, and what its leader does with it.

:class:`Replica` is the :class:`~bedrock_cp.raft.runner.RaftHost` of the node's
:class:`~bedrock_cp.raft.runner.RaftRunner`: committed entries are applied to
:class:`~bedrock_cp.coordinator.state.CoordinatorState`; snapshots are taken
from it and restored into it (a snapshot whose state is not the state at its
index stops the node).

- **Writes** are proposed on the leader and answered only after they commit and
  apply (with the state machine's result); every write carries the client's
  session (id, seq), so a retry after a lost reply or a failover is applied
  exactly once. A replica that is not the leader raises :class:`Retry` naming it.
- **Reads** are linearizable through :meth:`Replica.linearizable_barrier`
  (ReadIndex, then applied up to the read index).
- **Readiness** (:class:`~.readiness.Readiness`): ``follower ->
  waiting_consensus -> ready``. A new leader accepts writes at once, but is
  *ready* only after the first entry of its term (its no-op) has committed and
  applied — then it has applied everything before it — and then it commits
  ``BeginEpoch`` for its Director. An excluded node hands its leadership on.
- **Layout waiters** are woken when a ``StoreLayout`` (or a snapshot) changes
  the layout, and fail as retryable when leadership is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .. import protocol
from .._native import native
from ..clock import SYSTEM_CLOCK, Clock
from ..raft.role import RaftRole
from ..raft.runner import DEFAULT_COMPACT_BYTES, RaftRunner
from .commands import (
    BeginEpoch,
    ForgetRetired,
    Proposal,
    RetireWorkers,
    SetCoordinator,
    StoreLayout,
    encode_proposal,
)
from .readiness import Readiness
from .results import Applied, ApplyResult
from .state import CoordinatorState, SnapshotError

log = logging.getLogger("bedrock_cp.coordinator")

# Internal commands of the leader carry no client session.
NO_SESSION = 0
#: How long a new coordinator may take to catch up as a learner, by default.
LEARNER_CATCH_UP_S = 30.0
#: Seconds an excluded leader waits for its successor to take over.
HAND_OFF_TIMEOUT = 2.0


class Network(Protocol):
    """The part of the transport the coordinator needs."""

    def send_raft(self, to: int, data: bytes) -> None: ...

    def set_peers(self, peers: Mapping[int, str]) -> None: ...


class EpochListener(Protocol):
    """Who runs the Director: told when this leader began an epoch, when it lost
    leadership, and when the nodes' part of the directory (node records, the
    services bound to a node: see ``CoordinatorState.node_changes``) or the
    cluster config changed (a stalled recovery may now work; an excluded
    node's roles must move)."""

    def epoch_begun(self, epoch: int) -> None: ...

    def leadership_lost(self) -> None: ...

    def directory_changed(self) -> None: ...


class Retry(Exception):
    """A write or read did not complete here; the client should retry."""

    def __init__(self, reply: protocol.NotLeader | protocol.Unavailable) -> None:
        super().__init__(reply)
        self.reply = reply


class Replica:
    """Replicated coordinator state and its Raft runner (see the module docstring)."""

    def __init__(
        self,
        *,
        node_id: int,
        address: str,
        configured: Mapping[int, str],
        consensus: native.Consensus,
        network: Network,
        tick_interval: float,
        stall_hold: float | None = None,
        compact_every: int = 10_000,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
        learner_catch_up_s: float = LEARNER_CATCH_UP_S,
        clock: Clock = SYSTEM_CLOCK,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.node_id = node_id
        self.address = address
        # How this node reaches each configured coordinator (tests put proxies here).
        self.configured = dict(configured)
        self.network = network
        self.clock = clock
        self.tick_interval = tick_interval
        self.learner_catch_up_s = learner_catch_up_s
        snapshot = consensus.recovered_snapshot
        self.state = CoordinatorState() if snapshot is None else self._checked_restore(snapshot)
        self.runner = RaftRunner(
            consensus,
            self,
            tick_interval=tick_interval,
            stall_hold=stall_hold,
            compact_every=compact_every,
            compact_bytes=compact_bytes,
            executor=executor,
            clock=clock,
        )
        self.runner.applied_index = self.state.applied_index
        self.runner.snapshot_index = self.state.applied_index
        self.runner.snapshot_bytes = 0 if snapshot is None else len(snapshot.data)
        self.role = RaftRole.FOLLOWER
        self.leader_id = 0
        self.readiness = Readiness.FOLLOWER
        self.leader_term = 0
        #: Elections this node started (became a candidate), pre-votes it
        #: started (suspected its leader, or had none), and leaders it saw.
        self.elections_started = 0
        self.pre_votes_started = 0
        self.leader_changes = 0
        # The last leader known, kept while none is: a pre-vote that ends
        # with the same leader heard again is no leader change.
        self._last_leader = 0
        self._writes: dict[int, tuple[int, asyncio.Future[ApplyResult]]] = {}
        self._conf_waiters: dict[int, asyncio.Future[None]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._applied_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        # Dicts as ordered sets: waiters are woken, and tasks cancelled, in the
        # order they came (a set of objects iterates in memory order, which
        # would make runs of one seed differ).
        self._layout_waiters: dict[asyncio.Future[None], None] = {}
        # Long-polling pings, woken on every change of the known leader or role.
        self._leader_waiters: dict[asyncio.Future[None], None] = {}
        self._waiter_ids = itertools.count()
        self._read_ids = itertools.count(1)
        self._peers: dict[int, str] = {}
        self._background: dict[asyncio.Task[None], None] = {}
        #: Runs the Director of each epoch this leader begins (set by the node).
        self.epoch_listener: EpochListener | None = None
        #: The Director's status for ``NodeStatus`` (set by the node).
        self.recovery_status: Callable[[], dict[str, Any]] | None = None
        self._update_peers()

    def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        for task in list(self._background):
            task.cancel()
        self._fail_pending(protocol.Unavailable("node stopping; retry on another coordinator"))
        self._wake_leader_waiters()

    def send_raft(self, to: int, data: bytes) -> None:
        self.network.send_raft(to, data)

    def apply(self, entry: native.Entry) -> None:
        index = entry.index
        if entry.kind == "conf_change":
            self.state.apply_noop(index)
            waiter = self._conf_waiters.pop(index, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif not entry.data:
            self.state.apply_noop(index)
            if (
                self.role is RaftRole.LEADER
                and entry.term == self.leader_term
                and self.readiness is Readiness.WAITING_CONSENSUS
            ):
                self.readiness = Readiness.READY
                log.info("node %d is ready in term %d", self.node_id, entry.term)
                self._spawn(self._on_ready(entry.term))
        else:
            layout_before = self.state.layout
            nodes_before = self.state.node_changes
            config_before = self.state.config
            epoch_before = self.state.epoch
            result = self.state.apply(index, entry.data)
            if self.state.layout is not layout_before:
                self._wake_layout_waiters()
            if self.state.epoch != epoch_before:
                self._wake_leader_waiters()  # leader watches also end on a new epoch
            if self.role is RaftRole.LEADER and (
                self.state.layout is not layout_before or self.state.epoch != epoch_before
            ):
                # The followers' gateways serve layouts and epochs from their own
                # replica: tell them of this commit now, not with the next Append
                # or tick (one tick, 10 ms, on the recovery's critical path).
                self.runner.share_commit()
            pending = self._writes.pop(index, None)
            if pending is not None:
                term, fut = pending
                if not fut.done():
                    if term == entry.term:
                        fut.set_result(result)
                    else:
                        fut.set_exception(
                            Retry(protocol.Unavailable("the write was overwritten by a new leader"))
                        )
            if isinstance(result, Applied) and self.state.coordinators != self._known_coordinators:
                self._update_peers()
            config_changed = self.state.config is not config_before
            if (
                config_changed
                and self.role is RaftRole.LEADER
                and self.readiness is Readiness.READY
            ):
                self._spawn(self._hand_off_if_excluded(self.leader_term))
            if (self.state.node_changes != nodes_before or config_changed) and self.epoch_listener:
                self.epoch_listener.directory_changed()
        self._release_applied(index)

    @staticmethod
    def _checked_restore(snapshot: native.Snapshot) -> CoordinatorState:
        """The state a snapshot holds, refused unless it is the state at its index."""
        state = CoordinatorState.restore(snapshot.data)
        if state.applied_index != snapshot.index:
            raise SnapshotError(
                f"snapshot labelled index {snapshot.index} holds the state at index "
                f"{state.applied_index}"
            )
        return state

    def restore(self, snapshot: native.Snapshot) -> None:
        self.state = self._checked_restore(snapshot)
        self._update_peers()
        self._release_applied(snapshot.index)
        self._wake_layout_waiters()

    def on_read_state(self, index: int, ctx: bytes) -> None:
        fut = self._reads.pop(ctx, None)
        if fut is not None and not fut.done():
            fut.set_result(index)

    def on_soft_state(self, leader_id: int, role_name: str) -> None:
        role = RaftRole(role_name)  # the core's name, checked
        was_leader = self.role is RaftRole.LEADER
        if role is RaftRole.CANDIDATE and self.role is not RaftRole.CANDIDATE:
            self.elections_started += 1
        if role is RaftRole.PRE_CANDIDATE and self.role is not RaftRole.PRE_CANDIDATE:
            self.pre_votes_started += 1
        if leader_id and leader_id != self._last_leader:
            self.leader_changes += 1
            self._last_leader = leader_id
        self.leader_id = leader_id
        self.role = role
        self._wake_leader_waiters()
        if role is RaftRole.LEADER:
            if not was_leader:
                self.leader_term = self.runner.consensus.term
                self.readiness = Readiness.WAITING_CONSENSUS
                log.info("node %d leads term %d", self.node_id, self.leader_term)
        else:
            self.readiness = (
                Readiness.CANDIDATE
                if role in (RaftRole.CANDIDATE, RaftRole.PRE_CANDIDATE)
                else Readiness.FOLLOWER
            )
            if was_leader:
                log.info("node %d lost leadership (leader now %d)", self.node_id, leader_id)
                if self.epoch_listener is not None:
                    self.epoch_listener.leadership_lost()
                # Pending requests may still commit, but this node cannot tell the
                # client: fail them as retryable; sessions make the retry exactly-once.
                self._fail_pending(self._not_leader())

    def snapshot_data(self) -> bytes:
        # Not canonical (the directory in the order it was built): no sort,
        # no reads in id order (see CoordinatorState.snapshot).
        return self.state.snapshot(canonical=False)

    async def _on_ready(self, term: int) -> None:
        """Runs once per term on the leader, after its no-op applied."""
        if self.state.coordinators.get(self.node_id) != self.address:
            await self._propose_internal(SetCoordinator(self.node_id, self.address), term)
        if await self._hand_off_if_excluded(term):
            return
        await self.begin_epoch()

    async def _hand_off_if_excluded(self, term: int) -> bool:
        """An excluded node does not lead while another can: its Director would
        start the sequencer, proxies and resolvers on it. True once leadership
        moved; False (lead on) if there is no successor or it did not take over
        within :data:`HAND_OFF_TIMEOUT` — a cluster must never be left without
        a Director because its only live node is excluded."""
        if str(self.node_id) not in self.state.config.excluded_nodes:
            return False
        target = self._best_successor()
        if target is None or self.role is not RaftRole.LEADER or self.leader_term != term:
            return False
        log.info("node %d is excluded: handing leadership to node %d", self.node_id, target)
        self.runner.transfer_leader(target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HAND_OFF_TIMEOUT
        while loop.time() < deadline:
            if self.role is not RaftRole.LEADER or self.leader_term != term:
                return True
            await asyncio.sleep(4 * self.tick_interval)  # the core's status is polled
        log.warning(
            "node %d is excluded but node %d did not take over: leading on", self.node_id, target
        )
        return False

    async def begin_epoch(self) -> int | None:
        """Commit ``BeginEpoch`` as the leader; tell the listener. None if not leading."""
        term = self.leader_term
        reply = await self._propose_internal(BeginEpoch(str(self.node_id)), term)
        if not isinstance(reply, Applied) or reply.value is None:
            return None
        log.info("node %d began epoch %s (term %d)", self.node_id, reply.value, term)
        if (
            self.epoch_listener is not None
            and self.role is RaftRole.LEADER
            and self.leader_term == term
        ):
            self.epoch_listener.epoch_begun(reply.value)
        return reply.value

    async def store_layout(self, epoch: int, layout: bytes) -> ApplyResult | None:
        """Commit the layout of ``epoch`` (refused unless it is the current epoch)."""
        return await self._propose_internal(StoreLayout(epoch, layout), self.leader_term)

    async def retire_workers(
        self, epoch: int, workers: list[protocol.RetiredWorker]
    ) -> ApplyResult | None:
        """Record that the Director of ``epoch`` retires ``workers`` (before removing them)."""
        return await self._propose_internal(RetireWorkers(epoch, workers), self.leader_term)

    async def forget_retired(self, epoch: int, ids: list[str]) -> ApplyResult | None:
        """Record that the retired workers ``ids`` are gone from their nodes."""
        return await self._propose_internal(ForgetRetired(epoch, ids), self.leader_term)

    async def _propose_internal(
        self,
        command: BeginEpoch | SetCoordinator | StoreLayout | RetireWorkers | ForgetRetired,
        term: int,
    ) -> ApplyResult | None:
        if self.role is not RaftRole.LEADER or self.leader_term != term:
            return None
        try:
            return await self._commit(Proposal(NO_SESSION, 0, command))
        except Retry:
            return None

    def layout_reply(self) -> protocol.LayoutReply:
        """The stored layout as this coordinator has applied it."""
        record = self.state.layout
        if record is None:
            return protocol.LayoutReply(0, None, self.leader_id)
        return protocol.LayoutReply(record.epoch, record.layout, self.leader_id)

    def _wake_leader_waiters(self) -> None:
        waiters, self._leader_waiters = self._leader_waiters, {}
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _wake_layout_waiters(self) -> None:
        waiters, self._layout_waiters = self._layout_waiters, {}
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _commit(self, proposal: Proposal) -> ApplyResult:
        """Propose on this leader and wait until the entry is applied here."""
        return await self._propose(proposal)

    async def _commit_all(self, proposals: list[Proposal]) -> list[ApplyResult]:
        """Propose each, in order, as its own entry; wait until all are applied
        here. Raises :class:`Retry` as soon as one cannot be answered here (the
        others may still commit: their sessions make a retry exactly-once)."""
        pending: list[asyncio.Future[ApplyResult]] = []
        try:
            for proposal in proposals:
                pending.append(self._propose(proposal))
            return [await fut for fut in pending]
        finally:
            # Answers nobody will read: drop them (apply and _fail_pending skip
            # a future that is done), so none is logged as never retrieved.
            for fut in pending:
                fut.cancel()

    def _propose(self, proposal: Proposal) -> asyncio.Future[ApplyResult]:
        """Propose on this leader; the future resolves when the entry is applied here."""
        if self.role is not RaftRole.LEADER:
            raise Retry(self._not_leader())
        try:
            index = self.runner.propose(encode_proposal(proposal))
        except native.NotLeaderError:
            raise Retry(self._not_leader()) from None
        except native.ProposalDroppedError as exc:
            raise Retry(protocol.Unavailable(f"{exc}; retry")) from None
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._writes[index] = (self.runner.consensus.term, fut)
        return fut

    def _best_successor(self) -> int | None:
        st = self.runner.consensus.status()
        progress = [p for p in st["progress"] if p["id"] in st["voters"]]
        best: tuple[int, int] | None = None
        for p in progress:
            if p["id"] == self.node_id:
                continue
            key = (p["match"], -p["id"])
            if best is None or key > best:
                best = key
        return None if best is None else -best[1]

    async def linearizable_barrier(self) -> None:
        """Return once this leader's state reflects every write committed before the call."""
        if self.role is not RaftRole.LEADER:
            raise Retry(self._not_leader())
        ctx = next(self._read_ids).to_bytes(8, "little")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = fut
        self.runner.read_index(ctx)
        index = await fut
        await self.wait_applied(index)

    async def wait_applied(self, index: int) -> None:
        if self.state.applied_index >= index:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._applied_waiters, (index, next(self._waiter_ids), fut))
        await fut

    def _release_applied(self, applied: int) -> None:
        waiters = self._applied_waiters
        while waiters and waiters[0][0] <= applied:
            _, _, fut = heapq.heappop(waiters)
            if not fut.done():
                fut.set_result(None)

    @property
    def _known_coordinators(self) -> dict[int, str]:
        return self._peers_source

    def _update_peers(self) -> None:
        """Dial configured coordinators at their configured address, others at the
        replicated one (so a test can route a peer through a proxy)."""
        self._peers_source = dict(self.state.coordinators)
        peers = self.peer_addresses()
        if peers != self._peers:
            self._peers = peers
            self.network.set_peers(peers)

    def peer_addresses(self) -> dict[int, str]:
        """The other coordinators (voters and learners), as this node dials them."""
        peers = {**self._peers_source, **self.configured}
        peers.pop(self.node_id, None)
        return peers

    def advertised_address(self, node_id: int) -> str:
        """The address clients should use for ``node_id`` (its own registration first)."""
        if node_id == 0:
            return ""
        if node_id == self.node_id:
            return self.address
        return self.state.coordinators.get(node_id) or self.configured.get(node_id, "")

    def _not_leader(self) -> protocol.NotLeader:
        return protocol.NotLeader(self.leader_id, self.advertised_address(self.leader_id))

    def _fail_pending(self, reply: protocol.NotLeader | protocol.Unavailable) -> None:
        for _, fut in self._writes.values():
            if not fut.done():
                fut.set_exception(Retry(reply))
        self._writes.clear()
        for ctx_fut in self._reads.values():
            if not ctx_fut.done():
                ctx_fut.set_exception(Retry(reply))
        self._reads.clear()
        for conf_fut in self._conf_waiters.values():
            if not conf_fut.done():
                conf_fut.set_exception(Retry(reply))
        self._conf_waiters.clear()
        layout_waiters, self._layout_waiters = self._layout_waiters, {}
        for layout_fut in layout_waiters:
            if not layout_fut.done():
                layout_fut.set_exception(Retry(reply))

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background[task] = None
        task.add_done_callback(lambda t: self._background.pop(t, None))
