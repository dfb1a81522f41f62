//! What the leader knows about each voter, the vote tally, and quorum
//! arithmetic (simple majorities: single-server membership changes only).

pub mod inflights;
pub mod progress;

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState};

use crate::types::NodeId;
use std::collections::BTreeMap;

/// Outcome of an election so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer grant.
    Lost,
    /// Still waiting.
    Pending,
}

/// Membership, per-voter progress and votes.
///
/// Invariant: `progress` has exactly one entry per voter.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    max_inflight: usize,
}

impl ProgressTracker {
    /// A tracker for `voters`, every progress probing from `next_idx`.
    pub fn new(voters: &[NodeId], next_idx: u64, max_inflight: usize) -> Self {
        let mut t = ProgressTracker {
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight,
        };
        for &v in voters {
            t.add_voter(v, next_idx);
        }
        t
    }

    /// Voter ids, sorted.
    pub fn voters(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// True if `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.progress.contains_key(&id)
    }

    /// Number of voters.
    pub fn len(&self) -> usize {
        self.progress.len()
    }

    /// True when there are no voters (a node waiting to be added).
    pub fn is_empty(&self) -> bool {
        self.progress.is_empty()
    }

    /// Size of a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.progress.len() / 2 + 1
    }

    /// Adds a voter (no-op if present) probing from `next_idx`.
    pub fn add_voter(&mut self, id: NodeId, next_idx: u64) {
        let max_inflight = self.max_inflight;
        self.progress.entry(id).or_insert_with(|| {
            let mut p = Progress::new(next_idx, max_inflight);
            // A new member gets a full check-quorum round to show up.
            p.recent_active = true;
            p
        });
    }

    /// Removes a voter (no-op if absent).
    pub fn remove_voter(&mut self, id: NodeId) {
        self.progress.remove(&id);
        self.votes.remove(&id);
    }

    /// Replaces the membership with `voters`, every progress fresh.
    pub fn set_voters(&mut self, voters: &[NodeId], next_idx: u64) {
        self.progress.clear();
        self.votes.clear();
        for &v in voters {
            self.add_voter(v, next_idx);
        }
    }

    /// Progress of `id`.
    pub fn get(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// Mutable progress of `id`.
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.get_mut(&id)
    }

    /// All progresses, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Progress)> {
        self.progress.iter()
    }

    /// All progresses, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&NodeId, &mut Progress)> {
        self.progress.iter_mut()
    }

    /// Every progress restarts probing at `next_idx`; `self_id` is
    /// considered to hold everything up to `last_index`.
    pub fn reset_progress(&mut self, self_id: NodeId, last_index: u64) {
        let max_inflight = self.max_inflight;
        for (id, p) in self.progress.iter_mut() {
            *p = Progress::new(last_index + 1, max_inflight);
            if *id == self_id {
                p.matched = last_index;
                p.recent_active = true;
            }
        }
    }

    /// Highest index replicated on a majority (0 without voters).
    pub fn committed_index(&self) -> u64 {
        if self.progress.is_empty() {
            return 0;
        }
        let mut m: Vec<u64> = self.progress.values().map(|p| p.matched).collect();
        m.sort_unstable_by(|a, b| b.cmp(a));
        m[self.quorum() - 1]
    }

    /// Forgets the votes of the last election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s answer (its first answer counts) if it is a voter.
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        if self.progress.contains_key(&id) {
            self.votes.entry(id).or_insert(granted);
        }
    }

    /// Counts the votes: (granted, rejected, result).
    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let granted = self.votes.values().filter(|g| **g).count();
        let rejected = self.votes.len() - granted;
        let q = self.quorum();
        let result = if granted >= q {
            VoteResult::Won
        } else if self.progress.len() - rejected < q {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        };
        (granted, rejected, result)
    }

    /// True if a quorum (counting `self_id`) was heard from since the last
    /// call; clears every `recent_active` flag but `self_id`'s.
    pub fn quorum_recently_active(&mut self, self_id: NodeId) -> bool {
        let mut active = 0;
        for (id, p) in self.progress.iter_mut() {
            if *id == self_id {
                p.recent_active = true;
                active += 1;
                continue;
            }
            if p.recent_active {
                active += 1;
            }
            p.recent_active = false;
        }
        active >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_index_is_the_majority_match() {
        let mut t = ProgressTracker::new(&[1, 2, 3, 4, 5], 1, 8);
        for (id, m) in [(1, 9), (2, 7), (3, 3), (4, 8), (5, 1)] {
            t.get_mut(id).unwrap().matched = m;
        }
        assert_eq!(t.committed_index(), 7);
        t.remove_voter(5);
        t.remove_voter(4);
        assert_eq!(t.committed_index(), 7);
    }

    #[test]
    fn tally() {
        let mut t = ProgressTracker::new(&[1, 2, 3], 1, 8);
        t.record_vote(1, true);
        assert_eq!(t.tally_votes().2, VoteResult::Pending);
        t.record_vote(9, true); // not a voter: ignored
        t.record_vote(2, false);
        t.record_vote(2, true); // first answer counts
        assert_eq!(t.tally_votes(), (1, 1, VoteResult::Pending));
        t.record_vote(3, false);
        assert_eq!(t.tally_votes().2, VoteResult::Lost);
    }
}
