# cython: language_level=3, boundscheck=False, wraparound=False
"""The Raft hot path's timer: the tick clock.

The Raft core counts time in ticks. :class:`TickClock` turns a monotonic clock
into whole ticks on a fixed grid, so a loop that wakes late does not drift.
After a long stall (a GC pause, a SIGSTOP) it delivers at most ``max_burst``
ticks and drops the rest: messages queued during the stall are processed
before the node decides that its leader is gone, instead of firing a burst of
ticks that would trigger a needless election.
"""

from libc.math cimport floor

# Wake-ups this early still deliver their tick (see TickClock.due).
cdef double EARLY = 0.0015


cdef class TickClock:
    """Whole ticks of ``interval`` seconds, starting at ``start``."""

    def __init__(self, double interval, double start, int max_burst=2):
        if interval <= 0:
            raise ValueError("tick interval must be positive")
        if max_burst < 1:
            raise ValueError("max_burst must be at least 1")
        self.interval = interval
        self.max_burst = max_burst
        self._next_at = start + interval
        self.ticks = 0
        self.dropped = 0

    cpdef int due(self, double now):
        """Number of ticks to deliver at ``now`` (at most ``max_burst``).

        A wake-up up to ``EARLY`` seconds before the deadline counts as on time:
        event loops round timers to whole milliseconds, and treating such a
        wake-up as "not yet" would make the caller re-arm the same timer and
        spin until the deadline passes (seen by hand: ~9 % of a core per idle node
        before this rule; benches/test_idle_bench.py measures idle nodes now).
        """
        cdef double behind
        cdef long long n
        if now + EARLY < self._next_at:
            return 0
        if now < self._next_at:
            now = self._next_at
        behind = now - self._next_at
        n = <long long>floor(behind / self.interval) + 1
        self._next_at += n * self.interval
        if n > self.max_burst:
            self.dropped += <unsigned long long>(n - self.max_burst)
            n = self.max_burst
        self.ticks += <unsigned long long>n
        return <int>n

    cpdef double next_deadline(self):
        """Monotonic time at which the next tick falls due."""
        return self._next_at
