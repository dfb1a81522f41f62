//! Write-ahead log: recovery, corruption detection, compaction, durability
//! under power loss.
//!
//! Some tests damage files on purpose; they know the on-disk format described
//! in `src/` (segment header v2, batches of `len | crc(len) | crc(payload) |
//! payload` records, two hard state slots 512 bytes apart).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bedrock_raft::{
    ConfChange, ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata, Storage,
};
use bedrock_wal::{Disk, MemDisk, Wal, WalError, WalOptions};

const CLUSTER: &str = "test-cluster";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("bedrock-wal-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What a reopened WAL holds.
#[derive(Debug, PartialEq)]
struct State {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

fn opts() -> WalOptions {
    WalOptions {
        sync: false,
        ..WalOptions::new(CLUSTER, 1)
    }
}

fn state_of(wal: &Wal) -> State {
    let snap = wal.snapshot();
    State {
        hard_state: wal.hard_state(),
        snapshot: (snap.metadata.index > 0).then(|| (*snap).clone()),
        entries: wal.read_all(),
    }
}

fn open_with(dir: &Path, o: WalOptions) -> (Wal, State) {
    let wal = Wal::open(Disk::Os, dir, o).expect("open");
    let st = state_of(&wal);
    (wal, st)
}

fn open(dir: &Path) -> (Wal, State) {
    open_with(dir, opts())
}

fn open_err(dir: &Path) -> WalError {
    Wal::open(Disk::Os, dir, opts()).expect_err("open should fail")
}

fn entry(term: u64, index: u64) -> Entry {
    Entry::new(term, index, format!("data-{term}-{index}").into_bytes())
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

const BATCH_HEADER: usize = 36;

/// Length of a segment header (v2) in `b`.
fn header_len(b: &[u8]) -> usize {
    // magic, version, first index, first seq, node id, cluster id (len + bytes), crc
    let cid_len = u32::from_le_bytes(b[36..40].try_into().unwrap()) as usize;
    40 + cid_len + 4
}

/// (batch offsets, record offsets) of a segment file.
fn layout(path: &Path) -> (Vec<u64>, Vec<u64>) {
    let b = fs::read(path).unwrap();
    let mut at = header_len(&b);
    let (mut batches, mut records) = (Vec::new(), Vec::new());
    while at + BATCH_HEADER <= b.len() {
        batches.push(at as u64);
        let bytes = u64::from_le_bytes(b[at + 24..at + 32].try_into().unwrap()) as usize;
        let end = at + BATCH_HEADER + bytes;
        let mut r = at + BATCH_HEADER;
        while r < end.min(b.len()) {
            records.push(r as u64);
            let len = u32::from_le_bytes(b[r..r + 4].try_into().unwrap()) as usize;
            r += 12 + len;
        }
        at = end;
    }
    (batches, records)
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 1 << bit;
    fs::write(path, b).unwrap();
}

fn assert_corrupt_at(err: WalError, file: &Path, offset: u64) {
    match &err {
        WalError::Corrupt {
            path, offset: o, ..
        } => {
            assert_eq!(path, file, "{err}");
            assert_eq!(*o, offset, "{err}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("offset {offset}")), "{msg}");
}

#[test]
fn fresh_directory_opens_empty_and_round_trips() {
    let d = TempDir::new("fresh");
    let (mut wal, state) = open(d.path());
    assert_eq!(state.entries, vec![]);
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 3,
    };
    wal.save(Some(&hs), &entries(2, 1..=5)).unwrap();
    assert_eq!(wal.last_index(), 5);
    assert_eq!(wal.dir(), d.path());
    drop(wal);
    let (wal, state) = open(d.path());
    assert_eq!(state.entries, entries(2, 1..=5));
    assert_eq!(state.hard_state, hs);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 5));
}

#[test]
fn every_cut_inside_the_last_batch_is_a_torn_write() {
    let d = TempDir::new("cut");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=3)).unwrap();
    wal.save(None, &entries(1, 4..=6)).unwrap();
    drop(wal);
    let seg = &segment_files(d.path())[0];
    let pristine = fs::read(seg).unwrap();
    let last_batch = *layout(seg).0.last().unwrap();
    for cut in last_batch..pristine.len() as u64 {
        fs::write(seg, &pristine[..cut as usize]).unwrap();
        let (mut wal, state) = open(d.path());
        assert_eq!(state.entries, entries(1, 1..=3), "cut at {cut}");
        assert_eq!(
            fs::metadata(seg).unwrap().len(),
            last_batch,
            "torn bytes cut off"
        );
        wal.save(None, &[entry(2, 4), entry(2, 5)]).unwrap();
        drop(wal);
        let (_, state) = open(d.path());
        let mut want = entries(1, 1..=3);
        want.extend([entry(2, 4), entry(2, 5)]);
        assert_eq!(state.entries, want, "cut at {cut}, after append");
    }
}

#[test]
fn zeros_after_the_log_and_a_bad_unacknowledged_last_batch_are_torn() {
    let d = TempDir::new("zeros");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=3)).unwrap();
    wal.save(None, &entries(1, 4..=4)).unwrap();
    drop(wal);
    let seg = &segment_files(d.path())[0];
    let len = fs::metadata(seg).unwrap().len();
    // A file extended before its data reached the disk reads as zeros.
    let mut b = fs::read(seg).unwrap();
    b.extend_from_slice(&[0; 100]);
    fs::write(seg, &b).unwrap();
    let (_, state) = open(d.path());
    assert_eq!(state.entries, entries(1, 1..=4));
    assert_eq!(fs::metadata(seg).unwrap().len(), len);
    // A damaged payload in the last batch, which nothing says was committed.
    flip_bit(seg, len - 1, 0);
    let (_, state) = open(d.path());
    assert_eq!(state.entries, entries(1, 1..=3));
}

/// Defect: a checksum failure in the final record followed by zeros was
/// truncated as torn even when that record had been synced and committed.
/// The hard state's commit above the last intact entry is the evidence:
/// open refuses, naming the file, the offset and why.
#[test]
fn damage_to_a_committed_final_record_refuses_to_open() {
    let d = TempDir::new("committed-tail");
    let (mut wal, _) = open(d.path());
    let ents: Vec<Entry> = (1..=10).map(|i| Entry::new(1, i, vec![7; 100])).collect();
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 10,
    };
    wal.save(Some(&hs), &ents).unwrap();
    drop(wal);
    let seg = segment_files(d.path())[0].clone();
    let batch = layout(&seg).0[0];
    let mut b = fs::read(&seg).unwrap();
    let n = b.len();
    b[n - 5] ^= 0x40; // the final record's payload
    b.extend_from_slice(&[0; 4096]);
    fs::write(&seg, &b).unwrap();
    let err = open_err(d.path());
    assert_corrupt_at(err, &seg, batch);
    let msg = open_err(d.path()).to_string();
    assert!(
        msg.contains("commit index 10") && msg.contains("checksum"),
        "{msg}"
    );
    assert_eq!(fs::read(&seg).unwrap().len(), b.len(), "never truncated");
    // The plain append log (commit not an index) keeps the old rule.
    let plain = WalOptions {
        commit_is_index: false,
        ..opts()
    };
    let (wal, _) = open_with(d.path(), plain);
    assert_eq!(
        wal.last_index(),
        0,
        "the whole unacknowledged batch is cut off"
    );
}

/// Defect: a torn multi-page group commit — a 4 KiB page in the middle of
/// the last, unacknowledged batch missing, later pages present — made the
/// node refuse to start. It lies inside the last batch: recovered.
#[test]
fn a_missing_page_inside_the_last_batch_is_recovered() {
    let d = TempDir::new("torn-page");
    let (mut wal, _) = open(d.path());
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 2,
    };
    wal.save(Some(&hs), &entries(1, 1..=2)).unwrap();
    let seg = segment_files(d.path())[0].clone();
    let before = fs::metadata(&seg).unwrap().len() as usize;
    let big: Vec<Entry> = (3..=42)
        .map(|i| Entry::new(1, i, vec![i as u8; 500]))
        .collect();
    wal.save(None, &big).unwrap();
    drop(wal);
    let mut b = fs::read(&seg).unwrap();
    let page = (before / 4096 + 2) * 4096;
    assert!(
        page + 4096 < b.len(),
        "the batch spans more than three pages"
    );
    b[page..page + 4096].fill(0);
    fs::write(&seg, &b).unwrap();
    let (mut wal, state) = open(d.path());
    assert_eq!(state.entries, entries(1, 1..=2));
    assert_eq!(state.hard_state, hs);
    assert_eq!(fs::metadata(&seg).unwrap().len() as usize, before);
    wal.save(None, &entries(2, 3..=3)).unwrap();
    assert_eq!(wal.last_index(), 3);
}

/// Where the batches of a segment file end: after the last one whose
/// header carries the batch magic (zeros allocated ahead have none).
fn batches_end(path: &Path) -> u64 {
    let b = fs::read(path).unwrap();
    let mut at = header_len(&b);
    while at + BATCH_HEADER <= b.len() && &b[at..at + 4] == b"BRBT" {
        let bytes = u64::from_le_bytes(b[at + 24..at + 32].try_into().unwrap()) as usize;
        at += BATCH_HEADER + bytes;
    }
    at as u64
}

/// Appending past a file's end, an `fdatasync` must make the new length
/// durable too (a journal commit on ext4: 200 instead of 133 us per append
/// on this project's test machines). Defect: every append of a syncing WAL
/// grew its file. Now it writes into zeros allocated ahead; reopened, the
/// log is whole and the zeros are cut off.
#[test]
fn a_syncing_wal_appends_inside_space_allocated_ahead() {
    let d = TempDir::new("ahead");
    let o = WalOptions::new(CLUSTER, 1);
    let (mut wal, _) = open_with(d.path(), o.clone());
    wal.save(None, &entries(1, 1..=1)).unwrap();
    let seg = segment_files(d.path())[0].clone();
    let len = fs::metadata(&seg).unwrap().len();
    assert!(len > batches_end(&seg), "zeros allocated ahead");
    for i in 2..=100 {
        wal.save(None, &[entry(1, i)]).unwrap();
        assert_eq!(
            fs::metadata(&seg).unwrap().len(),
            len,
            "append {i} changed the file's length"
        );
    }
    drop(wal);
    let (mut wal, state) = open_with(d.path(), o.clone());
    assert_eq!(state.entries, entries(1, 1..=100));
    assert_eq!(fs::metadata(&seg).unwrap().len(), batches_end(&seg));
    wal.save(None, &entries(1, 101..=101)).unwrap();
    drop(wal);
    assert_eq!(open_with(d.path(), o).1.entries, entries(1, 1..=101));
}

/// Only the last segment may end in zeros: a segment is cut to its last
/// batch before the next one starts, so zeros at the end of an older one
/// stay what they were, damage.
#[test]
fn segments_are_cut_to_their_batches_when_the_next_one_starts() {
    let d = TempDir::new("ahead-roll");
    let o = WalOptions {
        segment_bytes: 4096,
        ..WalOptions::new(CLUSTER, 1)
    };
    let (mut wal, _) = open_with(d.path(), o.clone());
    for i in 1..=200 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    let segs = segment_files(d.path());
    assert!(segs.len() >= 3, "{segs:?}");
    for seg in &segs[..segs.len() - 1] {
        assert_eq!(
            fs::metadata(seg).unwrap().len(),
            batches_end(seg),
            "{seg:?}"
        );
    }
    drop(wal);
    assert_eq!(
        open_with(d.path(), o.clone()).1.entries,
        entries(1, 1..=200)
    );
    let first = &segs[0];
    let mut b = fs::read(first).unwrap();
    let end = b.len() as u64;
    b.extend_from_slice(&[0; 512]);
    fs::write(first, &b).unwrap();
    assert_corrupt_at(Wal::open(Disk::Os, d.path(), o).unwrap_err(), first, end);
}

#[test]
fn damage_followed_by_a_later_batch_is_corruption() {
    let d = TempDir::new("flip");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=5)).unwrap();
    wal.save(None, &entries(1, 6..=6)).unwrap();
    drop(wal);
    let seg = segment_files(d.path())[0].clone();
    let pristine = fs::read(&seg).unwrap();
    let at = layout(&seg).1[2];
    // length, length checksum, payload checksum, payload (index field, data)
    for (delta, bit) in [
        (0, 0),
        (1, 3),
        (3, 7),
        (5, 1),
        (9, 4),
        (12, 0),
        (20, 2),
        (31, 6),
    ] {
        fs::write(&seg, &pristine).unwrap();
        flip_bit(&seg, at + delta, bit);
        let err = open_err(d.path());
        assert_corrupt_at(err, &seg, at);
        assert_eq!(
            fs::read(&seg).unwrap().len(),
            pristine.len(),
            "never truncated"
        );
    }
    // A damaged batch header, too.
    let batch = layout(&seg).0[0];
    fs::write(&seg, &pristine).unwrap();
    flip_bit(&seg, batch + 10, 2);
    let msg = open_err(d.path()).to_string();
    assert!(msg.contains("later write follows"), "{msg}");
}

#[test]
fn damage_in_a_non_last_segment_is_corruption() {
    let d = TempDir::new("nonlast");
    let o = WalOptions {
        segment_bytes: 300,
        ..opts()
    };
    let (mut wal, _) = open_with(d.path(), o.clone());
    for i in 1..=20 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    drop(wal);
    let segs = segment_files(d.path());
    assert!(segs.len() >= 3, "{segs:?}");
    // Damage the final record of the first segment: not in the last segment.
    let first = &segs[0];
    let last_rec = *layout(first).1.last().unwrap();
    let len = fs::metadata(first).unwrap().len();
    flip_bit(first, len - 1, 5);
    assert_corrupt_at(
        Wal::open(Disk::Os, d.path(), o.clone()).unwrap_err(),
        first,
        last_rec,
    );
    flip_bit(first, len - 1, 5);
    // A cut non-last segment leaves a gap.
    let mid = &segs[1];
    let b = fs::read(mid).unwrap();
    fs::write(mid, &b[..b.len() - 3]).unwrap();
    let err = Wal::open(Disk::Os, d.path(), o).unwrap_err();
    assert!(
        matches!(err, WalError::Corrupt { ref path, .. } if path == mid),
        "{err}"
    );
}

#[test]
fn foreign_cluster_or_node_is_refused() {
    let d = TempDir::new("foreign");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=2)).unwrap();
    drop(wal);
    let err = Wal::open(Disk::Os, d.path(), WalOptions::new("other-cluster", 1)).unwrap_err();
    match &err {
        WalError::Foreign {
            what,
            expected,
            found,
            ..
        } => {
            assert_eq!(
                (*what, expected.as_str(), found.as_str()),
                ("cluster", "other-cluster", CLUSTER)
            );
        }
        other => panic!("{other:?}"),
    }
    let err = Wal::open(Disk::Os, d.path(), WalOptions::new(CLUSTER, 7)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, WalError::Foreign { what: "node", .. }),
        "{msg}"
    );
    assert!(msg.contains("'1'") && msg.contains("'7'"), "{msg}");

    // A segment copied in from another node is refused even with a good meta.
    let other = TempDir::new("foreign-src");
    let (mut w2, _) = open_with(
        other.path(),
        WalOptions {
            sync: false,
            ..WalOptions::new(CLUSTER, 2)
        },
    );
    w2.save(None, &entries(1, 1..=2)).unwrap();
    drop(w2);
    let seg = &segment_files(d.path())[0];
    fs::copy(&segment_files(other.path())[0], seg).unwrap();
    let err = open_err(d.path());
    assert!(
        matches!(err, WalError::Foreign { ref path, what: "node", .. } if path == seg),
        "{err}"
    );
}

#[test]
fn a_wal_of_the_previous_format_is_refused_clearly() {
    let d = TempDir::new("old-format");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=2)).unwrap();
    drop(wal);
    // Rewrite the meta file as version 1 (valid checksum), as an older build wrote it.
    let meta = d.path().join("meta");
    let mut b = fs::read(&meta).unwrap();
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    let n = b.len();
    let crc = crc32c::crc32c(&b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&meta, b).unwrap();
    let msg = open_err(d.path()).to_string();
    assert!(
        msg.contains("version 1") && msg.contains("not supported"),
        "{msg}"
    );
}

#[test]
fn tail_replacement_survives_reopen() {
    let d = TempDir::new("conflict");
    let o = WalOptions {
        segment_bytes: 300,
        ..opts()
    };
    let (mut wal, _) = open_with(d.path(), o.clone());
    for i in 1..=30 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    let before = segment_files(d.path()).len();
    assert!(before >= 4);
    // Within the last segment.
    wal.save(None, &entries(2, 29..=31)).unwrap();
    assert_eq!(wal.last_index(), 31);
    assert_eq!(wal.read_all()[28..], entries(2, 29..=31)[..]);
    // Across segments: index 8 is in an early segment.
    wal.save(None, &entries(3, 8..=9)).unwrap();
    assert_eq!(wal.last_index(), 9);
    assert!(segment_files(d.path()).len() < before);
    drop(wal);
    let (mut wal, state) = open_with(d.path(), o.clone());
    let mut want = entries(1, 1..=7);
    want.extend(entries(3, 8..=9));
    assert_eq!(state.entries, want);
    // Replace starting exactly at a segment's first index, then append more.
    let segs = segment_files(d.path());
    let start = segs[1]
        .file_stem()
        .map(|s| u64::from_str_radix(s.to_str().unwrap(), 16).unwrap())
        .unwrap();
    wal.save(None, &entries(4, start..=start + 20)).unwrap();
    drop(wal);
    let (_, state) = open_with(d.path(), o);
    want.truncate((start - 1) as usize);
    want.extend(entries(4, start..=start + 20));
    assert_eq!(state.entries, want);
}

fn newest_slot(path: &Path) -> u64 {
    let b = fs::read(path).unwrap();
    let seq = |at: usize| u64::from_le_bytes(b[at + 4..at + 12].try_into().unwrap());
    if seq(0) > seq(512) {
        0
    } else {
        512
    }
}

#[test]
fn hard_state_slots_fall_back_and_detect_damage() {
    let d = TempDir::new("hardstate");
    let hs1 = HardState {
        term: 1,
        vote: 1,
        commit: 0,
    };
    let hs2 = HardState {
        term: 2,
        vote: 3,
        commit: 0,
    };
    let (mut wal, _) = open(d.path());
    wal.save(Some(&hs1), &[]).unwrap();
    wal.save(Some(&hs2), &[]).unwrap();
    drop(wal);
    assert_eq!(open(d.path()).1.hard_state, hs2);
    let path = d.path().join("hardstate");
    let newest = newest_slot(&path);
    flip_bit(&path, newest + 20, 1);
    assert_eq!(
        open(d.path()).1.hard_state,
        hs1,
        "falls back to the older slot"
    );
    let older = 512 - newest;
    flip_bit(&path, older + 20, 1);
    let err = open_err(d.path());
    assert!(
        matches!(err, WalError::Corrupt { path: ref p, .. } if *p == path),
        "{err}"
    );
}

#[test]
fn commit_only_changes_are_not_synced_but_persist() {
    let d = TempDir::new("commit");
    let (mut wal, _) = open_with(d.path(), WalOptions::new(CLUSTER, 1));
    wal.save(None, &entries(1, 1..=3)).unwrap();
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 0,
    };
    let n = wal.sync_count();
    wal.save(Some(&hs), &[]).unwrap();
    assert_eq!(wal.sync_count(), n + 1, "vote change is synced");
    let n = wal.sync_count();
    for commit in 1..=3 {
        wal.save(Some(&HardState { commit, ..hs }), &[]).unwrap();
    }
    assert_eq!(wal.sync_count(), n, "commit-only changes are not synced");
    drop(wal);
    let (wal, state) = open_with(d.path(), WalOptions::new(CLUSTER, 1));
    assert_eq!(state.hard_state, HardState { commit: 3, ..hs });
    assert_eq!(wal.hard_state(), state.hard_state);
}

#[test]
fn a_commit_beyond_the_log_is_refused_or_clamped() {
    let d = TempDir::new("clamp");
    let (mut wal, _) = open(d.path());
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 9,
    };
    wal.save(Some(&hs), &entries(1, 1..=5)).unwrap();
    drop(wal);
    let msg = open_err(d.path()).to_string();
    assert!(msg.contains("commit index 9"), "{msg}");
    let plain = WalOptions {
        commit_is_index: false,
        ..opts()
    };
    let (wal, state) = open_with(d.path(), plain);
    assert_eq!(state.hard_state.commit, 5);
    assert_eq!(wal.hard_state().commit, 5);
}

fn snapshot(index: u64, term: u64) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        metadata: SnapshotMetadata {
            index,
            term,
            conf_state: ConfState::with_learners(vec![1, 2, 3], vec![4]),
        },
        data: format!("state@{index}").into_bytes(),
    })
}

#[test]
fn snapshot_compacts_segments_and_survives_reopen() {
    let d = TempDir::new("snapshot");
    let o = WalOptions {
        segment_bytes: 300,
        ..opts()
    };
    let (mut wal, _) = open_with(d.path(), o.clone());
    for i in 1..=40 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    let segs_before = segment_files(d.path());
    wal.save_snapshot(snapshot(25, 1)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (26, 40));
    let segs_after = segment_files(d.path());
    assert!(segs_after.len() < segs_before.len());
    let first_of =
        |p: &PathBuf| u64::from_str_radix(p.file_stem().unwrap().to_str().unwrap(), 16).unwrap();
    assert!(first_of(&segs_after[0]) <= 26);
    assert!(segs_after[1..].iter().all(|p| first_of(p) > 26));
    let st = wal.storage();
    assert_eq!(st.term(25), Ok(1));
    assert!(st.term(24).is_err());
    assert_eq!(st.entries(26, 41, u64::MAX).unwrap(), entries(1, 26..=40));
    drop(wal);
    let (mut wal, state) = open_with(d.path(), o.clone());
    assert_eq!(state.snapshot.as_ref(), Some(&*snapshot(25, 1)));
    assert_eq!(state.entries, entries(1, 26..=40));
    assert_eq!(
        state.hard_state.commit, 25,
        "commit is at least the snapshot"
    );
    assert!(matches!(
        wal.save(None, &[entry(1, 25)]),
        Err(WalError::InvalidArgument(_))
    ));
    assert!(matches!(
        wal.save_snapshot(snapshot(20, 1)),
        Err(WalError::InvalidArgument(_))
    ));

    // A snapshot beyond the log restarts it after the snapshot.
    wal.save_snapshot(snapshot(100, 3)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (101, 100));
    let segs = segment_files(d.path());
    assert_eq!(segs.len(), 1);
    assert!(segs[0].ends_with("0000000000000065.wal"));
    wal.save(None, &entries(3, 101..=103)).unwrap();
    drop(wal);
    let (mut wal, state) = open_with(d.path(), o.clone());
    assert_eq!(state.snapshot.as_ref(), Some(&*snapshot(100, 3)));
    assert_eq!(state.entries, entries(3, 101..=103));

    // A snapshot that disagrees with the log about its term drops the log.
    wal.save_snapshot(snapshot(102, 4)).unwrap();
    assert_eq!(wal.last_index(), 102);
    drop(wal);
    let (_, state) = open_with(d.path(), o);
    assert!(state.entries.is_empty());
    assert_eq!(state.snapshot.as_ref(), Some(&*snapshot(102, 4)));
}

#[test]
fn hundred_thousand_entries_across_many_segments_read_back_past_the_cache() {
    let d = TempDir::new("bulk");
    let o = WalOptions {
        segment_bytes: 256 << 10,
        cache_bytes: 64 << 10,
        ..opts()
    };
    let (mut wal, _) = open_with(d.path(), o.clone());
    let n = 100_000u64;
    let all = entries(1, 1..=n);
    for batch in all.chunks(1000) {
        wal.save(None, batch).unwrap();
    }
    assert_eq!(wal.last_index(), n);
    assert!(wal.storage().cached_bytes() <= 64 << 10);
    drop(wal);
    assert!(segment_files(d.path()).len() > 10);
    let (wal, state) = open_with(d.path(), o);
    assert!(state.entries == all);
    assert_eq!(wal.last_index(), n);
    let st = wal.storage();
    assert!(st.cached_bytes() <= 64 << 10);
    assert_eq!(st.entries(5, 8, u64::MAX).unwrap(), entries(1, 5..=7));
    assert_eq!(st.entries(5, 8, 0).unwrap().len(), 1, "at least one entry");
}

#[test]
fn one_fdatasync_per_batch() {
    let d = TempDir::new("group");
    let (mut wal, _) = open_with(d.path(), WalOptions::new(CLUSTER, 1));
    wal.save(None, &entries(1, 1..=1)).unwrap();
    let before = wal.sync_count();
    let hs = HardState {
        term: 0,
        vote: 0,
        commit: 1,
    };
    wal.save(Some(&hs), &entries(1, 2..=201)).unwrap();
    assert_eq!(wal.sync_count(), before + 1);
    let before = wal.sync_count();
    wal.save(None, &[]).unwrap();
    assert_eq!(wal.sync_count(), before, "nothing to save, nothing synced");
}

#[test]
fn sync_failure_is_fatal_forever() {
    let d = TempDir::new("eio");
    let (mut wal, _) = open_with(d.path(), WalOptions::new(CLUSTER, 1));
    wal.save(None, &entries(1, 1..=2)).unwrap();
    wal.inject_sync_failure();
    let err = wal.save(None, &entries(1, 3..=4)).unwrap_err();
    assert!(matches!(err, WalError::Fatal { .. }), "{err:?}");
    assert!(err.to_string().contains("must stop"), "{err}");
    for _ in 0..2 {
        let err = wal.save(None, &entries(1, 5..=5)).unwrap_err();
        assert!(matches!(err, WalError::Fatal { .. }), "{err:?}");
    }
    assert!(matches!(
        wal.save_snapshot(snapshot(1, 1)),
        Err(WalError::Fatal { .. })
    ));
    assert!(matches!(
        wal.save(Some(&HardState::default()), &[]),
        Err(WalError::Fatal { .. })
    ));
}

#[test]
fn bad_arguments_are_refused_without_writing() {
    let d = TempDir::new("args");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=3)).unwrap();
    for bad in [
        vec![entry(1, 5)],
        vec![entry(1, 4), entry(1, 6)],
        vec![entry(1, 0)],
    ] {
        let err = wal.save(None, &bad).unwrap_err();
        assert!(matches!(err, WalError::InvalidArgument(_)), "{err:?}");
    }
    assert_eq!(wal.last_index(), 3);
    wal.save(None, &entries(1, 4..=4)).unwrap();
    let long = "x".repeat(1000);
    assert!(matches!(
        Wal::open(Disk::Os, &d.path().join("sub"), WalOptions::new(long, 1)),
        Err(WalError::InvalidArgument(_))
    ));
}

#[test]
fn unexpected_files_and_truncated_headers_are_clear_errors() {
    let d = TempDir::new("garbage");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=3)).unwrap();
    drop(wal);

    let junk = d.path().join("notes.txt");
    fs::write(&junk, b"hello").unwrap();
    let err = open_err(d.path());
    assert!(
        matches!(err, WalError::Corrupt { ref path, .. } if *path == junk),
        "{err}"
    );
    fs::remove_file(&junk).unwrap();

    // Leftovers of an interrupted atomic replace are cleaned up.
    fs::write(d.path().join("snapshot.tmp"), b"half").unwrap();
    assert_eq!(open(d.path()).1.entries.len(), 3);
    assert!(!d.path().join("snapshot.tmp").exists());

    // A garbage file with a segment's name.
    let fake = d.path().join("0000000000000100.wal");
    fs::write(&fake, vec![0xab; 64]).unwrap();
    let err = open_err(d.path());
    assert!(
        matches!(err, WalError::Corrupt { ref path, .. } if *path == fake),
        "{err}"
    );
    fs::remove_file(&fake).unwrap();

    // Every truncation of the segment header.
    let seg = &segment_files(d.path())[0];
    let pristine = fs::read(seg).unwrap();
    for cut in 0..header_len(&pristine) {
        fs::write(seg, &pristine[..cut]).unwrap();
        let err = open_err(d.path());
        assert!(
            matches!(err, WalError::Corrupt { ref path, offset: 0, .. } if path == seg),
            "cut {cut}: {err}"
        );
    }
    fs::write(seg, &pristine).unwrap();

    // Damaged meta and snapshot files.
    let meta = d.path().join("meta");
    flip_bit(&meta, 14, 0);
    assert!(matches!(open_err(d.path()), WalError::Corrupt { ref path, .. } if *path == meta));
    flip_bit(&meta, 14, 0);
    let (mut wal, _) = open(d.path());
    wal.save_snapshot(snapshot(2, 1)).unwrap();
    drop(wal);
    let snap = d.path().join("snapshot");
    let len = fs::metadata(&snap).unwrap().len();
    flip_bit(&snap, len - 1, 2);
    assert!(matches!(open_err(d.path()), WalError::Corrupt { ref path, .. } if *path == snap));
}

/// Copies the snapshot file of a WAL holding `snap` into `dir`, as if a
/// `save_snapshot` had crashed right after renaming it into place.
fn plant_snapshot(dir: &Path, snap: Arc<Snapshot>) {
    let src = TempDir::new("plant");
    let (mut w, _) = open(src.path());
    w.save_snapshot(snap).unwrap();
    drop(w);
    fs::copy(src.path().join("snapshot"), dir.join("snapshot")).unwrap();
}

#[test]
fn interrupted_snapshot_compaction_is_finished_on_open() {
    let o = WalOptions {
        segment_bytes: 300,
        ..opts()
    };
    let setup = |name: &str| {
        let d = TempDir::new(name);
        let (mut wal, _) = open_with(d.path(), o.clone());
        for i in 1..=20 {
            wal.save(None, &[entry(1, i)]).unwrap();
        }
        d
    };

    // Snapshot inside the log, agreeing with it: older segments go.
    let d = setup("snap-mid");
    let n = segment_files(d.path()).len();
    plant_snapshot(d.path(), snapshot(12, 1));
    let (wal, state) = open_with(d.path(), o.clone());
    assert_eq!(state.entries, entries(1, 13..=20));
    assert_eq!(wal.first_index(), 13);
    assert!(segment_files(d.path()).len() < n);

    // Snapshot inside the log, disagreeing with it: the log restarts.
    let d = setup("snap-conflict");
    plant_snapshot(d.path(), snapshot(12, 5));
    let (wal, state) = open_with(d.path(), o.clone());
    assert!(state.entries.is_empty());
    assert_eq!((wal.first_index(), wal.last_index()), (13, 12));
    assert_eq!(segment_files(d.path()).len(), 1);

    // Snapshot beyond the log: the log restarts after it.
    let d = setup("snap-beyond");
    plant_snapshot(d.path(), snapshot(50, 2));
    let (mut wal, state) = open_with(d.path(), o.clone());
    assert!(state.entries.is_empty());
    assert_eq!(wal.last_index(), 50);
    wal.save(None, &entries(2, 51..=52)).unwrap();
    drop(wal);
    assert_eq!(
        open_with(d.path(), o.clone()).1.entries,
        entries(2, 51..=52)
    );

    // A log that starts after the snapshot ends has lost entries.
    let d = setup("snap-gap");
    let (mut wal, _) = open_with(d.path(), o.clone());
    wal.save_snapshot(snapshot(15, 1)).unwrap();
    drop(wal);
    plant_snapshot(d.path(), snapshot(3, 1));
    let err = Wal::open(Disk::Os, d.path(), o).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = TempDir::new("lock");
    let (wal, _) = open(dir.path());
    let err = open_err(dir.path());
    assert!(matches!(err, WalError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(wal);
    open(dir.path());
}

#[test]
fn conf_changes_in_the_log_are_recovered_committed_or_not() {
    let d = TempDir::new("conf");
    let (mut wal, _) = open(d.path());
    let cc = |index, cc: ConfChange| Entry {
        term: 1,
        index,
        entry_type: EntryType::ConfChange,
        data: cc.encode(),
    };
    let mut log = entries(1, 1..=2);
    log.push(cc(3, ConfChange::AddNode(4)));
    log.push(entry(1, 4));
    log.push(cc(5, ConfChange::AddNode(5)));
    wal.save(
        Some(&HardState {
            term: 1,
            vote: 1,
            commit: 1,
        }),
        &log,
    )
    .unwrap();
    // A new leader replaces index 5 on.
    wal.save(None, &[entry(2, 5)]).unwrap();
    drop(wal);
    let (wal, _) = open(d.path());
    let init = wal.storage().initial_state();
    assert_eq!(init.conf_entries, vec![cc(3, ConfChange::AddNode(4))]);
    assert_eq!(init.hard_state.commit, 1);
}

// ----- power loss on the in-memory disk -----

fn mem_opts() -> WalOptions {
    WalOptions {
        segment_bytes: 600,
        ..WalOptions::new(CLUSTER, 1)
    }
}

fn mem_open(disk: &MemDisk) -> Wal {
    Wal::open(Disk::Mem(disk.clone()), Path::new("/wal"), mem_opts()).expect("open")
}

/// Catches "a vote-only hard state change not synced": a vote cast in a
/// term already persisted must survive a power loss.
#[test]
fn a_vote_survives_power_loss() {
    for seed in 0..32 {
        let disk = MemDisk::new();
        let mut wal = mem_open(&disk);
        wal.save(
            Some(&HardState {
                term: 3,
                vote: 0,
                commit: 0,
            }),
            &[],
        )
        .unwrap();
        wal.save(
            Some(&HardState {
                term: 3,
                vote: 2,
                commit: 0,
            }),
            &[],
        )
        .unwrap();
        drop(wal);
        disk.power_loss(seed);
        assert_eq!(mem_open(&disk).hard_state().vote, 2, "seed {seed}");
    }
}

/// Catches "a segment removed without syncing its directory": a tail
/// replaced across segments must not come back after a power loss.
#[test]
fn a_replaced_tail_stays_replaced_after_power_loss() {
    for seed in 0..32 {
        let disk = MemDisk::new();
        let mut wal = mem_open(&disk);
        for i in 1..=30 {
            wal.save(None, &[entry(1, i)]).unwrap();
        }
        // One entry: it goes into the first segment, no new segment (whose
        // creation would sync the directory) follows.
        wal.save(None, &[entry(2, 5)]).unwrap();
        drop(wal);
        disk.power_loss(seed);
        let wal = mem_open(&disk);
        let mut want = entries(1, 1..=4);
        want.push(entry(2, 5));
        assert_eq!(wal.read_all(), want, "seed {seed}");
    }
}

/// Synced batches survive any power loss; a power cut in the middle of a
/// write loses at most that write, never an earlier one, and the WAL opens.
#[test]
fn power_cuts_mid_write_lose_only_the_unacknowledged_write() {
    for seed in 0..200u64 {
        let disk = MemDisk::new();
        let mut wal = mem_open(&disk);
        let mut acked: Vec<Entry> = Vec::new();
        disk.cut_power_after(seed % 37 + 5);
        let mut next = 1u64;
        loop {
            let n = 1 + (seed + next) % 7;
            let batch: Vec<Entry> = (next..next + n)
                .map(|i| Entry::new(1, i, vec![(i % 251) as u8; (i * 37 % 700) as usize]))
                .collect();
            let hs = HardState {
                term: 1,
                vote: 1,
                commit: acked.last().map_or(0, |e| e.index),
            };
            if wal.save(Some(&hs), &batch).is_err() {
                break;
            }
            acked.extend(batch);
            next += n;
        }
        drop(wal);
        disk.power_loss(seed);
        let wal = mem_open(&disk);
        let got = wal.read_all();
        assert!(
            got.len() >= acked.len(),
            "seed {seed}: lost acknowledged entries"
        );
        assert_eq!(got[..acked.len()], acked[..], "seed {seed}");
        assert!(got.len() <= acked.len() + 7, "seed {seed}");
    }
}

/// A snapshot staged (written and synced without the WAL, while appends go
/// on) counts only once installed: a power loss before leaves the log as it
/// was and no leftover file; after, the snapshot and the compacted log.
#[test]
fn a_staged_snapshot_counts_only_once_installed() {
    let staged_path = Path::new("/wal/snapshot-20.staged.tmp");
    for seed in 0..16 {
        let disk = MemDisk::new();
        let mut wal = mem_open(&disk);
        for i in 1..=30 {
            wal.save(None, &[entry(1, i)]).unwrap();
        }
        let stager = wal.snapshot_stager().unwrap();
        let staged = stager.stage(snapshot(20, 1)).unwrap();
        wal.save(None, &[entry(1, 31)]).unwrap();
        drop(staged);
        drop(wal);
        disk.power_loss(seed);
        let mut wal = mem_open(&disk);
        assert_eq!(wal.snapshot().metadata.index, 0, "seed {seed}");
        assert_eq!(
            (wal.first_index(), wal.last_index()),
            (1, 31),
            "seed {seed}"
        );
        assert!(disk.file_bytes(staged_path).is_none(), "seed {seed}");
        let staged = wal
            .snapshot_stager()
            .unwrap()
            .stage(snapshot(20, 1))
            .unwrap();
        wal.install_snapshot(staged).unwrap();
        drop(wal);
        disk.power_loss(seed);
        let wal = mem_open(&disk);
        assert_eq!(*wal.snapshot(), *snapshot(20, 1), "seed {seed}");
        assert_eq!(
            (wal.first_index(), wal.last_index()),
            (21, 31),
            "seed {seed}"
        );
        assert!(disk.file_bytes(staged_path).is_none(), "seed {seed}");
    }
}

#[test]
fn a_staged_snapshot_not_newer_than_the_current_one_is_refused_and_removed() {
    let disk = MemDisk::new();
    let mut wal = mem_open(&disk);
    for i in 1..=30 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    let staged = wal
        .snapshot_stager()
        .unwrap()
        .stage(snapshot(20, 1))
        .unwrap();
    wal.save_snapshot(snapshot(25, 1)).unwrap(); // the leader's, meanwhile
    let err = wal.install_snapshot(staged).unwrap_err();
    assert!(err.to_string().contains("not newer"), "{err}");
    assert!(disk
        .file_bytes(Path::new("/wal/snapshot-20.staged.tmp"))
        .is_none());
    assert_eq!(wal.snapshot().metadata.index, 25);
    wal.save(None, &[entry(1, 31)]).unwrap(); // not poisoned
}
