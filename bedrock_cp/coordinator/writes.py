"""How a client's write becomes a Raft proposal, and its apply result a reply.

:func:`write_proposal` turns a write request of the coordinators' interface
(:data:`~bedrock_cp.protocol.coordinator.WriteRequest`) into the
:class:`~.commands.Proposal` the leader proposes, in the request's session;
:func:`write_reply` turns the apply result into the reply sent after commit.
"""

from __future__ import annotations

from ..protocol import (
    AddCoordinator,
    Deregister,
    Register,
    RegisterNodeRequest,
    Rejected,
    RemoveCoordinator,
    Service,
    StoreLayoutRequest,
    UpdateConfigRequest,
    WriteOk,
    WriteRequest,
)
from .commands import (
    Command,
    DeregisterServices,
    DropCoordinator,
    Proposal,
    RegisterNode,
    RegisterServices,
    SetCoordinator,
    StoreLayout,
    UpdateConfig,
)
from .results import Applied, ApplyResult


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
        case UpdateConfigRequest():
            command = UpdateConfig(dict(request.changes))
    return Proposal(request.client_id, request.seq, command)


def write_reply(result: ApplyResult) -> WriteOk | Rejected:
    """The reply to a committed write."""
    if isinstance(result, Applied):
        return WriteOk(result.index, result.value)
    return Rejected(result.reason)
