//! Where every entry of the log lives, in memory; the entries themselves stay
//! in the segment files (except a bounded cache of the most recent ones).
//!
//! [`WalStorage`] is the core's read-only view of the log
//! ([`bedrock_raft::Storage`]). It shares the index with the [`crate::Wal`]
//! that writes it, behind a read-write lock that the writer takes only
//! briefly, after its I/O: reading never waits for an fsync.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bedrock_raft::{Entry, Error, RaftState, Snapshot, Storage};

use crate::segment;
use crate::vfs::{DiskFile, VfsFile};

/// One segment as the index knows it.
#[derive(Debug)]
pub(crate) struct SegIndex {
    /// Index of the segment's first entry (the one in its name).
    pub(crate) first_index: u64,
    /// Its path.
    pub(crate) path: PathBuf,
    /// The open file, shared by the writer and the readers.
    pub(crate) file: Arc<DiskFile>,
    /// `offsets[i]`, `lens[i]`: the record of entry `first_index + i` (the
    /// live one: a later batch that replaced a tail wins).
    pub(crate) offsets: Vec<u64>,
    /// See `offsets`. Invariant: same length.
    pub(crate) lens: Vec<u32>,
    /// End of the last batch: where the next one is written.
    pub(crate) size: u64,
    /// Length of the file. Invariant: `allocated >= size` except while a
    /// write is in flight, and the bytes past `size` are zeros written ahead
    /// ([`crate::Wal`] allocates ahead so that an append's sync need not
    /// record a new file length); only the last segment has any.
    pub(crate) allocated: u64,
}

impl SegIndex {
    /// The index the next entry appended to this segment gets.
    pub(crate) fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }
}

/// The index of a whole log.
///
/// Invariants: `segments` is never empty and consecutive
/// (`segments[i + 1].first_index == segments[i].next_index()`); the first
/// starts at or below `snapshot index + 1`; `terms` holds runs
/// `(first index, term)` covering `[segments[0].first_index, last_index()]`;
/// `cache` holds the bytes of the most recent batches (at most `cache_limit`
/// bytes, but at least the last batch written), keyed by where they lie on
/// disk: (segment first index, file offset); a record whose location falls in
/// a cached batch is decoded from memory instead of read back.
#[derive(Debug)]
pub(crate) struct LogIndex {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) segments: Vec<SegIndex>,
    terms: Vec<(u64, u64)>,
    cache: BTreeMap<(u64, u64), Vec<u8>>,
    /// Keys of `cache`, oldest first (eviction order).
    cache_order: VecDeque<(u64, u64)>,
    cache_bytes: u64,
    cache_limit: u64,
    /// What the log held when opened (the core starts from it).
    pub(crate) initial: RaftState,
}

impl LogIndex {
    pub(crate) fn new(snapshot: Arc<Snapshot>, first: SegIndex, cache_limit: u64) -> Self {
        LogIndex {
            snapshot,
            segments: vec![first],
            terms: Vec::new(),
            cache: BTreeMap::new(),
            cache_order: VecDeque::new(),
            cache_bytes: 0,
            cache_limit,
            initial: RaftState::default(),
        }
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.metadata.index
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    /// Last entry held (the snapshot index when none follows it).
    pub(crate) fn last_index(&self) -> u64 {
        let last = self.last_segment().next_index() - 1;
        last.max(self.snapshot_index())
    }

    /// Last entry in the segments (may lie below the snapshot while an
    /// interrupted compaction is being finished).
    pub(crate) fn last_stored(&self) -> u64 {
        self.last_segment().next_index() - 1
    }

    pub(crate) fn last_segment(&self) -> &SegIndex {
        self.segments.last().expect("a WAL always has a segment")
    }

    pub(crate) fn last_segment_mut(&mut self) -> &mut SegIndex {
        self.segments
            .last_mut()
            .expect("a WAL always has a segment")
    }

    /// Term of a stored entry (ignores the snapshot).
    pub(crate) fn stored_term(&self, index: u64) -> Option<u64> {
        if index < self.segments[0].first_index || index > self.last_stored() {
            return None;
        }
        let run = self.terms.partition_point(|(i, _)| *i <= index);
        run.checked_sub(1).map(|r| self.terms[r].1)
    }

    /// Forgets the entries at or after `index` in the last segment (they are
    /// being replaced by a later batch).
    pub(crate) fn truncate_entries(&mut self, index: u64) {
        let seg = self.last_segment_mut();
        let keep = index.saturating_sub(seg.first_index) as usize;
        seg.offsets.truncate(keep);
        seg.lens.truncate(keep);
        let keep_runs = self.terms.partition_point(|(i, _)| *i < index);
        self.terms.truncate(keep_runs);
    }

    /// Records an entry written to the last segment at `offset` (`len`
    /// bytes of framing and payload). It must be the next index.
    pub(crate) fn push(&mut self, index: u64, term: u64, offset: u64, len: u32) {
        let seg = self.last_segment_mut();
        debug_assert_eq!(index, seg.next_index());
        seg.offsets.push(offset);
        seg.lens.push(len);
        if self.terms.last().is_none_or(|(_, t)| *t != term) {
            self.terms.push((index, term));
        }
    }

    /// Keeps the bytes of a batch written at `offset` of the segment that
    /// starts at `segment`, evicting the oldest batches beyond the limit.
    pub(crate) fn cache_batch(&mut self, segment: u64, offset: u64, bytes: Vec<u8>) {
        self.cache_bytes += bytes.len() as u64;
        if let Some(old) = self.cache.insert((segment, offset), bytes) {
            self.cache_bytes -= old.len() as u64;
        } else {
            self.cache_order.push_back((segment, offset));
        }
        while self.cache_order.len() > 1 && self.cache_bytes > self.cache_limit {
            let key = self.cache_order.pop_front().expect("more than one batch");
            if let Some(b) = self.cache.remove(&key) {
                self.cache_bytes -= b.len() as u64;
            }
        }
    }

    /// Drops the cached batches of the segment that starts at `segment` (its
    /// file is being removed: a later file of the same name is another one).
    pub(crate) fn forget_segment(&mut self, segment: u64) {
        let keys: Vec<(u64, u64)> = self
            .cache
            .range((segment, 0)..=(segment, u64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(b) = self.cache.remove(&k) {
                self.cache_bytes -= b.len() as u64;
            }
        }
        self.cache_order.retain(|(s, _)| *s != segment);
    }

    /// Drops the term runs below the first kept segment; the caller removed
    /// the segments wholly below the snapshot (and forgot their cache).
    pub(crate) fn trim_below(&mut self, first_kept_segment_index: u64) {
        let first_run = self
            .terms
            .partition_point(|(i, _)| *i <= first_kept_segment_index)
            .saturating_sub(1);
        self.terms.drain(..first_run);
        if let Some(r) = self.terms.first_mut() {
            r.0 = r.0.max(first_kept_segment_index);
        }
    }

    /// The log restarts empty after the snapshot, in `seg`.
    pub(crate) fn restart(&mut self, seg: SegIndex) {
        self.segments = vec![seg];
        self.terms.clear();
        self.cache.clear();
        self.cache_order.clear();
        self.cache_bytes = 0;
    }

    /// The cached bytes of the record at `offset` (`len` bytes) of the
    /// segment that starts at `segment`, if its batch is cached.
    fn cached(&self, segment: u64, offset: u64, len: u32) -> Option<&[u8]> {
        let ((s, at), bytes) = self.cache.range(..=(segment, offset)).next_back()?;
        if *s != segment {
            return None;
        }
        let start = (offset - at) as usize;
        bytes.get(start..start + len as usize)
    }

    /// Reads the entry at `index` (which must be stored) from the cache or
    /// its segment file.
    ///
    /// # Panics
    /// If the file cannot be read back or the record is damaged: entries
    /// that were written and synced are gone, the disk failed, and the node
    /// must stop.
    fn read(&self, index: u64) -> Entry {
        let s = self
            .segments
            .iter()
            .rposition(|s| s.first_index <= index)
            .expect("the first segment starts at or below the snapshot");
        let seg = &self.segments[s];
        let i = (index - seg.first_index) as usize;
        let (offset, len) = (seg.offsets[i], seg.lens[i]);
        let read = match self.cached(seg.first_index, offset, len) {
            Some(bytes) => segment::decode_record(&seg.path, bytes, offset, index),
            None => {
                let mut buf = vec![0; len as usize];
                seg.file
                    .read_at(&mut buf, offset)
                    .map_err(|e| crate::WalError::io("read", &seg.path, e))
                    .and_then(|()| segment::decode_record(&seg.path, &buf, offset, index))
            }
        };
        match read {
            Ok(e) => e,
            Err(e) => panic!("WAL read failed, the node must stop: {e}"),
        }
    }
}

/// The core's read-only view of a WAL: see the module docs.
#[derive(Debug, Clone)]
pub struct WalStorage {
    index: Arc<RwLock<LogIndex>>,
}

impl WalStorage {
    pub(crate) fn new(index: Arc<RwLock<LogIndex>>) -> Self {
        WalStorage { index }
    }

    fn read(&self) -> RwLockReadGuard<'_, LogIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes of recent batches held in the cache (bounded by the WAL's
    /// `cache_bytes`, but at least the last batch).
    pub fn cached_bytes(&self) -> u64 {
        self.read().cache_bytes
    }
}

pub(crate) fn write_index(index: &RwLock<LogIndex>) -> RwLockWriteGuard<'_, LogIndex> {
    index.write().unwrap_or_else(PoisonError::into_inner)
}

impl Storage for WalStorage {
    fn initial_state(&self) -> RaftState {
        self.read().initial.clone()
    }

    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> bedrock_raft::Result<Vec<Entry>> {
        let ix = self.read();
        if lo < ix.first_index() {
            return Err(Error::Compacted);
        }
        if hi > ix.last_index() + 1 {
            return Err(Error::Unavailable);
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for index in lo..hi {
            let e = ix.read(index);
            size = size.saturating_add(e.size() as u64);
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> bedrock_raft::Result<u64> {
        let ix = self.read();
        let si = ix.snapshot_index();
        if index < si {
            return Err(Error::Compacted);
        }
        if index == si {
            return Ok(ix.snapshot.metadata.term);
        }
        ix.stored_term(index).ok_or(Error::Unavailable)
    }

    fn first_index(&self) -> u64 {
        self.read().first_index()
    }

    fn last_index(&self) -> u64 {
        self.read().last_index()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.read().snapshot.clone()
    }
}
