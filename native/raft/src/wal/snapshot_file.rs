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

use crate::codec::{Reader, Writer};
use crate::types::Snapshot;

use super::durable::{self, Durability};
use super::error::WalError;

/// Name of the snapshot file inside the WAL directory.
pub(crate) const FILE_NAME: &str = "snapshot";

const MAGIC: &[u8; 8] = b"BRWALSNP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4 + 4;

/// Durably replaces the snapshot file with `snap`.
pub(crate) fn write(dir: &Path, snap: &Snapshot, durable: &mut Durability) -> Result<(), WalError> {
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
    durable::replace_file(dir, FILE_NAME, w.as_slice(), durable)?;
    Ok(())
}

/// Reads and checks the snapshot file at `path`.
pub(crate) fn read(path: &Path) -> Result<Snapshot, WalError> {
    let buf = durable::read_file(path)?;
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
        header.map_err(|e: crate::DecodeError| bad(0, e.to_string()))?;
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
            format!("unsupported snapshot format version {version}"),
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
