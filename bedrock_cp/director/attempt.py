"""One recovery attempt: what its phases decided, and how an attempt ends.

An :class:`Attempt` is the only state the phases share. Each phase reads what
earlier phases recorded and records its own decisions; whatever a phase
creates in the world (workers, roles) is recorded at once in
:attr:`Attempt.created_workers` / :attr:`Attempt.started_roles`, so a rollback
can remove it even if the phase fails halfway (no orphans).

A phase ends in one of three ways: it returns (go on), raises :class:`Stall`
(the environment may change: retry later) or raises :class:`Fail` (this
Director cannot succeed: superseded). The Director turns an attempt into an
:data:`Outcome`: :class:`Completed`, :class:`Stalled` or :class:`Failed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol import KeyRange, Layout, LogLocked, ResolverAssignment, StorageTeam, WorkerRef


class Stall(Exception):
    """The attempt cannot go on now; another attempt may succeed later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Fail(Exception):
    """This Director cannot succeed (e.g. superseded by a newer epoch)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Completed:
    """The epoch's layout is stored: the cluster accepts commits.

    ``recovered_from`` is the layout the epoch recovered from (None for a new cluster).
    """

    layout: Layout
    recovered_from: Layout | None = None


@dataclass(frozen=True)
class Stalled:
    reason: str


@dataclass(frozen=True)
class Failed:
    reason: str
    #: Nodes this epoch found silent as it ended (a health check timed out: a
    #: stopped or cut-off node, not a dead one). The next epoch's first attempt
    #: starts with them in :attr:`Attempt.silent`, so none of its phases waits
    #: a straggler's grace for them again.
    silent: frozenset[str] = frozenset()


Outcome = Completed | Stalled | Failed


@dataclass(frozen=True)
class PhaseEvent:
    """One phase of one attempt, timed. ``outcome``: ``ok``, ``stalled: ...``,
    ``failed: ...`` or ``cancelled``."""

    attempt: int
    phase: str
    started: float
    duration_ms: float
    outcome: str


@dataclass(frozen=True)
class Vacancies:
    """The new layout described with placeholders (``vacancies``).

    ``storage`` is the old layout's teams to keep (empty for a new cluster,
    which creates ``new_storage`` replicas serving the whole key space).
    """

    logs: int
    storage: list[StorageTeam]
    new_storage: int
    resolver_ranges: list[KeyRange]
    proxies: int
    sequencer_node: str
    start_version: int


@dataclass
class Attempt:
    """The decisions of one attempt, in phase order."""

    number: int
    epoch: int
    # 1. validate_layout
    old_layout: Layout | None = None
    new_cluster: bool = False
    # 2. lock_logs: the old logs that answered, with what they reported (by worker id)
    locked: dict[str, tuple[WorkerRef, LogLocked]] = field(default_factory=dict)
    # 3. plan_log_recovery: the range [first_version, recovery_version] to replay
    recovery_version: int = 0
    first_version: int = 1
    #: Storage replica id -> the durable version it reached (its own answer, or
    #: for one that did not answer, what it last reported to a locked log): the
    #: new logs keep every version above it for that replica.
    durables: dict[str, int] = field(default_factory=dict)
    #: Ids of retired workers (the coordinators' record): never recruited again.
    retired: set[str] = field(default_factory=set)
    #: Live storage workers outside the old teams that the logs can bring up to
    #: date (a replica filled to replace a lost one): ``recruit_storage`` adds them to the team.
    spares: list[WorkerRef] = field(default_factory=list)
    # 4. vacancies
    vacancies: Vacancies | None = None
    # 5-6. recruitment
    logs: list[WorkerRef] = field(default_factory=list)
    storage: list[StorageTeam] = field(default_factory=list)
    # 8. roles (refs decided before they start: the layout names them)
    sequencer: WorkerRef | None = None
    resolvers: list[ResolverAssignment] = field(default_factory=list)
    proxies: list[WorkerRef] = field(default_factory=list)
    token: bytes = b""
    layout: Layout | None = None
    encoded_layout: bytes = b""
    # 11. persist: the layout was sent to be stored. Whatever the answer (it
    # may be lost with the leadership), it may now be the stored layout.
    layout_offered: bool = False
    #: Nodes a phase stopped waiting for (stopped or hung, not dead): later
    #: phases create nothing there while other nodes can host it.
    silent: set[str] = field(default_factory=set)
    # what this attempt created, for rollback
    created_workers: list[WorkerRef] = field(default_factory=list)
    started_roles: list[WorkerRef] = field(default_factory=list)
    events: list[PhaseEvent] = field(default_factory=list)

    def locked_logs(self) -> list[WorkerRef]:
        return [ref for ref, _ in self.locked.values()]
