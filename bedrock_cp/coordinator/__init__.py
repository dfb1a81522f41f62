"""The coordinators' replicated state machine.

- :mod:`.commands` — what goes into the Raft log: :data:`Command`, :class:`Proposal`.
- :mod:`.writes` — how a client's write becomes a :class:`Proposal`, and its result a reply.
- :mod:`.state` — :class:`CoordinatorState`: applies committed entries, snapshots.
- :mod:`.config`, :mod:`.sessions`, :mod:`.results`, :mod:`.limits` — the parts of
  that state, and its bounds (:class:`Rejected` here is an apply result; the reply
  is :class:`bedrock_cp.protocol.Rejected`).
- :mod:`.service` — :class:`~.service.Coordinator`, the role on a node.

The bodies of the coordinators' interface, and the directory's records, are in
:mod:`bedrock_cp.protocol`.
"""

from .commands import (
    BeginEpoch,
    Command,
    DeregisterServices,
    DropCoordinator,
    ForgetRetired,
    Proposal,
    RegisterNode,
    RegisterServices,
    RetireWorkers,
    SetCoordinator,
    StoreLayout,
    UpdateConfig,
    decode_proposal,
    encode_proposal,
)
from .config import PARAMETERS, ClusterConfig
from .results import Applied, ApplyResult, Rejected
from .sessions import Session, SessionTable
from .state import CoordinatorState, Snapshot, SnapshotError

__all__ = [
    "PARAMETERS",
    "Applied",
    "ApplyResult",
    "BeginEpoch",
    "ClusterConfig",
    "Command",
    "CoordinatorState",
    "DeregisterServices",
    "DropCoordinator",
    "ForgetRetired",
    "Proposal",
    "RegisterNode",
    "RegisterServices",
    "Rejected",
    "RetireWorkers",
    "Session",
    "SessionTable",
    "SetCoordinator",
    "Snapshot",
    "SnapshotError",
    "StoreLayout",
    "UpdateConfig",
    "decode_proposal",
    "encode_proposal",
]
