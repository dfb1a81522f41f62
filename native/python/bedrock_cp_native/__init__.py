"""bedrock_cp_native: the native core of bedrock_cp.

A thin re-export of the compiled module ``_bedrock_cp_native`` (Rust, PyO3):
:class:`Consensus` (the Raft core over its write-ahead log, with its Ready
loop: :class:`Ready`, :class:`Persisted`), the write-ahead log as a plain
append log (:class:`Wal`), and :class:`MemDisk`, an in-memory disk that can
lose power, for tests and simulations. See ``bedrock_cp.raft`` for the
drivers.
"""

from ._bedrock_cp_native import (
    ConfChangePendingError,
    Consensus,
    Entry,
    HardState,
    MemDisk,
    MessageDecodeError,
    NativeError,
    NativePanicError,
    NotLeaderError,
    Persisted,
    ProposalDroppedError,
    RaftError,
    Ready,
    Snapshot,
    SnapshotRefusedError,
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
    "Consensus",
    "Entry",
    "HardState",
    "MemDisk",
    "MessageDecodeError",
    "NativeError",
    "NativePanicError",
    "NotLeaderError",
    "Persisted",
    "ProposalDroppedError",
    "RaftError",
    "Ready",
    "Snapshot",
    "SnapshotRefusedError",
    "Wal",
    "WalCorruptError",
    "WalError",
    "WalFatalError",
    "WalForeignError",
    "__version__",
    "build_profile",
]
