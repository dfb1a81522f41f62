"""The answers every role may give instead of its own reply: refusals, and plain ``Done``.

Coordinators refuse with :class:`NotLeader` (ask the leader), :class:`Unavailable`
(retry later) or :class:`Rejected` (invalid; do not retry). Data-plane workers and
Foremen refuse with :class:`NewerEpoch` (the caller is superseded: every request
that carries an ``epoch`` is refused this way by a worker that has seen a newer
one), :class:`Locked` (a recovery holds the worker) or :class:`Failed` (a
documented ``code``); they acknowledge a request that has no result with
:class:`Done`. Any node refuses a request its sender may not make with
:class:`Unauthorized`, before any handler runs.
"""

from __future__ import annotations

from .base import Body

# -- coordinators ------------------------------------------------------------------------


class NotLeader(Body, tag="not_leader"):
    """Ask the leader instead (``leader_id == 0``: none known yet; retry later)."""

    leader_id: int
    leader_address: str


class Rejected(Body, tag="rejected"):
    """The request is invalid (or the write was rejected on apply); do not retry it."""

    reason: str


class Unavailable(Body, tag="unavailable"):
    """The coordinator cannot serve now (no quorum, shutting down); retry later."""

    reason: str


# -- data-plane workers and Foremen ---------------------------------------------------------


class Done(Body, tag="dp_done"):
    """The request took effect; it has no other result."""


class NewerEpoch(Body, tag="dp_newer_epoch"):
    """The worker has seen ``epoch``, newer than the request's: the caller is superseded."""

    epoch: int


class Locked(Body, tag="dp_locked_out"):
    """The worker is locked by a recovery (or a proxy awaits its unlock token)."""

    reason: str


class Failed(Body, tag="dp_failed"):
    """The request is invalid or the worker cannot serve it; ``code`` says which.

    Codes: ``no_such_worker``, ``invalid`` (bad input: key outside the key space,
    over a size limit, ...), ``future_version``, ``version_too_old``, ``gap``
    (a missing earlier version), ``wrong_shard`` (a storage read of a key this
    replica does not serve), ``unavailable`` (retryable), ``internal``, and
    ``commit_unknown_result`` (a commit proxy failed after it began pushing the
    batch to the logs: the commit may or may not have happened).
    """

    code: str
    message: str


# -- every node ----------------------------------------------------------------------------


class Unauthorized(Body, tag="unauthorized"):
    """The sender may not make this request (nothing changed); do not retry it.

    ``request`` names the request type, ``principal`` who sent it (as the
    handshake proved it), ``reason`` why it is refused.
    """

    request: str
    principal: str
    reason: str
