//! Read-only views of a node for drivers, metrics and tests.

use crate::types::{HardState, NodeId};

/// The role a node plays in its current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows `leader_id` (or waits for a leader).
    Follower,
    /// Asking whether it could win, without bumping its term.
    PreCandidate,
    /// Campaigning in its current term.
    Candidate,
    /// Leads its current term.
    Leader,
}

impl Role {
    /// Lower-case name, for logs and the Python binding.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// Volatile state that is useful to observe but never persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftState {
    /// Known leader of the current term, or [`crate::INVALID_ID`].
    pub leader_id: NodeId,
    /// This node's role.
    pub role: Role,
}

/// The leader's view of one follower's replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressStatus {
    /// The follower.
    pub id: NodeId,
    /// Highest index known to be replicated on it.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// `"probe"`, `"replicate"` or `"snapshot"`.
    pub state: &'static str,
    /// Heard from within the current check-quorum window.
    pub recent_active: bool,
}

/// A snapshot of a node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Current term, vote and commit index.
    pub hard_state: HardState,
    /// Leader and role.
    pub soft_state: SoftState,
    /// Highest index handed to the application and advanced.
    pub applied: u64,
    /// Last index of the log.
    pub last_index: u64,
    /// First index still in the log (snapshot index + 1).
    pub first_index: u64,
    /// Highest index persisted (entries above it await a Ready's persist).
    pub persisted: u64,
    /// Voters of the membership in force, sorted.
    pub voters: Vec<NodeId>,
    /// Learners of the membership in force, sorted.
    pub learners: Vec<NodeId>,
    /// Per-member replication (self and learners included); empty unless leader.
    pub progress: Vec<ProgressStatus>,
    /// Index of the latest membership change that may not be applied yet.
    pub pending_conf_index: u64,
    /// Target of a leadership transfer in progress, or [`crate::INVALID_ID`].
    pub lead_transferee: NodeId,
    /// Bytes of a snapshot received so far from the leader (0 when none is
    /// being received).
    pub incoming_snapshot_bytes: u64,
    /// Ticks of silence after which this node, as a follower, considers its
    /// leader lost (the failure detector's current window).
    pub leader_window: usize,
}
