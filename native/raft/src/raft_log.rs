//! The in-memory Raft log: everything after the latest snapshot, plus the
//! commit, apply and persistence marks.

use crate::types::{Entry, PersistedState, Snapshot};

/// The log of one node.
///
/// Entries `[first_index(), last_index()]` are in memory; everything up to
/// `snapshot_index()` is covered by the kept snapshot.
///
/// Invariants: `snapshot_index() <= applied <= committed <= last_index()`;
/// `snapshot_index() <= stabled <= last_index()`; `entries[i].index ==
/// snapshot_index() + 1 + i`.
#[derive(Debug, Clone, Default)]
pub struct RaftLog {
    /// Latest snapshot (local or from the leader); None means the log starts at 1.
    snapshot: Option<Snapshot>,
    /// Entries after the snapshot, consecutive.
    entries: Vec<Entry>,
    /// Highest index known committed.
    committed: u64,
    /// Highest index the application applied (and advanced).
    applied: u64,
    /// Highest index known persisted; entries above it are unstable.
    stabled: u64,
    /// The snapshot came from the leader and is not yet handed out in a Ready.
    pending_snapshot: bool,
}

impl RaftLog {
    /// The log recovered from durable state: entries covered by the snapshot
    /// are dropped, everything is stable, and `applied` starts at the
    /// snapshot (committed entries after it are re-delivered).
    pub fn new(state: PersistedState) -> Self {
        let mut log = RaftLog {
            snapshot: state.snapshot,
            ..RaftLog::default()
        };
        let si = log.snapshot_index();
        let mut expect = si + 1;
        for e in state.entries {
            if e.index < expect {
                continue;
            }
            if e.index != expect {
                // A hole: everything after it is unusable.
                break;
            }
            log.entries.push(e);
            expect += 1;
        }
        log.committed = state.hard_state.commit.clamp(si, log.last_index());
        log.applied = si;
        log.stabled = log.last_index();
        log
    }

    /// Index covered by the snapshot (0 without one).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.metadata.index)
    }

    /// Term of the snapshot's last entry (0 without one).
    pub fn snapshot_term(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.metadata.term)
    }

    /// The kept snapshot, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// First index in memory.
    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    /// Last index of the log (the snapshot index when no entries follow it).
    pub fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
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

    /// Persisted index.
    pub fn stabled(&self) -> u64 {
        self.stabled
    }

    /// Term of the entry at `index`, or None when it is compacted away (below
    /// the snapshot) or beyond the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        let si = self.snapshot_index();
        if index == si {
            return Some(self.snapshot_term());
        }
        if index < si || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - si - 1) as usize].term)
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

    /// Entries in `[lo, hi]` (clipped to the log).
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        if lo > hi {
            return &[];
        }
        let si = self.snapshot_index();
        &self.entries[(lo - si - 1) as usize..(hi - si) as usize]
    }

    /// Entries from `lo` on, at most `max_size` bytes but at least one entry.
    pub fn entries_from(&self, lo: u64, max_size: u64) -> Vec<Entry> {
        limit_size(self.slice(lo, self.last_index()), max_size)
    }

    /// Entries not yet persisted.
    pub fn unstable_entries(&self) -> &[Entry] {
        self.slice(self.stabled + 1, self.last_index())
    }

    /// True if there are committed entries not yet applied.
    pub fn has_next_entries(&self) -> bool {
        self.committed > self.applied
    }

    /// Committed entries after `applied`, at most `max_size` bytes but at
    /// least one entry.
    pub fn next_entries(&self, max_size: u64) -> Vec<Entry> {
        limit_size(self.slice(self.applied + 1, self.committed), max_size)
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
        let mut i = index.min(self.last_index());
        if index > self.last_index() {
            return (index, 0);
        }
        loop {
            match self.term(i) {
                Some(t) if t > term && i > 0 => i -= 1,
                Some(t) => return (i, t),
                None => return (i, 0),
            }
        }
    }

    /// Follower side of an Append: if our entry at `index` has `log_term`,
    /// append `ents` (consecutive from `index + 1`), dropping a conflicting
    /// tail, and advance commit to `min(committed, last new index)`.
    /// Returns the last new index, or None if the logs do not match (or the
    /// message would overwrite committed entries, which no leader sends).
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        ents: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + ents.len() as u64;
        let ci = self.find_conflict(ents);
        if ci != 0 {
            if ci <= self.committed {
                return None;
            }
            let start = (ci - index - 1) as usize;
            self.append(&ents[start..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
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
        let keep = (after - self.snapshot_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
        self.stabled = self.stabled.min(after);
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

    /// The application applied everything up to `index`.
    pub fn applied_to(&mut self, index: u64) {
        let index = index.min(self.committed);
        if index > self.applied {
            self.applied = index;
        }
    }

    /// Entries up to `index` (with `term`) were persisted. Ignored when the
    /// entry there has since been replaced by another term.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if self.match_term(index, term) && index > self.stabled {
            self.stabled = index;
        }
    }

    /// The snapshot handed out in a Ready was persisted.
    pub fn stable_snapshot(&mut self, index: u64) {
        if self.snapshot_index() == index {
            self.pending_snapshot = false;
        }
    }

    /// The snapshot from the leader not yet handed out, if any.
    pub fn pending_snapshot(&self) -> Option<&Snapshot> {
        if self.pending_snapshot {
            self.snapshot.as_ref()
        } else {
            None
        }
    }

    /// Replaces the whole log by a snapshot from the leader: commit, apply and
    /// stable marks jump to it; it goes out in the next Ready.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let i = snapshot.metadata.index;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.committed = i;
        self.applied = i;
        self.stabled = i;
        self.pending_snapshot = true;
    }

    /// Keeps `snapshot` (taken locally at an applied index) and drops the
    /// entries it covers.
    ///
    /// # Panics
    /// If the snapshot is past `applied` or below the current snapshot.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let i = snapshot.metadata.index;
        assert!(
            i <= self.applied && i >= self.snapshot_index(),
            "compact to {i} outside [{}, {}]",
            self.snapshot_index(),
            self.applied
        );
        let drop = (i - self.snapshot_index()) as usize;
        self.entries.drain(..drop);
        self.snapshot = Some(snapshot);
        self.stabled = self.stabled.max(i);
    }
}

/// Longest prefix of `ents` within `max_size` bytes, at least one entry.
fn limit_size(ents: &[Entry], max_size: u64) -> Vec<Entry> {
    let mut size = 0u64;
    let mut n = 0;
    for e in ents {
        size += e.size() as u64;
        if n > 0 && size > max_size {
            break;
        }
        n += 1;
    }
    ents[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConfState, HardState, SnapshotMetadata};

    fn ents(terms: &[u64], from: u64) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry::new(*t, from + i as u64, vec![]))
            .collect()
    }

    fn log(terms: &[u64]) -> RaftLog {
        RaftLog::new(PersistedState {
            hard_state: HardState::default(),
            snapshot: None,
            entries: ents(terms, 1),
        })
    }

    #[test]
    fn maybe_append_truncates_conflicts_and_commits() {
        let mut l = log(&[1, 1, 2, 2]);
        assert_eq!(l.maybe_append(5, 1, 3, &[]), None);
        assert_eq!(l.maybe_append(2, 1, 3, &ents(&[3, 3], 3)), Some(4));
        assert_eq!(l.last_index(), 4);
        assert_eq!(l.term(3), Some(3));
        assert_eq!(l.committed(), 3);
        assert_eq!(l.stabled(), 2);
        assert_eq!(l.unstable_entries().len(), 2);
        // Already present entries change nothing, commit follows.
        assert_eq!(l.maybe_append(1, 1, 10, &ents(&[1], 2)), Some(2));
        assert_eq!(l.committed(), 3);
        assert_eq!(l.last_index(), 4);
    }

    #[test]
    fn find_conflict_by_term_skips_higher_terms() {
        let l = log(&[1, 1, 3, 3, 5]);
        assert_eq!(l.find_conflict_by_term(5, 4), (4, 3));
        assert_eq!(l.find_conflict_by_term(5, 2), (2, 1));
        assert_eq!(l.find_conflict_by_term(9, 2), (9, 0));
        assert_eq!(l.find_conflict_by_term(5, 0), (0, 0));
    }

    #[test]
    fn size_limits_keep_at_least_one() {
        let mut l = log(&[]);
        let big: Vec<Entry> = (1..=4).map(|i| Entry::new(1, i, vec![0; 100])).collect();
        l.append(&big);
        assert_eq!(l.entries_from(1, 0).len(), 1);
        assert_eq!(l.entries_from(1, 250).len(), 2);
        l.commit_to(9);
        assert_eq!(l.committed(), 4);
        assert_eq!(l.next_entries(u64::MAX).len(), 4);
    }

    #[test]
    fn compact_and_restore() {
        let mut l = log(&[1, 1, 2, 2, 2]);
        l.commit_to(4);
        l.applied_to(3);
        let snap = |i, t| Snapshot {
            metadata: SnapshotMetadata {
                index: i,
                term: t,
                conf_state: ConfState::new(vec![1]),
            },
            data: vec![],
        };
        l.compact(snap(3, 2));
        assert_eq!(l.first_index(), 4);
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(2), None);
        assert_eq!(l.last_index(), 5);
        assert!(l.pending_snapshot().is_none());
        l.restore(snap(10, 4));
        assert_eq!(l.last_index(), 10);
        assert_eq!(l.committed(), 10);
        assert!(l.pending_snapshot().is_some());
        l.stable_snapshot(10);
        assert!(l.pending_snapshot().is_none());
    }
}
