# cython: language_level=3
# Declarations for _framing.pyx: the receive-path frame splitter.

cdef class FrameDecoder:
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef readonly Py_ssize_t max_frame
    cdef readonly unsigned long long frames_decoded

    cpdef list feed(self, object data)
    cpdef Py_ssize_t buffered(self)
