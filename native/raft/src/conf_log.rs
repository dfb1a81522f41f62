//! The membership as the log defines it (Raft thesis, section 4.1): a node
//! uses the latest configuration in its log, committed or not. A change takes
//! effect when its entry is appended and is undone if that entry is truncated
//! away; on restart the membership is the snapshot's plus every conf change
//! entry in the log, so it never goes backwards across a restart or a power
//! loss (those entries were synced before anyone was told about them).

use crate::types::{ConfChange, ConfState, Entry, EntryType};

/// A base membership (at `base_index`) and the conf changes after it.
///
/// Invariant: `changes` are in increasing index order, all above `base_index`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfLog {
    base_index: u64,
    base: ConfState,
    changes: Vec<(u64, ConfChange)>,
}

impl ConfLog {
    /// The membership `base` as of `base_index`, with no later change.
    pub fn new(base_index: u64, base: ConfState) -> Self {
        ConfLog {
            base_index,
            base,
            changes: Vec::new(),
        }
    }

    /// Records the conf change entries among `ents` (undecodable ones are
    /// skipped: the leader validates what it appends, a forged entry changes
    /// nothing). Returns true if any was recorded.
    pub fn push_entries(&mut self, ents: &[Entry]) -> bool {
        let mut any = false;
        for e in ents {
            if e.entry_type != EntryType::ConfChange || e.index <= self.base_index {
                continue;
            }
            if let Ok(cc) = ConfChange::decode(&e.data) {
                debug_assert!(self.changes.last().is_none_or(|(i, _)| *i < e.index));
                self.changes.push((e.index, cc));
                any = true;
            }
        }
        any
    }

    /// Forgets the changes at or after `index` (their entries were replaced).
    /// Returns true if any was forgotten.
    pub fn truncate_from(&mut self, index: u64) -> bool {
        let keep = self.changes.partition_point(|(i, _)| *i < index);
        let any = keep < self.changes.len();
        self.changes.truncate(keep);
        any
    }

    /// The membership in force: the base with every change applied.
    pub fn in_force(&self) -> ConfState {
        self.at(u64::MAX)
    }

    /// The membership as of `index` (at or above `base_index`).
    pub fn at(&self, index: u64) -> ConfState {
        self.changes
            .iter()
            .take_while(|(i, _)| *i <= index)
            .fold(self.base.clone(), |c, (_, cc)| c.apply(*cc))
    }

    /// Folds every change up to `index` into the base (the log below it is
    /// being compacted). `index` must be committed: it is never truncated.
    pub fn compact_to(&mut self, index: u64) {
        if index <= self.base_index {
            return;
        }
        self.base = self.at(index);
        self.base_index = index;
        let keep = self.changes.partition_point(|(i, _)| *i <= index);
        self.changes.drain(..keep);
    }

    /// Replaces everything by the membership of a snapshot at `index`.
    pub fn reset(&mut self, index: u64, conf: ConfState) {
        *self = ConfLog::new(index, conf);
    }

    /// True if a change lies in `(lo, hi]`.
    pub fn has_change_in(&self, lo: u64, hi: u64) -> bool {
        self.changes.iter().any(|(i, _)| *i > lo && *i <= hi)
    }

    /// Index of the latest change (the base index when there is none).
    pub fn last_change_index(&self) -> u64 {
        self.changes.last().map_or(self.base_index, |(i, _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc_entry(index: u64, cc: ConfChange) -> Entry {
        Entry {
            term: 1,
            index,
            entry_type: EntryType::ConfChange,
            data: cc.encode(),
        }
    }

    #[test]
    fn membership_follows_the_log_and_its_truncation() {
        let mut c = ConfLog::new(3, ConfState::new(vec![1, 2, 3]));
        assert!(c.push_entries(&[
            Entry::new(1, 4, vec![]),
            cc_entry(5, ConfChange::AddLearner(4)),
            cc_entry(7, ConfChange::AddNode(4)),
        ]));
        assert_eq!(c.in_force().voters, vec![1, 2, 3, 4]);
        assert_eq!(c.at(6).learners, vec![4]);
        assert_eq!(c.at(4), ConfState::new(vec![1, 2, 3]));
        assert!(c.has_change_in(4, 5) && !c.has_change_in(5, 6));
        assert!(c.truncate_from(6));
        assert_eq!(c.in_force().learners, vec![4]);
        c.compact_to(6);
        assert_eq!(
            (c.last_change_index(), c.at(6).learners.clone()),
            (6, vec![4])
        );
        c.reset(10, ConfState::new(vec![9]));
        assert_eq!(c.in_force().voters, vec![9]);
    }
}
