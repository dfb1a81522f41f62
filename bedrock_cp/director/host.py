"""The leader's Director host: runs one Director per epoch on this node.

The coordinator tells the host (an
:class:`~bedrock_cp.coordinator.service.EpochListener`) when this leader began
an epoch, lost leadership, or saw the directory change. The host starts a
:class:`~.director.Director` for the epoch with a real
:class:`~.node_context.NodeRecoveryContext` (the node's dialer, Foreman and
consensus), stops it at once on leadership loss, and when it ends in failure
(superseded aside) begins the next epoch, backing off with jitter while
attempts keep failing. :func:`check_stored_layout` is what the coordinator
checks before it stores a Director's layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from ..clock import SYSTEM_CLOCK, Clock
from ..coordinator.service import Coordinator
from ..dataplane.worker import Dialer
from ..foreman import Foreman
from ..protocol import Layout, ServiceRecord, decode_layout
from ..transport import Backoff
from .attempt import Failed
from .director import Director
from .distribution import ReplicaHealth
from .node_context import NodeRecoveryContext
from .phases import build_layout
from .status import RecoveryStatus
from .testing_hooks import pause_before_from_environment

log = logging.getLogger("bedrock_cp.recovery")


def check_stored_layout(
    data: bytes, *, epoch: int, old: bytes | None, directory: Mapping[str, ServiceRecord]
) -> str | None:
    """Why ``data`` may not be stored as the layout of ``epoch``, or None.

    It must decode strictly, be a whole layout of ``epoch`` succeeding ``old``
    (the Director's own check: every role, logs, resolvers and storage teams
    covering the key space without gap or overlap), and name only workers the
    directory holds, on the nodes it says.
    """
    try:
        layout = decode_layout(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return f"it does not decode as a layout: {exc}"
    previous: Layout | None = None
    if old is not None:
        try:
            previous = decode_layout(old)
        except (msgspec.DecodeError, msgspec.ValidationError):
            previous = None
    problem = build_layout.check(layout, epoch=epoch, old=previous)
    if problem is not None:
        return problem
    refs = [layout.sequencer, *layout.proxies, *layout.logs]
    refs += [r.worker for r in layout.resolvers]
    refs += [ref for team in layout.storage for ref in team.replicas]
    for ref in refs:
        record = directory.get(ref.id)
        if record is None:
            return f"worker {ref.id!r} is not registered"
        if (record.node, record.address) != (ref.node, ref.address):
            return f"worker {ref.id!r} is registered on node {record.node!r} at {record.address}"
    return None


class DirectorHost:
    """One Director per epoch while this node leads."""

    def __init__(
        self,
        coordinator: Coordinator,
        foreman: Foreman,
        dialer: Dialer,
        *,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        token_bytes: Callable[[int], bytes] = os.urandom,
        pause_before: Callable[[int], str | None] = pause_before_from_environment,
        last_heard: Callable[[str], float | None] = lambda node: None,
        next_round: Callable[[float], Awaitable[None]] = asyncio.sleep,
        quiet_peers: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self.coordinator = coordinator
        self.foreman = foreman
        self.dialer = dialer
        self.clock = clock
        self.rng = rng or random.Random()
        #: The pause before the next epoch while epochs keep failing.
        self.backoff = Backoff(backoff_base, backoff_cap, self.rng)
        self.token_bytes = token_bytes
        #: Test hook: the phase the Director of an epoch pauses before (None: none).
        self.pause_before = pause_before
        #: When this node last received Raft traffic from a node (see RecoveryContext).
        self.last_heard = last_heard
        #: How its Directors wait for the next monitoring round (see RecoveryContext).
        self.next_round = next_round
        #: The peers whose Raft traffic stopped a while ago (see Node.quiet_peers).
        self.quiet_peers = quiet_peers
        self.status = RecoveryStatus()
        #: When each storage replica was last seen, across this node's Directors.
        self.replicas = ReplicaHealth()
        self.director: Director | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        #: Nodes the last epoch found silent as it ended (see Failed.silent).
        self._silent: frozenset[str] = frozenset()
        self._aborted = False

    # -- EpochListener ------------------------------------------------------------------

    def epoch_begun(self, epoch: int) -> None:
        if self._aborted:
            return  # the node crashed: its last commits run no Director
        self._stop_director()
        self._task = asyncio.get_running_loop().create_task(self._run(epoch))

    def leadership_lost(self) -> None:
        if self.director is not None and self._task is not None and not self._task.done():
            # One line: a Director cut off (or paused) and superseded leaves a trace.
            log.warning(
                "director of epoch %d stopped: this node no longer leads", self.director.ctx.epoch
            )
        self._stop_director()

    def directory_changed(self) -> None:
        if self.director is not None:
            self.director.directory_changed()

    # -- status -------------------------------------------------------------------------

    def status_dict(self) -> dict[str, Any]:
        out = self.status.to_dict()
        done = [r for r in self.status.timeline if r.outcome == "completed"]
        out["last_duration_ms"] = round(done[-1].duration_ms, 3) if done else None
        return out

    # -- running ------------------------------------------------------------------------

    def abort(self) -> None:
        """The node is crashing: drop the Director at once, rolling nothing back."""
        self._aborted = True
        task, self._task = self._task, None
        self.director = None
        if task is not None:
            task.cancel()
            task.add_done_callback(_ignore_result)

    async def stop(self) -> None:
        """Stop the Director (the node is shutting down)."""
        task = self._task
        self._stop_director()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _stop_director(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self.director = None

    async def _run(self, epoch: int) -> None:
        ctx = NodeRecoveryContext(
            epoch=epoch,
            coordinator=self.coordinator,
            foreman=self.foreman,
            dialer=self.dialer,
            clock=self.clock,
            rng=random.Random(self.rng.getrandbits(64)),
            token_bytes=self.token_bytes,
            last_heard=self.last_heard,
            next_round=self.next_round,
        )
        director = Director(
            ctx,
            status=self.status,
            pause_before=self.pause_before(epoch),
            replicas=self.replicas,
            rng=random.Random(self.rng.getrandbits(64)),
            # A node that went quiet before this epoch began (the old leader this
            # node just replaced, stopped) is silent too: no grace for its log.
            silent=self._silent | self.quiet_peers(),
        )
        self.director = director
        try:
            outcome = await director.run()
        except asyncio.CancelledError:
            await director.stop()
            raise
        log.warning("director of epoch %d ended: %s", epoch, outcome)
        # The nodes it found silent as it ended: the next epoch does not wait for them.
        self._silent = outcome.silent if isinstance(outcome, Failed) else frozenset()
        # Back off only while epochs keep failing. One that went live ended for a
        # reason (a component died, a fuller layout is possible) and clients
        # wait for the next: begin it at once.
        went_live = any(r.epoch == epoch and r.outcome == "completed" for r in self.status.timeline)
        self._failures = 0 if went_live else self._failures + 1
        if self._failures:
            await asyncio.sleep(self.backoff.delay(self._failures - 1))
        if self.coordinator.role == "leader":
            await self.coordinator.begin_epoch()


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a crashed node's Director ends as it may
