//! The hard state file: term, vote and commit in two fixed slots written
//! alternately in place.
//!
//! Each slot (little-endian, at offset `slot * SLOT_STRIDE`):
//!
//! ```text
//! | magic "BRHS": u32 | sequence: u64 | term: u64 | vote: u64 | commit: u64 | crc32c: u32 |
//! ```
//!
//! Open takes the valid slot with the highest sequence. A torn write can only
//! damage the slot being written, whose write was never acknowledged; the
//! other slot always holds a durable state to fall back to. To keep that true,
//! writes that are not synced (commit-only changes) keep overwriting the same
//! slot, and the writer moves to the other slot only after a sync.
//!
//! The slots sit in different 512-byte sectors so one sector write never
//! touches both.

use std::path::{Path, PathBuf};

use bedrock_raft::codec::{Reader, Writer};
use bedrock_raft::HardState;

use crate::durable::{self, Durability};
use crate::error::WalError;
use crate::vfs::{Disk, DiskFile, OpenMode, Vfs, VfsFile};

/// Name of the hard state file inside the WAL directory.
pub(crate) const FILE_NAME: &str = "hardstate";

const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"BRHS");
const SLOT_LEN: usize = 4 + 8 + HardState::ENCODED_SIZE + 4;
const SLOT_STRIDE: u64 = 512;

fn encode_slot(seq: u64, hs: &HardState) -> Vec<u8> {
    let mut w = Writer::with_capacity(SLOT_LEN);
    w.put_u32(SLOT_MAGIC);
    w.put_u64(seq);
    hs.encode_into(&mut w);
    let crc = crc32c::crc32c(w.as_slice());
    w.put_u32(crc);
    w.into_vec()
}

/// The slot's sequence and state, or `None` if it is missing or damaged.
fn decode_slot(buf: &[u8]) -> Option<(u64, HardState)> {
    let slot = buf.get(..SLOT_LEN)?;
    let mut r = Reader::new(slot);
    if r.get_u32("slot magic").ok()? != SLOT_MAGIC {
        return None;
    }
    let seq = r.get_u64("slot sequence").ok()?;
    let hs = HardState::decode_from(&mut r).ok()?;
    let body_len = r.position();
    let crc = r.get_u32("slot checksum").ok()?;
    (crc32c::crc32c(&slot[..body_len]) == crc).then_some((seq, hs))
}

/// The open hard state file.
#[derive(Debug)]
pub(crate) struct HardStateFile {
    file: DiskFile,
    path: PathBuf,
    /// The state last written (a commit-only change may not be synced yet).
    state: HardState,
    /// Sequence number of the last slot written.
    seq: u64,
    /// Slot the next write goes to. Invariant: the other slot holds a valid,
    /// durable state (unsynced writes stay in this slot until one is synced).
    next_slot: u64,
}

impl HardStateFile {
    /// Creates the file with both slots holding the empty hard state, so that
    /// even the first real write has a valid slot to fall back to.
    pub(crate) fn create(
        disk: &Disk,
        dir: &Path,
        durable: &mut Durability,
    ) -> Result<Self, WalError> {
        let mut bytes = vec![0u8; SLOT_STRIDE as usize + SLOT_LEN];
        let empty = HardState::default();
        bytes[..SLOT_LEN].copy_from_slice(&encode_slot(1, &empty));
        bytes[SLOT_STRIDE as usize..].copy_from_slice(&encode_slot(0, &empty));
        let file = durable::replace_file(disk, dir, FILE_NAME, &bytes, durable)?;
        Ok(HardStateFile {
            file,
            path: dir.join(FILE_NAME),
            state: empty,
            seq: 1,
            next_slot: 1,
        })
    }

    /// Opens the file and recovers the newest valid slot. An empty file holds
    /// the empty hard state; a non-empty file with no valid slot is corrupt.
    pub(crate) fn open(
        disk: &Disk,
        path: PathBuf,
        durable: &mut Durability,
    ) -> Result<Self, WalError> {
        let file = disk
            .open(&path, OpenMode::WRITE)
            .map_err(|e| WalError::io("open", &path, e))?;
        let buf = durable::read_file(disk, &path)?;
        let slots = [0u64, 1].map(|i| {
            let at = (i * SLOT_STRIDE) as usize;
            buf.get(at..)
                .and_then(decode_slot)
                .map(|(seq, hs)| (seq, hs, i))
        });
        let best = slots.into_iter().flatten().max_by_key(|&(seq, _, _)| seq);
        let (seq, state, slot) = match best {
            Some(b) => b,
            None if buf.is_empty() => (0, HardState::default(), 1),
            None => {
                return Err(WalError::corrupt(
                    &path,
                    0,
                    "neither hard state slot is valid",
                ))
            }
        };
        // The newest slot may have been written without a sync before a
        // process crash; make it durable before the other slot is reused.
        durable.sync_data(&file, &path)?;
        Ok(HardStateFile {
            file,
            path,
            state,
            seq,
            next_slot: 1 - slot,
        })
    }

    /// The state last written.
    pub(crate) fn state(&self) -> HardState {
        self.state
    }

    /// Clamps the in-memory commit into `[lo, hi]` (the log may end before,
    /// or the snapshot after, the commit recorded on disk). Nothing is written.
    pub(crate) fn clamp_commit(&mut self, lo: u64, hi: u64) {
        self.state.commit = self.state.commit.min(hi).max(lo);
    }

    /// Writes `hs` if it differs from the current state. A change of term or
    /// vote is synced before returning; a commit-only change is not (see
    /// [`Wal::save`](crate::Wal::save)).
    pub(crate) fn save(
        &mut self,
        hs: &HardState,
        durable: &mut Durability,
    ) -> Result<(), WalError> {
        if *hs == self.state {
            return Ok(());
        }
        let must_sync = hs.term != self.state.term || hs.vote != self.state.vote;
        self.seq += 1;
        self.file
            .write_at(&encode_slot(self.seq, hs), self.next_slot * SLOT_STRIDE)
            .map_err(|e| WalError::io("write", &self.path, e))?;
        self.state = *hs;
        if must_sync {
            durable.sync_data(&self.file, &self.path)?;
            self.next_slot = 1 - self.next_slot;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip_and_damage() {
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 9,
        };
        let mut s = encode_slot(7, &hs);
        assert_eq!(decode_slot(&s), Some((7, hs)));
        s[12] ^= 0x10;
        assert_eq!(decode_slot(&s), None);
        assert_eq!(decode_slot(&s[..SLOT_LEN - 1]), None);
    }
}
