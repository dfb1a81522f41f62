//! Stable storage as the core reads it, and an in-memory implementation.
//!
//! The core's log is the durable log behind a [`Storage`] plus an in-memory
//! tail of entries not yet persisted (see [`crate::log_unstable`]). The core
//! only ever *reads* storage: the driver writes what each `Ready` hands out,
//! then tells the core with `advance`. An implementation may therefore keep
//! most of its entries on disk and read them back on demand (the WAL crate
//! does: an index in memory, the entries in its segment files).

use std::sync::{Arc, PoisonError, RwLock};

use crate::errors::{Error, Result};
use crate::types::{ConfState, Entry, EntryType, HardState, Snapshot};

/// What a node starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    /// Last durable term, vote and commit.
    pub hard_state: HardState,
    /// Membership at `first_index() - 1` (the snapshot's, or empty).
    pub conf_state: ConfState,
    /// Every conf change entry in `[first_index(), last_index()]`, in log
    /// order: with `conf_state` they give the membership in force (the latest
    /// one in the log, committed or not).
    pub conf_entries: Vec<Entry>,
}

/// Read-only access to the durable log of one node.
///
/// Invariants an implementation keeps: entries `[first_index(), last_index()]`
/// are stored and consecutive; `first_index() == snapshot().metadata.index + 1`
/// (the snapshot is the default one, at index 0, when none was taken);
/// `term(first_index() - 1)` is the snapshot's term.
pub trait Storage {
    /// Hard state and membership to start from.
    fn initial_state(&self) -> RaftState;

    /// Entries in `[lo, hi)`, at most `max_size` bytes (by [`Entry::size`])
    /// but at least one when `lo < hi`.
    ///
    /// # Errors
    /// [`Error::Compacted`] when `lo < first_index()`,
    /// [`Error::Unavailable`] when `hi > last_index() + 1`.
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>>;

    /// Term of the entry at `index`, for `index` in
    /// `[first_index() - 1, last_index()]`.
    ///
    /// # Errors
    /// As [`Storage::entries`].
    fn term(&self, index: u64) -> Result<u64>;

    /// Index of the first stored entry (snapshot index + 1).
    fn first_index(&self) -> u64;

    /// Index of the last stored entry (the snapshot index when none follows it).
    fn last_index(&self) -> u64;

    /// The latest snapshot (shared, never copied: it may be large).
    fn snapshot(&self) -> Arc<Snapshot>;
}

/// The contents of a [`MemStorage`].
#[derive(Debug, Clone, Default)]
struct MemInner {
    hard_state: HardState,
    snapshot: Arc<Snapshot>,
    /// Entries after the snapshot. Invariant: `entries[i].index ==
    /// snapshot index + 1 + i`.
    entries: Vec<Entry>,
}

/// Storage kept in memory: for tests and examples. Clones share the same
/// contents, so a driver keeps one clone to write to while the node reads
/// through another.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    inner: Arc<RwLock<MemInner>>,
}

impl MemStorage {
    /// Empty storage (a fresh node).
    pub fn new() -> Self {
        MemStorage::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `entries` (consecutive), replacing the stored tail from the
    /// first one on.
    ///
    /// # Panics
    /// If the entries would leave a hole or start at or below the snapshot.
    pub fn append(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut s = self.write();
        let si = s.snapshot.metadata.index;
        assert!(
            first.index > si && first.index <= si + 1 + s.entries.len() as u64,
            "append at {} outside [{}, {}]",
            first.index,
            si + 1,
            si + 1 + s.entries.len() as u64
        );
        let keep = (first.index - si - 1) as usize;
        s.entries.truncate(keep);
        s.entries.extend_from_slice(entries);
    }

    /// Stores the hard state.
    pub fn set_hard_state(&self, hs: HardState) {
        self.write().hard_state = hs;
    }

    /// Stores `snapshot` and drops the entries it covers; the rest of the log
    /// is kept only if it agrees with the snapshot's last entry.
    pub fn apply_snapshot(&self, snapshot: Arc<Snapshot>) {
        let mut s = self.write();
        let (si, st) = (snapshot.metadata.index, snapshot.metadata.term);
        let old = s.snapshot.metadata.index;
        let agrees = si >= old
            && si <= old + s.entries.len() as u64
            && (si == old || s.entries[(si - old - 1) as usize].term == st);
        if agrees {
            s.entries.drain(..(si - old) as usize);
        } else {
            s.entries.clear();
        }
        s.hard_state.commit = s.hard_state.commit.max(si);
        s.snapshot = snapshot;
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> RaftState {
        let s = self.read();
        RaftState {
            hard_state: s.hard_state,
            conf_state: s.snapshot.metadata.conf_state.clone(),
            conf_entries: s
                .entries
                .iter()
                .filter(|e| e.entry_type == EntryType::ConfChange)
                .cloned()
                .collect(),
        }
    }

    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> Result<Vec<Entry>> {
        let s = self.read();
        let si = s.snapshot.metadata.index;
        if lo <= si {
            return Err(Error::Compacted);
        }
        if hi > si + 1 + s.entries.len() as u64 {
            return Err(Error::Unavailable);
        }
        if lo >= hi {
            return Ok(Vec::new());
        }
        let ents = &s.entries[(lo - si - 1) as usize..(hi - si - 1) as usize];
        Ok(limit_size(ents, max_size).to_vec())
    }

    fn term(&self, index: u64) -> Result<u64> {
        let s = self.read();
        let si = s.snapshot.metadata.index;
        if index < si {
            return Err(Error::Compacted);
        }
        if index == si {
            return Ok(s.snapshot.metadata.term);
        }
        s.entries
            .get((index - si - 1) as usize)
            .map(|e| e.term)
            .ok_or(Error::Unavailable)
    }

    fn first_index(&self) -> u64 {
        self.read().snapshot.metadata.index + 1
    }

    fn last_index(&self) -> u64 {
        let s = self.read();
        s.snapshot.metadata.index + s.entries.len() as u64
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.read().snapshot.clone()
    }
}

/// Longest prefix of `ents` within `max_size` bytes, at least one entry.
pub fn limit_size(ents: &[Entry], max_size: u64) -> &[Entry] {
    let mut size = 0u64;
    let mut n = 0;
    for e in ents {
        size = size.saturating_add(e.size() as u64);
        if n > 0 && size > max_size {
            break;
        }
        n += 1;
    }
    &ents[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SnapshotMetadata;

    fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::new(*t, from + i as u64, vec![0; 10]))
            .collect()
    }

    #[test]
    fn reads_respect_bounds_and_sizes() {
        let s = MemStorage::new();
        s.append(&ents(1, &[1, 1, 2, 2]));
        assert_eq!((s.first_index(), s.last_index()), (1, 4));
        assert_eq!(s.term(0), Ok(0));
        assert_eq!(s.term(3), Ok(2));
        assert_eq!(s.term(5), Err(Error::Unavailable));
        assert_eq!(s.entries(1, 5, 0).unwrap().len(), 1);
        assert_eq!(s.entries(2, 5, u64::MAX).unwrap().len(), 3);
        assert_eq!(s.entries(1, 6, 0), Err(Error::Unavailable));
        s.append(&ents(3, &[3]));
        assert_eq!(s.last_index(), 3);
    }

    #[test]
    fn snapshot_keeps_an_agreeing_tail_only() {
        let s = MemStorage::new();
        s.append(&ents(1, &[1, 1, 2, 2]));
        let snap = |index, term| {
            Arc::new(Snapshot {
                metadata: SnapshotMetadata {
                    index,
                    term,
                    conf_state: ConfState::new(vec![1]),
                },
                data: vec![],
            })
        };
        s.apply_snapshot(snap(2, 1));
        assert_eq!((s.first_index(), s.last_index()), (3, 4));
        assert_eq!(s.term(1), Err(Error::Compacted));
        assert_eq!(s.entries(2, 3, 9), Err(Error::Compacted));
        s.apply_snapshot(snap(4, 9));
        assert_eq!((s.first_index(), s.last_index()), (5, 4));
        assert_eq!(s.initial_state().hard_state.commit, 4);
    }
}
