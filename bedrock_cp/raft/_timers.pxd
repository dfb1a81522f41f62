# cython: language_level=3
# Declarations for _timers.pyx: tick driving.

cdef class TickClock:
    cdef readonly double interval
    cdef readonly int max_burst
    cdef double _next_at
    cdef readonly unsigned long long ticks
    cdef readonly unsigned long long dropped

    cpdef int due(self, double now)
    cpdef double next_deadline(self)
