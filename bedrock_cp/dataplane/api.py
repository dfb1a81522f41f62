"""Request and response bodies of the data-plane workers and the Foreman.

They travel in the transport's ``Request``/``Response`` frames like the
coordinator API (tags start with ``dp_`` or ``fm_`` so one union decodes both).
Every request names the ``worker`` it is for (the node routes by id); every
request that carries an ``epoch`` is refused with :class:`NewerEpoch` by a worker
that has seen a newer one (DESIGN §9 I6).
"""

from __future__ import annotations

import msgspec

from .types import CommitBatch, KeyRange, Mutation, WorkerRef

_S = {"array_like": True, "frozen": True, "gc": False}

# -- log ------------------------------------------------------------------------------


class LogPush(msgspec.Struct, tag="dp_push", **_S):
    """Append one commit batch; answered after it is durable (fsync).

    ``committed`` is the proxy's known committed version: every version up to
    it is durable on every log of the layout (storage may persist up to it).
    """

    worker: str
    epoch: int
    batch: CommitBatch
    committed: int


class LogPull(msgspec.Struct, tag="dp_pull", **_S):
    """Batches with version > ``after``, up to ``limit``; waits up to ``wait_ms`` for one."""

    worker: str
    after: int
    limit: int = 1000
    wait_ms: int = 0


class LogLock(msgspec.Struct, tag="dp_lock", **_S):
    """Stop accepting pushes for epochs below ``epoch``; report the log's range."""

    worker: str
    epoch: int


class LogRecover(msgspec.Struct, tag="dp_recover", **_S):
    """Copy exactly the batches ``[first, last]`` from ``sources`` (old-generation logs).

    The log then holds exactly that range (its previous content is replaced),
    belongs to ``epoch`` (unlocked), and the next batch chains from ``last``. An
    empty range (``first == last + 1``, no sources needed) starts an empty log at
    ``last``.
    """

    worker: str
    epoch: int
    sources: list[WorkerRef]
    first: int
    last: int


class LogPushed(msgspec.Struct, tag="dp_pushed", **_S):
    version: int
    durable: int


class LogBatches(msgspec.Struct, tag="dp_batches", **_S):
    batches: list[CommitBatch]
    last: int
    durable: int
    committed: int


class LogLocked(msgspec.Struct, tag="dp_locked", **_S):
    """``oldest`` is the first version still held, ``last`` the newest, ``durable``
    the newest made durable (all three 0 for an empty log)."""

    oldest: int
    last: int
    durable: int


class LogRecovered(msgspec.Struct, tag="dp_recovered", **_S):
    first: int
    last: int
    batches: int


# -- storage ---------------------------------------------------------------------------


class StorageGet(msgspec.Struct, tag="dp_get", **_S):
    worker: str
    key: bytes
    version: int


class StorageGetRange(msgspec.Struct, tag="dp_get_range", **_S):
    worker: str
    begin: bytes
    end: bytes
    version: int
    limit: int = 1000


class StorageStatus(msgspec.Struct, tag="dp_storage_status", **_S):
    worker: str


class StorageLock(msgspec.Struct, tag="dp_storage_lock", **_S):
    """Recovery: stop serving reads above ``version`` until unlocked by ``epoch``."""

    worker: str
    epoch: int
    locked: bool


class Value(msgspec.Struct, tag="dp_value", **_S):
    value: bytes | None
    version: int


class Values(msgspec.Struct, tag="dp_values", **_S):
    pairs: list[tuple[bytes, bytes]]
    more: bool
    version: int


class StorageState(msgspec.Struct, tag="dp_storage_state", **_S):
    applied: int
    durable: int
    oldest: int
    locked: bool


# -- sequencer ---------------------------------------------------------------------------


class GetReadVersion(msgspec.Struct, tag="dp_grv", **_S):
    worker: str
    epoch: int


class GetCommitVersion(msgspec.Struct, tag="dp_gcv", **_S):
    worker: str
    epoch: int


class ReportCommitted(msgspec.Struct, tag="dp_committed_upto", **_S):
    """A proxy made ``version`` durable on every log; read versions may now include it."""

    worker: str
    epoch: int
    version: int


class ReadVersion(msgspec.Struct, tag="dp_read_version", **_S):
    version: int


class CommitVersion(msgspec.Struct, tag="dp_commit_version", **_S):
    prev_version: int
    version: int


# -- resolver ---------------------------------------------------------------------------


class ResolveTransaction(msgspec.Struct, **_S):
    read_version: int
    reads: list[KeyRange]
    writes: list[KeyRange]


class Resolve(msgspec.Struct, tag="dp_resolve", **_S):
    """Check a batch at ``version``; batches are resolved in ``prev_version`` order."""

    worker: str
    epoch: int
    prev_version: int
    version: int
    transactions: list[ResolveTransaction]


class Resolved(msgspec.Struct, tag="dp_resolved", **_S):
    committed: list[bool]


# -- commit proxy -----------------------------------------------------------------------


class Commit(msgspec.Struct, tag="dp_commit", **_S):
    """A client transaction: what it read (at ``read_version``) and what it writes.

    ``system`` is empty for every client. The Director's system transaction
    (recovery phase 11) carries its epoch's proxy unlock token there: only such
    a commit may write keys of the reserved ``0xff`` system key space.
    """

    worker: str
    read_version: int
    reads: list[KeyRange]
    writes: list[KeyRange]
    mutations: list[Mutation]
    system: bytes = b""


class Committed(msgspec.Struct, tag="dp_ok", **_S):
    version: int


class NotCommitted(msgspec.Struct, tag="dp_conflict", **_S):
    """The transaction did not commit (retryable with a new read version).

    ``reason``: ``conflict`` (something read was written by a transaction
    committed after the read) or ``too_old`` (the read version is older than the
    MVCC window or than the epoch's recovery version).
    """

    reason: str


class UnlockProxy(msgspec.Struct, tag="dp_unlock", **_S):
    worker: str
    epoch: int
    token: bytes


# -- roles (sequencer, proxies, resolvers are started per epoch) ---------------------------


class StartRole(msgspec.Struct, tag="fm_start_role", **_S):
    """Start a transaction-system role on this node for ``epoch``.

    ``layout`` is the encoded TSL the role belongs to (its peers); ``version`` the
    version the epoch starts at; ``token`` the lock token proxies are unlocked with.
    """

    kind: str  # "sequencer" | "commit_proxy" | "resolver"
    worker: str
    epoch: int
    version: int
    layout: bytes
    token: bytes = b""


class StopRole(msgspec.Struct, tag="fm_stop_role", **_S):
    """Stop role ``worker``. ``epoch`` is the requesting Director's: a role of a
    newer epoch is refused (an old Director can never stop its successor's roles)."""

    worker: str
    epoch: int = 0


# -- foreman ---------------------------------------------------------------------------------


class CreateWorker(msgspec.Struct, tag="fm_create", **_S):
    """Create a ``log`` or ``storage`` worker for the Director of ``epoch``
    (recorded in its manifest)."""

    kind: str  # "log" | "storage"
    worker: str
    epoch: int = 0


class RemoveWorker(msgspec.Struct, tag="fm_remove", **_S):
    """Stop ``worker`` and delete its data. ``epoch`` is the requesting
    Director's: a worker created for a newer epoch is refused."""

    worker: str
    epoch: int = 0


class ListWorkers(msgspec.Struct, tag="fm_list", **_S):
    pass


class WorkerInfo(msgspec.Struct, **_S):
    """A worker or role a Foreman knows; ``epoch`` is the one it was created for."""

    ref: WorkerRef
    state: str  # "running" | "failed" | "stopped"
    reason: str = ""
    epoch: int = 0


class Workers(msgspec.Struct, tag="fm_workers", **_S):
    workers: list[WorkerInfo]


class WorkerCreated(msgspec.Struct, tag="fm_created", **_S):
    ref: WorkerRef


class Health(msgspec.Struct, tag="dp_health", **_S):
    """Is ``worker`` running on this node? Answered by the node: ``Done`` if it
    runs, ``Failed("no_such_worker")`` if not; a dead node does not answer."""

    worker: str


class Done(msgspec.Struct, tag="dp_done", **_S):
    pass


# -- errors --------------------------------------------------------------------------------


class NewerEpoch(msgspec.Struct, tag="dp_newer_epoch", **_S):
    """The worker has seen ``epoch``, newer than the request's: the caller is superseded."""

    epoch: int


class Locked(msgspec.Struct, tag="dp_locked_out", **_S):
    """The worker is locked by a recovery (or a proxy awaits its unlock token)."""

    reason: str


class Failed(msgspec.Struct, tag="dp_failed", **_S):
    """The request is invalid or the worker cannot serve it; ``code`` says which.

    Codes: ``no_such_worker``, ``invalid`` (bad input: key outside the key space,
    over a size limit, ...), ``future_version``, ``version_too_old``, ``gap``
    (a missing earlier version), ``wrong_shard`` (a storage read of a key this
    replica does not serve), ``unavailable`` (retryable), ``internal``.
    """

    code: str
    message: str


DataRequest = (
    LogPush
    | LogPull
    | LogLock
    | LogRecover
    | StorageGet
    | StorageGetRange
    | StorageStatus
    | StorageLock
    | GetReadVersion
    | GetCommitVersion
    | ReportCommitted
    | Resolve
    | Commit
    | UnlockProxy
    | StartRole
    | StopRole
    | CreateWorker
    | RemoveWorker
    | ListWorkers
    | Health
)

DataResponse = (
    LogPushed
    | LogBatches
    | LogLocked
    | LogRecovered
    | Value
    | Values
    | StorageState
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
)

_encoder = msgspec.msgpack.Encoder()
_request_decoder: msgspec.msgpack.Decoder[DataRequest] = msgspec.msgpack.Decoder(DataRequest)
_response_decoder: msgspec.msgpack.Decoder[DataResponse] = msgspec.msgpack.Decoder(DataResponse)


def encode(body: DataRequest | DataResponse) -> bytes:
    return _encoder.encode(body)


def decode_request(data: bytes) -> DataRequest:
    return _request_decoder.decode(data)


def decode_response(data: bytes) -> DataResponse:
    return _response_decoder.decode(data)
