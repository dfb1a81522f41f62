"""Client-facing request and response bodies of the coordinator service.

The transport carries these as opaque msgpack bodies; the coordinator service
decodes a request with :func:`decode_request`, and a client decodes the answer with
:func:`decode_response`. Both decode strictly: anything but a well-typed body
raises :class:`msgspec.DecodeError` (the caller drops the request, never the node).

Writes carry a session ``(client_id, seq)`` (``client_id == 0``: no session, no
exactly-once on retry). :func:`write_proposal` turns a write request into the
:class:`~bedrock_cp.coordinator.commands.Proposal` the leader proposes, and
:func:`write_reply` turns the apply result into the reply sent after commit.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .commands import (
    Command,
    DeregisterServices,
    DropCoordinator,
    Proposal,
    RegisterNode,
    RegisterServices,
    Service,
    SetCoordinator,
    StoreLayout,
)
from .records import NodeRecord, ServiceRecord
from .results import Applied, ApplyResult

# ---------------------------------------------------------------- requests

#: The owner of services registered without a node: no Gateway declares it, so
#: a node's registration never replaces them.
CLIENT_NODE = "clients"


class Ping(msgspec.Struct, tag="ping", array_like=True, frozen=True, gc=False):
    """Who leads, in which term and epoch; any coordinator answers (:class:`PingReply`)."""


class NodeStatus(msgspec.Struct, tag="status", array_like=True, frozen=True, gc=False):
    """This coordinator's own view (:class:`NodeStatusReply`)."""


class ListServices(msgspec.Struct, tag="list", array_like=True, frozen=True, gc=False):
    """The directory; linearizable (ReadIndex on the leader) unless ``stale``."""

    stale: bool = False


class ListNodes(msgspec.Struct, tag="list_nodes", array_like=True, frozen=True, gc=False):
    """What every node declared in its last registration (:class:`NodesReply`);
    linearizable unless ``stale``, like :class:`ListServices`."""

    stale: bool = False


class WatchLayout(msgspec.Struct, tag="watch_layout", array_like=True, frozen=True, gc=False):
    """Long poll for the layout (TSL), answered by the leader only.

    Answered with :class:`LayoutReply` as soon as the stored layout's epoch is
    above ``after_epoch``, or after ``wait_ms`` (capped by the leader) with the
    current one. Followers answer ``NotLeader``. Gateways keep one outstanding.
    """

    after_epoch: int
    wait_ms: int


class Register(msgspec.Struct, tag="reg", array_like=True, frozen=True, gc=False):
    """Register one service; ``node == ""`` files it under :data:`CLIENT_NODE`.

    Name the node when the service lives on one: a node's Gateway declares all
    of its node's services in one ``RegisterNodeRequest``, which replaces every
    entry of that node (including ones registered here).
    """

    service_id: str
    kind: str
    address: str
    node: str = ""
    client_id: int = 0
    seq: int = 0


class Deregister(msgspec.Struct, tag="dereg", array_like=True, frozen=True, gc=False):
    """Remove one service (no error if it is not registered)."""

    service_id: str
    client_id: int = 0
    seq: int = 0


class RegisterNodeRequest(msgspec.Struct, tag="reg_node", array_like=True, frozen=True, gc=False):
    """A gateway declares its node's capabilities and all its services in one write."""

    node: str
    address: str
    capabilities: list[str]
    services: list[Service]
    client_id: int = 0
    seq: int = 0


class AddCoordinator(msgspec.Struct, tag="add_coord", array_like=True, frozen=True, gc=False):
    """Add coordinator ``id`` listening at ``address`` (membership change + address)."""

    id: int
    address: str
    client_id: int = 0
    seq: int = 0


class RemoveCoordinator(msgspec.Struct, tag="rm_coord", array_like=True, frozen=True, gc=False):
    """Remove coordinator ``id``."""

    id: int
    client_id: int = 0
    seq: int = 0


class StoreLayoutRequest(
    msgspec.Struct, tag="store_layout", array_like=True, frozen=True, gc=False
):
    """Store the layout of ``epoch`` (the Director's last step); rejected on apply
    unless ``epoch`` is the current one, so a superseded Director cannot overwrite it."""

    epoch: int
    layout: bytes
    client_id: int = 0
    seq: int = 0


WriteRequest = (
    Register
    | Deregister
    | RegisterNodeRequest
    | AddCoordinator
    | RemoveCoordinator
    | StoreLayoutRequest
)
ApiRequest = Ping | NodeStatus | ListServices | ListNodes | WatchLayout | WriteRequest


# --------------------------------------------------------------- responses


class PingReply(msgspec.Struct, tag="pong", array_like=True, frozen=True, gc=False):
    """``leader_id == 0``: no known leader. ``state``: follower, candidate,
    waiting_consensus or ready (see DESIGN §3, leader readiness)."""

    node_id: int
    term: int
    epoch: int
    leader_id: int
    leader_address: str
    state: str


class NodeStatusReply(msgspec.Struct, tag="status_reply", array_like=True, frozen=True, gc=False):
    """One coordinator's status; ``recovery`` holds the Director's state and phase."""

    node_id: int
    address: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    leader_id: int
    epoch: int
    state: str
    pid: int
    services: int
    recovery: dict[str, Any]
    #: The voting coordinators this node knows, id -> advertised address, so
    #: clients learn membership changes.
    members: dict[int, str] = {}
    #: Raft messages dropped because their sender was not the peer the
    #: connection authenticated.
    raft_forged_dropped: int = 0


class ServicesReply(msgspec.Struct, tag="services", array_like=True, frozen=True, gc=False):
    """The directory as of applied ``index``, sorted by id."""

    index: int
    services: list[ServiceRecord]


class NodesReply(msgspec.Struct, tag="nodes", array_like=True, frozen=True, gc=False):
    """The registered nodes as of applied ``index``, sorted by name."""

    index: int
    nodes: list[NodeRecord]


class LayoutReply(msgspec.Struct, tag="layout", array_like=True, frozen=True, gc=False):
    """The stored layout: ``epoch`` is the epoch it was stored for (0 and ``layout``
    None: none stored yet). ``leader_id`` is the leader as the answering node knows it."""

    epoch: int
    layout: bytes | None
    leader_id: int


class WriteOk(msgspec.Struct, tag="ok", array_like=True, frozen=True, gc=False):
    """The write committed and applied at ``index``; ``value`` is its result, if any."""

    index: int
    value: int | None


class NotLeader(msgspec.Struct, tag="not_leader", array_like=True, frozen=True, gc=False):
    """Ask the leader instead (``leader_id == 0``: none known yet; retry later)."""

    leader_id: int
    leader_address: str


class Rejected(msgspec.Struct, tag="rejected", array_like=True, frozen=True, gc=False):
    """The request is invalid (or the write was rejected on apply); do not retry it."""

    reason: str


class Unavailable(msgspec.Struct, tag="unavailable", array_like=True, frozen=True, gc=False):
    """The coordinator cannot serve now (no quorum, shutting down); retry later."""

    reason: str


ApiResponse = (
    PingReply
    | NodeStatusReply
    | ServicesReply
    | NodesReply
    | LayoutReply
    | WriteOk
    | NotLeader
    | Rejected
    | Unavailable
)


# ----------------------------------------------------------------- helpers

_encoder = msgspec.msgpack.Encoder()
# Annotated: mypy cannot infer a Decoder's type from a union.
_request_decoder: msgspec.msgpack.Decoder[ApiRequest] = msgspec.msgpack.Decoder(ApiRequest)
_response_decoder: msgspec.msgpack.Decoder[ApiResponse] = msgspec.msgpack.Decoder(ApiResponse)


def encode(body: ApiRequest | ApiResponse) -> bytes:
    """The msgpack body of a request or response."""
    return _encoder.encode(body)


def decode_request(data: bytes) -> ApiRequest:
    """Decode a request body strictly (raises :class:`msgspec.DecodeError`)."""
    return _request_decoder.decode(data)


def decode_response(data: bytes) -> ApiResponse:
    """Decode a response body strictly (raises :class:`msgspec.DecodeError`)."""
    return _response_decoder.decode(data)


def write_proposal(request: WriteRequest, at_ms: int, default_node: str) -> Proposal:
    """The Proposal the leader commits for a write request.

    ``at_ms`` is the leader's clock (stored as registered_at); ``default_node``
    names the node of a :class:`Register` that leaves ``node`` empty. Validation
    happens on apply, identically on every coordinator.
    """
    match request:
        case Register():
            node = request.node or default_node
            service = Service(request.service_id, request.kind, node, request.address)
            command: Command = RegisterServices([service], at_ms)
        case Deregister():
            command = DeregisterServices([request.service_id])
        case RegisterNodeRequest():
            command = RegisterNode(
                request.node, request.address, request.capabilities, request.services, at_ms
            )
        case AddCoordinator():
            command = SetCoordinator(request.id, request.address)
        case RemoveCoordinator():
            command = DropCoordinator(request.id)
        case StoreLayoutRequest():
            command = StoreLayout(request.epoch, request.layout)
    return Proposal(request.client_id, request.seq, command)


def write_reply(result: ApplyResult) -> WriteOk | Rejected:
    """The reply to a committed write."""
    if isinstance(result, Applied):
        return WriteOk(result.index, result.value)
    return Rejected(result.reason)


# Service and ServiceRecord are part of these bodies, so clients get them here too.
__all__ = [
    "CLIENT_NODE",
    "AddCoordinator",
    "ApiRequest",
    "ApiResponse",
    "Deregister",
    "LayoutReply",
    "ListNodes",
    "ListServices",
    "NodeRecord",
    "NodeStatus",
    "NodeStatusReply",
    "NodesReply",
    "NotLeader",
    "Ping",
    "PingReply",
    "Register",
    "RegisterNodeRequest",
    "Rejected",
    "RemoveCoordinator",
    "Service",
    "ServiceRecord",
    "ServicesReply",
    "StoreLayoutRequest",
    "Unavailable",
    "WatchLayout",
    "WriteOk",
    "WriteRequest",
    "decode_request",
    "decode_response",
    "encode",
    "write_proposal",
    "write_reply",
]
