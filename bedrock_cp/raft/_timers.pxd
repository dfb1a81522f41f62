# cython: language_level=3
# Declarations for _timers.pyx: tick driving.

cdef class TickClock:
    cdef readonly double interval
    cdef readonly int max_burst
    cdef readonly double hold
    cdef double _next_at
    cdef double _hold_until
    cdef readonly unsigned long long ticks
    cdef readonly unsigned long long dropped
    cdef readonly unsigned long long holds

    cdef long long _pending(self, double now)
    cdef int _take(self, long long n, long long pending)
    cpdef int due(self, double now, int quiet=*, bint gives_up=*)
    cpdef double wake_at(self, int quiet=*)
    cpdef double next_deadline(self)
