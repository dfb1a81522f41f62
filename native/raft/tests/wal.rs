//! Write-ahead log: recovery, corruption detection, compaction, durability.
//!
//! Some tests damage files on purpose; they know the on-disk format described
//! in `src/wal/` (segment header, `len | crc(len) | crc(payload) | payload`
//! records, two hard state slots 512 bytes apart).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bedrock_raft::wal::{Wal, WalError, WalOptions};
use bedrock_raft::{ConfState, Entry, HardState, PersistedState, Snapshot, SnapshotMetadata};

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

fn opts() -> WalOptions {
    WalOptions {
        sync: false,
        ..WalOptions::new(CLUSTER, 1)
    }
}

fn open(dir: &Path) -> (Wal, PersistedState) {
    Wal::open(dir, opts()).expect("open")
}

fn open_err(dir: &Path) -> WalError {
    Wal::open(dir, opts()).expect_err("open should fail")
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

/// Byte offsets of every record in a segment file.
fn record_offsets(path: &Path) -> Vec<u64> {
    let b = fs::read(path).unwrap();
    // magic, version, first index, node id, cluster id (len + bytes), crc
    let cid_len = u32::from_le_bytes(b[28..32].try_into().unwrap()) as usize;
    let mut at = 32 + cid_len + 4;
    let mut v = Vec::new();
    while at < b.len() {
        v.push(at as u64);
        let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        at += 12 + len;
    }
    v
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
    assert!(state.is_empty());
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
    assert_eq!(wal.hard_state(), hs);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 5));
}

#[test]
fn every_cut_inside_the_last_record_is_a_torn_tail() {
    let d = TempDir::new("cut");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=4)).unwrap();
    drop(wal);
    let seg = &segment_files(d.path())[0];
    let pristine = fs::read(seg).unwrap();
    let last = *record_offsets(seg).last().unwrap();
    for cut in last..pristine.len() as u64 {
        fs::write(seg, &pristine[..cut as usize]).unwrap();
        let (mut wal, state) = open(d.path());
        assert_eq!(state.entries, entries(1, 1..=3), "cut at {cut}");
        assert_eq!(
            fs::metadata(seg).unwrap().len(),
            last,
            "torn bytes truncated"
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
fn zero_filled_tail_and_bad_final_payload_are_torn() {
    let d = TempDir::new("zeros");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=3)).unwrap();
    drop(wal);
    let seg = &segment_files(d.path())[0];
    let len = fs::metadata(seg).unwrap().len();
    // A file extended before its data reached the disk reads as zeros.
    let mut b = fs::read(seg).unwrap();
    b.extend_from_slice(&[0; 100]);
    fs::write(seg, &b).unwrap();
    let (_, state) = open(d.path());
    assert_eq!(state.entries, entries(1, 1..=3));
    assert_eq!(fs::metadata(seg).unwrap().len(), len);
    // A damaged payload in the record that ends the file.
    flip_bit(seg, len - 1, 0);
    let (_, state) = open(d.path());
    assert_eq!(state.entries, entries(1, 1..=2));
}

#[test]
fn bit_flip_in_a_middle_record_is_corruption() {
    let d = TempDir::new("flip");
    let (mut wal, _) = open(d.path());
    wal.save(None, &entries(1, 1..=5)).unwrap();
    drop(wal);
    let seg = segment_files(d.path())[0].clone();
    let pristine = fs::read(&seg).unwrap();
    let at = record_offsets(&seg)[2];
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
        assert_corrupt_at(open_err(d.path()), &seg, at);
        assert_eq!(
            fs::read(&seg).unwrap().len(),
            pristine.len(),
            "never truncated"
        );
    }
}

#[test]
fn damage_in_a_non_last_segment_is_corruption() {
    let d = TempDir::new("nonlast");
    let o = WalOptions {
        segment_bytes: 200,
        ..opts()
    };
    let (mut wal, _) = Wal::open(d.path(), o.clone()).unwrap();
    for i in 1..=20 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    drop(wal);
    let segs = segment_files(d.path());
    assert!(segs.len() >= 3, "{segs:?}");
    // Damage the final record of the first segment: torn-looking, but not in
    // the last segment, so it must be refused.
    let first = &segs[0];
    let last_rec = *record_offsets(first).last().unwrap();
    let len = fs::metadata(first).unwrap().len();
    flip_bit(first, len - 1, 5);
    assert_corrupt_at(Wal::open(d.path(), o.clone()).unwrap_err(), first, last_rec);
    flip_bit(first, len - 1, 5);
    // A cut non-last segment leaves a gap.
    let mid = &segs[1];
    let b = fs::read(mid).unwrap();
    fs::write(mid, &b[..b.len() - 3]).unwrap();
    let err = Wal::open(d.path(), o).unwrap_err();
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
    let err = Wal::open(d.path(), WalOptions::new("other-cluster", 1)).unwrap_err();
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
    let msg = err.to_string();
    assert!(
        msg.contains("other-cluster") && msg.contains(CLUSTER),
        "{msg}"
    );
    let err = Wal::open(d.path(), WalOptions::new(CLUSTER, 7)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, WalError::Foreign { what: "node", .. }),
        "{msg}"
    );
    assert!(msg.contains("'1'") && msg.contains("'7'"), "{msg}");

    // A segment copied in from another node is refused even with a good meta.
    let other = TempDir::new("foreign-src");
    let (mut w2, _) = Wal::open(
        other.path(),
        WalOptions {
            sync: false,
            ..WalOptions::new(CLUSTER, 2)
        },
    )
    .unwrap();
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
fn tail_replacement_survives_reopen() {
    let d = TempDir::new("conflict");
    let o = WalOptions {
        segment_bytes: 300,
        ..opts()
    };
    let (mut wal, _) = Wal::open(d.path(), o.clone()).unwrap();
    for i in 1..=30 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    let before = segment_files(d.path()).len();
    assert!(before >= 4);
    // Within the last segment.
    wal.save(None, &entries(2, 29..=31)).unwrap();
    assert_eq!(wal.last_index(), 31);
    // Across segments: index 8 is in an early segment.
    wal.save(None, &entries(3, 8..=9)).unwrap();
    assert_eq!(wal.last_index(), 9);
    assert!(segment_files(d.path()).len() < before);
    drop(wal);
    let (mut wal, state) = Wal::open(d.path(), o.clone()).unwrap();
    let mut want = entries(1, 1..=7);
    want.extend(entries(3, 8..=9));
    assert_eq!(state.entries, want);
    // Replace starting exactly at a segment's first index, then append more.
    let second = record_offsets(&segment_files(d.path())[1]).len() as u64;
    assert!(second > 0);
    let start = segment_files(d.path())[1]
        .file_stem()
        .map(|s| u64::from_str_radix(s.to_str().unwrap(), 16).unwrap())
        .unwrap();
    wal.save(None, &entries(4, start..=start + 20)).unwrap();
    drop(wal);
    let (_, state) = Wal::open(d.path(), o).unwrap();
    let mut want = entries(1, 1..=7);
    want.extend(entries(3, 8..=9));
    want.truncate((start - 1) as usize);
    want.extend(entries(4, start..=start + 20));
    assert_eq!(state.entries, want);
    for (i, e) in state.entries.iter().enumerate() {
        assert_eq!(e.index, i as u64 + 1);
    }
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
    let (mut wal, _) = Wal::open(d.path(), WalOptions::new(CLUSTER, 1)).unwrap();
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
    let (wal, state) = Wal::open(d.path(), WalOptions::new(CLUSTER, 1)).unwrap();
    assert_eq!(state.hard_state, HardState { commit: 3, ..hs });
    assert_eq!(wal.hard_state(), state.hard_state);
}

#[test]
fn commit_is_clamped_to_the_log_on_open() {
    let d = TempDir::new("clamp");
    let (mut wal, _) = open(d.path());
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 9,
    };
    wal.save(Some(&hs), &entries(1, 1..=5)).unwrap();
    drop(wal);
    let (wal, state) = open(d.path());
    assert_eq!(state.hard_state.commit, 5);
    assert_eq!(wal.hard_state().commit, 5);
}

fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        metadata: SnapshotMetadata {
            index,
            term,
            conf_state: ConfState::new(vec![1, 2, 3]),
        },
        data: format!("state@{index}").into_bytes(),
    }
}

#[test]
fn snapshot_compacts_segments_and_survives_reopen() {
    let d = TempDir::new("snapshot");
    let o = WalOptions {
        segment_bytes: 250,
        ..opts()
    };
    let (mut wal, _) = Wal::open(d.path(), o.clone()).unwrap();
    for i in 1..=40 {
        wal.save(None, &[entry(1, i)]).unwrap();
    }
    let segs_before = segment_files(d.path());
    wal.save_snapshot(&snapshot(25, 1)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (26, 40));
    let segs_after = segment_files(d.path());
    assert!(segs_after.len() < segs_before.len());
    // Every remaining segment but the first starts after the snapshot, and
    // the first still holds entry 26.
    let first_of =
        |p: &PathBuf| u64::from_str_radix(p.file_stem().unwrap().to_str().unwrap(), 16).unwrap();
    assert!(first_of(&segs_after[0]) <= 26);
    assert!(segs_after[1..].iter().all(|p| first_of(p) > 26));
    drop(wal);
    let (mut wal, state) = Wal::open(d.path(), o.clone()).unwrap();
    assert_eq!(state.snapshot, Some(snapshot(25, 1)));
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
        wal.save_snapshot(&snapshot(20, 1)),
        Err(WalError::InvalidArgument(_))
    ));

    // A snapshot beyond the log restarts it after the snapshot.
    wal.save_snapshot(&snapshot(100, 3)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (101, 100));
    let segs = segment_files(d.path());
    assert_eq!(segs.len(), 1);
    assert!(segs[0].ends_with("0000000000000065.wal"));
    wal.save(None, &entries(3, 101..=103)).unwrap();
    drop(wal);
    let (mut wal, state) = Wal::open(d.path(), o.clone()).unwrap();
    assert_eq!(state.snapshot, Some(snapshot(100, 3)));
    assert_eq!(state.entries, entries(3, 101..=103));

    // A snapshot that disagrees with the log about its term drops the log.
    wal.save_snapshot(&snapshot(102, 4)).unwrap();
    assert_eq!(wal.last_index(), 102);
    drop(wal);
    let (_, state) = Wal::open(d.path(), o).unwrap();
    assert!(state.entries.is_empty());
    assert_eq!(state.snapshot, Some(snapshot(102, 4)));
}

#[test]
fn hundred_thousand_entries_across_many_segments() {
    let d = TempDir::new("bulk");
    let o = WalOptions {
        segment_bytes: 256 << 10,
        ..opts()
    };
    let (mut wal, _) = Wal::open(d.path(), o.clone()).unwrap();
    let n = 100_000u64;
    let all = entries(1, 1..=n);
    for batch in all.chunks(1000) {
        wal.save(None, batch).unwrap();
    }
    assert_eq!(wal.last_index(), n);
    drop(wal);
    assert!(segment_files(d.path()).len() > 10);
    let (wal, state) = Wal::open(d.path(), o).unwrap();
    assert_eq!(state.entries.len(), n as usize);
    assert!(state.entries == all);
    assert_eq!(wal.last_index(), n);
}

#[test]
fn one_fdatasync_per_batch() {
    let d = TempDir::new("group");
    let (mut wal, _) = Wal::open(d.path(), WalOptions::new(CLUSTER, 1)).unwrap();
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
    let (mut wal, _) = Wal::open(d.path(), WalOptions::new(CLUSTER, 1)).unwrap();
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
        wal.save_snapshot(&snapshot(1, 1)),
        Err(WalError::Fatal { .. })
    ));
    assert!(matches!(
        wal.save(Some(&HardState::default()), &[]),
        Err(WalError::Fatal { .. })
    ));

    // A failure in the middle of a snapshot restart leaves a usable, poisoned WAL.
    let d = TempDir::new("eio-snap");
    let (mut wal, _) = Wal::open(d.path(), WalOptions::new(CLUSTER, 1)).unwrap();
    wal.save(None, &entries(1, 1..=2)).unwrap();
    wal.inject_sync_failure();
    assert!(matches!(
        wal.save_snapshot(&snapshot(10, 1)),
        Err(WalError::Fatal { .. })
    ));
    let _ = (wal.first_index(), wal.last_index(), wal.hard_state());
    assert!(matches!(
        wal.save(None, &entries(1, 3..=3)),
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
        Wal::open(&d.path().join("sub"), WalOptions::new(long, 1)),
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
    let header_len = record_offsets(seg)[0] as usize;
    for cut in 0..header_len {
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
    wal.save_snapshot(&snapshot(2, 1)).unwrap();
    drop(wal);
    let snap = d.path().join("snapshot");
    let len = fs::metadata(&snap).unwrap().len();
    flip_bit(&snap, len - 1, 2);
    assert!(matches!(open_err(d.path()), WalError::Corrupt { ref path, .. } if *path == snap));
}

/// Copies the snapshot file of a WAL holding `snap` into `dir`, as if a
/// `save_snapshot` had crashed right after renaming it into place.
fn plant_snapshot(dir: &Path, snap: &Snapshot) {
    let src = TempDir::new("plant");
    let (mut w, _) = open(src.path());
    w.save_snapshot(snap).unwrap();
    drop(w);
    fs::copy(src.path().join("snapshot"), dir.join("snapshot")).unwrap();
}

#[test]
fn interrupted_snapshot_compaction_is_finished_on_open() {
    let o = WalOptions {
        segment_bytes: 200,
        ..opts()
    };
    let setup = |name: &str| {
        let d = TempDir::new(name);
        let (mut wal, _) = Wal::open(d.path(), o.clone()).unwrap();
        for i in 1..=20 {
            wal.save(None, &[entry(1, i)]).unwrap();
        }
        d
    };

    // Snapshot inside the log, agreeing with it: older segments go.
    let d = setup("snap-mid");
    let n = segment_files(d.path()).len();
    plant_snapshot(d.path(), &snapshot(12, 1));
    let (wal, state) = Wal::open(d.path(), o.clone()).unwrap();
    assert_eq!(state.entries, entries(1, 13..=20));
    assert_eq!(wal.first_index(), 13);
    assert!(segment_files(d.path()).len() < n);

    // Snapshot inside the log, disagreeing with it: the log restarts.
    let d = setup("snap-conflict");
    plant_snapshot(d.path(), &snapshot(12, 5));
    let (wal, state) = Wal::open(d.path(), o.clone()).unwrap();
    assert!(state.entries.is_empty());
    assert_eq!((wal.first_index(), wal.last_index()), (13, 12));
    assert_eq!(segment_files(d.path()).len(), 1);

    // Snapshot beyond the log: the log restarts after it.
    let d = setup("snap-beyond");
    plant_snapshot(d.path(), &snapshot(50, 2));
    let (mut wal, state) = Wal::open(d.path(), o.clone()).unwrap();
    assert!(state.entries.is_empty());
    assert_eq!(wal.last_index(), 50);
    wal.save(None, &entries(2, 51..=52)).unwrap();
    drop(wal);
    assert_eq!(
        Wal::open(d.path(), o.clone()).unwrap().1.entries,
        entries(2, 51..=52)
    );

    // A log that starts after the snapshot ends has lost entries.
    let d = setup("snap-gap");
    let (mut wal, _) = Wal::open(d.path(), o.clone()).unwrap();
    wal.save_snapshot(&snapshot(15, 1)).unwrap();
    drop(wal);
    plant_snapshot(d.path(), &snapshot(3, 1));
    let err = Wal::open(d.path(), o).unwrap_err();
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
