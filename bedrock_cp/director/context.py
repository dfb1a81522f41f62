"""The effects a Director needs, injected: the :class:`RecoveryContext` protocol.

Every phase reaches the world only through this interface — the coordinators'
directory and consensus, the nodes' Foremen, the data-plane workers, the
clock and randomness — so each phase is testable alone against an in-process
context (``tests/director_harness.py``) and the real one is written once,
beside the coordinator that starts Directors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..coordinator.config import ClusterConfig
from ..protocol import Request, Response, RetiredWorker, WorkerRef

#: Capabilities a node registers for the worker kinds it can host.
LOG = "log"
STORAGE = "storage"


class Superseded(Exception):
    """Raised by :meth:`RecoveryContext.store_layout` (and the other writes through
    consensus): the epoch is no longer current."""


@dataclass(frozen=True)
class NodeInfo:
    """A registered node as the coordinators' directory lists it."""

    node: str
    address: str
    capabilities: list[str] = field(default_factory=list)
    #: The workers the node registered (its running log and storage workers).
    workers: list[WorkerRef] = field(default_factory=list)


@dataclass(frozen=True)
class Parameters:
    """The sizes of the transaction system and the Director's timeouts (seconds)."""

    desired_logs: int = 3
    storage_replicas: int = 3
    commit_proxies: int = 1
    resolvers: int = 1
    lock_timeout: float = 1.0
    call_timeout: float = 2.0
    excluded_nodes: frozenset[str] = frozenset()
    #: How many nodes the cluster is expected to have (its coordinators): new
    #: workers wait until that many capable nodes registered (see _placement).
    expected_nodes: int = 1
    #: A storage replica silent for this long (seconds) is replaced, then retired.
    storage_replacement_s: float = 30.0

    @staticmethod
    def from_config(
        config: ClusterConfig,
        *,
        lock_timeout: float = 1.0,
        call_timeout: float = 2.0,
        expected_nodes: int = 1,
    ) -> Parameters:
        return Parameters(
            desired_logs=config.desired_logs,
            storage_replicas=config.storage_replicas,
            commit_proxies=config.commit_proxies,
            resolvers=config.resolvers,
            lock_timeout=lock_timeout,
            call_timeout=call_timeout,
            excluded_nodes=frozenset(config.excluded_nodes),
            expected_nodes=expected_nodes,
            storage_replacement_s=float(config.storage_replacement_s),
        )


class RecoveryContext(Protocol):
    """Everything a Director does to the world goes through here.

    ``node``/``address`` are the node the Director runs on (roles start there);
    ``epoch`` is the epoch it recovers into, fixed for its lifetime.
    """

    node: str
    address: str
    epoch: int

    @property
    def parameters(self) -> Parameters:
        """The sizes and timeouts to recover with (they may change while it runs)."""

    async def stored_layout(self) -> bytes | None:
        """The last stored TSL, encoded; None for a new cluster."""

    async def nodes(self) -> list[NodeInfo]:
        """The nodes registered in the directory now."""

    async def call(self, ref: WorkerRef, body: Request, timeout: float) -> Response:  # noqa: ASYNC109
        """Send ``body`` to ``ref``; raises OSError/ConnectionError/TimeoutError if unreachable."""

    async def create_worker(self, node: NodeInfo, kind: str, worker_id: str) -> WorkerRef:
        """Create a ``log`` or ``storage`` worker through ``node``'s Foreman (raises on failure)."""

    async def remove_worker(self, ref: WorkerRef) -> None:
        """Stop and delete a worker created by :meth:`create_worker`."""

    async def start_role(
        self, kind: str, worker_id: str, version: int, layout: bytes, token: bytes
    ) -> WorkerRef:
        """Start a ``sequencer``/``resolver``/``commit_proxy`` of :attr:`epoch` on this node."""

    async def stop_role(self, ref: WorkerRef) -> None:
        """Stop a role started by :meth:`start_role`."""

    async def store_layout(self, layout: bytes) -> None:
        """Store this epoch's TSL through consensus; raises :class:`Superseded` if the
        epoch is no longer current."""

    async def retiring(self) -> list[RetiredWorker]:
        """The retired workers whose files may still be on their nodes."""

    async def retire_workers(self, workers: list[RetiredWorker]) -> None:
        """Record through consensus that this epoch retires ``workers`` (before any
        file is removed); raises :class:`Superseded` if the epoch is no longer current."""

    async def forget_retired(self, ids: list[str]) -> None:
        """Record through consensus that the retired workers ``ids`` are removed."""

    def clock(self) -> float:
        """Monotonic seconds."""

    def last_heard(self, node: str) -> float | None:
        """When (:meth:`clock`) this node last received Raft traffic from ``node``:
        a running coordinator answers the leader's heartbeats all the time. None
        when it hears none from it (this node itself, a node that is no
        coordinator, a peer whose connections broke since: it died)."""

    async def next_round(self, interval: float) -> None:
        """Wait about ``interval`` before a periodic round (the watch, the data
        distribution). A node's context rounds it to a wake-up its Raft loop
        makes anyway and ends it at once when a peer is lost (see
        :meth:`bedrock_cp.node.Node.next_round`)."""

    def random_token(self) -> bytes:
        """A fresh unguessable token (the proxies' unlock token)."""

    def new_worker_id(self, kind: str) -> str:
        """A cluster-unique id for a new worker of ``kind``."""
