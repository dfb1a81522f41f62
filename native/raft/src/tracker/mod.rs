//! What the leader knows about each member, the vote tally, and quorum
//! arithmetic (simple majorities of the voters: single-server membership
//! changes only; learners replicate but never count).

pub mod inflights;
pub mod progress;

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState};

use crate::types::{ConfState, NodeId};
use std::collections::{BTreeMap, BTreeSet};

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

/// Membership, per-member progress and votes.
///
/// Invariants: `progress` has exactly one entry per voter and per learner;
/// `voters` and `learners` are disjoint; votes are only recorded for voters.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    progress: BTreeMap<NodeId, Progress>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    votes: BTreeMap<NodeId, bool>,
    max_inflight: usize,
}

impl ProgressTracker {
    /// A tracker for `conf`, every progress probing from `next_idx`.
    pub fn new(conf: &ConfState, next_idx: u64, max_inflight: usize) -> Self {
        let mut t = ProgressTracker {
            progress: BTreeMap::new(),
            voters: BTreeSet::new(),
            learners: BTreeSet::new(),
            votes: BTreeMap::new(),
            max_inflight,
        };
        t.set_conf(conf, next_idx);
        t
    }

    /// Voter ids, sorted.
    pub fn voters(&self) -> Vec<NodeId> {
        self.voters.iter().copied().collect()
    }

    /// Learner ids, sorted.
    pub fn learners(&self) -> Vec<NodeId> {
        self.learners.iter().copied().collect()
    }

    /// Every member (voters and learners), sorted.
    pub fn members(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// The membership as a [`ConfState`].
    pub fn conf_state(&self) -> ConfState {
        ConfState::with_learners(self.voters(), self.learners())
    }

    /// True if `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// True if `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// Number of voters.
    pub fn voter_count(&self) -> usize {
        self.voters.len()
    }

    /// Size of a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Makes the membership `conf`: members that stay keep their progress,
    /// new ones probe from `next_idx` (and get a full check-quorum round to
    /// show up), removed ones are forgotten.
    pub fn set_conf(&mut self, conf: &ConfState, next_idx: u64) {
        let max_inflight = self.max_inflight;
        self.voters = conf.voters.iter().copied().collect();
        self.learners = conf.learners.iter().copied().collect();
        let (voters, learners) = (&self.voters, &self.learners);
        self.progress
            .retain(|id, _| voters.contains(id) || learners.contains(id));
        self.votes.retain(|id, _| voters.contains(id));
        for &id in voters.iter().chain(learners.iter()) {
            self.progress.entry(id).or_insert_with(|| {
                let mut p = Progress::new(next_idx, max_inflight);
                p.recent_active = true;
                p
            });
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

    /// All progresses (voters and learners), by id.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Progress)> {
        self.progress.iter()
    }

    /// All progresses, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&NodeId, &mut Progress)> {
        self.progress.iter_mut()
    }

    /// Every progress restarts probing at `last_index + 1`; `self_id` is
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

    /// Highest index replicated on a majority of the voters (0 without voters).
    pub fn committed_index(&self) -> u64 {
        if self.voters.is_empty() {
            return 0;
        }
        let mut m: Vec<u64> = self
            .voters
            .iter()
            .map(|id| self.progress.get(id).map_or(0, |p| p.matched))
            .collect();
        m.sort_unstable_by(|a, b| b.cmp(a));
        m[self.quorum() - 1]
    }

    /// Forgets the votes of the last election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s answer (its first answer counts) if it is a voter.
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        if self.voters.contains(&id) {
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
        } else if self.voters.len() - rejected < q {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        };
        (granted, rejected, result)
    }

    /// True if a quorum of voters (counting `self_id`) was heard from since
    /// the last call; clears every `recent_active` flag but `self_id`'s.
    pub fn quorum_recently_active(&mut self, self_id: NodeId) -> bool {
        let mut active = 0;
        for (id, p) in self.progress.iter_mut() {
            let voter = self.voters.contains(id);
            if *id == self_id {
                p.recent_active = true;
                active += usize::from(voter);
                continue;
            }
            if p.recent_active && voter {
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
        let conf = ConfState::with_learners(vec![1, 2, 3, 4, 5], vec![6]);
        let mut t = ProgressTracker::new(&conf, 1, 8);
        for (id, m) in [(1, 9), (2, 7), (3, 3), (4, 8), (5, 1), (6, 100)] {
            t.get_mut(id).unwrap().matched = m;
        }
        assert_eq!(t.committed_index(), 7);
        t.set_conf(&ConfState::with_learners(vec![1, 2, 3], vec![6]), 1);
        assert_eq!(t.committed_index(), 7);
        assert_eq!(
            t.get(1).unwrap().matched,
            9,
            "members that stay keep their progress"
        );
        assert_eq!(t.members(), vec![1, 2, 3, 6]);
    }

    #[test]
    fn tally() {
        let mut t = ProgressTracker::new(&ConfState::with_learners(vec![1, 2, 3], vec![4]), 1, 8);
        t.record_vote(4, true); // a learner: ignored
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
