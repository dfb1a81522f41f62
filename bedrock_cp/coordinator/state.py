"""The coordinators' replicated state machine: cluster state as a pure function of the log.

Every coordinator feeds :meth:`CoordinatorState.apply` the same committed entries in
the same order and so holds the same state (I2). To keep that true this module is
pure: no I/O, no clock (a command carries its own ``at_ms``), no randomness, and no
iteration over hash-ordered sets where the order could show in the state.

Each command is validated in full against the current state before anything
changes; it is then applied entirely, or rejected with a reason naming the problem
and nothing but ``applied_index`` (and the proposer's session) changes.

Service ownership rule: a service id belongs to the node named in its record.
RegisterServices may add services or update services of the same node, but may not
move an id owned by another node; only a RegisterNode of the node named in the new
entry may take an id over (a node that re-registers declares the whole truth about
itself, e.g. a worker that moved there). RegisterNode also removes the services that
node owned before and no longer lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from ..protocol.coordinator import CLIENT_NODE
from ..protocol.records import LayoutRecord, NodeRecord, RetiredWorker, Service, ServiceRecord
from .commands import (
    BeginEpoch,
    Command,
    DeregisterServices,
    DropCoordinator,
    ForgetRetired,
    RegisterNode,
    RegisterServices,
    RetireWorkers,
    SetCoordinator,
    StoreLayout,
    UpdateConfig,
    decode_proposal,
)
from .config import ClusterConfig, apply_changes
from .limits import (
    MAX_CAPABILITIES,
    MAX_COORDINATORS,
    MAX_DIRECTORY,
    MAX_LAYOUT_BYTES,
    MAX_NODES,
    MAX_RETIRING,
    MAX_SERVICES_PAGE,
    MAX_SERVICES_PER_COMMAND,
    MAX_SESSIONS,
    check_address,
    check_name,
    check_non_negative,
    name_ok,
)
from .listing import DirectoryListing
from .results import Applied, ApplyResult, Rejected
from .sessions import Session, SessionTable


class SnapshotError(ValueError):
    """A snapshot that cannot be restored (corrupt, another format, or inconsistent)."""


class Snapshot(msgspec.Struct, tag="coord-v1", array_like=True, frozen=True, gc=False):
    """Version 1 of the snapshot format; canonical (every collection in a fixed order)."""

    applied_index: int
    config: ClusterConfig
    coordinators: list[tuple[int, str]]
    """Sorted by id."""
    services: list[ServiceRecord]
    """Sorted by id."""
    nodes: list[NodeRecord]
    """Sorted by node."""
    epoch: int
    epoch_node: str
    layout: LayoutRecord | None
    session_capacity: int
    sessions: list[Session]
    """Least recently active first."""
    retiring: list[RetiredWorker] = msgspec.field(default_factory=list)
    """Sorted by id."""


_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


class CoordinatorState:
    """Cluster state held by every coordinator; changed only by :meth:`apply`.

    Invariant: ``applied_index`` only grows; each index is applied at most once.
    """

    __slots__ = (
        "_by_node",
        "_config",
        "_coordinators",
        "_directory",
        "_epoch",
        "_epoch_node",
        "_layout",
        "_listing",
        "_nodes",
        "_retiring",
        "_sessions",
        "applied_index",
        "node_changes",
    )

    def __init__(
        self, config: ClusterConfig | None = None, *, session_capacity: int = MAX_SESSIONS
    ) -> None:
        """An empty state. Every replica must be built with the same arguments."""
        self.applied_index = 0
        #: Writes applied by this replica since it started that changed what
        #: the Director reads: node records and the services bound to a node.
        #: Services a client registers without a node (filed under
        #: ``CLIENT_NODE``) change neither, and are written all the time. A
        #: local counter, not replicated state: not in snapshots, not in digests.
        self.node_changes = 0
        self._config = config if config is not None else ClusterConfig()
        self._coordinators: dict[int, str] = {}
        self._directory: dict[str, ServiceRecord] = {}
        # Derived, node-local: the listing pages are read from (see .listing).
        self._listing: DirectoryListing | None = None
        # Derived index node -> its service ids; rebuilt on restore, never iterated
        # where order could matter.
        self._by_node: dict[str, set[str]] = {}
        self._nodes: dict[str, NodeRecord] = {}
        self._epoch = 0
        self._epoch_node = ""
        self._layout: LayoutRecord | None = None
        self._retiring: dict[str, RetiredWorker] = {}
        self._sessions = SessionTable(session_capacity)

    # ----------------------------------------------------------------- apply

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply the committed entry ``data`` at ``index``; never raises for bad data.

        Raises AssertionError if ``index <= applied_index`` (a driver bug).
        """
        self._advance(index)
        try:
            proposal = decode_proposal(data)
        except msgspec.DecodeError as e:
            return Rejected(index, f"undecodable command: {e}")
        client_id, seq = proposal.client_id, proposal.seq
        if client_id < 0:
            return Rejected(index, f"client_id must be >= 0, got {client_id}")
        if client_id == 0:
            return self._execute(index, proposal.command)
        if seq < 1:
            return Rejected(index, f"seq must be >= 1 for client {client_id}, got {seq}")
        replayed = self._sessions.replay(client_id, seq, index)
        if replayed is not None:
            return replayed
        result = self._execute(index, proposal.command)
        self._sessions.record(client_id, seq, index, result)
        return result

    def apply_noop(self, index: int) -> None:
        """Consume a Raft entry without a command (leader no-op, membership change)."""
        self._advance(index)

    def _advance(self, index: int) -> None:
        if index <= self.applied_index:
            raise AssertionError(f"entry {index} applied after {self.applied_index}")
        self.applied_index = index

    def _execute(self, index: int, command: Command) -> ApplyResult:
        outcome: int | str | None
        bound_to_node = self._binds_a_node(command)  # before a deregister removes them
        match command:
            case RegisterNode():
                outcome = self._register_node(index, command)
            case RegisterServices():
                outcome = self._register_services(command)
            case DeregisterServices():
                outcome = self._deregister_services(command)
            case UpdateConfig():
                outcome = self._update_config(command)
            case SetCoordinator():
                outcome = self._set_coordinator(command)
            case DropCoordinator():
                outcome = self._drop_coordinator(command)
            case BeginEpoch():
                outcome = self._begin_epoch(command)
            case StoreLayout():
                outcome = self._store_layout(command)
            case RetireWorkers():
                outcome = self._retire_workers(command)
            case ForgetRetired():
                outcome = self._forget_retired(command)
        # A handler returns the reason (str) to reject, or the value it applied with.
        if isinstance(outcome, str):
            return Rejected(index, outcome)
        if isinstance(command, RegisterNode) or (
            isinstance(command, RegisterServices | DeregisterServices) and bound_to_node
        ):
            self.node_changes += 1
        return Applied(index, outcome)

    def _binds_a_node(self, command: Command) -> bool:
        """Does ``command`` register or remove a service bound to a node (not
        filed under :data:`CLIENT_NODE`, where a client's services go)?"""
        if isinstance(command, RegisterServices):
            return any(s.node != CLIENT_NODE for s in command.services)
        if isinstance(command, DeregisterServices):
            return any(
                (record := self._directory.get(i)) is not None and record.node != CLIENT_NODE
                for i in command.service_ids
            )
        return False

    # -------------------------------------------------------------- commands

    def _register_node(self, index: int, c: RegisterNode) -> int | str:
        reason = (
            check_name("node", c.node)
            or check_address(f"node {c.node!r} address", c.address)
            or check_non_negative("at_ms", c.at_ms)
            or _check_capabilities(c.capabilities)
            or self._check_services(c.services, owner=c.node)
        )
        if reason:
            return reason
        if c.node not in self._nodes and len(self._nodes) >= MAX_NODES:
            return f"too many nodes (at most {MAX_NODES})"
        old_ids = self._by_node.get(c.node, set())
        new_ids = {s.id for s in c.services}
        gone = old_ids - new_ids
        added = sum(1 for s in c.services if s.id not in self._directory)
        if len(self._directory) - len(gone) + added > MAX_DIRECTORY:
            return f"the directory would exceed {MAX_DIRECTORY} services"

        for service_id in gone:
            del self._directory[service_id]
        for s in c.services:
            previous = self._directory.get(s.id)
            if previous is not None and previous.node != c.node:
                self._unindex(previous.node, s.id)  # taken over from another node
            self._directory[s.id] = _record(s, c.at_ms)
            self._listed(s.id)
        if new_ids:
            self._by_node[c.node] = new_ids
        else:
            self._by_node.pop(c.node, None)
        self._nodes[c.node] = NodeRecord(
            c.node, c.address, sorted(set(c.capabilities)), index, c.at_ms
        )
        return len(c.services)

    def _register_services(self, c: RegisterServices) -> int | str:
        if not c.services:
            return "no services to register"
        reason = check_non_negative("at_ms", c.at_ms) or self._check_services(
            c.services, owner=None
        )
        if reason:
            return reason
        added = sum(1 for s in c.services if s.id not in self._directory)
        if len(self._directory) + added > MAX_DIRECTORY:
            return f"the directory would exceed {MAX_DIRECTORY} services"
        for s in c.services:
            self._directory[s.id] = _record(s, c.at_ms)
            self._listed(s.id)
            self._by_node.setdefault(s.node, set()).add(s.id)
        return len(c.services)

    def _deregister_services(self, c: DeregisterServices) -> int | str:
        if not c.service_ids:
            return "no service ids to deregister"
        if len(c.service_ids) > MAX_SERVICES_PER_COMMAND:
            return (
                f"{len(c.service_ids)} service ids in one command "
                f"(at most {MAX_SERVICES_PER_COMMAND})"
            )
        for service_id in c.service_ids:
            reason = check_name("service id", service_id)
            if reason:
                return reason
        removed = 0
        for service_id in c.service_ids:
            record = self._directory.pop(service_id, None)
            if record is not None:
                self._unindex(record.node, service_id)
                removed += 1
        return removed

    def _update_config(self, c: UpdateConfig) -> str | None:
        if not c.changes:
            return "no config changes"
        updated = apply_changes(self._config, c.changes)
        if isinstance(updated, str):
            return updated
        self._config = updated
        return None

    def _set_coordinator(self, c: SetCoordinator) -> str | None:
        if c.id < 1:
            return f"coordinator id must be >= 1, got {c.id}"
        reason = check_address(f"coordinator {c.id} address", c.address)
        if reason:
            return reason
        for other, address in self._coordinators.items():
            if other != c.id and address == c.address:
                return f"address {c.address!r} is already coordinator {other}'s"
        if c.id not in self._coordinators and len(self._coordinators) >= MAX_COORDINATORS:
            return f"too many coordinators (at most {MAX_COORDINATORS})"
        self._coordinators[c.id] = c.address
        return None

    def _drop_coordinator(self, c: DropCoordinator) -> str | None:
        if c.id not in self._coordinators:
            return f"no coordinator {c.id}"
        del self._coordinators[c.id]
        return None

    def _begin_epoch(self, c: BeginEpoch) -> int | str:
        reason = check_name("epoch node", c.node)
        if reason:
            return reason
        self._epoch += 1
        self._epoch_node = c.node
        return self._epoch

    def _store_layout(self, c: StoreLayout) -> int | str:
        # Fencing (I5/I6): only the Director of the current epoch may store a layout.
        if c.epoch != self._epoch:
            return f"layout is for epoch {c.epoch} but the current epoch is {self._epoch}"
        if self._epoch == 0:
            return "no epoch has begun"
        if len(c.layout) > MAX_LAYOUT_BYTES:
            return f"layout is {len(c.layout)} bytes (at most {MAX_LAYOUT_BYTES})"
        self._layout = LayoutRecord(c.epoch, c.layout)
        return c.epoch

    def _check_director(self, epoch: int) -> str | None:
        # Only the Director of the current epoch retires workers (I6).
        if self._epoch == 0:
            return "no epoch has begun"
        if epoch != self._epoch:
            return f"retirement is for epoch {epoch} but the current epoch is {self._epoch}"
        return None

    def _retire_workers(self, c: RetireWorkers) -> int | str:
        reason = self._check_director(c.epoch)
        if reason:
            return reason
        if not c.workers:
            return "no workers to retire"
        if len(c.workers) > MAX_SERVICES_PER_COMMAND:
            return f"{len(c.workers)} workers in one command (at most {MAX_SERVICES_PER_COMMAND})"
        seen: set[str] = set()
        for w in c.workers:
            reason = _check_placed("retired worker", w.id, w.kind, w.node, w.address)
            if reason:
                return reason
            if w.epoch != c.epoch:
                return f"retired worker {w.id!r} names epoch {w.epoch}, not {c.epoch}"
            if w.id in seen:
                return f"retired worker {w.id!r} appears twice"
            seen.add(w.id)
        added = [w for w in c.workers if w.id not in self._retiring]
        if len(self._retiring) + len(added) > MAX_RETIRING:
            return f"more than {MAX_RETIRING} retired workers would await removal"
        for w in added:
            self._retiring[w.id] = w
        return len(added)

    def _forget_retired(self, c: ForgetRetired) -> int | str:
        reason = self._check_director(c.epoch)
        if reason:
            return reason
        if len(c.ids) > MAX_SERVICES_PER_COMMAND:
            return f"{len(c.ids)} ids in one command (at most {MAX_SERVICES_PER_COMMAND})"
        for worker_id in c.ids:
            reason = check_name("retired worker id", worker_id)
            if reason:
                return reason
        return sum(1 for worker_id in c.ids if self._retiring.pop(worker_id, None) is not None)

    # ------------------------------------------------------------ validation

    def _check_services(self, services: list[Service], owner: str | None) -> str | None:
        """Every entry valid, ids unique; ``owner`` set for RegisterNode, None otherwise."""
        if len(services) > MAX_SERVICES_PER_COMMAND:
            return f"{len(services)} services in one command (at most {MAX_SERVICES_PER_COMMAND})"
        seen: set[str] = set()
        for s in services:
            reason = _check_placed("service", s.id, s.kind, s.node, s.address)
            if reason:
                return reason
            if s.id in seen:
                return f"service {s.id!r} appears twice"
            seen.add(s.id)
            if owner is not None:
                if s.node != owner:
                    return f"service {s.id!r} names node {s.node!r}, not the registering {owner!r}"
                continue
            current = self._directory.get(s.id)
            if current is not None and current.node != s.node:
                return (
                    f"service {s.id!r} is registered by node {current.node!r}; only a "
                    f"RegisterNode of node {s.node!r} can take it over"
                )
        return None

    def _unindex(self, node: str, service_id: str) -> None:
        ids = self._by_node[node]
        ids.discard(service_id)
        if not ids:
            del self._by_node[node]

    # --------------------------------------------------------------- queries

    @property
    def config(self) -> ClusterConfig:
        """Cluster name and parameters."""
        return self._config

    @property
    def coordinators(self) -> Mapping[int, str]:
        """Coordinator id -> address (read-only; iteration order is not canonical)."""
        return MappingProxyType(self._coordinators)

    @property
    def directory(self) -> Mapping[str, ServiceRecord]:
        """Service id -> record (read-only; iteration order is not canonical: a restored
        replica iterates in id order; use :meth:`services` for a stable order)."""
        return MappingProxyType(self._directory)

    @property
    def nodes(self) -> Mapping[str, NodeRecord]:
        """Node -> what it last declared (read-only; iteration order is not canonical)."""
        return MappingProxyType(self._nodes)

    @property
    def epoch(self) -> int:
        """The last epoch handed to a Director (0: none yet)."""
        return self._epoch

    @property
    def epoch_node(self) -> str:
        """The node that began the current epoch ("" before the first)."""
        return self._epoch_node

    @property
    def layout(self) -> LayoutRecord | None:
        """The layout of the last completed recovery, with its epoch."""
        return self._layout

    @property
    def retiring(self) -> list[RetiredWorker]:
        """Retired workers whose files may still be on their nodes, sorted by id."""
        return [self._retiring[i] for i in sorted(self._retiring)]

    @property
    def sessions(self) -> SessionTable:
        """Client sessions (read them; only :meth:`apply` changes them)."""
        return self._sessions

    @property
    def service_count(self) -> int:
        """Number of services in the directory."""
        return len(self._directory)

    def services(self, node: str | None = None) -> list[ServiceRecord]:
        """The directory sorted by id, or only ``node``'s services."""
        if node is None:
            return sorted(self._directory.values(), key=_by_id)
        return sorted((self._directory[i] for i in self._by_node.get(node, ())), key=_by_id)

    def services_page(self, after: str, limit: int) -> tuple[list[ServiceRecord], bool]:
        """Up to ``limit`` services of ids above ``after`` (from the first for
        ``""``), in id order, and whether more follow."""
        if self._listing is None:
            self._listing = DirectoryListing(sorted(self._directory), MAX_SERVICES_PAGE)
        return self._listing.page(self._directory, after, limit)

    def _listed(self, service_id: str) -> None:
        """``service_id`` entered the directory: the listing, if any, must know."""
        if self._listing is not None and not self._listing.note(service_id):
            self._listing = None

    def service(self, service_id: str) -> ServiceRecord | None:
        """One directory entry."""
        return self._directory.get(service_id)

    # ------------------------------------------------------ snapshot, digest

    def snapshot(self, *, canonical: bool = True) -> bytes:
        """The whole state, canonically encoded: equal states give equal bytes.

        Not ``canonical``: the directory in the order this state built it,
        which replicas that applied the same entries (or restored the same
        snapshot) share, but states reached another way may not. Restores
        the same, at a fraction of the cost for a large directory (records
        read in id order miss the cache, in the dict's own order they do
        not; see ``benches/results/compaction-against-state-size-ab.md``).
        Compactions take this one; digests and comparisons the canonical one.
        """
        return _encoder.encode(self._to_snapshot(canonical=canonical))

    @classmethod
    def restore(cls, data: bytes) -> CoordinatorState:
        """The state a :meth:`snapshot` was taken of; raises :class:`SnapshotError`."""
        try:
            snap = _snapshot_decoder.decode(data)
        except msgspec.DecodeError as e:
            raise SnapshotError(f"not a version 1 coordinator snapshot: {e}") from None
        try:
            sessions = SessionTable.from_entries(snap.session_capacity, snap.sessions)
        except ValueError as e:
            raise SnapshotError(f"bad coordinator snapshot: {e}") from None
        state = cls(snap.config, session_capacity=snap.session_capacity)
        state.applied_index = snap.applied_index
        state._coordinators = dict(snap.coordinators)
        state._directory = {s.id: s for s in snap.services}
        for s in snap.services:
            state._by_node.setdefault(s.node, set()).add(s.id)
        state._nodes = {n.node: n for n in snap.nodes}
        state._epoch = snap.epoch
        state._epoch_node = snap.epoch_node
        state._layout = snap.layout
        state._retiring = {w.id: w for w in snap.retiring}
        state._sessions = sessions
        problem = _inconsistency(snap, state)
        if problem:
            raise SnapshotError(f"bad coordinator snapshot: {problem}")
        return state

    def digest(self) -> str:
        """SHA-256 of the whole state (including applied_index and sessions)."""
        return hashlib.sha256(self.snapshot()).hexdigest()

    def content_digest(self) -> str:
        """SHA-256 of what commands change (everything but applied_index and sessions)."""
        s = self._to_snapshot()
        content = (
            s.config,
            s.coordinators,
            s.services,
            s.nodes,
            s.epoch,
            s.epoch_node,
            s.layout,
            s.retiring,
        )
        return hashlib.sha256(_encoder.encode(content)).hexdigest()

    def _to_snapshot(self, *, canonical: bool = True) -> Snapshot:
        return Snapshot(
            applied_index=self.applied_index,
            config=self._config,
            coordinators=sorted(self._coordinators.items()),
            services=self.services() if canonical else list(self._directory.values()),
            nodes=[self._nodes[n] for n in sorted(self._nodes)],
            epoch=self._epoch,
            epoch_node=self._epoch_node,
            layout=self._layout,
            session_capacity=self._sessions.capacity,
            sessions=self._sessions.entries(),
            retiring=self.retiring,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CoordinatorState):
            return NotImplemented
        return self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"CoordinatorState(applied_index={self.applied_index}, epoch={self._epoch}, "
            f"services={len(self._directory)}, nodes={len(self._nodes)}, "
            f"coordinators={len(self._coordinators)}, sessions={len(self._sessions)})"
        )


def _check_capabilities(capabilities: list[str]) -> str | None:
    if len(capabilities) > MAX_CAPABILITIES:
        return f"{len(capabilities)} capabilities (at most {MAX_CAPABILITIES})"
    for capability in capabilities:
        reason = check_name("capability", capability)
        if reason:
            return reason
    return None


def _check_placed(what: str, id_: str, kind: str, node: str, address: str) -> str | None:
    """Why a record of something placed on a node (a service, a worker) is invalid."""
    if name_ok(id_) and name_ok(kind) and name_ok(node) and check_address("", address) is None:
        # Valid, as nearly every one is: every node checks every service of
        # every write it applies, so no reason is formatted for nothing.
        return None
    return (
        check_name(f"{what} id", id_)
        or check_name(f"{what} {id_!r} kind", kind)
        or check_name(f"{what} {id_!r} node", node)
        or check_address(f"{what} {id_!r} address", address)
    )


def _record(s: Service, at_ms: int) -> ServiceRecord:
    return ServiceRecord(s.id, s.kind, s.node, s.address, at_ms)


def _by_id(record: ServiceRecord) -> str:
    return record.id


def _inconsistency(snap: Snapshot, state: CoordinatorState) -> str | None:
    """Why a decoded snapshot cannot be a state this module produced, if it cannot."""
    if snap.applied_index < 0 or snap.epoch < 0:
        return "negative applied_index or epoch"
    if len(state._coordinators) != len(snap.coordinators):
        return "a coordinator id appears twice"
    if len(state._directory) != len(snap.services):
        return "a service id appears twice"
    if len(state._nodes) != len(snap.nodes):
        return "a node appears twice"
    if len(state._retiring) != len(snap.retiring):
        return "a retired worker appears twice"
    if snap.layout is not None and snap.layout.epoch > snap.epoch:
        return f"layout epoch {snap.layout.epoch} is after the epoch {snap.epoch}"
    if snap.sessions and snap.sessions[-1].active_index > snap.applied_index:
        return "a session is active after the applied index"
    return None
