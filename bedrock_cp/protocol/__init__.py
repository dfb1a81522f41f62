"""Every message body of bedrock_cp: each role's interface, one codec, one caller.

As in FoundationDB, each role's interface (its requests and replies) is declared
apart from the role's code, so callers depend on the interface only:

- :mod:`.coordinator` — directory, membership, the stored layout, status.
- :mod:`.gateway` — the layout a node's Gateway caches for local clients.
- :mod:`.foreman` — creating, listing and removing a node's workers and roles.
- :mod:`.log`, :mod:`.storage`, :mod:`.sequencer`, :mod:`.resolver`,
  :mod:`.commit_proxy` — the data-plane workers.
- :mod:`.errors` — the refusals every role shares (``NotLeader``, ``Unavailable``,
  ``Rejected``, ``NewerEpoch``, ``Locked``, ``Failed``, ``Unauthorized``) and the
  plain ``Done``.
- :mod:`.layout` — the transaction system layout (TSL), the records the data
  plane's bodies carry (``WorkerRef``, ``KeyRange``, ``Mutation``,
  ``CommitBatch``) and the limits of the key space.
- :mod:`.idempotency` — the records that tell a retry whether an earlier
  attempt of its transaction committed (a module of its own, not re-exported).
- :mod:`.records` — the directory's records (``Service``, ``ServiceRecord``,
  ``NodeRecord``, ``LayoutRecord``).
- :mod:`.base` — :class:`Body`, the one base Struct, and :class:`Sender`.
- :mod:`.codec` — :data:`Request` and :data:`Response`, one union per direction;
  :func:`encode`, :func:`decode_request`, :func:`decode_response`.
- :mod:`.caller` — :class:`Caller`, how everyone sends a request to a node.

Everything is re-exported here flat (names are unique across the roles).

Who may send each request (the ``sender`` of its type, :data:`SENDERS`):

- ``any``: Ping, NodeStatus, Health
- ``peer``: LogPush, LogPull, LogPop, LogCommitted, ConfirmEpoch, StorageStatus,
  StorageSnapshot, GetCommitVersion, ReportCommitted, Resolve, ListWorkers
- ``director``: StoreLayoutRequest, LogLock, LogRecover, StorageLock, StorageFill,
  UnlockProxy, CreateWorker, RemoveWorker, StartRole, StopRole
- ``admin``: AddCoordinator, RemoveCoordinator, UpdateConfigRequest
- ``client``: ListServices, ListNodes, WatchLayout, Register, Deregister,
  RegisterNodeRequest, GetLayout, StorageGet, StorageGetRange, GetReadVersion, Commit
"""

from .base import Body, Sender
from .caller import Caller
from .codec import (
    SENDERS,
    Request,
    Response,
    WorkerRequest,
    decode_request,
    decode_response,
    encode,
)
from .commit_proxy import Commit, CommitProxyRequest, Committed, NotCommitted, UnlockProxy
from .coordinator import (
    CLIENT_NODE,
    AddCoordinator,
    CoordinatorRequest,
    Deregister,
    LayoutReply,
    ListNodes,
    ListServices,
    NodesReply,
    NodeStatus,
    NodeStatusReply,
    Ping,
    PingReply,
    Register,
    RegisterNodeRequest,
    RemoveCoordinator,
    ServicesReply,
    StoreLayoutRequest,
    UpdateConfigRequest,
    WatchLayout,
    WriteOk,
    WriteRequest,
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
from .foreman import (
    CreateWorker,
    ForemanRequest,
    Health,
    ListWorkers,
    RemoveWorker,
    StartRole,
    StopRole,
    WorkerCreated,
    WorkerInfo,
    Workers,
)
from .gateway import GatewayRequest, GetLayout
from .layout import (
    MAX_KEY_SIZE,
    MAX_STREAM_BYTES,
    MAX_TRANSACTION_SIZE,
    MAX_VALUE_SIZE,
    MVCC_WINDOW_VERSIONS,
    STREAM_BYTES,
    SYSTEM_END,
    SYSTEM_PREFIX,
    VERSIONS_PER_SECOND,
    CommitBatch,
    KeyRange,
    Layout,
    Mutation,
    MutationKind,
    ResolverAssignment,
    StorageTeam,
    WorkerRef,
    check_user_key,
    decode_layout,
    encode_layout,
    served_range,
)
from .log import (
    ConfirmEpoch,
    LogBatches,
    LogCommitted,
    LogLock,
    LogLocked,
    LogPop,
    LogPull,
    LogPush,
    LogPushed,
    LogRecover,
    LogRecovered,
    LogRequest,
    ReplicaProgress,
)
from .records import LayoutRecord, NodeRecord, RetiredWorker, Service, ServiceRecord
from .resolver import Resolve, Resolved, ResolverRequest, ResolveTransaction
from .sequencer import (
    CommitVersion,
    GetCommitVersion,
    GetReadVersion,
    ReadVersion,
    ReportCommitted,
    SequencerRequest,
)
from .storage import (
    SnapshotChunk,
    StorageFill,
    StorageGet,
    StorageGetRange,
    StorageLock,
    StorageRequest,
    StorageSnapshot,
    StorageState,
    StorageStatus,
    Value,
    Values,
)

__all__ = [
    "CLIENT_NODE",
    "MAX_KEY_SIZE",
    "MAX_STREAM_BYTES",
    "MAX_TRANSACTION_SIZE",
    "MAX_VALUE_SIZE",
    "MVCC_WINDOW_VERSIONS",
    "SENDERS",
    "STREAM_BYTES",
    "SYSTEM_END",
    "SYSTEM_PREFIX",
    "VERSIONS_PER_SECOND",
    "AddCoordinator",
    "Body",
    "Caller",
    "Commit",
    "CommitBatch",
    "CommitProxyRequest",
    "CommitVersion",
    "Committed",
    "ConfirmEpoch",
    "CoordinatorRequest",
    "CreateWorker",
    "Deregister",
    "Done",
    "Failed",
    "ForemanRequest",
    "GatewayRequest",
    "GetCommitVersion",
    "GetLayout",
    "GetReadVersion",
    "Health",
    "KeyRange",
    "Layout",
    "LayoutRecord",
    "LayoutReply",
    "ListNodes",
    "ListServices",
    "ListWorkers",
    "Locked",
    "LogBatches",
    "LogCommitted",
    "LogLock",
    "LogLocked",
    "LogPop",
    "LogPull",
    "LogPush",
    "LogPushed",
    "LogRecover",
    "LogRecovered",
    "LogRequest",
    "Mutation",
    "MutationKind",
    "NewerEpoch",
    "NodeRecord",
    "NodeStatus",
    "NodeStatusReply",
    "NodesReply",
    "NotCommitted",
    "NotLeader",
    "Ping",
    "PingReply",
    "ReadVersion",
    "Register",
    "RegisterNodeRequest",
    "Rejected",
    "RemoveCoordinator",
    "RemoveWorker",
    "ReplicaProgress",
    "ReportCommitted",
    "Request",
    "Resolve",
    "ResolveTransaction",
    "Resolved",
    "ResolverAssignment",
    "ResolverRequest",
    "Response",
    "RetiredWorker",
    "Sender",
    "SequencerRequest",
    "Service",
    "ServiceRecord",
    "ServicesReply",
    "SnapshotChunk",
    "StartRole",
    "StopRole",
    "StorageFill",
    "StorageGet",
    "StorageGetRange",
    "StorageLock",
    "StorageRequest",
    "StorageSnapshot",
    "StorageState",
    "StorageStatus",
    "StorageTeam",
    "StoreLayoutRequest",
    "Unauthorized",
    "Unavailable",
    "UnlockProxy",
    "UpdateConfigRequest",
    "Value",
    "Values",
    "WatchLayout",
    "WorkerCreated",
    "WorkerInfo",
    "WorkerRef",
    "WorkerRequest",
    "Workers",
    "WriteOk",
    "WriteRequest",
    "check_user_key",
    "decode_layout",
    "decode_request",
    "decode_response",
    "encode",
    "encode_layout",
    "served_range",
]
