"""The coordinators' interface: directory, membership, epochs' layouts, status.

A Raft group of coordinators holds the cluster's state: the directory of
services and nodes, the coordinators' membership, and the layout (TSL) of the
last completed recovery. Reads (:class:`ListServices`, :class:`ListNodes`) are
linearizable (ReadIndex on the leader) unless ``stale``; :class:`Ping` and
:class:`NodeStatus` are answered by any coordinator; every write is answered
after it committed and applied (:class:`~bedrock_cp.protocol.errors.NotLeader`
from a follower, naming the leader).

Writes carry a session ``(client_id, seq)`` (``client_id == 0``: no session, no
exactly-once on retry): a retried ``seq`` gets the first answer again instead of
being applied twice. A client's concurrent directory writes may travel together
in one :class:`WriteBatch` (at most :data:`MAX_BATCH_WRITES`), answered with one
:class:`WriteResults`; each write in it is still its own command, in its own
session, with its own answer. The coordinators turn each write into a command of their
Raft log; those commands are their persistent format, not part of this interface.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from .base import Body, Sender
from .errors import Rejected
from .records import NodeRecord, Service, ServiceRecord

#: The owner of services registered without a node: no Gateway declares it, so
#: a node's registration never replaces them.
CLIENT_NODE = "clients"

# -- requests --------------------------------------------------------------------------


class Ping(Body, tag="ping"):
    """Who leads, in which term and epoch; any coordinator answers (:class:`PingReply`).

    With ``wait_ms > 0`` it is a long poll for a leader change: the answer
    comes once this coordinator names a leader other than ``leader_id`` (or
    ``leader_id`` again at a term above ``term``, when ``term`` is known, i.e.
    not 0; a coordinator still at a lower term than ``term`` has no news), or
    its epoch passes ``epoch`` (when given), or when the wait (capped by the
    coordinator) ends. A client stuck at a silent leader learns of its
    successor the moment a peer does, instead of at its next poll; a node's
    Gateway follows its own coordinator's view this way, without polling.
    """

    sender: ClassVar[Sender] = Sender.ANY

    wait_ms: int = 0
    leader_id: int = 0
    term: int = 0
    epoch: int | None = None


class NodeStatus(Body, tag="status"):
    """This coordinator's own view (:class:`NodeStatusReply`)."""

    sender: ClassVar[Sender] = Sender.ANY


class ListServices(Body, tag="list"):
    """One page of the directory (:class:`ServicesReply`): the services of ids
    above ``after`` in id order, at most ``limit`` of them (0: as many as a
    page holds, :data:`~bedrock_cp.coordinator.limits.MAX_SERVICES_PAGE`,
    which also caps ``limit``). Linearizable (ReadIndex on the leader) unless
    ``stale``; each page on its own."""

    sender: ClassVar[Sender] = Sender.CLIENT

    stale: bool = False
    after: str = ""
    limit: int = 0


class ListNodes(Body, tag="list_nodes"):
    """What every node declared in its last registration (:class:`NodesReply`);
    linearizable unless ``stale``, like :class:`ListServices`."""

    sender: ClassVar[Sender] = Sender.CLIENT

    stale: bool = False


class GetConfig(Body, tag="get_config"):
    """The cluster's parameters (:class:`ConfigReply`); linearizable unless ``stale``."""

    sender: ClassVar[Sender] = Sender.CLIENT

    stale: bool = False


class WatchLayout(Body, tag="watch_layout"):
    """Long poll for the layout (TSL), answered by the leader only.

    Answered with :class:`LayoutReply` as soon as the stored layout's epoch is
    above ``after_epoch``, or after ``wait_ms`` (capped by the leader) with the
    current one. Followers answer ``NotLeader``. Gateways keep one outstanding.
    """

    sender: ClassVar[Sender] = Sender.CLIENT

    after_epoch: int
    wait_ms: int


class Register(Body, tag="reg"):
    """Register one service; ``node == ""`` files it under :data:`CLIENT_NODE`.

    Name the node when the service lives on one: a node's Gateway declares all
    of its node's services in one ``RegisterNodeRequest``, which replaces every
    entry of that node (including ones registered here).
    """

    sender: ClassVar[Sender] = Sender.CLIENT

    service_id: str
    kind: str
    address: str
    node: str = ""
    client_id: int = 0
    seq: int = 0


class Deregister(Body, tag="dereg"):
    """Remove one service (no error if it is not registered)."""

    sender: ClassVar[Sender] = Sender.CLIENT

    service_id: str
    client_id: int = 0
    seq: int = 0


class RegisterNodeRequest(Body, tag="reg_node"):
    """A gateway declares its node's capabilities and all its services in one write."""

    sender: ClassVar[Sender] = Sender.CLIENT

    node: str
    address: str
    capabilities: list[str]
    services: list[Service]
    client_id: int = 0
    seq: int = 0


class AddCoordinator(Body, tag="add_coord"):
    """Add coordinator ``id`` listening at ``address`` (membership change + address)."""

    sender: ClassVar[Sender] = Sender.ADMIN

    id: int
    address: str
    client_id: int = 0
    seq: int = 0


class RemoveCoordinator(Body, tag="rm_coord"):
    """Remove coordinator ``id``."""

    sender: ClassVar[Sender] = Sender.ADMIN

    id: int
    client_id: int = 0
    seq: int = 0


class UpdateConfigRequest(Body, tag="update_config"):
    """Change cluster parameters by name (all of them or none; see
    :mod:`bedrock_cp.coordinator.config` for the names and bounds)."""

    sender: ClassVar[Sender] = Sender.ADMIN

    changes: dict[str, int | str | list[str]]
    client_id: int = 0
    seq: int = 0


class StoreLayoutRequest(Body, tag="store_layout"):
    """Store the layout of ``epoch`` (the Director's last step); rejected on apply
    unless ``epoch`` is the current one, so a superseded Director cannot overwrite it."""

    sender: ClassVar[Sender] = Sender.DIRECTOR

    epoch: int
    layout: bytes
    client_id: int = 0
    seq: int = 0


#: Most writes one :class:`WriteBatch` carries (a longer one does not decode).
MAX_BATCH_WRITES = 256

#: The writes a :class:`WriteBatch` may carry: the directory writes a client
#: makes many of at once. Each declares the same sender as the batch.
BatchedWrite = Register | Deregister


class WriteBatch(Body, tag="writes"):
    """Several directory writes in one request: what a client's concurrent
    writes become when they are ready to send at the same moment.

    Each write is proposed as its own command, in its own session, in order, and
    answered in :class:`WriteResults` at the same position. The batch is
    authorized as a whole: if its sender may not send one of the writes, it is
    refused (``Unauthorized``, naming that write) and none is proposed. If
    leadership is lost before every write is answered, the whole batch is
    answered ``NotLeader`` or ``Unavailable``; a retry of it is exactly-once
    per write, by the sessions, like a retry of each write alone.
    """

    sender: ClassVar[Sender] = Sender.CLIENT

    writes: Annotated[list[BatchedWrite], msgspec.Meta(min_length=1, max_length=MAX_BATCH_WRITES)]


WriteRequest = (
    Register
    | Deregister
    | RegisterNodeRequest
    | AddCoordinator
    | RemoveCoordinator
    | UpdateConfigRequest
    | StoreLayoutRequest
)
CoordinatorRequest = (
    Ping
    | NodeStatus
    | ListServices
    | ListNodes
    | GetConfig
    | WatchLayout
    | WriteRequest
    | WriteBatch
)

# -- replies ---------------------------------------------------------------------------


class PingReply(Body, tag="pong"):
    """``leader_id == 0``: no known leader. ``state``: follower, candidate,
    waiting_consensus or ready (the leader's readiness: it starts a Director only
    once its first entry of the term committed)."""

    node_id: int
    term: int
    epoch: int
    leader_id: int
    leader_address: str
    state: str


class NodeStatusReply(Body, tag="status_reply"):
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
    members: dict[int, str] = {}  # noqa: RUF012 - msgspec copies a mutable default per instance
    #: Raft messages dropped because their sender was not the peer the
    #: connection authenticated.
    raft_forged_dropped: int = 0


class ServicesReply(Body, tag="services"):
    """A page of the directory as of applied ``index``, sorted by id; ``more``:
    services of higher ids follow (ask again after the last one)."""

    index: int
    services: list[ServiceRecord]
    more: bool = False


class NodesReply(Body, tag="nodes"):
    """The registered nodes as of applied ``index``, sorted by name."""

    index: int
    nodes: list[NodeRecord]


class ConfigReply(Body, tag="config"):
    """The cluster's parameters as of applied ``index``, by UpdateConfig name."""

    index: int
    config: dict[str, int | list[str]]


class LayoutReply(Body, tag="layout"):
    """The stored layout: ``epoch`` is the epoch it was stored for (0 and ``layout``
    None: none stored yet). ``leader_id`` is the leader as the answering node knows it."""

    epoch: int
    layout: bytes | None
    leader_id: int


class WriteOk(Body, tag="ok"):
    """The write committed and applied at ``index``; ``value`` is its result, if any."""

    index: int
    value: int | None


class WriteResults(Body, tag="oks"):
    """The answers to a :class:`WriteBatch`, one per write, in its order: each
    :class:`WriteOk` or :class:`~bedrock_cp.protocol.errors.Rejected`, as that
    write alone would have been answered."""

    results: list[WriteOk | Rejected]
