"""The log's interface: the durable, version-ordered record of commit batches.

A commit proxy pushes every batch to every log of the layout (:class:`LogPush`,
answered once durable); storage replicas, and a new log replaying an old one,
pull batches by version (:class:`LogPull`). A recovering Director locks the old
generation's logs with its epoch (:class:`LogLock`: they stop accepting pushes
and report the range they hold) and has the new generation copy exactly the
committed range from them (:class:`LogRecover`). A log that has seen a newer
epoch answers :class:`~bedrock_cp.protocol.errors.NewerEpoch`. Before it hands
out read versions, a sequencer asks every log of its layout whether its epoch
is still the current one (:class:`ConfirmEpoch`).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender
from .layout import CommitBatch, WorkerRef

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
    """Batches with version > ``after``, up to ``limit``; waits up to ``wait_ms`` for one."""

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    after: int
    limit: int = 1000
    wait_ms: int = 0


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
    ``last``.
    """

    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int
    sources: list[WorkerRef]
    first: int
    last: int


class ConfirmEpoch(Body, tag="dp_confirm_epoch"):
    """Is ``epoch`` still this log's? ``Done`` if so; ``NewerEpoch`` if the log has
    seen a newer one, ``Locked`` if a recovery locked it (its generation is over).
    Changes nothing."""

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int


LogRequest = LogPush | LogPull | LogLock | LogRecover | ConfirmEpoch

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
    the newest made durable (all three 0 for an empty log)."""

    oldest: int
    last: int
    durable: int


class LogRecovered(Body, tag="dp_recovered"):
    first: int
    last: int
    batches: int
