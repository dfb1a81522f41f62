//! The part of the log not yet persisted: entries appended since the last
//! persist, and a snapshot received from the leader.

use std::sync::Arc;

use crate::types::{Entry, Snapshot};

/// Entries (and perhaps a snapshot) the driver has not yet persisted.
///
/// Invariants: `entries[i].index == offset + i`; with a snapshot,
/// `offset == snapshot index + 1` or greater (entries after the snapshot).
#[derive(Debug, Clone, Default)]
pub struct Unstable {
    /// A snapshot from the leader, to persist and restore.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Entries from `offset` on.
    pub entries: Vec<Entry>,
    /// Index of `entries[0]` (or of the next entry when there is none).
    pub offset: u64,
}

impl Unstable {
    /// Nothing unstable; the next entry will have index `offset`.
    pub fn new(offset: u64) -> Self {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
        }
    }

    /// First index of the log if a pending snapshot determines it.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    /// Last index of the log if the unstable part determines it.
    pub fn maybe_last_index(&self) -> Option<u64> {
        match (self.entries.len(), &self.snapshot) {
            (0, Some(s)) => Some(s.metadata.index),
            (0, None) => None,
            (n, _) => Some(self.offset + n as u64 - 1),
        }
    }

    /// Term at `index` if the unstable part holds it.
    pub fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return self
                .snapshot
                .as_ref()
                .filter(|s| s.metadata.index == index)
                .map(|s| s.metadata.term);
        }
        self.entries
            .get((index - self.offset) as usize)
            .map(|e| e.term)
    }

    /// Entries up to `index` (with `term`) were persisted: drop them. Ignored
    /// when the entry there was since replaced (another term) or is already
    /// stable.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset || self.maybe_term(index) != Some(term) {
            return;
        }
        self.entries.drain(..=(index - self.offset) as usize);
        self.offset = index + 1;
    }

    /// The snapshot at `index` was persisted.
    pub fn stable_snapshot(&mut self, index: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.snapshot = None;
        }
    }

    /// Replaces everything by a snapshot from the leader.
    pub fn restore(&mut self, snapshot: Arc<Snapshot>) {
        self.entries.clear();
        self.offset = snapshot.metadata.index + 1;
        self.snapshot = Some(snapshot);
    }

    /// Appends `ents` (consecutive), dropping every unstable entry at or after
    /// the first one. When they start below `offset`, the entries below
    /// `offset` they replace are stable ones: the driver overwrites those when
    /// it persists these.
    pub fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        let after = first.index;
        if after == self.offset + self.entries.len() as u64 {
            self.entries.extend_from_slice(ents);
        } else if after <= self.offset {
            self.offset = after;
            self.entries = ents.to_vec();
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(ents);
        }
    }

    /// Unstable entries in `[lo, hi)` (which must lie within them).
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SnapshotMetadata;

    fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::new(*t, from + i as u64, vec![]))
            .collect()
    }

    #[test]
    fn append_truncate_and_stabilize() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&ents(5, &[1, 1, 1]));
        assert_eq!(u.maybe_last_index(), Some(7));
        u.truncate_and_append(&ents(6, &[2]));
        assert_eq!((u.maybe_last_index(), u.maybe_term(6)), (Some(6), Some(2)));
        // A Ready persisted 5..=7 in term 1; 6 was replaced meanwhile.
        u.stable_to(6, 1);
        assert_eq!(u.offset, 5);
        u.stable_to(5, 1);
        assert_eq!((u.offset, u.entries.len()), (6, 1));
        // Replacing stable entries moves the offset down.
        u.truncate_and_append(&ents(3, &[3]));
        assert_eq!((u.offset, u.maybe_last_index()), (3, Some(3)));
    }

    #[test]
    fn snapshot_decides_first_and_last() {
        let mut u = Unstable::new(3);
        u.truncate_and_append(&ents(3, &[1]));
        let s = Arc::new(Snapshot {
            metadata: SnapshotMetadata {
                index: 9,
                term: 4,
                conf_state: Default::default(),
            },
            data: vec![],
        });
        u.restore(s);
        assert_eq!(u.maybe_first_index(), Some(10));
        assert_eq!(u.maybe_last_index(), Some(9));
        assert_eq!(u.maybe_term(9), Some(4));
        assert_eq!(u.maybe_term(8), None);
        u.stable_snapshot(9);
        assert_eq!(u.maybe_last_index(), None);
    }
}
