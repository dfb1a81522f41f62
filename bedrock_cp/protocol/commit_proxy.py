"""The commit proxy's interface: where client transactions commit.

A client sends what its transaction read (at ``read_version``) and what it
writes (:class:`Commit`); the proxy answers :class:`Committed` only once the
batch holding it is durable on every log, or :class:`NotCommitted` (retryable).
A proxy that fails before it pushed the batch to any log answers
``Failed("unavailable")`` (definitely not committed); one that fails after it
began pushing answers ``Failed("commit_unknown_result")``: the batch may be
durable on enough logs for a recovery to keep it.
A proxy starts locked and serves commits only once its epoch's Director
unlocked it with the epoch's token (:class:`UnlockProxy`).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Body, Sender
from .layout import KeyRange, Mutation

# -- requests --------------------------------------------------------------------------


class Commit(Body, tag="dp_commit"):
    """A client transaction: what it read (at ``read_version``) and what it writes.

    ``system`` is empty for every client. The Director's system transaction
    (the last step of a recovery) carries its epoch's proxy unlock token there:
    only such a commit may write keys of the reserved ``0xff`` system key space.
    ``idempotency_id`` (at most 255 bytes; empty: none) names the logical
    transaction this attempt belongs to (:mod:`.idempotency`): the proxy records
    it with the commit and makes attempts with the same id conflict.
    """

    sender: ClassVar[Sender] = Sender.CLIENT

    worker: str
    read_version: int
    reads: list[KeyRange]
    writes: list[KeyRange]
    mutations: list[Mutation]
    system: bytes = b""
    idempotency_id: bytes = b""


class UnlockProxy(Body, tag="dp_unlock"):
    sender: ClassVar[Sender] = Sender.DIRECTOR

    worker: str
    epoch: int
    token: bytes


CommitProxyRequest = Commit | UnlockProxy

# -- replies ---------------------------------------------------------------------------


class Committed(Body, tag="dp_ok"):
    version: int


class NotCommitted(Body, tag="dp_conflict"):
    """The transaction did not commit (retryable with a new read version).

    ``reason``: ``conflict`` (something read was written by a transaction
    committed after the read) or ``too_old`` (the read version is older than the
    MVCC window or than the epoch's recovery version).
    """

    reason: str
