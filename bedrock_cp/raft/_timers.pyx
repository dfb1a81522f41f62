# cython: language_level=3, boundscheck=False, wraparound=False
"""The Raft hot path's timer: the tick clock.

The Raft core counts time in ticks. :class:`TickClock` turns a monotonic clock
into whole ticks on a fixed grid, so a loop that wakes late does not drift.

The driver need not wake for every tick: the core says which tick is the next
that may act (``Consensus.next_due``; the ones before it only count), so the
driver sleeps until then and, before any other input, delivers the ticks that
fell due meanwhile (``due(now, quiet)``). An idle follower wakes for its
leader's heartbeats, not 100 times a second.

A loop that wakes late for an acting tick has stalled (a GC pause, a SIGSTOP,
a starved host): it delivers at most ``max_burst`` ticks past the quiet ones
and drops the rest, so messages queued during the stall are processed before
the node decides its peers are gone. A tick that would give up on the peers
(``gives_up``: a follower's leader lost, an election, a leader stepping down)
and falls due later than ``max_burst`` ticks and than ``hold`` itself is also
*held*: for ``hold`` seconds only the quiet ticks are delivered, and the
stall's ticks are dropped, so peers that stalled too (a whole host paused)
get to send first. A wake-up late by less is a busy loop, not a stall:
holding it would only delay noticing a leader that really stopped (seen in
the availability bench with a hold after two ticks: the first recovery after
a SIGSTOP of the leader started ~100 ms later on a loaded host).
"""

from libc.math cimport floor

# Wake-ups this early still deliver their tick (see TickClock.due).
cdef double EARLY = 0.0015


cdef class TickClock:
    """Whole ticks of ``interval`` seconds, starting at ``start``."""

    def __init__(self, double interval, double start, int max_burst=2, double hold=0.0):
        if interval <= 0:
            raise ValueError("tick interval must be positive")
        if max_burst < 1:
            raise ValueError("max_burst must be at least 1")
        if hold < 0:
            raise ValueError("hold must not be negative")
        self.interval = interval
        self.max_burst = max_burst
        self.hold = hold
        self._next_at = start + interval
        self._hold_until = -1.0
        self.ticks = 0
        self.dropped = 0
        self.holds = 0

    cdef long long _pending(self, double now):
        """Ticks on the grid up to EARLY after ``now`` (a wake-up for the k-th
        tick ahead must count k, whatever the rounding of the loop's clock)."""
        if now + EARLY < self._next_at:
            return 0
        return <long long>floor((now + EARLY - self._next_at) / self.interval) + 1

    cdef int _take(self, long long n, long long pending):
        """Deliver ``n`` of the ``pending`` ticks; drop the others (the grid moves past all)."""
        self._next_at += pending * self.interval
        self.dropped += <unsigned long long>(pending - n)
        self.ticks += <unsigned long long>n
        return <int>n

    cpdef int due(self, double now, int quiet=0, bint gives_up=False):
        """Number of ticks to deliver at ``now``.

        ``quiet``: how many of the next ticks only count (``next_due`` minus
        one); ``gives_up``: whether the tick after them may give up on the
        peers. With the defaults every tick may act: at most ``max_burst``.

        A wake-up up to ``EARLY`` seconds before the deadline counts as on time:
        event loops round timers to whole milliseconds, and treating such a
        wake-up as "not yet" would make the caller re-arm the same timer and
        spin until the deadline passes (seen by hand: ~9 % of a core per idle node
        before this rule; benches/test_idle_bench.py measures idle nodes now).
        """
        cdef long long pending = self._pending(now)
        cdef double late
        if self._hold_until >= 0:
            if quiet > 0 or not gives_up:
                self._hold_until = -1.0  # an input moved the give-up away: no stall to wait out
            elif now < self._hold_until:
                return self._take(0, pending)  # waiting for the peers: this time is dropped
            else:
                self._hold_until = -1.0
                return self._take(min(pending, <long long>self.max_burst), pending)
        if pending <= quiet:
            return self._take(pending, pending)
        late = now - (self._next_at + quiet * self.interval)
        if gives_up and self.hold > 0 and late > self.max_burst * self.interval and late > self.hold:
            self._hold_until = now + self.hold
            self.holds += 1
            return self._take(quiet, pending)
        return self._take(min(pending, <long long>quiet + self.max_burst), pending)

    cpdef double wake_at(self, int quiet=0):
        """When the driver should wake next: the tick after ``quiet`` quiet
        ones, or the end of a hold."""
        if self._hold_until >= 0:
            return self._hold_until
        return self._next_at + quiet * self.interval

    cpdef double next_deadline(self):
        """Monotonic time at which the next tick falls due."""
        return self._next_at

    @property
    def holding(self):
        """True while an overdue give-up waits for the peers (see the module docstring)."""
        return self._hold_until >= 0
