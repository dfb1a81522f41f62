//! The snapshot file: the latest durable snapshot, replaced atomically.
//!
//! Format (little-endian):
//!
//! ```text
//! | magic "BRWALSNP" | version: u32 | payload_len: u64 | crc32c(payload): u32 |
//! | crc32c of the 24 bytes before: u32 | payload: encoded Snapshot |
//! ```
//!
//! The file is only ever written through a temporary file and a rename, so it
//! is never torn: any damage is corruption.

use std::path::Path;

use bedrock_raft::codec::{Reader, Writer};
use bedrock_raft::{DecodeError, Snapshot};

use crate::durable::{self, Durability};
use crate::error::WalError;
use crate::vfs::Disk;

/// Name of the snapshot file inside the WAL directory.
pub(crate) const FILE_NAME: &str = "snapshot";

const MAGIC: &[u8; 8] = b"BRWALSNP";
/// Version 2: memberships carry learners. Version 1 files are refused.
const VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 4 + 4;

/// The name a compaction's snapshot file is written under before it is put
/// in place (``.tmp``: a leftover is removed on open).
pub(crate) fn staged_name(index: u64) -> String {
    format!("{FILE_NAME}-{index}.staged.tmp")
}

/// Durably replaces the snapshot file with `snap`.
pub(crate) fn write(
    disk: &Disk,
    dir: &Path,
    snap: &Snapshot,
    durable: &mut Durability,
) -> Result<(), WalError> {
    durable::replace_file(disk, dir, FILE_NAME, &encode(snap), durable)?;
    Ok(())
}

/// The bytes of a snapshot file holding `snap`.
pub(crate) fn encode(snap: &Snapshot) -> Vec<u8> {
    let mut payload = Writer::with_capacity(64 + snap.data.len());
    snap.encode_into(&mut payload);
    let payload = payload.into_vec();
    let mut w = Writer::with_capacity(HEADER_LEN + payload.len());
    w.put_raw(MAGIC);
    w.put_u32(VERSION);
    w.put_u64(payload.len() as u64);
    w.put_u32(crc32c::crc32c(&payload));
    let crc = crc32c::crc32c(w.as_slice());
    w.put_u32(crc);
    w.put_raw(&payload);
    w.into_vec()
}

/// Reads and checks the snapshot file at `path`.
pub(crate) fn read(disk: &Disk, path: &Path) -> Result<Snapshot, WalError> {
    let buf = durable::read_file(disk, path)?;
    let bad = |offset: u64, reason: String| WalError::corrupt(path, offset, reason);
    if buf.len() < HEADER_LEN {
        return Err(bad(0, "snapshot file header cut short".into()));
    }
    let mut r = Reader::new(&buf);
    let header = (|| {
        let magic = r.get_raw(MAGIC.len(), "snapshot magic")?;
        let version = r.get_u32("snapshot version")?;
        let len = r.get_u64("snapshot length")?;
        let payload_crc = r.get_u32("snapshot checksum")?;
        Ok((magic, version, len, payload_crc))
    })();
    let (magic, version, len, payload_crc) =
        header.map_err(|e: DecodeError| bad(0, e.to_string()))?;
    let header_crc = u32::from_le_bytes([buf[24], buf[25], buf[26], buf[27]]);
    if magic != MAGIC {
        return Err(bad(0, "not a WAL snapshot file (bad magic)".into()));
    }
    if crc32c::crc32c(&buf[..24]) != header_crc {
        return Err(bad(0, "snapshot header fails its checksum".into()));
    }
    if version != VERSION {
        return Err(bad(
            0,
            format!(
                "snapshot format version {version} is not supported by this build (it reads \
                 version {VERSION} only; older files are not migrated)"
            ),
        ));
    }
    let payload = &buf[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(bad(
            HEADER_LEN as u64,
            format!(
                "snapshot payload is {} bytes, header says {len}",
                payload.len()
            ),
        ));
    }
    if crc32c::crc32c(payload) != payload_crc {
        return Err(bad(
            HEADER_LEN as u64,
            "snapshot payload fails its checksum".into(),
        ));
    }
    let mut r = Reader::new(payload);
    let snap = Snapshot::decode_from(&mut r)
        .and_then(|s| r.finish("snapshot").map(|()| s))
        .map_err(|e| bad(HEADER_LEN as u64, format!("bad snapshot: {e}")))?;
    Ok(snap)
}
