//! [`Wal`]: the writer of a WAL directory (see the crate docs for the layout,
//! the durability rules and recovery).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bedrock_raft::{Entry, HardState, Snapshot};
use bedrock_raft::{EntryType, RaftState, Storage};

use crate::durable::{self, Durability};
use crate::error::WalError;
use crate::hard_state::{self, HardStateFile};
use crate::index::{write_index, LogIndex, SegIndex, WalStorage};
use crate::listing::Listing;
use crate::meta::{self, Identity};
use crate::record::{self, BatchHeader, BATCH_HEADER_LEN};
use crate::segment::{self, ScanEnd};
use crate::snapshot_file;
use crate::vfs::{Disk, DiskFile, DiskLock, Vfs, VfsFile};

/// Default size past which a segment is closed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// Default bytes of recent entries kept decoded in memory.
pub const DEFAULT_CACHE_BYTES: u64 = 8 << 20;

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
    /// many bytes (a single large entry may exceed it). At most 1 GiB.
    pub segment_bytes: u64,
    /// Bytes of the most recent entries kept decoded in memory; older ones
    /// are read back from the segment files when needed.
    pub cache_bytes: u64,
    /// The hard state's commit is a log index (the Raft log). Then a commit
    /// above the last intact entry on open proves that entries which had been
    /// synced are damaged or missing, and open refuses instead of truncating.
    /// Off for logs that store something else there.
    pub commit_is_index: bool,
}

impl WalOptions {
    /// Options for `node_id` of `cluster_id`: syncing, 64 MiB segments,
    /// 8 MiB of cached entries, the commit is an index.
    pub fn new(cluster_id: impl Into<String>, node_id: u64) -> Self {
        WalOptions {
            cluster_id: cluster_id.into(),
            node_id,
            sync: true,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            commit_is_index: true,
        }
    }
}

/// An open write-ahead log. One owner writes it; readers go through
/// [`Wal::storage`].
#[derive(Debug)]
pub struct Wal {
    disk: Disk,
    /// The WAL directory.
    dir: PathBuf,
    /// Who this WAL belongs to (checked against every file on open).
    id: Identity,
    /// Roll threshold, see [`WalOptions::segment_bytes`].
    segment_bytes: u64,
    /// Segments, entry locations, cache and snapshot, shared with readers.
    index: Arc<RwLock<LogIndex>>,
    /// Sequence number of the next batch.
    next_seq: u64,
    /// Set when a tail was replaced inside the last segment: the replacing
    /// batch must land there before any roll, or segments would overlap.
    write_here: bool,
    /// The hard state file and the current hard state.
    hard_state: HardStateFile,
    /// Sync policy, sync counter and poisoning.
    durable: Durability,
    /// Held while open, so two owners can never append to the same WAL.
    _lock: DiskLock,
}

/// A snapshot file written and synced under a temporary name by
/// [`SnapshotStager::stage`], not yet in place: [`Wal::install_snapshot`]
/// renames it over the snapshot file, [`Wal::discard_staged`] removes it.
#[derive(Debug)]
pub struct StagedSnapshot {
    snapshot: Arc<Snapshot>,
    path: PathBuf,
}

/// Writes a snapshot file for a [`Wal`] without holding it: the slow part of
/// a compaction (a large state's bytes and their fsync, growing with the state)
/// runs while appends go on; only the rename and the compaction need the WAL.
#[derive(Debug)]
pub struct SnapshotStager {
    disk: Disk,
    dir: PathBuf,
    durable: Durability,
}

impl SnapshotStager {
    /// Writes and syncs `snapshot` under its staged name. A failure (a
    /// failed fsync too) changes nothing in the WAL: the caller poisons it
    /// ([`Wal::poison`]).
    pub fn stage(mut self, snapshot: Arc<Snapshot>) -> Result<StagedSnapshot, WalError> {
        let path = self
            .dir
            .join(snapshot_file::staged_name(snapshot.metadata.index));
        let bytes = snapshot_file::encode(&snapshot);
        durable::write_synced(&self.disk, &path, &bytes, &mut self.durable)?;
        Ok(StagedSnapshot { snapshot, path })
    }
}

/// A segment found on open, before the hard state is known.
struct Loaded {
    torn: Option<(PathBuf, u64, String)>,
    conf_entries: Vec<Entry>,
}

impl Wal {
    /// Opens the WAL in `dir` on `disk`, creating it if the directory is
    /// missing or empty. Only an index of the log is loaded (plus the most
    /// recent entries, up to `cache_bytes`); entries are read back from the
    /// segments on demand.
    ///
    /// The hard state's commit is clamped into `[snapshot index, last index]`.
    pub fn open(disk: Disk, dir: &Path, opts: WalOptions) -> Result<Wal, WalError> {
        if opts.cluster_id.len() > meta::MAX_CLUSTER_ID_LEN {
            return Err(WalError::InvalidArgument(format!(
                "cluster id is {} bytes, at most {} allowed",
                opts.cluster_id.len(),
                meta::MAX_CLUSTER_ID_LEN
            )));
        }
        if opts.segment_bytes > 1 << 30 {
            return Err(WalError::InvalidArgument(
                "segment_bytes must be at most 1 GiB".into(),
            ));
        }
        let id = Identity {
            cluster_id: opts.cluster_id.clone(),
            node_id: opts.node_id,
        };
        let mut durable = Durability::new(opts.sync);
        disk.create_dir_all(dir)
            .map_err(|e| WalError::io("create directory", dir, e))?;
        let lock = disk
            .try_lock_dir(dir)
            .map_err(|e| WalError::io("lock", dir, e))?
            .ok_or_else(|| WalError::Locked {
                path: dir.join(crate::vfs::LOCK_FILE_NAME),
            })?;
        let listing = Listing::read(&disk, dir, &mut durable)?;

        let meta_path = dir.join(meta::FILE_NAME);
        if listing.has_meta {
            id.check_file(&disk, &meta_path)?;
        } else if listing.is_empty() {
            id.create_file(&disk, dir, &mut durable)?;
        } else {
            return Err(WalError::corrupt(
                meta_path,
                0,
                "meta file missing from a non-empty WAL directory",
            ));
        }

        let snapshot = Arc::new(if listing.has_snapshot {
            snapshot_file::read(&disk, &dir.join(snapshot_file::FILE_NAME))?
        } else {
            Snapshot::default()
        });
        let si = snapshot.metadata.index;

        let (index, next_seq, loaded) = load_segments(
            &disk,
            dir,
            &listing.segments,
            &id,
            snapshot.clone(),
            &opts,
            &mut durable,
        )?;
        let index = Arc::new(RwLock::new(index));
        let log_is_empty = si == 0 && write_index(&index).last_stored() == 0;
        let hard_state = open_hard_state(
            &disk,
            dir,
            listing.has_hard_state,
            log_is_empty,
            &mut durable,
        )?;

        // Evidence against truncation: with the commit a log index, a commit
        // above the last intact entry means synced entries are damaged or
        // missing (entries are always synced before the hard state naming
        // them is written).
        let commit = hard_state.state().commit;
        let last = write_index(&index).last_index();
        if opts.commit_is_index && commit > last {
            let (path, offset, why) = match &loaded.torn {
                Some((path, at, reason)) => (path.clone(), *at, reason.clone()),
                None => {
                    let ix = write_index(&index);
                    let seg = ix.last_segment();
                    (seg.path.clone(), seg.size, "the log ends here".to_string())
                }
            };
            return Err(WalError::corrupt(
                path,
                offset,
                format!(
                    "{why}, but the hard state records commit index {commit}, above the last \
                     intact entry {last}: committed entries had been synced there, so this is \
                     corruption, not a torn write"
                ),
            ));
        }
        {
            // A torn write, which was never acknowledged, or zeros allocated
            // ahead: cut off, so the file ends where the log does.
            let mut ix = write_index(&index);
            let seg = ix.last_segment_mut();
            if seg.allocated > seg.size {
                cut_to(&seg.file, &seg.path, seg.size, &mut durable)?;
                seg.allocated = seg.size;
            }
        }

        let mut wal = Wal {
            disk,
            dir: dir.to_path_buf(),
            id,
            segment_bytes: opts.segment_bytes,
            index,
            next_seq,
            write_here: false,
            hard_state,
            durable,
            _lock: lock,
        };

        // Finish what an interrupted save_snapshot may have left: a log that
        // ends before the snapshot, or that disagrees with it at its index.
        let restart = {
            let ix = write_index(&wal.index);
            ix.last_stored() < si
                || ix
                    .stored_term(si)
                    .is_some_and(|t| t != snapshot.metadata.term)
        };
        wal.compact(restart)?;
        let last = wal.last_index();
        wal.hard_state.clamp_commit(si, last);
        let mut conf_entries = loaded.conf_entries;
        if restart {
            conf_entries.clear();
        }
        conf_entries.retain(|e| e.index > si);
        write_index(&wal.index).initial = RaftState {
            hard_state: wal.hard_state.state(),
            conf_state: snapshot.metadata.conf_state.clone(),
            conf_entries,
        };
        Ok(wal)
    }

    /// The read-only view of this log the Raft core runs on.
    pub fn storage(&self) -> WalStorage {
        WalStorage::new(self.index.clone())
    }

    /// Persists one Ready's worth: `entries`, then `hard_state`.
    ///
    /// `entries` must be consecutive and start at or below `last_index() + 1`
    /// (and above the snapshot index); when they start at or below
    /// `last_index()`, they replace the log from that index (written as a new
    /// batch: synced bytes are never overwritten).
    ///
    /// When syncing is on: non-empty `entries` cost one `fdatasync` for the
    /// whole batch (more only if a segment rolls); a term or vote change
    /// makes the hard state file durable too; a commit-only change is written
    /// but not synced (see the crate docs).
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
    /// the whole log is dropped and restarts after it.
    pub fn save_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Result<(), WalError> {
        self.durable.check()?;
        let (si, st) = (snapshot.metadata.index, snapshot.metadata.term);
        let current = self.snapshot();
        if si < current.metadata.index {
            return Err(WalError::InvalidArgument(format!(
                "snapshot at {si} is older than the current one at {}",
                current.metadata.index
            )));
        }
        if si == current.metadata.index && st == current.metadata.term && si > 0 {
            return Ok(());
        }
        let result = self.save_snapshot_checked(snapshot);
        self.poison_on_failure(result)
    }

    /// What writing a snapshot file for this WAL needs, to write it without
    /// holding the WAL (see [`SnapshotStager`]); fails once poisoned.
    pub fn snapshot_stager(&self) -> Result<SnapshotStager, WalError> {
        self.durable.check()?;
        Ok(SnapshotStager {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            durable: self.durable.detached(),
        })
    }

    /// Puts a staged snapshot in place and drops what it makes redundant, as
    /// [`Wal::save_snapshot`] does; refuses (removing the staged file) one
    /// not newer than the current snapshot.
    pub fn install_snapshot(&mut self, staged: StagedSnapshot) -> Result<(), WalError> {
        self.durable.check()?;
        let current = self.snapshot().metadata.index;
        if staged.snapshot.metadata.index <= current {
            let index = staged.snapshot.metadata.index;
            self.discard_staged(staged)?;
            return Err(WalError::InvalidArgument(format!(
                "staged snapshot at {index} is not newer than the current one at {current}"
            )));
        }
        let result = self.install_checked(staged);
        self.poison_on_failure(result)
    }

    /// Removes a staged snapshot that will not be installed.
    pub fn discard_staged(&self, staged: StagedSnapshot) -> Result<(), WalError> {
        durable::remove_file(&self.disk, &staged.path)
    }

    /// Poisons this WAL for a failure met outside it (staging a snapshot).
    pub fn poison(&mut self, err: &WalError) {
        self.durable.poison_after(err);
    }

    /// Index of the first entry held (`snapshot index + 1`, also when empty).
    pub fn first_index(&self) -> u64 {
        write_index(&self.index).first_index()
    }

    /// Index of the last entry held (the snapshot index when empty).
    pub fn last_index(&self) -> u64 {
        write_index(&self.index).last_index()
    }

    /// The latest snapshot (the default one at index 0 when none was saved).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        write_index(&self.index).snapshot.clone()
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
        self.durable.counter().load(Ordering::Relaxed)
    }

    /// The sync counter, readable without this WAL (and its lock).
    pub fn sync_counter(&self) -> Arc<AtomicU64> {
        self.durable.counter()
    }

    /// Test hook: the next sync fails as if the disk returned `EIO` (also
    /// when syncing is off), poisoning the WAL.
    #[doc(hidden)]
    pub fn inject_sync_failure(&mut self) {
        self.durable.inject_failure();
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
        let si = write_index(&self.index).snapshot_index();
        if first.index <= si {
            return Err(WalError::InvalidArgument(format!(
                "entries start at {}, at or below the snapshot index {si}",
                first.index
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

    /// Appends `entries` (starting at the last segment's next index), rolling
    /// segments as they fill; one batch and one sync per segment touched.
    /// Records are encoded straight into the batch buffer, which is written
    /// as is and then kept in the cache (no copy).
    fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        let (mut size, mut has_entries) = {
            let ix = write_index(&self.index);
            let seg = ix.last_segment();
            (seg.size, !seg.offsets.is_empty())
        };
        let mut buf = new_batch_buffer(entries);
        let mut locs: Vec<(u64, u32)> = Vec::with_capacity(entries.len());
        let mut start = 0;
        for (i, e) in entries.iter().enumerate() {
            let full = size + buf.len() as u64 >= self.segment_bytes;
            if full && i > start {
                self.write_batch(&entries[start..i], buf, &locs)?;
                buf = new_batch_buffer(&entries[i..]);
                locs.clear();
                start = i;
                self.roll()?;
                (size, has_entries) = (write_index(&self.index).last_segment().size, false);
            } else if full && has_entries && !self.write_here {
                self.roll()?;
                (size, has_entries) = (write_index(&self.index).last_segment().size, false);
            }
            let at = buf.len();
            buf = record::encode_entry(e, buf);
            locs.push((at as u64, (buf.len() - at) as u32));
        }
        self.write_batch(&entries[start..], buf, &locs)
    }

    /// Writes `entries` (their records in `buf` after a header placeholder,
    /// located by `locs`) as one batch at the end of the last segment, syncs
    /// it, then indexes it and keeps its bytes in the cache.
    fn write_batch(
        &mut self,
        entries: &[Entry],
        mut buf: Vec<u8>,
        locs: &[(u64, u32)],
    ) -> Result<(), WalError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let header = BatchHeader {
            seq: self.next_seq,
            first_index: first.index,
            count: entries.len() as u32,
            bytes: (buf.len() - BATCH_HEADER_LEN) as u64,
        };
        record::write_batch_header(&header, &mut buf[..BATCH_HEADER_LEN]);
        let (file, path, at, allocated, segment) = {
            let ix = write_index(&self.index);
            let seg = ix.last_segment();
            (
                seg.file.clone(),
                seg.path.clone(),
                seg.size,
                seg.allocated,
                seg.first_index,
            )
        };
        let end = at + buf.len() as u64;
        file.write_at(&buf, at)
            .map_err(|e| WalError::io("write", &path, e))?;
        let ahead = allocate_ahead(end, buf.len() as u64, self.segment_bytes);
        let allocated = if end > allocated && ahead > end && self.durable.enabled() {
            file.write_at(&vec![0; (ahead - end) as usize], end)
                .map_err(|e| WalError::io("allocate", &path, e))?;
            ahead
        } else {
            allocated.max(end)
        };
        self.durable.sync_data(&file, &path)?;
        let mut ix = write_index(&self.index);
        let seg = ix.last_segment_mut();
        seg.size = end;
        seg.allocated = allocated;
        for (e, (off, len)) in entries.iter().zip(locs) {
            ix.push(e.index, e.term, at + off, *len);
        }
        ix.cache_batch(segment, at, buf);
        drop(ix);
        self.next_seq += 1;
        self.write_here = false;
        Ok(())
    }

    /// Starts a new, empty segment after the last one, which must already be
    /// synced (so a crash can never leave a gap between the two). The space
    /// allocated ahead in the last one is cut off first, durably: only the
    /// last segment may end in zeros (elsewhere they are damage).
    fn roll(&mut self) -> Result<(), WalError> {
        let (file, path, size, allocated) = {
            let ix = write_index(&self.index);
            let seg = ix.last_segment();
            (seg.file.clone(), seg.path.clone(), seg.size, seg.allocated)
        };
        if allocated > size {
            cut_to(&file, &path, size, &mut self.durable)?;
            write_index(&self.index).last_segment_mut().allocated = size;
        }
        let next = write_index(&self.index).last_segment().next_index();
        let seg = self.create_segment(next)?;
        write_index(&self.index).segments.push(seg);
        Ok(())
    }

    fn create_segment(&mut self, first_index: u64) -> Result<SegIndex, WalError> {
        let name = segment::file_name(first_index);
        let header = segment::encode_header(first_index, self.next_seq, &self.id);
        let file = durable::replace_file(&self.disk, &self.dir, &name, &header, &mut self.durable)?;
        Ok(SegIndex {
            first_index,
            path: self.dir.join(name),
            file: Arc::new(file),
            offsets: Vec::new(),
            lens: Vec::new(),
            size: header.len() as u64,
            allocated: header.len() as u64,
        })
    }

    /// Makes `index..` replaceable: later segments go (newest first, each
    /// removal made durable at once, so a crash never leaves a gap); in the
    /// segment holding `index` the entries are forgotten, and the next batch
    /// written there replaces them.
    fn truncate_from(&mut self, index: u64) -> Result<(), WalError> {
        loop {
            let (first, path, count) = {
                let ix = write_index(&self.index);
                let seg = ix.last_segment();
                (seg.first_index, seg.path.clone(), ix.segments.len())
            };
            if first <= index || count == 1 {
                break;
            }
            self.remove_segment_file(&path)?;
            let mut ix = write_index(&self.index);
            ix.segments.pop();
            ix.forget_segment(first);
        }
        write_index(&self.index).truncate_entries(index);
        self.write_here = true;
        Ok(())
    }

    fn save_snapshot_checked(&mut self, snapshot: Arc<Snapshot>) -> Result<(), WalError> {
        let (si, st) = (snapshot.metadata.index, snapshot.metadata.term);
        let restart = self.restarts_log(si, st);
        snapshot_file::write(&self.disk, &self.dir, &snapshot, &mut self.durable)?;
        write_index(&self.index).snapshot = snapshot;
        self.compact(restart)
    }

    /// Whether a snapshot at (`si`, `st`) replaces the whole log (it is past
    /// the log's end or disagrees with it) rather than only its head.
    fn restarts_log(&self, si: u64, st: u64) -> bool {
        let ix = write_index(&self.index);
        si >= ix.last_stored() || ix.stored_term(si) != Some(st)
    }

    fn install_checked(&mut self, staged: StagedSnapshot) -> Result<(), WalError> {
        let (si, st) = (
            staged.snapshot.metadata.index,
            staged.snapshot.metadata.term,
        );
        let restart = self.restarts_log(si, st);
        durable::rename_synced(
            &self.disk,
            &self.dir,
            &staged.path,
            snapshot_file::FILE_NAME,
            &mut self.durable,
        )?;
        write_index(&self.index).snapshot = staged.snapshot;
        self.compact(restart)
    }

    /// Drops what the snapshot makes redundant.
    ///
    /// With `restart`, every segment goes (newest first, so an interrupted
    /// restart still leaves a log that begins where it did) and an empty one
    /// starts after the snapshot. Otherwise only segments wholly at or below
    /// the snapshot index go (oldest first).
    fn compact(&mut self, restart: bool) -> Result<(), WalError> {
        let si = write_index(&self.index).snapshot_index();
        if restart {
            let paths: Vec<PathBuf> = write_index(&self.index)
                .segments
                .iter()
                .map(|s| s.path.clone())
                .collect();
            // The index keeps its segments until the new one exists, so a
            // failure halfway (which poisons the WAL) never leaves it empty.
            for path in paths.iter().rev() {
                self.remove_segment_file(path)?;
            }
            let seg = self.create_segment(si + 1)?;
            write_index(&self.index).restart(seg);
            self.write_here = false;
        } else {
            let doomed: Vec<PathBuf> = {
                let ix = write_index(&self.index);
                let keep_from = ix
                    .segments
                    .iter()
                    .rposition(|s| s.first_index <= si + 1)
                    .unwrap_or(0);
                ix.segments[..keep_from]
                    .iter()
                    .map(|s| s.path.clone())
                    .collect()
            };
            for path in &doomed {
                self.remove_segment_file(path)?;
            }
            let mut ix = write_index(&self.index);
            let gone: Vec<u64> = ix
                .segments
                .drain(..doomed.len())
                .map(|s| s.first_index)
                .collect();
            for segment in gone {
                ix.forget_segment(segment);
            }
            let first = ix.segments[0].first_index;
            ix.trim_below(first);
        }
        Ok(())
    }

    /// Removes a segment file and syncs the directory at once: removals must
    /// reach the disk in the order made, or a crash could leave a gap.
    fn remove_segment_file(&mut self, path: &Path) -> Result<(), WalError> {
        durable::remove_file(&self.disk, path)?;
        self.durable.sync_dir(&self.disk, &self.dir)
    }

    /// Every entry held, read back in order (for logs that replay all of
    /// themselves on start: the data plane's).
    pub fn read_all(&self) -> Vec<Entry> {
        let st = self.storage();
        let (lo, hi) = (st.first_index(), st.last_index() + 1);
        if lo >= hi {
            return Vec::new();
        }
        st.entries(lo, hi, u64::MAX).unwrap_or_default()
    }
}

/// Opens the hard state file, or creates it when an interrupted
/// initialization left none (only possible while the log is still empty).
fn open_hard_state(
    disk: &Disk,
    dir: &Path,
    exists: bool,
    log_is_empty: bool,
    durable: &mut Durability,
) -> Result<HardStateFile, WalError> {
    let path = dir.join(hard_state::FILE_NAME);
    if exists {
        HardStateFile::open(disk, path, durable)
    } else if log_is_empty {
        HardStateFile::create(disk, dir, durable)
    } else {
        Err(WalError::corrupt(
            path,
            0,
            "hard state file missing from a WAL that holds entries",
        ))
    }
}

/// Scans every segment in `firsts` (sorted) into an index, checking that the
/// log starts at or before `snapshot index + 1`, that indexes and batch
/// sequence numbers run on from one segment to the next, and locating a torn
/// last write (not yet cut off: the caller checks the hard state first).
fn load_segments(
    disk: &Disk,
    dir: &Path,
    firsts: &[u64],
    id: &Identity,
    snapshot: Arc<Snapshot>,
    opts: &WalOptions,
    durable: &mut Durability,
) -> Result<(LogIndex, u64, Loaded), WalError> {
    let si = snapshot.metadata.index;
    let mut index: Option<LogIndex> = None;
    let mut next_seq: Option<u64> = None;
    let mut loaded = Loaded {
        torn: None,
        conf_entries: Vec::new(),
    };
    for (i, &first) in firsts.iter().enumerate() {
        let path = dir.join(segment::file_name(first));
        let expected = index
            .as_ref()
            .map_or(si + 1, |ix| ix.last_segment().next_index());
        let gap = match index {
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
        let buf = durable::read_file(disk, &path)?;
        let (header_len, first_seq) = segment::decode_header(&path, &buf, first, id)?;
        if let Some(expect) = next_seq {
            if first_seq < expect {
                return Err(WalError::corrupt(
                    &path,
                    0,
                    format!(
                        "segment's first batch is number {first_seq}, expected {expect} or \
                         later: it is older than the previous segment"
                    ),
                ));
            }
        }
        let file = disk
            .open(&path, crate::vfs::OpenMode::WRITE)
            .map_err(|e| WalError::io("open", &path, e))?;
        let seg = SegIndex {
            first_index: first,
            path: path.clone(),
            file: Arc::new(file),
            offsets: Vec::new(),
            lens: Vec::new(),
            size: header_len as u64,
            allocated: buf.len() as u64,
        };
        match index.as_mut() {
            None => index = Some(LogIndex::new(snapshot.clone(), seg, opts.cache_bytes)),
            Some(ix) => ix.segments.push(seg),
        }
        let is_last = i + 1 == firsts.len();
        let ix = index.as_mut().expect("set above");
        let conf = &mut loaded.conf_entries;
        let scanned = segment::scan(
            &path,
            &buf,
            header_len,
            first,
            first_seq,
            is_last,
            |batch| {
                let start = batch.header.first_index;
                if start < ix.last_segment().next_index() {
                    // A later write replaced the tail from `start`.
                    ix.truncate_entries(start);
                    conf.retain(|e| e.index < start);
                }
                for (entry, offset, len) in batch.entries {
                    ix.push(entry.index, entry.term, offset, len);
                    if entry.entry_type == EntryType::ConfChange {
                        conf.push(entry);
                    }
                }
                if is_last {
                    // The most recent writes are the likeliest to be read again.
                    let (at, end) = (batch.at as usize, batch.end as usize);
                    ix.cache_batch(first, batch.at, buf[at..end].to_vec());
                }
                Ok(())
            },
        )?;
        ix.last_segment_mut().size = scanned.size;
        next_seq = Some(scanned.next_seq);
        if let ScanEnd::Torn { at, reason } = scanned.end {
            loaded.torn = Some((path, at, reason));
        }
    }
    let index = match index {
        Some(ix) => ix,
        None => {
            // A fresh WAL, or one whose restart after a snapshot was
            // interrupted: an empty segment after the snapshot.
            let name = segment::file_name(si + 1);
            let header = segment::encode_header(si + 1, 1, id);
            let file = durable::replace_file(disk, dir, &name, &header, durable)?;
            let seg = SegIndex {
                first_index: si + 1,
                path: dir.join(name),
                file: Arc::new(file),
                offsets: Vec::new(),
                lens: Vec::new(),
                size: header.len() as u64,
                allocated: header.len() as u64,
            };
            next_seq = Some(1);
            LogIndex::new(snapshot, seg, opts.cache_bytes)
        }
    };
    Ok((index, next_seq.unwrap_or(1), loaded))
}

/// Cuts a segment file to `len` bytes (its last batch), durably.
fn cut_to(
    file: &DiskFile,
    path: &Path,
    len: u64,
    durable: &mut Durability,
) -> Result<(), WalError> {
    file.set_len(len)
        .map_err(|e| WalError::io("truncate", path, e))?;
    durable.sync_data(file, path)
}

/// Space allocated ahead of a log's end: twice the batch just written, but
/// at least this much...
const AHEAD_MIN: u64 = 64 << 10;
/// ...and at most this much.
const AHEAD_MAX: u64 = 1 << 20;

/// The file length to allocate to once a batch of `batch` bytes ends at
/// `end`: zeros past the end of the log, so that the next appends write
/// inside the file. Appending past its end, an `fdatasync` must also make
/// the new length durable (a journal commit on ext4): `benches/test_wal_bench.py`
/// went from 164 to 113 us per 1-entry append with this
/// (`benches/results/wal-allocate-ahead-ab.md`). Ahead by twice the batch
/// (64 KiB to 1 MiB, never past the segment's roll size): one append in
/// hundreds pays for the next ones.
fn allocate_ahead(end: u64, batch: u64, segment_bytes: u64) -> u64 {
    let ahead = batch.saturating_mul(2).clamp(AHEAD_MIN, AHEAD_MAX);
    end.saturating_add(ahead).min(segment_bytes.max(end))
}

/// An empty batch buffer: room for the header, then `entries`' records.
fn new_batch_buffer(entries: &[Entry]) -> Vec<u8> {
    let payload: usize = entries.iter().map(|e| e.size() + record::HEADER_LEN).sum();
    let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + payload);
    buf.resize(BATCH_HEADER_LEN, 0);
    buf
}
