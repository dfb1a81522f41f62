# cython: language_level=3
# Declarations for _timers.pyx: tick driving and failure detection.

cdef class TickClock:
    cdef readonly double interval
    cdef readonly int max_burst
    cdef double _next_at
    cdef readonly unsigned long long ticks
    cdef readonly unsigned long long dropped

    cpdef int due(self, double now)
    cpdef double next_deadline(self)


cdef class FailureDetector:
    cdef readonly double timeout
    cdef dict _last

    cpdef void heard(self, object peer, double now)
    cpdef void forget(self, object peer)
    cpdef double silence(self, object peer, double now)
    cpdef list suspects(self, double now)
