"""The log's interface: the durable, version-ordered record of commit batches.

A commit proxy pushes every batch to every log of the layout (:class:`LogPush`,
answered once durable) and, when it falls idle, tells the logs how far the
batches are committed (:class:`LogCommitted`, not a write); storage replicas,
and a new log replaying an old one, pull batches by version (:class:`LogPull`),
each answer bounded in bytes (:data:`~bedrock_cp.protocol.layout.MAX_STREAM_BYTES`)
so it never nears the frame cap: the puller resumes after the last version it got.

History is bounded: every storage replica a log serves reports the version it
has made durable (:class:`LogPop`), and the log discards the batches at or
below the lowest such version, on disk and in memory. The replicas it serves
(and how far each got) are given by the Director when the log joins a
generation (:attr:`LogRecover.replicas`); a replica that stops reporting holds
the log back until a later generation leaves it out.

A recovering Director locks the old generation's logs with its epoch
(:class:`LogLock`: they stop accepting pushes and report the range they hold
and how far each replica got) and has the new generation copy exactly the range
storage still needs from them (:class:`LogRecover`). A log that has seen a
newer epoch answers :class:`~bedrock_cp.protocol.errors.NewerEpoch`. Before it
hands out read versions, a sequencer asks every log of its layout whether its
epoch is still the current one (:class:`ConfirmEpoch`).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender
from .layout import STREAM_BYTES, CommitBatch, WorkerRef


class ReplicaProgress(Body):
    """How far storage replica ``replica`` has made its data durable."""

    replica: str
    durable: int


# -- requests --------------------------------------------------------------------------


class LogPush(Body, tag="dp_push"):
    """Append one commit batch; answered after it is durable (fsync).

    ``committed`` is the proxy's known committed version: every version up to
    it is durable on every log of the layout (storage may persist up to it).
    """

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int
    batch: CommitBatch
    committed: int


class LogPull(Body, tag="dp_pull"):
    """Batches with version > ``after``: at most ``limit`` of them and, past the
    first, at most ``max_bytes`` of encoded batches (the log caps it at
    :data:`~bedrock_cp.protocol.layout.MAX_STREAM_BYTES`). Waits up to
    ``wait_ms`` for a batch, or for the committed version to move.

    A log that no longer holds the batches right after ``after`` (popped, or
    never had them) answers ``Failed("version_too_old")``.
    """

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    after: int
    limit: int = 1000
    wait_ms: int = 0
    max_bytes: int = STREAM_BYTES


class LogPop(Body, tag="dp_pop"):
    """Storage replica ``replica`` has made every version up to ``durable`` durable.

    A log counts only the replicas it serves, and never lowers what one
    reported. With ``join`` a replica the log does not serve yet (one being
    filled to replace a lost one) asks to be served from ``durable`` on:
    refused with ``Failed("version_too_old")`` if the log has already
    discarded batches above it.
    """

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    replica: str
    durable: int
    join: bool = False


class LogCommitted(Body, tag="dp_log_committed"):
    """The proxy of ``epoch`` knows every version up to ``version`` durable on every
    log: storage may persist them. A hint kept in memory (no write); an idle
    proxy sends it once instead of an empty batch."""

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int
    version: int


class LogLock(Body, tag="dp_lock"):
    """Stop accepting pushes for epochs below ``epoch``; report the log's range."""

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int


class LogRecover(Body, tag="dp_recover"):
    """Copy exactly the batches ``[first, last]`` from ``sources`` (old-generation logs).

    The log then holds exactly that range (its previous content is replaced),
    belongs to ``epoch`` (unlocked), and the next batch chains from ``last``. An
    empty range (``first == last + 1``, no sources needed) starts an empty log at
    ``last``. ``replicas`` are the storage replicas the log serves, with how
    far each has made its data durable (each at least ``first - 1``); it pops
    below the lowest of them only. Without any, it never pops.
    """

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int
    sources: list[WorkerRef]
    first: int
    last: int
    replicas: list[ReplicaProgress] = []  # noqa: RUF012 - msgspec copies a mutable default


class ConfirmEpoch(Body, tag="dp_confirm_epoch"):
    """Is ``epoch`` still this log's? ``Done`` if so; ``NewerEpoch`` if the log has
    seen a newer one, ``Locked`` if a recovery locked it (its generation is over).
    Changes nothing."""

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int


LogRequest = LogPush | LogPull | LogLock | LogRecover | LogPop | LogCommitted | ConfirmEpoch

# -- replies ---------------------------------------------------------------------------


class LogPushed(Body, tag="dp_pushed"):
    version: int
    durable: int


class LogBatches(Body, tag="dp_batches"):
    batches: list[CommitBatch]
    last: int
    durable: int
    committed: int


class LogLocked(Body, tag="dp_locked"):
    """``oldest`` is the first version still held, ``last`` the newest, ``durable``
    the newest made durable (all three 0 for an empty log). ``replicas``: how
    far each replica the log serves has reported its data durable."""

    oldest: int
    last: int
    durable: int
    replicas: list[ReplicaProgress] = []  # noqa: RUF012 - msgspec copies a mutable default


class LogRecovered(Body, tag="dp_recovered"):
    first: int
    last: int
    batches: int
