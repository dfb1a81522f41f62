//! Durable storage as the harness sees it: what survives a crash.

use bedrock_raft::wal::{Wal, WalOptions};
use bedrock_raft::{Entry, HardState, NodeId, PersistedState, Snapshot};
use std::path::PathBuf;

/// Where a node persists its Readys. A crash drops the node and rebuilds it
/// from [`Storage::load`]; whatever was never saved is lost.
pub trait Storage {
    /// Persists a hard state (if any) and entries; `entries[0]` may replace
    /// the persisted tail from its index on.
    fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]);
    /// Persists a snapshot; entries it covers are dropped, and so is the
    /// rest of the log unless it agrees with the snapshot's last entry.
    fn save_snapshot(&mut self, snapshot: &Snapshot);
    /// Everything saved so far, as a restarted process would recover it.
    fn load(&mut self) -> PersistedState;
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

    fn load(&mut self) -> PersistedState {
        self.state.clone()
    }
}

/// Storage on the real write-ahead log (in a directory of its own). A crash
/// closes the WAL; [`Storage::load`] reopens it and recovers what it holds.
///
/// # Panics
/// Every method panics on a WAL error: in a test that is a failure.
#[derive(Debug)]
pub struct WalStorage {
    dir: PathBuf,
    opts: WalOptions,
    wal: Option<Wal>,
}

impl WalStorage {
    /// A WAL for `node` in `dir` (created if missing), without fsync.
    pub fn new(dir: PathBuf, node: NodeId) -> Self {
        let mut opts = WalOptions::new("harness", node);
        opts.sync = false;
        opts.segment_bytes = 16 << 10;
        WalStorage {
            dir,
            opts,
            wal: None,
        }
    }

    fn wal(&mut self) -> &mut Wal {
        if self.wal.is_none() {
            self.load();
        }
        self.wal.as_mut().expect("wal open")
    }
}

impl Storage for WalStorage {
    fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) {
        self.wal().save(hard_state, entries).expect("wal save");
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) {
        self.wal()
            .save_snapshot(snapshot)
            .expect("wal save_snapshot");
    }

    fn load(&mut self) -> PersistedState {
        // Close first: the directory is locked by its owner.
        self.wal = None;
        std::fs::create_dir_all(&self.dir).expect("create wal dir");
        let (wal, state) = Wal::open(&self.dir, self.opts.clone()).expect("wal open");
        self.wal = Some(wal);
        state
    }
}
