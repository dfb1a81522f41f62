"""Encoding frames to length-prefixed bytes and decoding frame bodies, strictly.

One msgspec Encoder and one Decoder are built once and reused (building them is
the expensive part). :func:`encode` writes the msgpack body straight into a
reused buffer after 4 reserved bytes and fills in the length, so a frame costs
one encode and one copy. The layout is ``u32 little-endian length | body``, the
same as :func:`bedrock_cp.wire._framing.encode_frame`, so :class:`FrameDecoder`
splits what this writes. :func:`decode` turns every msgspec failure into a
:class:`WireError` whose message says what was wrong.

Not thread-safe: each event loop thread must use its own :class:`FrameEncoder`
(the module-level :func:`encode` is for the thread running the transport).
"""

from __future__ import annotations

import re
import struct
from enum import StrEnum
from typing import Any, Final, TypeVar, overload

import msgspec

from .frames import Frame, TransportError

T = TypeVar("T")

#: Default cap on a frame body, checked by senders and (before allocation) by receivers.
MAX_FRAME: Final = 16 * 1024 * 1024
HEADER_SIZE: Final = 4

# A buffer that grew past this for one big frame is not kept: idle memory stays small.
_KEEP_BUFFER: Final = 1024 * 1024

_pack_len = struct.Struct("<I").pack_into


class WireProblem(StrEnum):
    """What was wrong with bytes that did not decode (or a frame that did not encode)."""

    OVERSIZE = "oversize"
    """The frame is over the size cap."""
    TRUNCATED = "truncated"
    """The bytes end before the value does."""
    TRAILING_BYTES = "trailing_bytes"
    """A whole value was read and bytes are left over."""
    MALFORMED = "malformed"
    """Not MessagePack at all (an invalid opcode, say)."""
    BAD_UTF8 = "bad_utf8"
    """A string that is not valid UTF-8."""
    TOO_DEEP = "too_deep"
    """Nesting deeper than the decoder follows (a nesting bomb)."""
    INVALID = "invalid"
    """Well-formed MessagePack of the wrong shape: an unknown tag, a field of the
    wrong type, a value outside its enum. :attr:`WireError.path` says where."""


# msgspec names the offending location of a ValidationError as "... - at `$[1][0]`".
_PATH = re.compile(r" - at `(\$[^`]*)`$")


class WireError(ValueError):
    """A frame could not be encoded or decoded.

    ``problem`` says what was wrong, ``part`` which part of the message (``"frame"``
    or ``"body"``), and ``path`` where inside it for :attr:`WireProblem.INVALID`
    (``$[0]`` is a frame's tag, ``$[1]`` its first field, ...). The message reads
    as one line for logs.
    """

    def __init__(
        self, message: str, *, problem: WireProblem, part: str, path: str | None = None
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.part = part
        self.path = path

    @classmethod
    def undecodable(cls, part: str, exc: BaseException) -> WireError:
        """Classify a decoder's exception once, here, into a :class:`WireProblem`."""
        text = str(exc)
        path = None
        if isinstance(exc, RecursionError):
            problem = WireProblem.TOO_DEEP
        elif isinstance(exc, UnicodeDecodeError):
            problem = WireProblem.BAD_UTF8
        elif isinstance(exc, msgspec.ValidationError):
            problem = WireProblem.INVALID
            match = _PATH.search(text)
            path = match.group(1) if match else None
        else:
            lowered = text.lower()
            if "truncated" in lowered:
                problem = WireProblem.TRUNCATED
            elif "trailing" in lowered:
                problem = WireProblem.TRAILING_BYTES
            elif "utf-8" in lowered or "utf8" in lowered:
                problem = WireProblem.BAD_UTF8
            else:
                problem = WireProblem.MALFORMED
        return cls(f"undecodable {part} ({problem}): {text}", problem=problem, part=part, path=path)


class FrameEncoder:
    """Encodes frames into a reused buffer; one per thread."""

    __slots__ = ("_buf", "_encoder", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._buf = bytearray(256)
        self.max_frame = max_frame

    def encode(self, frame: Frame) -> bytes:
        """Return the whole frame: 4-byte little-endian length, then the msgpack body."""
        buf = self._buf
        self._encoder.encode_into(frame, buf, HEADER_SIZE)
        n = len(buf) - HEADER_SIZE
        if n > self.max_frame:
            self._buf = bytearray(256)
            name = type(frame).__name__
            raise WireError(
                f"{name} frame of {n} bytes exceeds the {self.max_frame} byte limit",
                problem=WireProblem.OVERSIZE,
                part="frame",
            )
        _pack_len(buf, 0, n)
        out = bytes(buf)
        if len(buf) > _KEEP_BUFFER:
            self._buf = bytearray(256)
        return out


_frame_encoder = FrameEncoder()
_body_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Frame] = msgspec.msgpack.Decoder(Frame)
_body_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def encode(frame: Frame) -> bytes:
    """Return ``frame`` as length-prefixed bytes ready for ``transport.write``.

    Raises :class:`WireError` if the body would exceed :data:`MAX_FRAME`.
    """
    return _frame_encoder.encode(frame)


def decode(body: bytes) -> Frame:
    """Decode one frame body (without its length prefix); strict types.

    Raises :class:`WireError` naming the problem for anything that is not a
    well-formed frame (bad msgpack, unknown tag, wrong field types, trailing bytes).
    """
    try:
        return _decoder.decode(body)
    # ValidationError is a DecodeError; bad UTF-8 in a str raises UnicodeDecodeError
    # (a ValueError); deep nesting inside a Raw body raises RecursionError.
    except (msgspec.DecodeError, ValueError, RecursionError) as e:
        raise WireError.undecodable("frame", e) from None


def encode_body(obj: Any) -> msgspec.Raw:
    """Encode a request or response body for :class:`Request`/:class:`Response`."""
    return msgspec.Raw(_body_encoder.encode(obj))


@overload
def decode_body(raw: msgspec.Raw | bytes, type: type[T]) -> T: ...
@overload
def decode_body(raw: msgspec.Raw | bytes, type: Any) -> Any: ...
def decode_body(raw: msgspec.Raw | bytes, type: Any) -> Any:
    """Decode a body as ``type`` (a Struct, a union of tagged Structs, ...), strictly.

    Raises :class:`WireError` naming the problem. Decoders are cached per type.
    """
    dec = _body_decoders.get(type)
    if dec is None:
        dec = _body_decoders[type] = msgspec.msgpack.Decoder(type)
    try:
        return dec.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError) as e:
        raise WireError.undecodable("body", e) from None


# TransportError encodes as a msgpack fixarray [tag, code, message]: a body starts
# with these bytes exactly when it is a TransportError (no other type uses the tag).
_TRANSPORT_ERROR_PREFIX: Final = bytes([0x90 | (1 + len(TransportError.__struct_fields__))]) + (
    msgspec.msgpack.encode("transport_error")
)


_PREFIX_LEN: Final = len(_TRANSPORT_ERROR_PREFIX)


def transport_error_of(raw: msgspec.Raw | bytes) -> TransportError | None:
    """Return the :class:`TransportError` in a response body, or None if it is not one."""
    view = memoryview(raw)
    # Every body starts with its array header and its tag's string header: the
    # second byte (the tag's length) rejects nearly every other body at once.
    if len(view) < _PREFIX_LEN or view[1] != _TRANSPORT_ERROR_PREFIX[1]:
        return None
    if view[:_PREFIX_LEN].tobytes() != _TRANSPORT_ERROR_PREFIX:
        return None
    result: TransportError = decode_body(raw, TransportError)
    return result
