"""The Foreman's interface: the workers and roles of one node.

Every node runs a Foreman, addressed by the node's address (no worker id). The
current epoch's Director creates and removes persistent workers through it
(:class:`CreateWorker`, :class:`RemoveWorker`: ``log``, ``storage``) and starts
and stops the epoch's transaction roles (:class:`StartRole`, :class:`StopRole`:
sequencer, commit proxies, resolvers). Each carries the Director's ``epoch``: a
worker or role created for a newer epoch is refused, so a superseded Director
can never tear down what its successor built. :class:`ListWorkers` lists them
all; :class:`Health` asks the node whether one worker runs.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender
from .layout import WorkerRef

# -- requests --------------------------------------------------------------------------


class CreateWorker(Body, tag="fm_create"):
    """Create a ``log`` or ``storage`` worker for the Director of ``epoch``
    (recorded in its manifest)."""

    sender: ClassVar[Sender] = Sender.DIRECTOR

    kind: str  # "log" | "storage"
    worker: str
    epoch: int = 0


class RemoveWorker(Body, tag="fm_remove"):
    """Stop ``worker`` and delete its data. ``epoch`` is the requesting
    Director's: a worker created for a newer epoch is refused."""

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int = 0


class StartRole(Body, tag="fm_start_role"):
    """Start a transaction-system role on this node for ``epoch``.

    ``layout`` is the encoded TSL the role belongs to (its peers); ``version`` the
    version the epoch starts at; ``token`` the lock token proxies are unlocked with.
    """

    sender: ClassVar[Sender] = Sender.DIRECTOR

    kind: str  # "sequencer" | "commit_proxy" | "resolver"
    worker: str
    epoch: int
    version: int
    layout: bytes
    token: bytes = b""


class StopRole(Body, tag="fm_stop_role"):
    """Stop role ``worker``. ``epoch`` is the requesting Director's: a role of a
    newer epoch is refused (an old Director can never stop its successor's roles)."""

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int = 0


class ListWorkers(Body, tag="fm_list"):
    """Every worker and role the Foreman knows (:class:`Workers`)."""

    sender: ClassVar[Sender] = Sender.PEER


class Health(Body, tag="dp_health"):
    """Is ``worker`` running on this node? Answered by the node: ``Done`` if it
    runs, ``Failed("no_such_worker")`` if not; a dead node does not answer."""

    sender: ClassVar[Sender] = Sender.ANY

    worker: str


ForemanRequest = CreateWorker | RemoveWorker | StartRole | StopRole | ListWorkers

# -- replies ---------------------------------------------------------------------------


class WorkerInfo(Body):
    """A worker or role a Foreman knows; ``epoch`` is the one it was created for."""

    ref: WorkerRef
    state: str  # a WorkerState: "starting" | "running" | "failed" | "stopping"
    reason: str = ""
    epoch: int = 0


class Workers(Body, tag="fm_workers"):
    workers: list[WorkerInfo]


class WorkerCreated(Body, tag="fm_created"):
    ref: WorkerRef
