"""The coordinators' replicated state machine and the bodies of their client API.

- :mod:`.commands` — what goes into the Raft log: :data:`Command`, :class:`Proposal`.
- :mod:`.state` — :class:`CoordinatorState`: applies committed entries, snapshots.
- :mod:`.config`, :mod:`.sessions`, :mod:`.records`, :mod:`.results`, :mod:`.limits`
  — the parts of that state, and its bounds.
- :mod:`.api` — request/response bodies of the coordinator service. Use it as a
  namespace (``api.Rejected`` is a reply; :class:`Rejected` here is an apply result).
"""

from . import api
from .commands import (
    BeginEpoch,
    Command,
    DeregisterServices,
    DropCoordinator,
    Proposal,
    RegisterNode,
    RegisterServices,
    Service,
    SetCoordinator,
    StoreLayout,
    UpdateConfig,
    decode_proposal,
    encode_proposal,
)
from .config import PARAMETERS, ClusterConfig
from .records import LayoutRecord, NodeRecord, ServiceRecord
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
    "LayoutRecord",
    "NodeRecord",
    "Proposal",
    "RegisterNode",
    "RegisterServices",
    "Rejected",
    "Service",
    "ServiceRecord",
    "Session",
    "SessionTable",
    "SetCoordinator",
    "Snapshot",
    "SnapshotError",
    "StoreLayout",
    "UpdateConfig",
    "api",
    "decode_proposal",
    "encode_proposal",
]
