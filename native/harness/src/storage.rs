//! Durable storage as the harness sees it: what survives a crash.

use bedrock_raft::{Entry, HardState, PersistedState, Snapshot};

/// Where a node persists its Readys. A crash drops the node and rebuilds it
/// from [`Storage::load`]; whatever was never saved is lost.
pub trait Storage {
    /// Persists a hard state (if any) and entries; `entries[0]` may replace
    /// the persisted tail from its index on.
    fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]);
    /// Persists a snapshot; entries it covers are dropped, and so is the
    /// rest of the log unless it agrees with the snapshot's last entry.
    fn save_snapshot(&mut self, snapshot: &Snapshot);
    /// Everything saved so far.
    fn load(&self) -> PersistedState;
}

/// In-memory storage with exactly the semantics of a synced disk.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    state: PersistedState,
}

impl MemStorage {
    /// Empty storage (a fresh node).
    pub fn new() -> Self {
        MemStorage::default()
    }
}

impl Storage for MemStorage {
    fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            let ents = &mut self.state.entries;
            let si = self.state.snapshot.as_ref().map_or(0, |s| s.metadata.index);
            assert!(
                first.index > si,
                "saving entry {} under snapshot {si}",
                first.index
            );
            ents.retain(|e| e.index < first.index);
            let last = ents.last().map_or(si, |e| e.index);
            assert_eq!(
                last + 1,
                first.index,
                "hole in saved log (snapshot {si}, {} entries)",
                entries.len()
            );
            ents.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.state.hard_state = *hs;
        }
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) {
        let (si, st) = (snapshot.metadata.index, snapshot.metadata.term);
        let same_snapshot = self
            .state
            .snapshot
            .as_ref()
            .is_some_and(|s| (s.metadata.index, s.metadata.term) == (si, st));
        let keeps_tail = same_snapshot
            || self
                .state
                .entries
                .iter()
                .any(|e| e.index == si && e.term == st);
        if keeps_tail {
            self.state.entries.retain(|e| e.index > si);
        } else {
            self.state.entries.clear();
        }
        if self.state.hard_state.commit < si {
            self.state.hard_state.commit = si;
        }
        self.state.snapshot = Some(snapshot.clone());
    }

    fn load(&self) -> PersistedState {
        self.state.clone()
    }
}
