"""The transaction error codes: a closed list, each saying what a retry may do.

Every :class:`TransactionError` carries one :class:`ErrorCode`. Each code says
whether retrying the transaction can succeed (``retryable``), whether the failed
attempt may nevertheless have committed (``maybe_committed``), and whether the
client's layout of the transaction system may be out of date
(``refreshes_layout``: the retry loop fetches a newer one before it retries).

=========================  =========  ===============  ================
code                       retryable  maybe committed  refreshes layout
=========================  =========  ===============  ================
``not_committed``          yes        no               no
``unavailable``            yes        no               yes
``epoch_changed``          yes        no               yes
``future_version``         yes        no               no
``version_too_old``        yes        no               yes
``wrong_shard``            yes        no               yes
``commit_unknown_result``  yes        **yes**          yes
``invalid``                no         no               no
``internal``               no         no               no
=========================  =========  ===============  ================

``commit_unknown_result`` (FoundationDB's error 1021) is the one outcome that is
not definite: the commit request may have reached a commit proxy and no answer
came back, or the proxy failed after it began pushing the batch to the logs. The
retry loop never takes it for "not committed": it learns the outcome from the
transaction's idempotency record before running the transaction again (see
:mod:`.transaction`).
"""

from __future__ import annotations

from enum import StrEnum

from .client import ClientError


class ErrorCode(StrEnum):
    """Why a transaction failed. Compares equal to its string value."""

    NOT_COMMITTED = "not_committed"
    """A conflict: something it read was written after its read version, or its
    read version is older than the MVCC window or the epoch. Nothing was written."""
    UNAVAILABLE = "unavailable"
    """A component could not be reached or refused before the commit was sent
    anywhere it could take effect (no sequencer confirmation, no storage
    replica, a proxy that failed before pushing to any log). Nothing was written."""
    EPOCH_CHANGED = "epoch_changed"
    """The transaction system it used belongs to an epoch that is over (a newer
    epoch, a locked worker, a worker that no longer exists). Nothing was written."""
    FUTURE_VERSION = "future_version"
    """Storage has not caught up with the read version yet."""
    VERSION_TOO_OLD = "version_too_old"
    """The read version is older than what storage keeps (the 5 s MVCC window)."""
    WRONG_SHARD = "wrong_shard"
    """No replica reached serves the key under the layout held."""
    COMMIT_UNKNOWN_RESULT = "commit_unknown_result"
    """The commit may or may not have happened (no definite answer came back)."""
    INVALID = "invalid"
    """The transaction itself is wrong: a key outside the user key space, over a
    size limit, ... Retrying cannot help."""
    INTERNAL = "internal"
    """An unexpected answer: a bug somewhere. Not retried."""

    @property
    def retryable(self) -> bool:
        return self not in (ErrorCode.INVALID, ErrorCode.INTERNAL)

    @property
    def maybe_committed(self) -> bool:
        return self is ErrorCode.COMMIT_UNKNOWN_RESULT

    @property
    def refreshes_layout(self) -> bool:
        return self in _REFRESHES


_REFRESHES = frozenset(
    {
        ErrorCode.UNAVAILABLE,
        ErrorCode.EPOCH_CHANGED,
        ErrorCode.VERSION_TOO_OLD,
        ErrorCode.WRONG_SHARD,
        ErrorCode.COMMIT_UNKNOWN_RESULT,
    }
)


class TransactionError(ClientError):
    """A transaction failed; ``code`` says why (see :class:`ErrorCode`).

    ``retryable`` is the code's unless the raiser decided otherwise: a
    ``commit_unknown_result`` whose outcome can no longer be learned is final.
    """

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = code.retryable if retryable is None else retryable

    @property
    def maybe_committed(self) -> bool:
        return self.code.maybe_committed


def server_code(code: str) -> ErrorCode:
    """The client's code for a worker's ``Failed`` code."""
    if code == "no_such_worker":
        # The layout names a worker that is gone (its node restarted, or a newer
        # epoch replaced it).
        return ErrorCode.EPOCH_CHANGED
    if code == "newer_epoch":
        return ErrorCode.EPOCH_CHANGED
    if code == "gap":  # a worker waited for an earlier version in vain
        return ErrorCode.UNAVAILABLE
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL
