//! The one error type of the Raft core.

use crate::codec::DecodeError;
use crate::types::NodeId;
use thiserror::Error;

/// Everything a call into the Raft core can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Only the leader accepts this; `leader` is the known leader (or 0).
    #[error("not the leader (leader is {leader})")]
    NotLeader {
        /// The leader this node knows of, or [`crate::INVALID_ID`].
        leader: NodeId,
    },
    /// The proposal was not appended; the reason says why.
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// A membership change is appended but not yet applied.
    #[error("a membership change is pending at index {index}")]
    ConfChangePending {
        /// Index of the pending change (or of the new leader's last entry).
        index: u64,
    },
    /// Bytes from a peer or the disk could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The configuration is unusable.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// An argument or message makes no sense in the current state.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Storage: the entry lies at or below the snapshot; only the snapshot has it.
    #[error("log compacted: the entry is covered by the snapshot")]
    Compacted,
    /// Storage: the entry lies beyond the last one stored.
    #[error("entry not available: beyond the stored log")]
    Unavailable,
    /// A local snapshot cannot be taken now: the application's applied index
    /// is not the core's, or a snapshot from the leader is being installed.
    /// Nothing changed; the application may try again later.
    #[error("snapshot refused: {0}")]
    SnapshotRefused(String),
}

/// Result of the Raft core's calls.
pub type Result<T> = std::result::Result<T, Error>;
