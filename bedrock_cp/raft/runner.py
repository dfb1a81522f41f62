"""The asyncio driver of one native Raft node: ticks, the Ready loop, persistence.

One task owns the node. It delivers ticks on a fixed grid (``_timers.TickClock``)
and runs every Ready through the contract of :mod:`bedrock_cp.raft.driver`:

1. **persist** — entries and term/vote are fsync'd on a dedicated WAL thread
   (the GIL is released during the write), so the event loop keeps receiving
   messages and proposals meanwhile; they go into the *next* Ready, which is how
   many proposals share one fsync (group commit). A commit-only change needs no
   fsync and is written inline;
2. **send** the Ready's messages — only after step 1 returned;
3. **apply** the snapshot (if any) and the committed entries, in order;
4. **advance** the node.

Time is the running loop's clock (``loop.time()``), so the deterministic
simulator drives this same code on a virtual clock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from .._native import native
from .._timers import TickClock

log = logging.getLogger("bedrock_cp.raft")


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
    """Owns a :class:`~bedrock_cp_native.RaftNode` and its WAL on the event loop."""

    def __init__(
        self,
        node: native.RaftNode,
        wal: native.Wal,
        host: RaftHost,
        *,
        tick_interval: float,
        compact_every: int = 10_000,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.node = node
        self.wal = wal
        self.host = host
        self.tick_interval = tick_interval
        self.compact_every = compact_every
        self.applied_index = 0
        self.snapshot_index = 0
        self.fatal: BaseException | None = None
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"wal-{node.id}"
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._clock: TickClock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_error: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._clock = TickClock(self.tick_interval, loop.time())
        self._tick_handle = loop.call_at(self._clock.next_deadline(), self._on_tick)
        self._task = loop.create_task(self._run(), name=f"raft-{self.node.id}")

    async def stop(self) -> None:
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):  # already logged by _run
                await self._task
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """Stop the loop at once, persisting nothing more (a simulated crash)."""
        self._stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._task is not None:
            self._task.cancel()
        if self._owns_executor:
            self._executor.shutdown(wait=False)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- inputs (all from the loop thread) ------------------------------------------

    def step(self, data: bytes) -> None:
        """Feed one message from a peer. Undecodable bytes raise MessageDecodeError."""
        self.node.step(data)
        self._wake.set()

    def propose(self, data: bytes) -> int:
        """Propose ``data``; return its index. Raises NotLeaderError on followers."""
        index = self.node.propose(data)
        self._wake.set()
        return index

    def propose_conf_change(self, kind: str, node_id: int) -> int:
        index = self.node.propose_conf_change(kind, node_id)  # type: ignore[arg-type]
        self._wake.set()
        return index

    def read_index(self, ctx: bytes) -> None:
        self.node.read_index(ctx)
        self._wake.set()

    def peer_unreachable(self, peer: int) -> None:
        self.node.peer_unreachable(peer)
        self._wake.set()

    def transfer_leader(self, to: int) -> None:
        self.node.transfer_leader(to)
        self._wake.set()

    def campaign(self) -> None:
        self.node.campaign()
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------

    def _on_tick(self) -> None:
        """Timer callback: deliver the ticks that fell due; wake the loop only if
        they produced work. An idle node costs one cheap callback per tick."""
        loop, clock = self._loop, self._clock
        assert loop is not None and clock is not None
        try:
            for _ in range(clock.due(loop.time())):
                self.node.tick()
            ready = self.node.has_ready()
        except Exception as exc:  # a poisoned core: let the loop task fail
            self._tick_error = exc
            self._wake.set()
            return
        if not self._stopping:
            self._tick_handle = loop.call_at(clock.next_deadline(), self._on_tick)
            if ready:
                self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if self._tick_error is not None:
                    raise self._tick_error
                while not self._stopping and self.node.has_ready():
                    await self._handle_ready(loop)
        except Exception as exc:
            # A WAL failure (fsync error, corruption) or a broken core: the node
            # must stop rather than keep running on state it cannot trust.
            log.critical("raft loop of node %d stopped: %s", self.node.id, exc, exc_info=True)
            self.fatal = exc
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            if self.on_fatal is not None:
                self.on_fatal(exc)
            raise

    async def _handle_ready(self, loop: asyncio.AbstractEventLoop) -> None:
        node = self.node
        rd = node.ready()
        # 1. Persist BEFORE any message of this Ready leaves the node.
        if rd.persist_needed:
            if rd.must_sync:
                await loop.run_in_executor(self._executor, self.wal.save, rd)
            else:
                self.wal.save(rd)
        # 2. Send.
        host = self.host
        for to, data in rd.messages:
            host.send_raft(to, data)
        # 3. Apply — after telling the host about a role change, so that a new
        #    leader whose no-op commits in this same Ready knows it leads.
        soft = rd.soft_state
        if soft is not None:
            host.on_soft_state(soft[0], soft[1])
        snapshot = rd.snapshot
        if snapshot is not None:
            host.restore(snapshot)
            self.applied_index = snapshot.index
            self.snapshot_index = snapshot.index
        if rd.committed_count:
            for entry in rd.committed_entries:
                host.apply(entry)
                self.applied_index = entry.index
        # 4. Advance, then release confirmed reads (they wait for the apply).
        read_states = rd.read_states
        node.advance(rd)
        for index, ctx in read_states:
            host.on_read_state(index, ctx)
        if self.applied_index - self.snapshot_index >= self.compact_every:
            await self._compact(loop)

    async def _compact(self, loop: asyncio.AbstractEventLoop) -> None:
        """Snapshot the state machine at the applied index and drop the log before it."""
        snapshot = self.node.create_snapshot(self.host.snapshot_data())
        await loop.run_in_executor(self._executor, self.wal.save_snapshot, snapshot)
        self.snapshot_index = snapshot.index
        log.info("node %d compacted its log at index %d", self.node.id, snapshot.index)
