# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Length-prefixed framing: ``u32 little-endian length | body``.

The receive path calls :meth:`FrameDecoder.feed` with whatever the socket
delivered and gets back the complete frame bodies. The length is checked
against the cap *before* anything is allocated for the body, so a forged
length (say 2**31) costs nothing but a :class:`FrameError`.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint32_t

HEADER_SIZE = 4
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


class FrameError(ValueError):
    """A frame violated the framing rules; the connection must be closed."""


cdef inline uint32_t _read_len(const unsigned char[:] b, Py_ssize_t at) noexcept:
    return (<uint32_t>b[at]) | (<uint32_t>b[at + 1] << 8) | (<uint32_t>b[at + 2] << 16) | (<uint32_t>b[at + 3] << 24)


cdef class FrameDecoder:
    """Incremental splitter of a byte stream into frame bodies.

    One decoder per connection. ``feed`` raises :class:`FrameError` on a
    frame longer than ``max_frame``; after that the stream cannot be
    resynchronised and the caller closes the connection.
    """

    def __cinit__(self, Py_ssize_t max_frame=DEFAULT_MAX_FRAME):
        if max_frame <= 0:
            raise ValueError("max_frame must be positive")
        self._buf = bytearray()
        self._pos = 0
        self.max_frame = max_frame
        self.frames_decoded = 0

    cpdef Py_ssize_t buffered(self):
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos

    cpdef list feed(self, object data):
        """Add received bytes; return every frame body now complete, in order."""
        cdef list out = []
        cdef const unsigned char[:] view
        cdef Py_ssize_t end, pos, n
        cdef uint32_t length
        if len(data) == 0:
            return out
        self._buf += data
        view = self._buf
        end = len(self._buf)
        pos = self._pos
        while end - pos >= 4:
            length = _read_len(view, pos)
            if length > <uint32_t>self.max_frame:
                raise FrameError(
                    f"frame of {length} bytes exceeds the {self.max_frame} byte limit"
                )
            n = <Py_ssize_t>length
            if end - pos - 4 < n:
                break
            out.append(PyBytes_FromStringAndSize(<const char*>&view[pos + 4] if n else NULL, n))
            pos += 4 + n
        view = None
        self.frames_decoded += len(out)
        if pos == end:
            self._buf = bytearray()
            self._pos = 0
        elif pos > 65536 and pos * 2 > end:
            # Compact only when the consumed prefix dominates, to keep feed O(n).
            del self._buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return out
