"""The Director of one epoch: runs recovery attempts until the epoch is live,
then watches it.

:meth:`Director.run` runs the phases (:class:`~.phases.RecoveryPhase`) in order on a fresh
:class:`~.attempt.Attempt`, timing each one (a :class:`~.attempt.PhaseEvent`
to ``on_event`` and into :attr:`Director.status`). Then:

- **stalled** — rollback (stop the roles, remove the workers this attempt
  created), then a new attempt after a backoff (``backoff_base`` doubling up
  to ``backoff_cap``, with jitter), or at once when the owner calls
  :meth:`directory_changed`;
- **failed** (superseded) — rollback and return :class:`~.attempt.Failed`;
- **completed** — the layout is stored; the Director stops the older epochs'
  roles at once (a client may wait on them), then retires what older
  epochs left behind (:mod:`.retire`: their roles, old log generations,
  replaced replicas, orphans; again whenever the directory changes), keeps
  watching every transaction component (a round every ``monitor_interval``
  while a check can be due;
  a ``Health`` check must be answered within ``health_timeout``: a stopped
  node resets no connection, and every commit waits for each log, so
  silence counts as death) and returns ``Failed("component X died")`` at the
  first death: the owner
  then starts the Director of the next epoch (fail fast). Its data
  distribution (:mod:`.distribution`) replaces storage replicas lost for good
  and ends the epoch once a fuller (or, with no node to refill on, smaller)
  team can be built.

  The watch costs no frames for a node whose liveness is known anyway: this
  node, and every coordinator whose Raft traffic (its answers to this
  leader's heartbeats) arrived within ``health_timeout / 2``. Their
  components are checked every ``health_interval`` only (a worker can fail
  on its own); the others' every round. A node that goes quiet is checked at
  once, with a timeout shortened by what it was quiet for already, so a
  stopped node is declared dead within ``health_timeout +
  monitor_interval`` of its last traffic, as when every round checked it; a
  dead one (its connections reset) vouches for nothing from then on
  (:meth:`Director._health_checks`).

Every attempt that does not complete logs one line with its reason, whatever
went wrong in a phase (no traceback per retry), and the next one waits out the
backoff.

:meth:`stop` cancels :meth:`run` cleanly, rolling back an attempt in flight.
For tests, ``pause_before`` names a phase (a :class:`~.phases.RecoveryPhase`,
or :data:`RETIRE`) the Director waits before, with
:attr:`Director.paused` set, until :meth:`resume` — so a test can stop or kill
it in that exact phase. On a node, the environment variable of :mod:`.testing_hooks`
(``phase@epoch``) sets it for the Director of that one epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable, Coroutine, Iterable

from ..protocol import Layout, ListWorkers, WorkerRef, Workers
from ..transport import Backoff
from .attempt import Attempt, Completed, Fail, Failed, Outcome, PhaseEvent, Stall, Stalled
from .context import RecoveryContext
from .distribution import INTERVAL, Distribution, ReplicaHealth
from .phases import RecoveryPhase
from .phases._calls import TIMED_OUT
from .phases.monitor import HEALTH_TIMEOUT, components, dead
from .retire import retire, stop_old_roles
from .rollback import rollback
from .status import FAILED, RUNNING, STALLED, RecoveryRecord, RecoveryStatus

log = logging.getLogger(__name__)

#: ``pause_before`` may also name this step: the first retirement of a live epoch
#: pauses once it is recorded, before anything is removed.
RETIRE = "retire"
#: Seconds a live epoch waits before it retires what older epochs left.
RETIRE_DELAY = 1.0
#: Seconds a live epoch's component has to answer ``Health`` (the monitor's
#: :data:`~.phases.monitor.HEALTH_TIMEOUT`, the default of ``health_timeout``).
#: Seconds between two ``Health`` checks of the components of a node that
#: vouches for itself (see :meth:`Director._health_checks`): a worker can fail
#: on its own while its process runs.
HEALTH_INTERVAL = 0.5
#: Seconds between two looks for the nodes a degraded layout lacks.
REGROW_INTERVAL = 0.5
#: Seconds a node's Foreman has to answer such a look.
LOOK_TIMEOUT = 0.5


#: However often the directory changes, a stalled Director waits this long
#: between attempts: nodes registering, or what its own attempts create and roll
#: back, would otherwise retry it back to back (about a thousand times a second).
MIN_RETRY_INTERVAL = 0.02


class Director:
    def __init__(
        self,
        ctx: RecoveryContext,
        *,
        on_event: Callable[[PhaseEvent], None] | None = None,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        monitor_interval: float = 0.05,
        health_timeout: float = HEALTH_TIMEOUT,
        health_interval: float = HEALTH_INTERVAL,
        pause_before: RecoveryPhase | str | None = None,
        status: RecoveryStatus | None = None,
        rng: random.Random | None = None,
        replicas: ReplicaHealth | None = None,
        distribution_interval: float = INTERVAL,
        retire_delay: float = RETIRE_DELAY,
        silent: Iterable[str] = (),
    ) -> None:
        self.ctx = ctx
        # Nodes known silent before the first attempt (the previous epoch's
        # end, see Failed.silent); then what the last stalled attempt found.
        self._silent = set(silent)
        #: The nodes known silent when this Director started (its first attempt
        #: gives their logs no grace to answer the lock).
        self.silent_at_start = frozenset(silent)
        self.status = status if status is not None else RecoveryStatus()
        self.layout: Layout | None = None
        self.paused = asyncio.Event()
        self._on_event = on_event
        self._monitor_interval = monitor_interval
        self._health_timeout = health_timeout
        self._health_interval = health_interval
        if pause_before is not None and pause_before != RETIRE:
            try:
                pause_before = RecoveryPhase.named(pause_before)
            except ValueError as exc:
                raise ValueError(f"pause_before: {exc}, or {RETIRE!r}") from None
        self._pause_before = pause_before
        self.replicas = replicas if replicas is not None else ReplicaHealth()
        self._distribution_interval = distribution_interval
        self._retire_delay = retire_delay
        # Between attempts that stalled (each cut short by a directory change).
        self._attempt_backoff = Backoff(backoff_base, backoff_cap, rng or random.Random())
        self._resume = asyncio.Event()
        self._changed = asyncio.Event()
        self._attempt: Attempt | None = None
        self._task: asyncio.Task[Outcome] | None = None
        self._background: list[asyncio.Task[object]] = []

    # -- owner's controls ---------------------------------------------------------------

    def directory_changed(self) -> None:
        """A node record or a service bound to a node changed (a node came or
        went; the services clients register alone do not count): retry a
        stalled attempt now."""
        self._changed.set()

    def resume(self) -> None:
        """Go on past ``pause_before``."""
        self._resume.set()

    async def stop(self) -> None:
        """Cancel :meth:`run` and wait until its in-flight attempt is rolled back."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task])

    # -- running --------------------------------------------------------------------------

    async def run(self) -> Outcome:
        """Recover this epoch, then watch it; returns only when it fails (or is superseded)."""
        if self._task is not None:
            raise RuntimeError("a Director runs once")
        current = asyncio.current_task()
        assert current is not None
        self._task = current
        try:
            return await self._run()
        except asyncio.CancelledError:
            attempt, self._attempt = self._attempt, None
            if attempt is not None:
                leftovers = await rollback(attempt, self.ctx)
                if leftovers:
                    log.error("director: stopped; not rolled back: %s", "; ".join(leftovers))
            self.status.state, self.status.reason = FAILED, "stopped"
            raise

    async def _run(self) -> Outcome:
        number = 0
        while True:
            number += 1
            self._changed.clear()
            attempt = Attempt(number, self.ctx.epoch, silent=set(self._silent))
            self._attempt = attempt
            record = self.status.begin(self.ctx.epoch, number, self.ctx.clock())
            outcome = await self._attempt_once(attempt, record)
            record.duration_ms = (self.ctx.clock() - record.started) * 1000
            if isinstance(outcome, Completed):
                self._attempt = None
                record.outcome = "completed"
                self.layout = outcome.layout
                self.status.state, self.status.phase, self.status.reason = RUNNING, None, ""
                log.info("director: epoch %d live after %d attempt(s)", self.ctx.epoch, number)
                try:
                    return await self._watch(outcome.layout, outcome.recovered_from)
                finally:
                    for task in self._background:
                        task.cancel()
                    self._background = []
            record.outcome = f"{'stalled' if isinstance(outcome, Stalled) else 'failed'}: "
            record.outcome += outcome.reason
            leftovers = await rollback(attempt, self.ctx)
            self._attempt = None
            if leftovers:
                log.error("director: rollback left: %s", "; ".join(leftovers))
            self.status.reason = outcome.reason
            if isinstance(outcome, Failed):
                self.status.state = FAILED
                log.warning("director: epoch %d failed: %s", self.ctx.epoch, outcome.reason)
                return outcome
            self.status.state = STALLED
            self._silent = set(attempt.silent)  # still silent, most likely, a backoff later
            log.info(
                "director: epoch %d attempt %d stalled: %s", self.ctx.epoch, number, outcome.reason
            )
            await self._backoff(number)

    async def _attempt_once(self, attempt: Attempt, record: RecoveryRecord) -> Outcome:
        for phase in RecoveryPhase:
            name = phase.value
            self.status.phase = name
            if attempt.new_cluster and phase.skipped_for_new_cluster:
                self._emit(
                    attempt,
                    record,
                    PhaseEvent(attempt.number, name, self.ctx.clock(), 0.0, "skipped"),
                )
                continue
            if phase == self._pause_before:
                self.paused.set()
                await self._resume.wait()
            started = self.ctx.clock()
            result = "ok"
            outcome: Outcome | None = None
            try:
                await phase.run(attempt, self.ctx)
            except Stall as exc:
                result, outcome = f"stalled: {exc.reason}", Stalled(exc.reason)
            except Fail as exc:
                result, outcome = f"failed: {exc.reason}", Failed(exc.reason)
            except asyncio.CancelledError:
                result = "cancelled"
                raise
            except Exception as exc:  # a bug or an unexpected answer: retry, never crash
                log.debug("director: phase %s raised", name, exc_info=True)
                reason = f"{name}: {type(exc).__name__}: {exc}"
                result, outcome = f"stalled: {reason}", Stalled(reason)
            finally:
                duration = (self.ctx.clock() - started) * 1000
                self._emit(
                    attempt, record, PhaseEvent(attempt.number, name, started, duration, result)
                )
            if outcome is not None:
                return outcome
        assert attempt.layout is not None
        return Completed(attempt.layout, attempt.old_layout)

    def _emit(self, attempt: Attempt, record: RecoveryRecord, event: PhaseEvent) -> None:
        attempt.events.append(event)
        record.phases.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("director: on_event raised")

    async def _backoff(self, number: int) -> None:
        """Wait before attempt ``number + 1``: the backoff, cut short by a
        directory change, but never shorter than :data:`MIN_RETRY_INTERVAL`."""
        delay = self._attempt_backoff.delay(number - 1)
        floor = min(delay, MIN_RETRY_INTERVAL)
        await asyncio.sleep(floor)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay - floor):
                await self._changed.wait()

    def _spawn(self, coro: Coroutine[object, object, object], name: str) -> asyncio.Task[object]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-e{self.ctx.epoch}")
        self._background.append(task)
        return task

    async def _sweep(
        self, layout: Layout, recovered_from: Layout | None, distribution: Distribution
    ) -> None:
        """Retire what older epochs left (beside the watch: a slow or dead node must
        not delay noticing a death)."""
        hook = self._pause if self._pause_before == RETIRE and recovered_from else None
        if recovered_from is not None:
            try:  # urgent: clients may still wait on them
                await stop_old_roles(self.ctx, layout)
            except Exception as exc:  # consensus unreachable, ...: the sweep stops them
                log.info("director: stopping old roles failed: %s: %s", type(exc).__name__, exc)
            # The rest is not urgent: let the first commits of the new epoch have the disks first.
            await asyncio.sleep(self._retire_delay)
        try:
            await retire(self.ctx, layout, recovered_from, distribution.filling, recorded_hook=hook)
        except Exception as exc:  # consensus unreachable, ...: the next sweep tries again
            log.info("director: retirement failed: %s: %s", type(exc).__name__, exc)

    async def _pause(self) -> None:
        self.paused.set()
        await self._resume.wait()

    async def _distribute(self, distribution: Distribution) -> str:
        while True:
            await self.ctx.next_round(self._distribution_interval)
            try:
                reason = await distribution.tick()
            except Exception as exc:  # consensus or a node unreachable: the next tick
                log.info("director: data distribution: %s: %s", type(exc).__name__, exc)
                continue
            if reason is not None:
                return reason

    async def _look_for_better(self, layout: Layout, on_change: Callable[[], None]) -> str:
        """Why a better layout than ``layout`` is possible now (see :meth:`_watch`).

        Looked for at each directory change (then ``on_change`` runs too) and,
        while ``layout`` is degraded, every :data:`REGROW_INTERVAL`: a stopped
        node that resumes changes nothing in the directory. Beside the watch,
        not in it: a look waits on silent nodes, and services register all the
        time.
        """
        degraded = len(layout.logs) < self.ctx.parameters.desired_logs
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REGROW_INTERVAL if degraded else None):
                    await self._changed.wait()
            changed = self._changed.is_set()
            self._changed.clear()
            try:
                better = await self._better_layout_possible(layout)
            except Exception as exc:  # a node unreachable, ...: the next look
                log.info("director: looking for a better layout: %s: %s", type(exc).__name__, exc)
                continue
            if better is not None:
                return better
            if changed:
                on_change()

    async def _watch(self, layout: Layout, recovered_from: Layout | None = None) -> Outcome:
        """Fail fast: the first transaction component that dies ends this epoch.

        Also ends it when the layout is degraded (built while nodes were down
        or silent: fewer logs than wanted) and a directory change, or a look
        every :data:`REGROW_INTERVAL`, finds a better one possible — otherwise
        losing the nodes of its few logs would stop commits although
        enough nodes are back — and when the data distribution
        can build a different storage team (an absent replica back, a filled
        replacement, or a lost replica dropped), and when a config change
        excluded a node that holds one of its logs.
        """
        refs = components(layout, storage=False)
        distribution = Distribution(self.ctx, layout, self.replicas)
        sweeping = self._spawn(self._sweep(layout, recovered_from, distribution), "retire")

        def sweep_again() -> None:  # a node came back: it may hold retired workers
            nonlocal sweeping
            if sweeping.done():
                sweeping = self._spawn(self._sweep(layout, recovered_from, distribution), "retire")

        distributing = self._spawn(self._distribute(distribution), "distribute")
        self._changed.clear()
        if any(r.node in self.ctx.parameters.excluded_nodes for r in layout.logs):
            self._changed.set()  # excluded while this epoch was being recovered
        looking = self._spawn(self._look_for_better(layout, sweep_again), "look")
        vouched: set[str] = set()
        checked: dict[str, float] = {}
        wait = self._monitor_interval
        while True:
            await self.ctx.next_round(wait)
            ended = [t for t in (distributing, looking) if t.done()]
            if ended:
                reason = str(ended[0].result())
                self.status.state, self.status.reason = FAILED, reason
                log.info("director: epoch %d: %s", self.ctx.epoch, reason)
                return Failed(reason)
            checks, wait = self._health_checks(refs, vouched, checked)
            self.status.watch_rounds += 1
            if not checks:  # every node vouched and was checked recently: most rounds
                continue
            self.status.health_checks.update(r.node for r, _ in checks)
            try:
                missing = await dead(self.ctx, [r for r, _ in checks], [t for _, t in checks])
            except Fail as exc:
                missing = []
                reason = exc.reason
            else:
                if not missing:
                    continue
                ref, why = missing[0]
                reason = f"component {ref.kind} {ref.id} died ({why})"
            self.status.state, self.status.reason = FAILED, reason
            log.warning("director: epoch %d: %s", self.ctx.epoch, reason)
            return Failed(reason, frozenset(r.node for r, why in missing if why == TIMED_OUT))

    def _health_checks(
        self, refs: list[WorkerRef], vouched: set[str], checked: dict[str, float]
    ) -> tuple[list[tuple[WorkerRef, float]], float]:
        """This round's ``Health`` checks among ``refs``, each with its timeout,
        and the seconds until the next round has one to make.

        A node vouches for itself while it is this node (the Director runs in
        it) or its Raft traffic arrived within ``health_timeout / 2`` (it answers
        every heartbeat, every 50 ms by default): its components are checked
        only every ``health_interval``. The others' are checked every round, as
        ever (a peer whose connections broke: its process died, the check
        fails at once). A node that just went quiet (``health_timeout / 2`` without
        traffic) is checked at once with the other half of ``health_timeout``,
        so a stopped node's components are declared dead no later than if
        they had been checked every round: within ``health_timeout +
        monitor_interval`` of its last traffic. Quiet alone is no death (a
        follower's Raft loop waits on its WAL's fsync): a check must fail.

        ``vouched`` (the nodes that vouched last round) and ``checked`` (when each
        node's components were last checked) are the watch's, updated here.

        While every node vouches, nothing is due before one could go quiet
        (its last traffic plus ``health_timeout / 2``) or is due for its
        periodic check: an idle leader's watch runs about every other
        heartbeat instead of with each one, and a stopped node is still
        checked on the first round after it went quiet.
        """
        now = self.ctx.clock()
        quiet = self._health_timeout / 2
        checks: list[tuple[WorkerRef, float]] = []
        due = now + self._health_interval  # no node needs more than its periodic check
        for node in dict.fromkeys(r.node for r in refs):
            own = node == self.ctx.node
            heard = now if own else self.ctx.last_heard(node)
            if heard is not None and now - heard <= quiet:
                vouched.add(node)
                checked_now = now - checked.get(node, -math.inf) >= self._health_interval
                periodic = (now if checked_now else checked[node]) + self._health_interval
                # Nothing is due for it before its periodic check or before it
                # could go quiet (this node never does).
                due = min(due, periodic if own else min(periodic, heard + quiet))
                if not checked_now:
                    continue
                timeout = self._health_timeout
            elif heard is not None and node in vouched:
                vouched.discard(node)
                timeout = self._health_timeout - quiet
                due = now  # not vouching: checked every round
            else:  # no vouching (a dead peer's connections broke: it fails at once)
                vouched.discard(node)
                timeout = self._health_timeout
                due = now
            checked[node] = now
            checks += [(r, timeout) for r in refs if r.node == node]
        # The round after the one at which the next check falls due: at most
        # one monitor_interval late, as when every round looked.
        return checks, max(self._monitor_interval, due - now + self._monitor_interval)

    async def _better_layout_possible(self, layout: Layout) -> str | None:
        """Why a new epoch would get more logs now, or must move some, or None.

        Only nodes whose Foreman answers count (a dead node stays registered).
        Storage teams are the data distribution's: it ends the epoch when an
        absent replica is back, or once a replacement is filled.
        """
        p = self.ctx.parameters
        # Logs on an excluded node move (the roles on this node move with the
        # leadership, the storage replicas with the data distribution).
        drained = sorted({r.node for r in layout.logs if r.node in p.excluded_nodes})
        if drained:
            return f"node {', '.join(drained)} excluded: its logs move"
        # Sizes changed by UpdateConfig take effect with the next epoch, as
        # FoundationDB's `configure` does (a recovery, not a reshuffle in place).
        if len(layout.proxies) != p.commit_proxies or len(layout.resolvers) != p.resolvers:
            return (
                f"configured for {p.commit_proxies} commit proxies and {p.resolvers} "
                f"resolvers ({len(layout.proxies)} and {len(layout.resolvers)} running)"
            )
        if len(layout.logs) > p.desired_logs:
            return f"configured for {p.desired_logs} logs ({len(layout.logs)} running)"
        registered = [n for n in await self.ctx.nodes() if n.node not in p.excluded_nodes]
        # A dead node stays registered: count only nodes whose Foreman answers.
        answers = await asyncio.gather(
            *(
                self.ctx.call(WorkerRef("", "node", n.node, n.address), ListWorkers(), LOOK_TIMEOUT)
                for n in registered
            ),
            return_exceptions=True,
        )
        nodes = [n for n, a in zip(registered, answers, strict=True) if isinstance(a, Workers)]
        can_log = sum(1 for n in nodes if "log" in n.capabilities)
        want_logs = min(p.desired_logs, can_log)
        if len(layout.logs) < want_logs:
            return f"layout degraded: {len(layout.logs)} logs, {want_logs} possible now"
        return None
