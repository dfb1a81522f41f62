"""The asyncio driver of one node's :class:`~bedrock_cp_native.Consensus`.

One task owns the Ready loop. Ticks fall on a fixed grid
(``_timers.TickClock``), but the runner wakes only for the tick the core says
may act next (``Consensus.next_due``: a leader's next heartbeat, the end of a
follower's window); before any input (a message, a proposal, ...) it delivers
the ticks that fell due meanwhile, so the core sees the same sequence of ticks
and inputs as if it had been woken for each tick. An idle follower wakes for
its leader's heartbeats only. Every Ready goes through the contract of
:mod:`bedrock_cp.raft.driver`, which the native object enforces:

1. **persist** — the leader's Appends and heartbeats leave first
   (``Ready.take_early_messages``: its followers write while it writes; it
   counts its own copy toward a commit only once persisted). Then the node's
   own WAL thread writes entries and term/vote with an fsync
   (``Consensus.persist_start``; it never takes the GIL and signals
   ``persist_fd`` when done), so the event loop keeps stepping messages and
   taking proposals meanwhile; they go into the *next* Ready, which is how
   many proposals share one fsync (group commit). A Ready that needs no
   fsync is persisted inline. Every other message exists only in what the
   persist returns: nothing else can be sent before it is durable;
2. **send** those messages;
3. **apply** the snapshot (if any) and the committed entries, in order;
4. **advance**, then release confirmed reads (the host waits for their index
   to be applied).

Compaction: once ``compact_every`` entries and half the last snapshot's size
in bytes (:data:`COMPACT_RATIO`), or ``compact_bytes`` bytes whatever the
count, were applied since the last snapshot, the host's state is snapshotted
at exactly the index it applied (the core refuses any other, and while a
snapshot from the leader is being installed).

Time is the injected :class:`~bedrock_cp.clock.Clock` (ticks are armed with
``clock.call_at``), so the deterministic simulator drives this same code on a
virtual clock, and can make one node's ticks run fast or slow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from .._native import native
from ..clock import SYSTEM_CLOCK, Clock
from ..metrics import Histogram
from ._timers import TickClock

log = logging.getLogger("bedrock_cp.raft")

#: Default bytes of applied entries between two compactions.
DEFAULT_COMPACT_BYTES = 64 * 1024 * 1024
#: A compaction is due only once the entries applied since the last snapshot
#: are this fraction of its size: each one encodes the whole state, so at a
#: fixed entry count a large state was encoded again every few thousand writes
#: (20 % of a leader's profile under sustained writes into ~300k services;
#: benches/results/compaction-against-state-size-ab.md). Against the state's size, the cost
#: per byte written stays constant, and the log since the snapshot (what a
#: restart replays) stays under half the state, plus ``compact_every`` entries.
COMPACT_RATIO = 0.5
#: Bytes counted per applied entry beside its data (its index, term and
#: framing in the WAL), so that many tiny entries make a compaction due too.
ENTRY_OVERHEAD = 32


class RaftHost(Protocol):
    """What the runner calls back into: the network and the state machine."""

    def send_raft(self, to: int, data: bytes) -> None:
        """Queue one encoded Raft message for peer ``to`` (best effort)."""

    def apply(self, entry: native.Entry) -> None:
        """Apply one committed entry, in log order."""

    def restore(self, snapshot: native.Snapshot) -> None:
        """Replace the state machine with a snapshot received from the leader."""

    def on_read_state(self, index: int, ctx: bytes) -> None:
        """A ReadIndex request ``ctx`` may be served once ``index`` is applied."""

    def on_soft_state(self, leader_id: int, role: str) -> None:
        """The known leader or this node's role changed."""

    def snapshot_data(self) -> bytes:
        """The state machine's current state, for compaction."""


class RaftRunner:
    """Drives a :class:`~bedrock_cp_native.Consensus` on the event loop."""

    def __init__(
        self,
        consensus: native.Consensus,
        host: RaftHost,
        *,
        tick_interval: float,
        stall_hold: float | None = None,
        compact_every: int = 10_000,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
        executor: concurrent.futures.Executor | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.consensus = consensus
        self.clock = clock
        self.host = host
        self.tick_interval = tick_interval
        #: After a stall longer than this, how long a tick that would give up on
        #: the peers waits for their messages (see ``_timers``).
        self.stall_hold = 5 * tick_interval if stall_hold is None else stall_hold
        self.compact_every = compact_every
        self.compact_bytes = compact_bytes
        #: Index the host has applied (entries and restored snapshots).
        self.applied_index = 0
        #: Proposals made through this runner (entries and membership changes).
        self.proposals = 0
        #: How long each synced persist (the WAL's write + fsync) took.
        self.persist_seconds = Histogram(
            "bedrock_raft_persist_seconds", "Raft persists that fsync the WAL: their duration"
        )
        #: Index of the latest snapshot (local or from the leader).
        self.snapshot_index = 0
        #: Bytes of entries applied since that snapshot (data plus ENTRY_OVERHEAD each).
        self.bytes_since_snapshot = 0
        #: Size of that snapshot's data (its host sets it for the one it started from).
        self.snapshot_bytes = 0
        #: How long each compaction held the event loop (the host encoding its state).
        self.compaction_seconds = Histogram(
            "bedrock_raft_compaction_seconds",
            "Log compactions: how long the event loop spent encoding the state",
        )
        self.fatal: BaseException | None = None
        # Without an executor (a real node), persists run on the Consensus's
        # own WAL thread; an executor (the simulator's inline one, tests)
        # runs ``persist`` itself. Compactions always go to an executor.
        self._native_persist = executor is None
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"snapshot-{consensus.id}"
        )
        self._persist_waiter: asyncio.Future[native.Persisted] | None = None
        self._persist_fd: int | None = None
        #: Work for the loop task: set by :meth:`_wake`, cleared by the task.
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ticks: TickClock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.Handle | None = None
        #: When the armed tick timer fires.
        self._tick_at = 0.0
        #: The core's next acting tick: (ticks before it that only count, gives up).
        self._quiet = 0
        self._gives_up = False
        self._tick_error: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        #: Called after each wake-up of the tick timer (a leader's: every
        #: heartbeat): work run from it costs the process no wake-up of its own.
        self.on_timer: Callable[[], None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._native_persist:
            self._persist_fd = self.consensus.persist_fd
            loop.add_reader(self._persist_fd, self._on_persisted)
        self._ticks = TickClock(self.tick_interval, self.clock.monotonic(), hold=self.stall_hold)
        self._tick_at = self._ticks.next_deadline()
        self._tick_handle = self.clock.call_at(self._tick_at, self._on_tick)
        self._task = loop.create_task(self._run(), name=f"raft-{self.consensus.id}")

    async def stop(self) -> None:
        """Finish the Ready in progress (its persist included), then stop."""
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._wake()
        if self._task is not None:
            with contextlib.suppress(Exception):  # already logged by _run
                await self._task
        self._unwatch_persists()
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """Stop the loop at once, as a crash would: nothing more is sent or applied.

        A persist running on the WAL thread finishes its write there (the
        native object keeps the WAL until then); its result is discarded.
        """
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._task is not None:
            self._task.cancel()
        self._unwatch_persists()
        if self._owns_executor:
            self._executor.shutdown(wait=False)

    def _unwatch_persists(self) -> None:
        if self._persist_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._persist_fd)
            self._persist_fd = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- inputs (all from the loop thread) ------------------------------------------

    def step(self, data: bytes, from_peer: int) -> bool:
        """Feed one message received from ``from_peer`` (the transport's
        authenticated peer). False when dropped as forged or misaddressed.
        Undecodable bytes raise MessageDecodeError."""
        self._deliver_ticks()
        stepped = self.consensus.step(data, from_peer)
        self._inputted()
        return stepped

    def propose(self, data: bytes) -> int:
        """Propose ``data``; return its index. Raises NotLeaderError on followers."""
        self._deliver_ticks()
        index = self.consensus.propose(data)
        self.proposals += 1
        self._inputted()
        return index

    def propose_conf_change(self, kind: str, node_id: int) -> int:
        self._deliver_ticks()
        index = self.consensus.propose_conf_change(kind, node_id)  # type: ignore[arg-type]
        self.proposals += 1
        self._inputted()
        return index

    def read_index(self, ctx: bytes) -> None:
        self._deliver_ticks()
        self.consensus.read_index(ctx)
        self._inputted()

    def share_commit(self) -> None:
        """As leader, tell the followers the commit index now rather than with the
        next Append or tick (see ``Consensus.share_commit``)."""
        self._deliver_ticks()
        self.consensus.share_commit()
        self._inputted()

    def peer_unreachable(self, peer: int) -> None:
        self._deliver_ticks()
        self.consensus.peer_unreachable(peer)
        self._inputted()

    def transfer_leader(self, to: int) -> None:
        self._deliver_ticks()
        self.consensus.transfer_leader(to)
        self._inputted()

    def campaign(self) -> None:
        self._deliver_ticks()
        self.consensus.campaign()
        self._inputted()

    # -- ticks ------------------------------------------------------------------------

    def _deliver_ticks(self) -> int:
        """Give the core the ticks that fell due since it last saw time pass.

        Called before every input, so that the core sees ticks and inputs in
        the order they happened although the runner slept through the quiet
        ticks. Returns how many."""
        ticks = self._ticks
        if ticks is None:
            return 0
        dropped = ticks.dropped
        n = ticks.due(self.clock.monotonic(), self._quiet, self._gives_up)
        if ticks.dropped != dropped:
            # This loop stalled: the heartbeat gaps running now are its own
            # pause, not a peer's silence (learned, each pause of a follower
            # doubled its window up to the election timeout).
            self.consensus.stalled()
        if n:
            tick = self.consensus.tick
            for _ in range(n):
                tick()
            self._learn_due()
        return n

    def _learn_due(self) -> None:
        ticks, self._gives_up = self.consensus.next_due()
        self._quiet = ticks - 1

    def _inputted(self) -> None:
        """After an input, wake the loop, and move the tick timer to the core's
        next acting tick: closer (a won election: heartbeats from now on), or
        later (a heartbeat restarted the follower's window) by more than two
        ticks — a follower's timer then never fires while its leader is
        heard, and a busy one is not re-armed for every message."""
        self._learn_due()
        ticks = self._ticks
        if ticks is not None and not self._stopping:
            at = ticks.wake_at(self._quiet)
            if at < self._tick_at or at > self._tick_at + 2 * self.tick_interval:
                self._arm(at)
        # Most inputs of an idle leader (a heartbeat's answer) leave nothing to
        # do: the loop task is woken only for a Ready.
        if self.consensus.has_ready():
            self._wake()

    def _wake(self) -> None:
        """Wake the loop task (cheaper than an ``asyncio.Event``: one waiter,
        no loop lookup per wait)."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _arm(self, at: float) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._tick_at = at
        self._tick_handle = self.clock.call_at(at, self._on_tick)

    # -- the loop ---------------------------------------------------------------------

    def _on_tick(self) -> None:
        """Timer callback: deliver the ticks that fell due; wake the loop only if
        they produced work; sleep until the next tick that may act."""
        ticks = self._ticks
        assert ticks is not None
        try:
            self._deliver_ticks()
            self._learn_due()
            ready = self.consensus.has_ready()
        except Exception as exc:  # a poisoned core: let the loop task fail
            self._tick_error = exc
            self._wake()
            return
        if not self._stopping:
            self._arm(ticks.wake_at(self._quiet))
            if ready:
                self._wake()
            if self.on_timer is not None:
                self.on_timer()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                if not self._woken:
                    self._waiter = loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
                self._woken = False
                if self._tick_error is not None:
                    raise self._tick_error
                while not self._stopping and self.consensus.has_ready():
                    await self._handle_ready(loop)
        except Exception as exc:
            # A WAL failure (fsync error, corruption), a broken core, or a
            # state machine that cannot apply: the node must stop rather than
            # keep running on state it cannot trust.
            log.critical("raft loop of node %d stopped: %s", self.consensus.id, exc, exc_info=True)
            self.fatal = exc
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            if self.on_fatal is not None:
                self.on_fatal(exc)
            raise

    def _on_persisted(self) -> None:
        """``persist_fd`` is readable: the WAL thread finished a persist."""
        waiter = self._persist_waiter
        try:
            out = self.consensus.persist_done()
        except Exception as exc:  # a WAL failure: the loop task raises it
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return
        if out is not None and waiter is not None and not waiter.done():
            waiter.set_result(out)

    def _start_persist(
        self, loop: asyncio.AbstractEventLoop, rd: native.Ready
    ) -> asyncio.Future[native.Persisted]:
        """Start writing ``rd`` (fsync included) off the loop; resolves when durable."""
        if not self._native_persist:
            return loop.run_in_executor(self._executor, self.consensus.persist, rd)
        waiter: asyncio.Future[native.Persisted] = loop.create_future()
        self._persist_waiter = waiter
        self.consensus.persist_start(rd)
        return waiter

    async def _handle_ready(self, loop: asyncio.AbstractEventLoop) -> None:
        c = self.consensus
        rd = c.ready()
        host = self.host
        early = rd.take_early_messages()
        # 1. Persist, the leader's Appends going out meanwhile; the other
        #    messages only exist once that returned.
        if rd.must_sync:
            started = loop.time()
            persisting = self._start_persist(loop, rd)
            for to, data in early:
                host.send_raft(to, data)
            try:
                out = await persisting
            finally:
                self._persist_waiter = None
            self.persist_seconds.observe(loop.time() - started)
        else:
            for to, data in early:
                host.send_raft(to, data)
            out = c.persist(rd)
        # 2. Send.
        for to, data in out.messages:
            host.send_raft(to, data)
        # 3. Apply — after telling the host about a role change, so that a new
        #    leader whose no-op commits in this same Ready knows it leads.
        soft = out.soft_state
        if soft is not None:
            host.on_soft_state(soft[0], soft[1])
        snapshot = out.snapshot
        if snapshot is not None:
            host.restore(snapshot)
            self.applied_index = self.snapshot_index = snapshot.index
            self.bytes_since_snapshot = 0
            self.snapshot_bytes = len(snapshot.data)
        if out.committed_count:
            applied_bytes = 0
            for entry in out.committed_entries:
                host.apply(entry)
                applied_bytes += len(entry.data) + ENTRY_OVERHEAD
                self.applied_index = entry.index
            self.bytes_since_snapshot += applied_bytes
        # 4. Advance, then release confirmed reads (they wait for the apply).
        c.advance(out)
        for index, ctx in out.read_states:
            host.on_read_state(index, ctx)
        if self.compaction_due():
            await self._compact(loop)

    def compaction_due(self) -> bool:
        """Whether enough was applied since the last snapshot to take the next one."""
        since = self.bytes_since_snapshot
        if since >= self.compact_bytes:
            return True
        return (
            self.applied_index - self.snapshot_index >= self.compact_every
            and since >= self.snapshot_bytes * COMPACT_RATIO
        )

    async def _compact(self, loop: asyncio.AbstractEventLoop) -> None:
        """Snapshot the state machine at the applied index and drop the log before it."""
        started = self.clock.monotonic()
        applied, data = self.applied_index, self.host.snapshot_data()
        self.compaction_seconds.observe(self.clock.monotonic() - started)
        try:
            snapshot = await loop.run_in_executor(
                self._executor, self.consensus.create_snapshot, applied, data
            )
        except native.SnapshotRefusedError as exc:
            # A snapshot from the leader is being installed: it will do.
            log.info("node %d skipped a compaction: %s", self.consensus.id, exc)
            return
        self.snapshot_index = snapshot.index
        self.bytes_since_snapshot = 0
        self.snapshot_bytes = len(data)
        log.info("node %d compacted its log at index %d", self.consensus.id, snapshot.index)
