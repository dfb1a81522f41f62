//! The log as the protocol sees it: the durable log behind a [`Storage`],
//! the unstable tail in memory, and the commit and apply marks.

use std::sync::Arc;

use crate::log_unstable::Unstable;
use crate::storage::{limit_size, Storage};
use crate::types::{Entry, Snapshot};

/// The log of one node.
///
/// Entries below `unstable.offset` come from storage, the others from the
/// unstable tail; a pending snapshot from the leader shadows storage entirely.
///
/// Invariants: `first_index() - 1 <= applied <= committed <= last_index()`,
/// except right after a snapshot from the leader was restored: then
/// `applied` may lag below the snapshot index until the driver reports the
/// snapshot applied (it must never be told it applied entries it did not).
#[derive(Debug)]
pub struct RaftLog<S: Storage> {
    store: S,
    unstable: Unstable,
    /// Highest index known committed.
    committed: u64,
    /// Highest index the application applied (as reported by `advance`).
    applied: u64,
}

impl<S: Storage> RaftLog<S> {
    /// The log over `store`, committed at `commit` (clamped into the log).
    /// Everything stored is stable; `applied` starts at the snapshot, so
    /// committed entries after it are handed out again.
    pub fn new(store: S, commit: u64) -> Self {
        let first = store.first_index();
        let last = store.last_index();
        RaftLog {
            store,
            unstable: Unstable::new(last + 1),
            committed: commit.clamp(first - 1, last),
            applied: first - 1,
        }
    }

    /// The storage.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Index of the first entry (the one after the snapshot).
    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.store.first_index())
    }

    /// Index covered by the latest snapshot (0 without one).
    pub fn snapshot_index(&self) -> u64 {
        self.first_index() - 1
    }

    /// Index of the last entry.
    pub fn last_index(&self) -> u64 {
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.store.last_index())
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// Commit index.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Applied index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Highest index persisted (entries above it are unstable).
    pub fn persisted(&self) -> u64 {
        self.unstable.offset - 1
    }

    /// Term of the entry at `index`, or None when it is compacted away (below
    /// the snapshot) or beyond the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        let dummy = self.first_index() - 1;
        if index < dummy || index > self.last_index() {
            return None;
        }
        if let Some(t) = self.unstable.maybe_term(index) {
            return Some(t);
        }
        if self.unstable.snapshot.is_some() {
            return None;
        }
        self.store.term(index).ok()
    }

    /// True if the log holds an entry at `index` with `term`.
    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// True if a log ending at (`last_index`, `term`) is at least as
    /// up-to-date as this one (Raft §5.4.1).
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries in `[lo, hi]` (clipped to the log), at most `max_size` bytes
    /// but at least one when the range is not empty.
    pub fn slice(&self, lo: u64, hi: u64, max_size: u64) -> Vec<Entry> {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        if lo > hi {
            return Vec::new();
        }
        let end = hi + 1;
        let offset = self.unstable.offset;
        let mut out = Vec::new();
        if lo < offset && self.unstable.snapshot.is_none() {
            let stored_end = end.min(offset);
            out = self
                .store
                .entries(lo, stored_end, max_size)
                .unwrap_or_else(|e| panic!("storage cannot read [{lo}, {stored_end}): {e}"));
            if (out.len() as u64) < stored_end - lo {
                // The size limit was hit inside storage.
                return out;
            }
        }
        if end > offset {
            let ents = self.unstable.slice(lo.max(offset), end);
            if out.is_empty() {
                return limit_size(ents, max_size).to_vec();
            }
            let used: u64 = out.iter().map(|e| e.size() as u64).sum();
            let mut size = used;
            for e in ents {
                size += e.size() as u64;
                if size > max_size {
                    break;
                }
                out.push(e.clone());
            }
        }
        out
    }

    /// Entries from `lo` on, at most `max_size` bytes but at least one.
    pub fn entries_from(&self, lo: u64, max_size: u64) -> Vec<Entry> {
        self.slice(lo, self.last_index(), max_size)
    }

    /// Entries not yet persisted.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    /// The snapshot from the leader not yet persisted, if any.
    pub fn pending_snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.unstable.snapshot.as_ref()
    }

    /// True when a snapshot from the leader is not yet both persisted and
    /// applied: no local snapshot may be taken meanwhile.
    pub fn snapshot_in_progress(&self) -> bool {
        self.unstable.snapshot.is_some() || self.applied < self.snapshot_index()
    }

    /// The latest snapshot: the pending one from the leader, else storage's.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match &self.unstable.snapshot {
            Some(s) => s.clone(),
            None => self.store.snapshot(),
        }
    }

    /// First index that committed entries may be handed out from.
    fn next_apply_index(&self) -> u64 {
        (self.applied + 1).max(self.first_index())
    }

    /// True if there are committed entries not yet applied.
    pub fn has_next_entries(&self) -> bool {
        self.committed >= self.next_apply_index()
    }

    /// Committed entries after `applied`, at most `max_size` bytes but at
    /// least one.
    pub fn next_entries(&self, max_size: u64) -> Vec<Entry> {
        self.slice(self.next_apply_index(), self.committed, max_size)
    }

    /// First index where `ents` disagrees with the log (by term) or goes
    /// past its end; 0 when every entry is already present.
    pub fn find_conflict(&self, ents: &[Entry]) -> u64 {
        ents.iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// Largest index `<= index` whose term is `<= term` (or unknown): where
    /// a log whose entry at `index` has `term` may start to agree with ours.
    /// Returns the index and our term there (0 if unknown).
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        if index > self.last_index() {
            return (index, 0);
        }
        let mut i = index;
        loop {
            match self.term(i) {
                Some(t) if t > term && i > 0 => i -= 1,
                Some(t) => return (i, t),
                None => return (i, 0),
            }
        }
    }

    /// Appends `ents` (consecutive), replacing any entries at or after the
    /// first one. Returns the new last index.
    ///
    /// # Panics
    /// If the entries would leave a hole, or overwrite committed entries.
    pub fn append(&mut self, ents: &[Entry]) -> u64 {
        let Some(first) = ents.first() else {
            return self.last_index();
        };
        let after = first.index - 1;
        assert!(
            after >= self.committed && after <= self.last_index(),
            "append at {} outside [{}, {}]",
            first.index,
            self.committed + 1,
            self.last_index() + 1
        );
        self.unstable.truncate_and_append(ents);
        self.last_index()
    }

    /// Raises the commit index to `index` (never lowers it; clipped to the
    /// last index so a forged commit cannot point past the log).
    pub fn commit_to(&mut self, index: u64) {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
        }
    }

    /// The application applied everything up to `index` (a committed entry,
    /// or a snapshot it restored).
    pub fn applied_to(&mut self, index: u64) {
        let index = index.min(self.committed);
        if index > self.applied {
            self.applied = index;
        }
    }

    /// Entries up to `index` (with `term`) were persisted. Ignored when the
    /// entry there has since been replaced by another term.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    /// The snapshot handed out in a Ready was persisted.
    pub fn stable_snapshot(&mut self, index: u64) {
        self.unstable.stable_snapshot(index);
    }

    /// Replaces the whole log by a snapshot from the leader: commit jumps to
    /// it; it goes out in the next Ready. `applied` stays where it is until
    /// the driver reports the snapshot applied.
    pub fn restore(&mut self, snapshot: Arc<Snapshot>) {
        let i = snapshot.metadata.index;
        self.unstable.restore(snapshot);
        self.committed = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::types::{ConfState, SnapshotMetadata};

    fn ents(terms: &[u64], from: u64) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::new(*t, from + i as u64, vec![]))
            .collect()
    }

    fn log(stored: &[u64]) -> (MemStorage, RaftLog<MemStorage>) {
        let s = MemStorage::new();
        s.append(&ents(stored, 1));
        (s.clone(), RaftLog::new(s, 0))
    }

    #[test]
    fn reads_span_storage_and_the_unstable_tail() {
        let (_, mut l) = log(&[1, 1, 2]);
        l.append(&ents(&[2, 3], 4));
        assert_eq!(l.last_index(), 5);
        assert_eq!(l.persisted(), 3);
        assert_eq!(l.term(5), Some(3));
        let all = l.slice(1, 5, u64::MAX);
        assert_eq!(
            all.iter().map(|e| e.index).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(l.slice(2, 5, 0).len(), 1);
        // A conflicting append below the persisted tail shadows storage.
        l.append(&ents(&[4], 3));
        assert_eq!((l.last_index(), l.term(3), l.persisted()), (3, Some(4), 2));
        l.stable_to(3, 4);
        assert_eq!(l.persisted(), 3);
    }

    #[test]
    fn find_conflict_by_term_skips_higher_terms() {
        let (_, l) = log(&[1, 1, 3, 3, 5]);
        assert_eq!(l.find_conflict_by_term(5, 4), (4, 3));
        assert_eq!(l.find_conflict_by_term(5, 2), (2, 1));
        assert_eq!(l.find_conflict_by_term(9, 2), (9, 0));
        assert_eq!(l.find_conflict_by_term(5, 0), (0, 0));
    }

    #[test]
    fn restore_waits_for_the_application_before_moving_applied() {
        let (store, mut l) = log(&[1, 1, 2, 2, 2]);
        l.commit_to(4);
        l.applied_to(2);
        let snap = Arc::new(Snapshot {
            metadata: SnapshotMetadata {
                index: 10,
                term: 4,
                conf_state: ConfState::new(vec![1]),
            },
            data: vec![],
        });
        l.restore(snap.clone());
        assert_eq!(
            (l.first_index(), l.last_index(), l.committed()),
            (11, 10, 10)
        );
        assert_eq!(l.applied(), 2);
        assert!(l.snapshot_in_progress());
        assert!(!l.has_next_entries());
        store.apply_snapshot(snap);
        l.stable_snapshot(10);
        assert_eq!(l.first_index(), 11);
        assert!(l.snapshot_in_progress(), "persisted but not yet applied");
        l.applied_to(10);
        assert!(!l.snapshot_in_progress());
    }
}
