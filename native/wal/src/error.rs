//! The one error type of this crate: the write-ahead log and the Ready loop
//! over the Raft core.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a WAL operation failed.
///
/// Every variant names the file involved, so an operator can tell which disk
/// or directory to look at without a debugger.
#[derive(Debug, Error)]
pub enum WalError {
    /// A system call failed.
    #[error("WAL I/O error: cannot {op} {path}: {source}")]
    Io {
        /// What was being attempted ("open", "write", "rename", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Bytes on disk that cannot be a torn final write: the node must not start.
    #[error("corrupt WAL record in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record (or header) inside `path`.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The WAL was written by another cluster or another node.
    #[error("WAL at {path} belongs to {what} '{found}' (expected '{expected}')")]
    Foreign {
        /// The file whose identity did not match.
        path: PathBuf,
        /// Which identity differs: "cluster" or "node".
        what: &'static str,
        /// The identity this process was configured with.
        expected: String,
        /// The identity recorded on disk.
        found: String,
    },
    /// An fsync (or an earlier write) failed. Nothing is retried: after an
    /// fsync error the kernel may have dropped the dirty pages, so the node
    /// must stop. Every later call returns this error again.
    #[error("{reason}")]
    Fatal {
        /// What failed, ending in "the node must stop".
        reason: String,
    },
    /// Another process (or another `Wal` in this one) has this WAL open.
    #[error("WAL at {path} is in use by another process (its lock is held)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The caller broke the API contract (non-consecutive entries, entries
    /// beyond the end of the log or at/below the snapshot, ...). Nothing was written.
    #[error("invalid WAL argument: {0}")]
    InvalidArgument(String),
    /// The Raft core refused the call (not the leader, a snapshot refused, ...).
    #[error(transparent)]
    Raft(#[from] bedrock_raft::Error),
    /// The WAL was closed.
    #[error("WAL at {path} is closed")]
    Closed {
        /// The WAL directory.
        path: PathBuf,
    },
    /// A Ready is already out: persist and advance it before taking another.
    #[error("a Ready is outstanding: persist and advance it before taking another")]
    ReadyOutstanding,
    /// An earlier call failed inside the core or the WAL (an invariant
    /// broke); the object is unusable.
    #[error("unusable after an internal error: {0}")]
    Poisoned(String),
}

impl WalError {
    /// An [`WalError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A [`WalError::Corrupt`] for `path` at `offset`.
    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
