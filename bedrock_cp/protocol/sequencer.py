"""The sequencer's interface: the read and commit versions of one epoch.

Clients ask for a read version (:class:`GetReadVersion`): the highest version a
proxy reported durable on every log (:class:`ReportCommitted`), so a read at it
sees every acknowledged commit. It is answered only after every log of the
sequencer's layout confirmed, in a round that began after the request arrived,
that the sequencer's epoch is still current
(:class:`~bedrock_cp.protocol.ConfirmEpoch`); a sequencer whose epoch is over
answers ``NewerEpoch`` (or ``Locked``), one that cannot reach a log
``Failed("unavailable")``. Commit proxies ask for a commit version
(:class:`GetCommitVersion`), answered with the previous version handed out,
which chains the batches on the logs and at the resolvers.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender

# -- requests --------------------------------------------------------------------------


class GetReadVersion(Body, tag="dp_grv"):
    sender: ClassVar[Sender] = Sender.CLIENT

    worker: str
    epoch: int


class GetCommitVersion(Body, tag="dp_gcv"):
    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int


class ReportCommitted(Body, tag="dp_committed_upto"):
    """A proxy made ``version`` durable on every log; read versions may now include it."""

    sender: ClassVar[Sender] = Sender.PEER

    worker: str
    epoch: int
    version: int


SequencerRequest = GetReadVersion | GetCommitVersion | ReportCommitted

# -- replies ---------------------------------------------------------------------------


class ReadVersion(Body, tag="dp_read_version"):
    version: int


class CommitVersion(Body, tag="dp_commit_version"):
    prev_version: int
    version: int
