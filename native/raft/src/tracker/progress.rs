//! The leader's view of one follower's log.

use std::sync::Arc;

use super::inflights::Inflights;
use crate::types::Snapshot;

/// How the leader is currently sending to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// One Append at a time until the match point is found.
    Probe,
    /// Match is known: stream Appends optimistically, up to the inflight window.
    Replicate,
    /// A snapshot is on its way, chunk by chunk; send nothing else until it
    /// is installed.
    Snapshot,
}

impl ProgressState {
    /// Lower-case name used in [`crate::status::ProgressStatus`].
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressState::Probe => "probe",
            ProgressState::Replicate => "replicate",
            ProgressState::Snapshot => "snapshot",
        }
    }
}

/// Replication progress of one follower, as the leader sees it.
///
/// Invariant: `matched < next_idx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Highest index known to be in the follower's log.
    pub matched: u64,
    /// Index of the next entry to send.
    pub next_idx: u64,
    /// Sending mode.
    pub state: ProgressState,
    /// In probe state: an Append was sent and no reply came yet.
    pub probe_sent: bool,
    /// In snapshot state: index of the snapshot sent.
    pub pending_snapshot: u64,
    /// In snapshot state: ticks since the follower last acknowledged a chunk
    /// (or since the last chunk was sent).
    pub snapshot_elapsed: usize,
    /// In snapshot state: the snapshot being sent. Kept for the whole
    /// transfer, so a compaction meanwhile cannot change the bytes under a
    /// follower that is halfway through.
    pub snapshot: Option<Arc<Snapshot>>,
    /// In snapshot state: bytes of the snapshot the follower acknowledged;
    /// the next chunk starts here (a resumed transfer too).
    /// Invariant: `snapshot_offset <= snapshot.data.len()`.
    pub snapshot_offset: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Appends in flight (replicate state).
    pub ins: Inflights,
    /// Ticks since the follower's last answer to one of this leader's
    /// periodic heartbeats: none before its first answer of this term, or
    /// since its connection broke (what follows is no heartbeat gap).
    pub since_answer: Option<usize>,
    /// The longest gap between two such answers since the leader's detector
    /// last learned one (see `Raft::learn_answer_gaps`).
    pub answer_gap: Option<usize>,
}

impl Progress {
    /// A follower about which nothing is known: probe from `next_idx`.
    pub fn new(next_idx: u64, max_inflight: usize) -> Self {
        Progress {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            snapshot_elapsed: 0,
            snapshot: None,
            snapshot_offset: 0,
            recent_active: false,
            ins: Inflights::new(max_inflight),
            since_answer: None,
            answer_gap: None,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.snapshot_elapsed = 0;
        self.snapshot = None;
        self.snapshot_offset = 0;
        self.state = state;
        self.ins.reset();
    }

    /// Back to probing from just after `matched` (or after the snapshot that
    /// was in flight, which the follower most likely has now).
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched.max(pending) + 1;
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
    }

    /// Start streaming from just after `matched`.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    /// Starts sending `snapshot` from its first byte.
    pub fn become_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot.metadata.index;
        self.snapshot = Some(snapshot);
    }

    /// The follower acknowledged everything up to `n`. Returns false when
    /// the acknowledgement is stale (nothing new).
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.probe_sent = false;
        }
        self.next_idx = self.next_idx.max(n + 1);
        updated
    }

    /// The follower answered one of the leader's periodic heartbeats: the
    /// gap since its previous answer is kept for the leader's detector.
    pub fn answered_heartbeat(&mut self) {
        if let Some(gap) = self.since_answer {
            self.answer_gap = Some(self.answer_gap.map_or(gap, |g| g.max(gap)));
        }
        self.since_answer = Some(0);
    }

    /// Forgets the timing of the follower's answers (its connection broke).
    pub fn forget_answers(&mut self) {
        self.since_answer = None;
        self.answer_gap = None;
    }

    /// Entries up to `last` were sent optimistically (replicate state).
    pub fn optimistic_update(&mut self, last: u64) {
        self.next_idx = last + 1;
    }

    /// The follower rejected an Append whose previous index was `rejected`;
    /// `match_hint` is where its log may match. Returns false when the
    /// rejection is stale (answers an Append we no longer care about).
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        if self.next_idx.checked_sub(1) != Some(rejected) {
            return false;
        }
        self.next_idx = rejected
            .min(match_hint.saturating_add(1))
            .max(self.matched + 1);
        self.probe_sent = false;
        true
    }

    /// True when the leader must not send more Appends now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.ins.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_backs_off_with_hint_but_never_below_match() {
        let mut p = Progress::new(11, 4);
        p.matched = 3;
        // Stale: we sent prev index 10, a rejection of 7 answers something older.
        assert!(!p.maybe_decr_to(7, 0));
        assert!(p.maybe_decr_to(10, 5));
        assert_eq!(p.next_idx, 6);
        assert!(p.maybe_decr_to(5, 0));
        assert_eq!(p.next_idx, 4);
    }

    #[test]
    fn replicate_rejection_restarts_after_match() {
        let mut p = Progress::new(5, 4);
        p.matched = 4;
        p.become_replicate();
        p.optimistic_update(9);
        assert!(!p.maybe_decr_to(4, 0));
        assert!(p.maybe_decr_to(7, 0));
        assert_eq!(p.next_idx, 5);
    }

    #[test]
    fn update_and_pause_rules() {
        let mut p = Progress::new(1, 2);
        p.probe_sent = true;
        assert!(p.is_paused());
        assert!(p.maybe_update(3));
        assert!(!p.is_paused());
        assert_eq!(p.next_idx, 4);
        assert!(!p.maybe_update(2));
        p.become_replicate();
        p.ins.add(5);
        p.ins.add(6);
        assert!(p.is_paused());
        p.become_snapshot(Arc::new(Snapshot {
            metadata: crate::types::SnapshotMetadata {
                index: 20,
                ..Default::default()
            },
            data: vec![],
        }));
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next_idx, 21);
    }
}
