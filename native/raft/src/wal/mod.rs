//! The write-ahead log: durable storage for the Raft log, the hard state and
//! the latest snapshot of one node.
//!
//! ## Directory layout
//!
//! ```text
//! meta                    cluster id + node id, written once at creation
//! hardstate               term, vote, commit in two alternating slots
//! snapshot                the latest snapshot, replaced atomically
//! 0000000000000001.wal    segments, named by their first index (16 hex digits)
//! 0000000000004a31.wal
//! *.tmp                   leftovers of an interrupted atomic replace, removed on open
//! ```
//!
//! Any other file in the directory is refused on open.
//!
//! ## Durability
//!
//! * [`Wal::save`] writes entries, then the hard state. One `fdatasync` covers
//!   all entries of the call (group commit); a term or vote change is synced
//!   too. A commit-only change is written but not synced: it survives a
//!   process crash through the page cache, and after a power loss the commit
//!   index may come back lower — safe, since commit is re-learned from the
//!   leader, and open clamps it to the log anyway.
//! * New files (segments, snapshot, meta) appear atomically: temporary file,
//!   sync, rename, directory sync. Removals are followed by a directory sync.
//! * Any failed sync poisons the WAL: that call and every later one return
//!   [`WalError::Fatal`]. A failed write poisons it too, since the file may
//!   then hold bytes the WAL does not know about.
//!
//! ## Recovery
//!
//! On open, a damaged final record of the last segment is an interrupted,
//! never-acknowledged append and is truncated away. Damage anywhere else is
//! [`WalError::Corrupt`] naming the file and offset; nothing is ever truncated
//! silently.

mod durable;
mod error;
mod hard_state;
mod listing;
mod meta;
mod record;
mod segment;
mod snapshot_file;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::codec::Writer;
use crate::types::{Entry, HardState, PersistedState, Snapshot};

use self::durable::Durability;
use self::hard_state::HardStateFile;
use self::listing::Listing;
use self::meta::Identity;
use self::segment::Segment;

pub use self::error::WalError;

/// Default size past which a segment is closed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// How to open a [`Wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// The cluster this node belongs to. A WAL written for another cluster id
    /// is refused on open. At most 256 bytes.
    pub cluster_id: String,
    /// This node's id. A WAL written for another node id is refused on open.
    pub node_id: u64,
    /// Whether to fsync on the write path. False only for tests and
    /// simulation: without it nothing survives a power loss.
    pub sync: bool,
    /// A segment is closed and a new one started once it holds at least this
    /// many bytes (a single large entry may exceed it).
    pub segment_bytes: u64,
}

impl WalOptions {
    /// Options for `node_id` of `cluster_id`, syncing, with 64 MiB segments.
    pub fn new(cluster_id: impl Into<String>, node_id: u64) -> Self {
        WalOptions {
            cluster_id: cluster_id.into(),
            node_id,
            sync: true,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// An open write-ahead log. One owner drives it; it is not shared.
#[derive(Debug)]
pub struct Wal {
    /// The WAL directory.
    dir: PathBuf,
    /// Who this WAL belongs to (checked against every file on open).
    id: Identity,
    /// Roll threshold, see [`WalOptions::segment_bytes`].
    segment_bytes: u64,
    /// Segments in log order. Invariant: never empty; consecutive, i.e.
    /// `segments[i + 1].first_index == segments[i].next_index()`; the first
    /// starts at or below `snapshot_index + 1`.
    segments: Vec<Segment>,
    /// The last segment's file, open for appending.
    active: File,
    /// The hard state file and the current hard state.
    hard_state: HardStateFile,
    /// Index of the last entry covered by the snapshot (0 without one).
    /// Invariant: `snapshot_index <= last_index()`.
    snapshot_index: u64,
    /// Term of the entry at `snapshot_index` (0 without a snapshot).
    snapshot_term: u64,
    /// Sync policy, sync counter and poisoning.
    durable: Durability,
    /// Holds an exclusive lock on the directory's `LOCK` file while open, so
    /// two processes can never append to the same WAL.
    _lock: File,
}

/// Name of the lock file inside a WAL directory.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";

/// Takes the exclusive lock of the WAL in `dir`, or says who holds it.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(WalError::Locked { path }),
        Err(fs::TryLockError::Error(e)) => Err(WalError::io("lock", &path, e)),
    }
}

impl Wal {
    /// Opens the WAL in `dir`, creating it if the directory is missing or
    /// empty, and returns what is durable.
    ///
    /// The returned hard state's commit is clamped into
    /// `[snapshot index, last index]`; the entries are all entries after the
    /// snapshot, consecutive from `snapshot index + 1`.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, PersistedState), WalError> {
        if opts.cluster_id.len() > meta::MAX_CLUSTER_ID_LEN {
            return Err(WalError::InvalidArgument(format!(
                "cluster id is {} bytes, at most {} allowed",
                opts.cluster_id.len(),
                meta::MAX_CLUSTER_ID_LEN
            )));
        }
        let id = Identity {
            cluster_id: opts.cluster_id,
            node_id: opts.node_id,
        };
        let mut durable = Durability::new(opts.sync);
        fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        let lock = lock_dir(dir)?;
        let listing = Listing::read(dir, &mut durable)?;

        let meta_path = dir.join(meta::FILE_NAME);
        if listing.has_meta {
            id.check_file(&meta_path)?;
        } else if listing.is_empty() {
            id.create_file(dir, &mut durable)?;
        } else {
            return Err(WalError::corrupt(
                meta_path,
                0,
                "meta file missing from a non-empty WAL directory",
            ));
        }

        let snapshot = if listing.has_snapshot {
            Some(snapshot_file::read(&dir.join(snapshot_file::FILE_NAME))?)
        } else {
            None
        };
        let (snapshot_index, snapshot_term) = snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.metadata.index, s.metadata.term));

        let (mut segments, mut entries) =
            load_segments(dir, &listing.segments, &id, snapshot_index, &mut durable)?;
        let log_is_empty = snapshot.is_none() && entries.is_empty();
        let hard_state = open_hard_state(dir, listing.has_hard_state, log_is_empty, &mut durable)?;

        // A fresh WAL, or one whose restart after a snapshot was interrupted.
        let active = match segments.last() {
            Some(s) => s.open_for_write()?,
            None => {
                let (seg, file) = Segment::create(dir, snapshot_index + 1, &id, &mut durable)?;
                segments.push(seg);
                file
            }
        };

        // Finish what an interrupted save_snapshot may have left: a log that
        // ends before the snapshot, or that disagrees with it at its index.
        let last = segments.last().map_or(0, |s| s.next_index() - 1);
        let term_at_snapshot = entries
            .iter()
            .find(|e| e.index == snapshot_index)
            .map(|e| e.term);
        let restart = last < snapshot_index || term_at_snapshot.is_some_and(|t| t != snapshot_term);

        let mut wal = Wal {
            dir: dir.to_path_buf(),
            id,
            segment_bytes: opts.segment_bytes,
            segments,
            active,
            hard_state,
            snapshot_index,
            snapshot_term,
            durable,
            _lock: lock,
        };
        wal.compact(restart)?;
        if restart {
            entries.clear();
        } else {
            entries.retain(|e| e.index > snapshot_index);
        }

        let last = wal.last_index();
        wal.hard_state.clamp_commit(snapshot_index, last);
        let state = PersistedState {
            hard_state: wal.hard_state.state(),
            snapshot,
            entries,
        };
        Ok((wal, state))
    }

    /// Persists one Ready's worth: `entries`, then `hard_state`.
    ///
    /// `entries` must be consecutive and start at or below `last_index() + 1`
    /// (and above the snapshot index); when they start at or below
    /// `last_index()`, the log tail from that index is replaced first.
    ///
    /// When syncing is on: non-empty `entries` cost one `fdatasync` for the
    /// whole batch (more only if a segment rolls, or a tail is replaced); a
    /// term or vote change makes the hard state file durable too; a
    /// commit-only change is written but not synced (see the module docs).
    pub fn save(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        self.durable.check()?;
        self.check_entries(entries)?;
        let result = self.save_checked(hard_state, entries);
        self.poison_on_failure(result)
    }

    /// Durably replaces the snapshot, then compacts the log: segments wholly
    /// at or below the snapshot index are removed. If the snapshot reaches
    /// `last_index()`, or disagrees with the log about the term at its index,
    /// the whole log is dropped and restarts after it. Entries at or below
    /// the snapshot index are never returned by [`Wal::open`] again.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        self.durable.check()?;
        let meta = &snapshot.metadata;
        if meta.index < self.snapshot_index {
            return Err(WalError::InvalidArgument(format!(
                "snapshot at {} is older than the current one at {}",
                meta.index, self.snapshot_index
            )));
        }
        let result = self.save_snapshot_checked(snapshot);
        self.poison_on_failure(result)
    }

    /// Index of the first entry held (`snapshot index + 1`, also when empty).
    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    /// Index of the last entry held (the snapshot index when empty).
    pub fn last_index(&self) -> u64 {
        self.last_segment().next_index() - 1
    }

    /// The current hard state, as last saved (commit clamped on open).
    pub fn hard_state(&self) -> HardState {
        self.hard_state.state()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of fsync/fdatasync calls issued so far, on files and
    /// directories (opening counts too). For tests of group commit.
    pub fn sync_count(&self) -> u64 {
        self.durable.count()
    }

    /// Test hook: the next sync fails as if the disk returned `EIO` (also
    /// when syncing is off), poisoning the WAL.
    #[doc(hidden)]
    pub fn inject_sync_failure(&mut self) {
        self.durable.inject_failure();
    }

    fn last_segment(&self) -> &Segment {
        self.segments.last().expect("a WAL always has a segment")
    }

    fn poison_on_failure(&mut self, result: Result<(), WalError>) -> Result<(), WalError> {
        if let Err(e) = &result {
            self.durable.poison_after(e);
        }
        result
    }

    fn check_entries(&self, entries: &[Entry]) -> Result<(), WalError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.snapshot_index {
            return Err(WalError::InvalidArgument(format!(
                "entries start at {}, at or below the snapshot index {}",
                first.index, self.snapshot_index
            )));
        }
        if first.index > self.last_index() + 1 {
            return Err(WalError::InvalidArgument(format!(
                "entries start at {}, beyond last index {} + 1",
                first.index,
                self.last_index()
            )));
        }
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index + 1 {
                return Err(WalError::InvalidArgument(format!(
                    "entries are not consecutive: {} follows {}",
                    pair[1].index, pair[0].index
                )));
            }
        }
        Ok(())
    }

    fn save_checked(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        if let Some(first) = entries.first() {
            if first.index <= self.last_index() {
                self.truncate_from(first.index)?;
            }
            self.append(entries)?;
        }
        if let Some(hs) = hard_state {
            self.hard_state.save(hs, &mut self.durable)?;
        }
        Ok(())
    }

    /// Appends `entries` (starting at `last_index() + 1`), rolling segments
    /// as they fill, and syncs once at the end.
    fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        let mut batch = Vec::new();
        for e in entries {
            let seg = self.last_segment();
            let full = seg.size + batch.len() as u64 >= self.segment_bytes;
            if full && (!seg.offsets.is_empty() || !batch.is_empty()) {
                self.write_batch(&mut batch)?;
                self.roll()?;
            }
            let seg = self
                .segments
                .last_mut()
                .expect("a WAL always has a segment");
            seg.offsets.push(seg.size + batch.len() as u64);
            let mut payload = Writer::with_capacity(e.size());
            e.encode_into(&mut payload);
            record::encode(payload.as_slice(), &mut batch);
        }
        self.write_batch(&mut batch)
    }

    /// Writes `batch` at the end of the active segment and syncs it.
    fn write_batch(&mut self, batch: &mut Vec<u8>) -> Result<(), WalError> {
        use std::os::unix::fs::FileExt;
        if batch.is_empty() {
            return Ok(());
        }
        let seg = self
            .segments
            .last_mut()
            .expect("a WAL always has a segment");
        self.active
            .write_all_at(batch, seg.size)
            .map_err(|e| WalError::io("write", &seg.path, e))?;
        seg.size += batch.len() as u64;
        batch.clear();
        self.durable.sync_data(&self.active, &seg.path)
    }

    /// Starts a new, empty segment after the current one, which must already
    /// be synced (so a crash can never leave a gap between the two).
    fn roll(&mut self) -> Result<(), WalError> {
        let next = self.last_segment().next_index();
        let (seg, file) = Segment::create(&self.dir, next, &self.id, &mut self.durable)?;
        self.segments.push(seg);
        self.active = file;
        Ok(())
    }

    /// Physically removes entries `index..` so the file ends at `index - 1`.
    ///
    /// Later segments go first, newest first, so a crash never leaves a gap;
    /// the truncation is synced before anything new is written, so old and
    /// new records can never mix after a crash.
    fn truncate_from(&mut self, index: u64) -> Result<(), WalError> {
        if self.last_segment().first_index > index {
            while self.last_segment().first_index > index {
                debug_assert!(
                    self.segments.len() > 1,
                    "first segment starts at or below the snapshot"
                );
                let seg = self.segments.pop().expect("a WAL always has a segment");
                self.remove_segment_file(&seg.path)?;
            }
            self.active = self.last_segment().open_for_write()?;
        }
        let seg = self
            .segments
            .last_mut()
            .expect("a WAL always has a segment");
        let keep = (index - seg.first_index) as usize;
        let end = seg.offsets[keep];
        self.active
            .set_len(end)
            .map_err(|e| WalError::io("truncate", &seg.path, e))?;
        seg.offsets.truncate(keep);
        seg.size = end;
        self.durable.sync_data(&self.active, &seg.path)
    }

    fn save_snapshot_checked(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        let meta = &snapshot.metadata;
        let restart = meta.index >= self.last_index() || self.term(meta.index)? != meta.term;
        snapshot_file::write(&self.dir, snapshot, &mut self.durable)?;
        self.snapshot_index = meta.index;
        self.snapshot_term = meta.term;
        self.compact(restart)
    }

    /// Term of the entry at `index`, which must be the snapshot index or held.
    fn term(&self, index: u64) -> Result<u64, WalError> {
        if index == self.snapshot_index {
            return Ok(self.snapshot_term);
        }
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.first_index <= index)
            .expect("the first segment starts at or below the snapshot");
        Ok(seg.read_entry(index)?.term)
    }

    /// Drops what the snapshot at `snapshot_index` makes redundant.
    ///
    /// With `restart`, every segment goes (newest first, so an interrupted
    /// restart still leaves a log that begins where it did) and an empty one
    /// starts after the snapshot. Otherwise only segments wholly at or below
    /// the snapshot index go (oldest first).
    fn compact(&mut self, restart: bool) -> Result<(), WalError> {
        if restart {
            // The in-memory list keeps its segments until the new one exists,
            // so a failure halfway (which poisons the WAL) never leaves it empty.
            for i in (0..self.segments.len()).rev() {
                let path = self.segments[i].path.clone();
                self.remove_segment_file(&path)?;
            }
            let (seg, file) = Segment::create(
                &self.dir,
                self.snapshot_index + 1,
                &self.id,
                &mut self.durable,
            )?;
            self.segments = vec![seg];
            self.active = file;
        } else {
            let keep_from = self
                .segments
                .iter()
                .rposition(|s| s.first_index <= self.snapshot_index + 1)
                .unwrap_or(0);
            let removed: Vec<Segment> = self.segments.drain(..keep_from).collect();
            for seg in &removed {
                self.remove_segment_file(&seg.path)?;
            }
        }
        Ok(())
    }

    /// Removes a segment file and syncs the directory at once: removals must
    /// reach the disk in the order made, or a crash could leave a gap.
    fn remove_segment_file(&mut self, path: &Path) -> Result<(), WalError> {
        durable::remove_file(path)?;
        self.durable.sync_dir(&self.dir)
    }
}

/// Opens the hard state file, or creates it when an interrupted
/// initialization left none (only possible while the log is still empty).
fn open_hard_state(
    dir: &Path,
    exists: bool,
    log_is_empty: bool,
    durable: &mut Durability,
) -> Result<HardStateFile, WalError> {
    let path = dir.join(hard_state::FILE_NAME);
    if exists {
        HardStateFile::open(path, durable)
    } else if log_is_empty {
        HardStateFile::create(dir, durable)
    } else {
        Err(WalError::corrupt(
            path,
            0,
            "hard state file missing from a WAL that holds entries",
        ))
    }
}

/// Loads every segment in `firsts` (sorted), checking that the log starts at
/// or before `snapshot_index + 1` and that indexes run on from one segment to
/// the next, and truncating a torn tail of the last one.
fn load_segments(
    dir: &Path,
    firsts: &[u64],
    id: &Identity,
    snapshot_index: u64,
    durable: &mut Durability,
) -> Result<(Vec<Segment>, Vec<Entry>), WalError> {
    let mut segments: Vec<Segment> = Vec::with_capacity(firsts.len());
    let mut entries = Vec::new();
    for (i, &first) in firsts.iter().enumerate() {
        let path = dir.join(segment::file_name(first));
        let expected = segments
            .last()
            .map_or(snapshot_index + 1, Segment::next_index);
        let gap = match segments.last() {
            None => first > expected,
            Some(_) => first != expected,
        };
        if gap {
            return Err(WalError::corrupt(
                &path,
                0,
                format!(
                    "segment starts at entry {first}, expected {expected}: {}",
                    if first > expected {
                        "entries are missing"
                    } else {
                        "segments overlap"
                    }
                ),
            ));
        }
        let is_last = i + 1 == firsts.len();
        let loaded = Segment::load(path, first, id, is_last)?;
        if let Some(at) = loaded.torn_at {
            // An append that was never acknowledged: cut it off for good.
            let seg = &loaded.segment;
            let file = seg.open_for_write()?;
            file.set_len(at)
                .map_err(|e| WalError::io("truncate", &seg.path, e))?;
            durable.sync_data(&file, &seg.path)?;
        }
        segments.push(loaded.segment);
        entries.extend(loaded.entries);
    }
    Ok((segments, entries))
}
