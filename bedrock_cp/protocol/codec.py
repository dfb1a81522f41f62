"""One tagged union per direction, and the one codec for both.

:data:`Request` is every request body of every role and :data:`Response` every
answer; both are unions of tagged :class:`~bedrock_cp.protocol.base.Body`
Structs, so one decoder per direction reads any of them (tags are unique across
each union). One encoder and the two decoders are built once and reused.
Decoding is strict: anything but a well-typed body raises the wire layer's
:class:`~bedrock_cp.wire.WireError` naming the problem (the receiver answers or
drops that request, never the node).

The node routes a decoded request by its group: :data:`CoordinatorRequest` to
the coordinator, :data:`GatewayRequest` to the Gateway, :data:`ForemanRequest`
to the Foreman, and every :data:`WorkerRequest` to the worker it names.
:data:`SENDERS` maps every request type to the :class:`~.base.Sender` allowed to
send it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, get_args

import msgspec

from ..wire import WireError
from .base import Body, Sender
from .commit_proxy import CommitProxyRequest, Committed, NotCommitted
from .coordinator import (
    ConfigReply,
    CoordinatorRequest,
    LayoutReply,
    NodesReply,
    NodeStatusReply,
    PingReply,
    ServicesReply,
    WriteOk,
    WriteResults,
)
from .errors import (
    Done,
    Failed,
    Locked,
    NewerEpoch,
    NotLeader,
    Rejected,
    Unauthorized,
    Unavailable,
)
from .foreman import ForemanRequest, Health, WorkerCreated, Workers
from .gateway import GatewayRequest
from .log import LogBatches, LogLocked, LogPushed, LogRecovered, LogRequest
from .resolver import Resolved, ResolverRequest
from .sequencer import CommitVersion, ReadVersion, SequencerRequest
from .storage import SnapshotChunk, StorageRequest, StorageState, Value, Values

#: Requests the node hands to the worker named by their ``worker`` field.
WorkerRequest = (
    LogRequest | StorageRequest | SequencerRequest | ResolverRequest | CommitProxyRequest | Health
)

#: Every request body.
Request = CoordinatorRequest | GatewayRequest | ForemanRequest | WorkerRequest

#: Every response body.
Response = (
    # coordinators
    PingReply
    | NodeStatusReply
    | ServicesReply
    | NodesReply
    | ConfigReply
    | LayoutReply
    | WriteOk
    | WriteResults
    | NotLeader
    | Rejected
    | Unavailable
    # data plane and Foremen
    | LogPushed
    | LogBatches
    | LogLocked
    | LogRecovered
    | Value
    | Values
    | StorageState
    | SnapshotChunk
    | ReadVersion
    | CommitVersion
    | Resolved
    | Committed
    | NotCommitted
    | Workers
    | WorkerCreated
    | Done
    | NewerEpoch
    | Locked
    | Failed
    # every node
    | Unauthorized
)

#: Who may send each request type; the authorization check reads it from here.
SENDERS: Final[Mapping[type[Body], Sender]] = MappingProxyType(
    {t: t.sender for t in get_args(Request)}
)

_encoder = msgspec.msgpack.Encoder()
# Annotated: mypy cannot infer a Decoder's type from a union.
_request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
_response_decoder: msgspec.msgpack.Decoder[Response] = msgspec.msgpack.Decoder(Response)


def encode(body: Request | Response) -> bytes:
    """The msgpack body of a request or a response."""
    return _encoder.encode(body)


def decode_request(data: bytes) -> Request:
    """Decode a request body strictly; raises :class:`~bedrock_cp.wire.WireError`."""
    try:
        return _request_decoder.decode(data)
    # As in the wire codec: bad UTF-8 raises UnicodeDecodeError (a ValueError),
    # a nesting bomb RecursionError.
    except (msgspec.DecodeError, ValueError, RecursionError) as e:
        raise WireError.undecodable("body", e) from None


def decode_response(data: bytes) -> Response:
    """Decode a response body strictly; raises :class:`~bedrock_cp.wire.WireError`."""
    try:
        return _response_decoder.decode(data)
    except (msgspec.DecodeError, ValueError, RecursionError) as e:
        raise WireError.undecodable("body", e) from None
