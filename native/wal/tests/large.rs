//! A 1 GiB log opens with an index of it in memory, not the log itself.
//! Alone in its test binary, so the peak memory measured is its own.

use std::fs;
use std::path::PathBuf;

use bedrock_raft::{Entry, HardState, Storage};
use bedrock_wal::{Disk, Wal, WalOptions};

const MIB: usize = 1 << 20;

/// Peak resident memory of this process, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

fn payload(i: u64) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; MIB];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

#[test]
fn a_1_gib_wal_opens_without_holding_it_in_memory() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("bedrock-wal-1gib-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let opts = WalOptions {
        sync: false,
        ..WalOptions::new("large", 1)
    };
    let n = 1024u64;
    {
        let mut wal = Wal::open(Disk::Os, &dir, opts.clone()).unwrap();
        for first in (1..=n).step_by(8) {
            let batch: Vec<Entry> = (first..first + 8)
                .map(|i| Entry::new(1, i, payload(i)))
                .collect();
            wal.save(None, &batch).unwrap();
        }
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: n,
        };
        wal.save(Some(&hs), &[]).unwrap();
    }
    let on_disk: u64 = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk >= n * MIB as u64, "{on_disk} bytes written");

    let wal = Wal::open(Disk::Os, &dir, opts).unwrap();
    let st = wal.storage();
    assert_eq!((st.first_index(), st.last_index()), (1, n));
    assert_eq!(wal.hard_state().commit, n);
    for i in [1, n / 2, n] {
        let e = st.entries(i, i + 1, u64::MAX).unwrap();
        assert_eq!(e[0].data, payload(i), "entry {i} read back");
    }
    let peak = peak_rss();
    eprintln!("peak resident memory: {} MiB", peak / MIB as u64);
    drop(wal);
    let _ = fs::remove_dir_all(&dir);
    assert!(
        peak < 384 * MIB as u64,
        "peak memory {} MiB for a {} MiB log",
        peak / MIB as u64,
        on_disk / MIB as u64
    );
}
