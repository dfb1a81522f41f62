"""The coordinator role of a node: the replicated state on Raft, and its API.

:class:`Coordinator` is the :class:`~bedrock_cp.raft.runner.RaftHost` of the
node's :class:`~bedrock_cp.raft.runner.RaftRunner`: committed entries are applied
to :class:`~bedrock_cp.coordinator.state.CoordinatorState`, and client requests
(:mod:`~bedrock_cp.protocol.coordinator`) are answered from it.

- **Writes** are proposed on the leader and answered only after they commit and
  apply (with the state machine's result). A follower answers ``NotLeader`` with
  the leader's address. Every write carries the client's session (id, seq), so a
  retry after a lost reply or a failover is applied exactly once.
- **Reads** are linearizable by default (ReadIndex, answered once applied up to
  the read index); ``stale`` reads are served by any coordinator from its state.
- **Readiness**: ``follower -> waiting_consensus -> ready``. A new leader
  accepts writes at once, but is *ready* only after the first entry of its term
  (its no-op) has committed and applied — then it has applied everything before
  it — and then it commits ``BeginEpoch`` (the Director of a later issue starts
  with that epoch).
- **Layout watches**: a gateway long-polls the leader with ``WatchLayout``; the
  waiter is woken when a ``StoreLayout`` (or a snapshot) changes the layout, or
  answered with the current layout when its wait ends. Waiters are bounded
  (:data:`MAX_LAYOUT_WATCHERS`) and fail as retryable when leadership is lost.
- **Membership**: adding a coordinator commits its address, then adds it as a
  Raft *learner* (it receives the log but does not count toward a quorum), waits
  until its log is within :data:`CATCH_UP_DISTANCE` entries of the leader's (at
  most ``learner_catch_up_s``; if it never gets there it stays a learner and the
  reply says so), and only then promotes it to voter — so adding a coordinator
  that must first copy a large state never lowers fault tolerance. Removing one
  does the reverse. A leader asked to remove itself first hands leadership to
  the most up-to-date voter.
- **Snapshots** from the leader are checked: the state they hold must be the
  state at their index, or the node stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .. import protocol as api
from .._native import native
from ..clock import SYSTEM_CLOCK, Clock
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
from .results import Applied, ApplyResult
from .results import Rejected as ApplyRejected
from .state import CoordinatorState, SnapshotError
from .writes import write_proposal, write_reply

log = logging.getLogger("bedrock_cp.coordinator")

# Internal commands of the leader carry no client session.
_NO_SESSION = 0
#: Most ``WatchLayout`` long polls one leader holds at once (one per gateway).
MAX_LAYOUT_WATCHERS = 10_000
#: Longest a ``WatchLayout`` waits before answering with the current layout.
MAX_LAYOUT_WAIT_MS = 30_000
#: A learner this close to the leader's last index is promoted to voter.
CATCH_UP_DISTANCE = 100
#: How long a new coordinator may take to catch up as a learner, by default.
LEARNER_CATCH_UP_S = 30.0


class Network(Protocol):
    """The part of the transport the coordinator needs."""

    def send_raft(self, to: int, data: bytes) -> None: ...

    def set_peers(self, peers: Mapping[int, str]) -> None: ...


class EpochListener(Protocol):
    """Who runs the Director: told when this leader began an epoch, when it lost
    leadership, and when the directory changed (a stalled recovery may now work)."""

    def epoch_begun(self, epoch: int) -> None: ...

    def leadership_lost(self) -> None: ...

    def directory_changed(self) -> None: ...


class _Retry(Exception):
    """A write or read did not complete here; the client should retry."""

    def __init__(self, reply: api.NotLeader | api.Unavailable) -> None:
        super().__init__(reply)
        self.reply = reply


class Coordinator:
    """Replicated coordinator state, its Raft runner and its request handlers."""

    def __init__(
        self,
        *,
        node_id: int,
        address: str,
        configured: Mapping[int, str],
        consensus: native.Consensus,
        network: Network,
        tick_interval: float,
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
            compact_every=compact_every,
            compact_bytes=compact_bytes,
            executor=executor,
            clock=clock,
        )
        self.runner.applied_index = self.state.applied_index
        self.runner.snapshot_index = self.state.applied_index
        self.role = "follower"
        self.leader_id = 0
        self.readiness = "follower"
        self.leader_term = 0
        self._writes: dict[int, tuple[int, asyncio.Future[ApplyResult]]] = {}
        self._conf_waiters: dict[int, asyncio.Future[None]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._applied_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        # Dicts as ordered sets: waiters are woken, and tasks cancelled, in the
        # order they came (a set of objects iterates in memory order, which
        # would make runs of one seed differ).
        self._layout_waiters: dict[asyncio.Future[None], None] = {}
        self._waiter_ids = itertools.count()
        self._read_ids = itertools.count(1)
        self._peers: dict[int, str] = {}
        self._background: dict[asyncio.Task[None], None] = {}
        #: Runs the Director of each epoch this leader begins (set by the node).
        self.epoch_listener: EpochListener | None = None
        #: The Director's status for ``NodeStatus`` (set by the node).
        self.recovery_status: Callable[[], dict[str, Any]] | None = None
        self._update_peers()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()
        for task in list(self._background):
            task.cancel()
        self._fail_pending(api.Unavailable("node stopping; retry on another coordinator"))

    # -- RaftHost ------------------------------------------------------------------------

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
                self.role == "leader"
                and entry.term == self.leader_term
                and self.readiness == "waiting_consensus"
            ):
                self.readiness = "ready"
                self._spawn(self._on_ready(entry.term))
        else:
            layout_before = self.state.layout
            directory_before = self.state.directory_changes
            result = self.state.apply(index, entry.data)
            if self.state.layout is not layout_before:
                self._wake_layout_waiters()
            pending = self._writes.pop(index, None)
            if pending is not None:
                term, fut = pending
                if not fut.done():
                    if term == entry.term:
                        fut.set_result(result)
                    else:
                        fut.set_exception(
                            _Retry(api.Unavailable("the write was overwritten by a new leader"))
                        )
            if isinstance(result, Applied) and self.state.coordinators != self._known_coordinators:
                self._update_peers()
            if self.state.directory_changes != directory_before and self.epoch_listener:
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

    def on_soft_state(self, leader_id: int, role: str) -> None:
        was_leader = self.role == "leader"
        self.leader_id = leader_id
        self.role = role
        if role == "leader":
            if not was_leader:
                self.leader_term = self.runner.consensus.term
                self.readiness = "waiting_consensus"
                log.info("node %d leads term %d", self.node_id, self.leader_term)
        else:
            self.readiness = "candidate" if role in ("candidate", "pre_candidate") else "follower"
            if was_leader:
                log.info("node %d lost leadership (leader now %d)", self.node_id, leader_id)
                if self.epoch_listener is not None:
                    self.epoch_listener.leadership_lost()
                # Pending requests may still commit, but this node cannot tell the
                # client: fail them as retryable; sessions make the retry exactly-once.
                self._fail_pending(self._not_leader())

    def snapshot_data(self) -> bytes:
        return self.state.snapshot()

    # -- leader duties ------------------------------------------------------------------

    async def _on_ready(self, term: int) -> None:
        """Runs once per term on the leader, after its no-op applied."""
        if self.state.coordinators.get(self.node_id) != self.address:
            await self._propose_internal(SetCoordinator(self.node_id, self.address), term)
        await self.begin_epoch()

    async def begin_epoch(self) -> int | None:
        """Commit ``BeginEpoch`` as the leader; tell the listener. None if not leading."""
        term = self.leader_term
        reply = await self._propose_internal(BeginEpoch(str(self.node_id)), term)
        if not isinstance(reply, Applied) or reply.value is None:
            return None
        log.info("node %d began epoch %s (term %d)", self.node_id, reply.value, term)
        if self.epoch_listener is not None and self.role == "leader" and self.leader_term == term:
            self.epoch_listener.epoch_begun(reply.value)
        return reply.value

    async def store_layout(self, epoch: int, layout: bytes) -> ApplyResult | None:
        """Commit the layout of ``epoch`` (refused unless it is the current epoch)."""
        return await self._propose_internal(StoreLayout(epoch, layout), self.leader_term)

    async def retire_workers(
        self, epoch: int, workers: list[api.RetiredWorker]
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
        if self.role != "leader" or self.leader_term != term:
            return None
        try:
            return await self._commit(Proposal(_NO_SESSION, 0, command))
        except _Retry:
            return None

    # -- requests ---------------------------------------------------------------------------

    async def handle_body(self, body: api.CoordinatorRequest) -> api.Response:
        """Answer one decoded request (the node decodes every request and calls this)."""
        try:
            return await self._dispatch(body)
        except _Retry as retry:
            return retry.reply

    async def _dispatch(self, body: api.CoordinatorRequest) -> api.Response:
        match body:
            case api.Ping():
                return self.ping()
            case api.NodeStatus():
                return self.node_status()
            case api.ListServices(stale=stale):
                if not stale:
                    await self.linearizable_barrier()
                return api.ServicesReply(self.state.applied_index, self.state.services())
            case api.ListNodes(stale=stale):
                if not stale:
                    await self.linearizable_barrier()
                nodes = sorted(self.state.nodes.values(), key=lambda n: n.node)
                return api.NodesReply(self.state.applied_index, nodes)
            case api.WatchLayout():
                return await self._watch_layout(body)
            case api.AddCoordinator():
                return await self._add_coordinator(body)
            case api.RemoveCoordinator():
                return await self._remove_coordinator(body)
            case (
                api.Register()
                | api.Deregister()
                | api.RegisterNodeRequest()
                | api.UpdateConfigRequest()
                | api.StoreLayoutRequest()
            ):
                proposal = write_proposal(body, self.clock.wall_ms(), api.CLIENT_NODE)
                return write_reply(await self._commit(proposal))
        return api.Rejected(f"unsupported request {type(body).__name__}")

    def ping(self) -> api.PingReply:
        return api.PingReply(
            self.node_id,
            self.runner.consensus.term,
            self.state.epoch,
            self.leader_id,
            self.advertised_address(self.leader_id),
            self.readiness,
        )

    def node_status(self) -> api.NodeStatusReply:
        st = self.runner.consensus.status()
        return api.NodeStatusReply(
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

    # -- layout watches ----------------------------------------------------------------------

    def layout_reply(self) -> api.LayoutReply:
        """The stored layout as this coordinator has applied it."""
        record = self.state.layout
        if record is None:
            return api.LayoutReply(0, None, self.leader_id)
        return api.LayoutReply(record.epoch, record.layout, self.leader_id)

    async def _watch_layout(self, body: api.WatchLayout) -> api.Response:
        if self.role != "leader":
            raise _Retry(self._not_leader())
        record = self.state.layout
        if record is not None and record.epoch > body.after_epoch:
            return self.layout_reply()
        if len(self._layout_waiters) >= MAX_LAYOUT_WATCHERS:
            return api.Unavailable(f"more than {MAX_LAYOUT_WATCHERS} layout watches; retry")
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

    def _wake_layout_waiters(self) -> None:
        waiters, self._layout_waiters = self._layout_waiters, {}
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- writes --------------------------------------------------------------------------------

    async def _commit(self, proposal: Proposal) -> ApplyResult:
        """Propose on this leader and wait until the entry is applied here."""
        if self.role != "leader":
            raise _Retry(self._not_leader())
        try:
            index = self.runner.propose(encode_proposal(proposal))
        except native.NotLeaderError:
            raise _Retry(self._not_leader()) from None
        except native.ProposalDroppedError as exc:
            raise _Retry(api.Unavailable(f"{exc}; retry")) from None
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._writes[index] = (self.runner.consensus.term, fut)
        return await fut

    async def _conf_change(self, kind: str, node_id: int) -> None:
        if self.role != "leader":
            raise _Retry(self._not_leader())
        try:
            index = self.runner.propose_conf_change(kind, node_id)
        except native.ConfChangePendingError:
            raise _Retry(api.Unavailable("a membership change is in progress; retry")) from None
        except native.NotLeaderError:
            raise _Retry(self._not_leader()) from None
        except native.ProposalDroppedError as exc:
            raise _Retry(api.Unavailable(f"{exc}; retry")) from None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conf_waiters[index] = fut
        await fut

    def voters(self) -> list[int]:
        return self.runner.consensus.status()["voters"]

    def learners(self) -> list[int]:
        return self.runner.consensus.status()["learners"]

    async def _add_coordinator(self, body: api.AddCoordinator) -> api.Response:
        result = await self._commit(write_proposal(body, self.clock.wall_ms(), api.CLIENT_NODE))
        if isinstance(result, ApplyRejected):
            return write_reply(result)
        if body.id in self.voters():
            return api.WriteOk(self.state.applied_index, None)
        if body.id not in self.learners():
            await self._conf_change("add_learner", body.id)
        if not await self._caught_up(body.id):
            return api.Unavailable(
                f"coordinator {body.id} did not catch up within {self.learner_catch_up_s:g} s "
                "(is it running and reachable?); it stays a learner, which does not count "
                "toward a quorum: retry AddCoordinator to promote it, or remove it"
            )
        await self._conf_change("add", body.id)
        return api.WriteOk(self.state.applied_index, None)

    async def _caught_up(self, node_id: int) -> bool:
        """Wait (bounded) until learner ``node_id`` is within CATCH_UP_DISTANCE of our log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.learner_catch_up_s
        while True:
            if self.role != "leader":
                raise _Retry(self._not_leader())
            st = self.runner.consensus.status()
            matched = next((p["match"] for p in st["progress"] if p["id"] == node_id), 0)
            # It holds everything up to our snapshot (no snapshot transfer left)
            # and is at most CATCH_UP_DISTANCE entries behind.
            if (
                matched > 0
                and matched >= st["first_index"] - 1
                and matched + CATCH_UP_DISTANCE >= st["last_index"]
            ):
                return True
            if loop.time() >= deadline:
                return False
            # Progress is only visible through the core's status: poll it, a few
            # ticks apart.
            await asyncio.sleep(4 * self.tick_interval)

    async def _remove_coordinator(self, body: api.RemoveCoordinator) -> api.Response:
        # Only the leader's view of the membership counts: a follower still
        # catching up may see fewer voters (and refuse wrongly).
        if self.role != "leader":
            raise _Retry(self._not_leader())
        if body.id == self.node_id:
            if self.voters() == [self.node_id]:
                return api.Rejected("cannot remove the only coordinator")
            target = self._best_successor()
            if target is None:
                # The core already stepped down; this node hears of it with its next Ready.
                raise _Retry(api.Unavailable("leadership is changing; retry"))
            self.runner.transfer_leader(target)
            raise _Retry(
                api.Unavailable(f"handing leadership to node {target} before removing {body.id}")
            )
        if body.id in self.voters() or body.id in self.learners():
            if self.voters() == [body.id]:
                return api.Rejected("cannot remove the only coordinator")
            await self._conf_change("remove", body.id)
        if body.id in self.state.coordinators:
            result = await self._commit(write_proposal(body, self.clock.wall_ms(), api.CLIENT_NODE))
            return write_reply(result)
        return api.WriteOk(self.state.applied_index, None)

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

    # -- reads ------------------------------------------------------------------------------------

    async def linearizable_barrier(self) -> None:
        """Return once this leader's state reflects every write committed before the call."""
        if self.role != "leader":
            raise _Retry(self._not_leader())
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

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def _known_coordinators(self) -> dict[int, str]:
        return self._peers_source

    def _update_peers(self) -> None:
        """Dial configured coordinators at their configured address, others at the
        replicated one (so a test can route a peer through a proxy)."""
        self._peers_source = dict(self.state.coordinators)
        peers = {**self._peers_source, **self.configured}
        peers.pop(self.node_id, None)
        if peers != self._peers:
            self._peers = peers
            self.network.set_peers(peers)

    def advertised_address(self, node_id: int) -> str:
        """The address clients should use for ``node_id`` (its own registration first)."""
        if node_id == 0:
            return ""
        if node_id == self.node_id:
            return self.address
        return self.state.coordinators.get(node_id) or self.configured.get(node_id, "")

    def _not_leader(self) -> api.NotLeader:
        return api.NotLeader(self.leader_id, self.advertised_address(self.leader_id))

    def _fail_pending(self, reply: api.NotLeader | api.Unavailable) -> None:
        for _, fut in self._writes.values():
            if not fut.done():
                fut.set_exception(_Retry(reply))
        self._writes.clear()
        for ctx_fut in self._reads.values():
            if not ctx_fut.done():
                ctx_fut.set_exception(_Retry(reply))
        self._reads.clear()
        for conf_fut in self._conf_waiters.values():
            if not conf_fut.done():
                conf_fut.set_exception(_Retry(reply))
        self._conf_waiters.clear()
        layout_waiters, self._layout_waiters = self._layout_waiters, {}
        for layout_fut in layout_waiters:
            if not layout_fut.done():
                layout_fut.set_exception(_Retry(reply))

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background[task] = None
        task.add_done_callback(lambda t: self._background.pop(t, None))
