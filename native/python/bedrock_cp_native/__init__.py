"""bedrock_cp_native: the native core of bedrock_cp.

A thin re-export of the compiled module ``_bedrock_cp_native`` (Rust, PyO3):
the sans-I/O Raft state machine (:class:`RaftNode`, :class:`Ready`) and the
write-ahead log (:class:`Wal`). See ``bedrock_cp.raft`` for the driver loop.
"""

from ._bedrock_cp_native import (
    ConfChangePendingError,
    Entry,
    HardState,
    MessageDecodeError,
    NativeError,
    NativePanicError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    RaftNode,
    Ready,
    Snapshot,
    Wal,
    WalCorruptError,
    WalError,
    WalFatalError,
    WalForeignError,
    __version__,
    build_profile,
)


def _leader(self: NotLeaderError) -> int:
    """The leader this node knows of (0 if none)."""
    return int(self.args[1]) if len(self.args) > 1 else 0


# The native exception type gains a read-only view of its args[1].
setattr(NotLeaderError, "leader", property(_leader))  # noqa: B010

__all__ = [
    "ConfChangePendingError",
    "Entry",
    "HardState",
    "MessageDecodeError",
    "NativeError",
    "NativePanicError",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftError",
    "RaftNode",
    "Ready",
    "Snapshot",
    "Wal",
    "WalCorruptError",
    "WalError",
    "WalFatalError",
    "WalForeignError",
    "__version__",
    "build_profile",
]
