"""The coordinator-connection layer: find the leader, call it, follow it when it moves.

The coordinator client (:class:`~bedrock_cp.client.Client`) and every node's
Gateway reach the coordinators through one :class:`CoordinatorLink`. It owns:

- **Discovery** — ping the coordinators concurrently and follow the newest
  leader any of them names (:func:`newest_leader`). It returns once a majority
  answered and one names a leader, without waiting for a silent coordinator.
- **Redirects** — a ``NotLeader`` answer names the leader its sender knows: the
  next try goes there at once, without a discovery round.
- **Hedging** — while a try is slow (no answer after :attr:`hedge_after`), ask
  the other coordinators whether a newer leader exists: a stopped or cut-off
  leader sends no reset, so only its peers can tell. One plain round of pings
  learns the slow leader's term; then each peer is long-polled (``Ping`` with
  ``wait_ms``) and answers the moment it names another leader, so the try
  moves on as soon as a peer knows, not at the next poll. All the tries slow
  at one leader share one hedge, which ends when the last of them does.
- **Waiting out an election** — when no coordinator names a leader (or only
  suspects), discovery long-polls them all (``Ping`` with ``wait_ms``): the
  first to name a new leader answers at once, however long the election
  took, instead of the client finding it at its next retry.
- **Suspicion** — a leader that timed out or broke its connection is skipped
  by discovery until it answers a ping again (its peers may name it for a
  while after it died).
- **Backoff** — the pause between tries while no leader completes a request
  (:meth:`CoordinatorLink.retry_delay`): jittered, capped exponential, short
  while an election may be running, then longer.

**Which leader is newest: the highest Raft term.** Raft elects at most one
leader per term and a node adopts a higher term as soon as it hears of one, so
among the leaders the replies name, the one of the highest term is the newest;
a coordinator that names a leader of a lower term has not heard of the
election yet. The epoch cannot order leaders: it is a value the leader
*commits* through consensus (``begin_epoch``) and each coordinator reports the
one it has *applied*, so a follower that applied the last epoch before the
newest leader applied it (or before that leader's Director began a new one)
reports a higher epoch while naming the deposed leader. Ordering by
(epoch, term) follows that stale follower to a leader that is gone; ordering
by term never does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .. import protocol
from ..transport import Backoff, ConnectionLost, RemoteError

#: Pauses between tries while no leader completes a request. An election takes
#: tens of milliseconds (a silent leader is noticed within about a second), so
#: for the first :data:`FAST_TRIES` tries (about 0.75 s) the next look comes
#: within :data:`FAST_CAP`: the pause is what the client adds to a failover.
#: A cluster that stays leaderless longer is asked less and less often, up to
#: once per :data:`SLOW_CAP`. Jittered, so many clients and Gateways do not
#: retry in lockstep.
RETRY_BASE: Final = 0.002
FAST_CAP: Final = 0.010
FAST_TRIES: Final = 100
SLOW_CAP: Final = 1.0

#: How long a hedge's long poll asks each peer to wait for a leader change
#: before it answers anyway (then the hedge asks again).
HEDGE_WAIT: Final = 1.0

#: Exceptions that make a try fail but leave later tries (elsewhere) worthwhile.
RETRYABLE: Final = (ConnectionLost, ConnectionError, OSError, TimeoutError, RemoteError)


class CoordinatorCall(Protocol):
    """One call to the coordinator at ``address`` (raises the :data:`RETRYABLE` errors)."""

    async def __call__(
        self,
        address: str,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
        /,
    ) -> protocol.Response: ...


@dataclass(frozen=True, slots=True)
class Leader:
    """A leader some coordinator named: its node id, address and Raft term (0: unknown)."""

    id: int
    address: str
    term: int


class NoLeader(Exception):
    """No leader completed the request before its deadline; the message says why."""


class TryFailed(Exception):
    """One try at a leader failed; ``retry_now`` when the link already knows
    where to try next (a redirect, a newer leader)."""

    def __init__(self, problem: str, retry_now: bool) -> None:
        super().__init__(problem)
        self.retry_now = retry_now


def named_leader(address: str, reply: protocol.PingReply) -> Leader | None:
    """The leader the coordinator at ``address`` names in ``reply``, if any."""
    if not reply.leader_id:
        return None
    at = address if reply.leader_id == reply.node_id else reply.leader_address
    return Leader(reply.leader_id, at, reply.term) if at else None


def newest_leader(
    replies: Iterable[tuple[str, protocol.PingReply]], skip: frozenset[str] = frozenset()
) -> Leader | None:
    """The leader named with the highest term (see the module docstring), ignoring
    leaders at the addresses in ``skip``."""
    best: Leader | None = None
    for address, reply in replies:
        leader = named_leader(address, reply)
        if leader is None or leader.address in skip:
            continue
        if best is None or leader.term > best.term:
            best = leader
    return best


class CoordinatorLink:
    """See the module docstring.

    ``addresses`` are the coordinators (callers may append ones they learn);
    every call goes through ``call``; ``rng`` draws the backoff's jitter.
    """

    def __init__(
        self,
        addresses: list[str],
        call: CoordinatorCall,
        *,
        rng: random.Random,
        attempt_timeout: float = 0.5,
        hedge_after: float = 0.05,
    ) -> None:
        self.addresses = addresses
        self.call = call
        # One try at one coordinator; a leader that is stopped or cut off (no
        # reset) is only noticed this way. Retrying is safe: writes carry a session.
        self.attempt_timeout = attempt_timeout
        self.hedge_after = hedge_after
        self._fast = Backoff(RETRY_BASE, FAST_CAP, rng)
        self._slow = Backoff(FAST_CAP, SLOW_CAP, rng)
        #: The leader followed now (None: discover before the next try).
        self.leader: Leader | None = None
        #: The highest epoch any coordinator reported to this link.
        self.epoch = 0
        # Leader addresses that timed out recently, until when (loop time).
        self._suspects: dict[str, float] = {}
        # The last leader that timed out or broke, and the highest term of
        # such a leader (0: none yet).
        self._lost: Leader | None = None
        self._lost_term = 0
        # The hedge running for each leader address some try is slow at.
        self._hedges: dict[str, _Hedge] = {}

    # -- following one request to the leader ----------------------------------------------

    async def call_leader(
        self,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109 - the whole request's deadline, across tries
    ) -> protocol.Response:
        """Send ``body`` to the leader, following redirects, failovers and
        ``Unavailable`` answers until ``timeout``; return the first other answer.

        Raises :class:`NoLeader` at the deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tries = 0
        last_problem = "no leader known"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoLeader(
                    f"no leader completed the request within {timeout:g}s ({last_problem})"
                )
            leader = self.leader or await self.discover(min(remaining, 1.0))
            if leader is None:
                last_problem = "no coordinator names a leader"
            else:
                try:
                    reply = await self.try_leader(
                        leader, body, min(remaining, self.attempt_timeout)
                    )
                except TryFailed as failed:
                    last_problem = str(failed)
                    if failed.retry_now:
                        continue
                else:
                    if not isinstance(reply, protocol.Unavailable):
                        return reply
                    last_problem = f"{leader.address}: {reply.reason}"
            await asyncio.sleep(min(self.retry_delay(tries), max(0.0, deadline - loop.time())))
            tries += 1

    async def try_leader(
        self,
        leader: Leader,
        body: protocol.Request,
        timeout: float,  # noqa: ASYNC109
        *,
        hedged: bool = True,
    ) -> protocol.Response:
        """One try at ``leader``. Any answer but ``NotLeader`` is returned and
        keeps ``leader`` followed. Otherwise raises :class:`TryFailed` once the
        link knows what to do next: a redirect or a newer leader is followed
        (``retry_now``), a leader that timed out or broke is suspected.

        Hedged unless told otherwise (a long poll is slow on purpose): while
        the try is slow to answer, the others are asked whether a newer leader
        exists. The try runs in the caller's task; a fast answer costs one
        timer and no task. Every try slow at one address joins the same hedge:
        one round of pings per :attr:`hedge_after` however many tries wait.
        """
        address = leader.address
        joined: list[_Hedge] = []  # the hedge this try joined once it was slow
        timer: asyncio.TimerHandle | None = None
        task: asyncio.Task[object] | None = None
        if hedged:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task(loop)
            assert task is not None
            timer = loop.call_later(self.hedge_after, self._join_hedge, leader, task, joined)
        try:
            reply = await self.call(address, body, timeout)
        except asyncio.CancelledError:
            found = joined[0].found if joined else None
            if found is None or task is None or task.uncancel() > 0:
                raise  # cancelled by someone else
            self.suspect(address)
            self.leader = found
            raise TryFailed(f"{address} was replaced by {found.address}", True) from None
        except RETRYABLE as exc:
            self.leader = None
            if not isinstance(exc, RemoteError):
                self.suspect(address)  # silent (a timeout) or gone (reset, refused)
                self._lost = leader
                self._lost_term = max(self._lost_term, leader.term)
            raise TryFailed(f"{address}: {describe(exc)}", False) from None
        finally:
            if timer is not None:
                timer.cancel()
            if joined and task is not None:
                joined[0].leave(task)
        if isinstance(reply, protocol.NotLeader):
            if reply.leader_address and reply.leader_address != address:
                self.leader = Leader(reply.leader_id, reply.leader_address, 0)
                raise TryFailed(f"{address} is not the leader (it names {reply.leader_id})", True)
            self.leader = None
            raise TryFailed(f"{address} is not the leader", False)
        self.leader = leader
        return reply

    def suspect(self, address: str) -> None:
        """``address`` timed out or broke: discovery skips it until it answers a ping."""
        self._suspects[address] = asyncio.get_running_loop().time() + 4 * self.attempt_timeout

    def retry_delay(self, attempt: int) -> float:
        """Seconds to pause before retry number ``attempt`` (0 first) while no
        leader serves: 1-2 ms, doubling to :data:`FAST_CAP` for :data:`FAST_TRIES`
        tries, then doubling again from there to :data:`SLOW_CAP`."""
        if attempt < FAST_TRIES:
            return self._fast.delay(attempt)
        return self._slow.delay(attempt - FAST_TRIES)

    # -- finding the leader -----------------------------------------------------------------

    async def discover(self, timeout: float) -> Leader | None:  # noqa: ASYNC109
        """Ping the coordinators; follow the newest leader named, skipping suspects.

        When none is named, wait for one within ``timeout``: a long poll of
        every coordinator, answered by each as soon as it names another leader
        than the one lost last."""
        majority = len(self.addresses) // 2 + 1
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + timeout
        self._suspects = {a: t for a, t in self._suspects.items() if t > now}
        # After a failover, a leader elected after the one that failed is news
        # enough: no need to wait for a majority (a slow survivor, say).
        replies = await self.ping(
            self.addresses,
            min(timeout, self.attempt_timeout),
            majority,
            newer_than=self._lost_term or None,
            skip=frozenset(self._suspects),
        )
        for address in replies:
            self._suspects.pop(address, None)  # it answered: it is not silent
        self.leader = newest_leader(replies.items(), frozenset(self._suspects))
        wait = min(deadline - loop.time(), HEDGE_WAIT)
        if self.leader is None and wait > 0:
            self.leader = await self._await_leader(wait)
        return self.leader

    async def _await_leader(self, wait: float) -> Leader | None:
        """Long-poll every coordinator for ``wait`` seconds for a leader other
        than the one lost last (any, if none was): the first named that is no
        suspect, of a term above the lost ones."""
        lost = self._lost
        body = protocol.Ping(round(wait * 1000), lost.id if lost else 0, lost.term if lost else 0)
        skip = frozenset(self._suspects)
        replies = await self.ping(
            self.addresses,
            wait + self.hedge_after,
            len(self.addresses),
            newer_than=self._lost_term,
            skip=skip,
            body=body,
        )
        for address in replies:
            self._suspects.pop(address, None)
        newest = newest_leader(replies.items(), skip)
        return newest if newest is not None and newest.term > self._lost_term else None

    def _join_hedge(self, leader: Leader, task: asyncio.Task[object], joined: list[_Hedge]) -> None:
        hedge = self._hedges.get(leader.address)
        if hedge is None:
            hedge = self._hedges[leader.address] = _Hedge(self, leader)
        hedge.tries.add(task)
        joined.append(hedge)

    async def _ask_others(
        self, current: Leader, term: int, wait: float
    ) -> tuple[Leader | None, int]:
        """Ask the others for a leader newer than ``current``, which leads ``term``
        as far as this link knows (0: unknown). Returns that leader, if any,
        and the term ``current`` leads as its peers know it.

        ``wait == 0``: one plain round, every other's answer awaited; the newest
        leader named wins (one that still names ``current`` at a higher term
        outranks a stale one naming an older leader). ``wait > 0``: a long poll;
        each peer answers once it names a leader other than ``current``, and
        the first leader named of a term above ``term`` (any term, if unknown)
        ends the round.
        """
        others = [a for a in self.addresses if a != current.address]
        if wait <= 0:
            replies = await self.ping(others, self.hedge_after, need=len(others))
            newest = newest_leader(replies.items())
            found = newest if newest is not None and newest.address != current.address else None
        else:
            body = protocol.Ping(round(wait * 1000), current.id, term)
            skip = frozenset({current.address})
            replies = await self.ping(
                others, wait + self.hedge_after, len(others), newer_than=term, skip=skip, body=body
            )
            newest = newest_leader(replies.items(), skip)
            found = newest if newest is not None and newest.term > term else None
        for address, reply in replies.items():
            named = named_leader(address, reply)
            if named is not None and named.address == current.address:
                term = max(term, named.term)
        return found, term

    async def ping(
        self,
        addresses: list[str],
        timeout: float,  # noqa: ASYNC109
        need: int,
        *,
        newer_than: int | None = None,
        skip: frozenset[str] = frozenset(),
        body: protocol.Ping | None = None,
    ) -> dict[str, protocol.PingReply]:
        """Ping ``addresses`` concurrently (with ``body``: a plain ``Ping`` unless
        given); the answers by address (in ``addresses`` order). Stops waiting
        once ``need`` answered and one of them names a leader, once an answer
        names a leader (not in ``skip``) of a term above ``newer_than``, or
        when ``timeout`` passes."""
        body = body or protocol.Ping()
        tasks = {asyncio.ensure_future(self.call(a, body, timeout)): a for a in addresses}
        out: dict[str, protocol.PingReply] = {}
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in tasks:  # in address order, not the done set's (memory) order
                    if t in done and t.exception() is None:
                        reply = t.result()
                        if isinstance(reply, protocol.PingReply):
                            out[tasks[t]] = reply
                            self.epoch = max(self.epoch, reply.epoch)
                if len(out) >= need and any(r.leader_id for r in out.values()):
                    break
                if newer_than is not None:
                    newest = newest_leader(out.items(), skip)
                    if newest is not None and newest.term > newer_than:
                        break
        finally:
            abandon(tasks)
        return {a: out[a] for a in addresses if a in out}


def abandon(calls: Iterable[asyncio.Future[Any]]) -> None:
    """Give up on concurrent ``calls``: cancel those still running. A call that
    failed before its caller looked (or fails as it is cancelled) is heard
    here, not logged as "never retrieved"."""
    for call in calls:
        if not call.done():
            call.cancel()
        call.add_done_callback(_heard)


def _heard(call: asyncio.Future[Any]) -> None:
    if not call.cancelled():
        call.exception()


class _Hedge:
    """While tries at ``leader`` are slow, asks the other coordinators for a
    newer leader: one plain round, then long polls (see
    :meth:`CoordinatorLink._ask_others`), :attr:`CoordinatorLink.hedge_after`
    apart. On finding one, cancels every waiting try's task (as
    ``asyncio.timeout`` does: each try then fails with :class:`TryFailed`, not
    with the cancellation). Ends, its polls cancelled, once no try waits."""

    __slots__ = ("_task", "found", "leader", "link", "tries")

    def __init__(self, link: CoordinatorLink, leader: Leader) -> None:
        self.link = link
        self.leader = leader
        self.tries: set[asyncio.Task[object]] = set()
        self.found: Leader | None = None
        # Held: the loop keeps only a weak reference to a task.
        self._task = asyncio.get_running_loop().create_task(self._ask())

    def leave(self, task: asyncio.Task[object]) -> None:
        """``task``'s try ended; the last one to leave ends the hedge."""
        self.tries.discard(task)
        if not self.tries and self.found is None:
            self._task.cancel()
            # Gone at once: a try that is slow at the same leader next starts a new hedge.
            if self.link._hedges.get(self.leader.address) is self:
                del self.link._hedges[self.leader.address]

    async def _ask(self) -> None:
        link = self.link
        try:
            newer, term = await link._ask_others(self.leader, self.leader.term, 0.0)
            while newer is None:
                newer, term = await link._ask_others(self.leader, term, HEDGE_WAIT)
                if newer is None:
                    await asyncio.sleep(link.hedge_after)
            self.found = newer
            for task in self.tries:
                task.cancel()
        finally:
            if link._hedges.get(self.leader.address) is self:
                del link._hedges[self.leader.address]


def describe(exc: object) -> str:
    """A short text for a failed try, for error messages."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, BaseException):
        return str(exc) or type(exc).__name__
    return repr(exc)
