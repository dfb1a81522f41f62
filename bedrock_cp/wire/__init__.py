"""The wire: frame types (:mod:`.frames`) and their codec (:mod:`.codec`).

Frames are msgspec Structs in one tagged union, framed as ``u32 length | body``;
every received frame is size-checked before allocation and decoded strictly.
"""

from .codec import (
    HEADER_SIZE,
    MAX_FRAME,
    FrameEncoder,
    WireError,
    WireProblem,
    decode,
    decode_body,
    encode,
    encode_body,
    transport_error_of,
)
from .frames import (
    INTERNAL,
    OVERLOADED,
    PROTOCOL_VERSION,
    TIMEOUT,
    Challenge,
    Frame,
    Hello,
    Proof,
    RaftBatch,
    Refused,
    Request,
    Response,
    TransportError,
    Welcome,
)

__all__ = [
    "HEADER_SIZE",
    "INTERNAL",
    "MAX_FRAME",
    "OVERLOADED",
    "PROTOCOL_VERSION",
    "TIMEOUT",
    "Challenge",
    "Frame",
    "FrameEncoder",
    "Hello",
    "Proof",
    "RaftBatch",
    "Refused",
    "Request",
    "Response",
    "TransportError",
    "Welcome",
    "WireError",
    "WireProblem",
    "decode",
    "decode_body",
    "encode",
    "encode_body",
    "transport_error_of",
]
