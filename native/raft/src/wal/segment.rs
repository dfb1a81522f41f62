//! Segment files: a header followed by framed entry records with strictly
//! consecutive indexes.
//!
//! A segment is named by the index of its first entry, as 16 hex digits
//! (`0000000000000001.wal`), so a directory listing sorts in log order.
//!
//! Header (little-endian):
//!
//! ```text
//! | magic "BRWALSEG" | version: u32 | first_index: u64 | node_id: u64 |
//! | cluster_id: u32 len + bytes | crc32c of everything before: u32 |
//! ```

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::codec::{Reader, Writer};
use crate::types::Entry;

use super::durable::{self, Durability};
use super::error::WalError;
use super::meta::Identity;
use super::record::{self, Scan};

const MAGIC: &[u8; 8] = b"BRWALSEG";
const VERSION: u32 = 1;
const SUFFIX: &str = ".wal";

/// The file name of the segment whose first entry is `first_index`.
pub(crate) fn file_name(first_index: u64) -> String {
    format!("{first_index:016x}{SUFFIX}")
}

/// The first index encoded in a segment file name, if `name` is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SUFFIX)?;
    let first = u64::from_str_radix(hex, 16).ok()?;
    // Only the exact spelling we write, so the name maps back to this file.
    (file_name(first) == name).then_some(first)
}

fn encode_header(first_index: u64, id: &Identity) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + id.cluster_id.len());
    w.put_raw(MAGIC);
    w.put_u32(VERSION);
    w.put_u64(first_index);
    w.put_u64(id.node_id);
    w.put_bytes(id.cluster_id.as_bytes());
    let crc = crc32c::crc32c(w.as_slice());
    w.put_u32(crc);
    w.into_vec()
}

/// Checks a segment header; returns its length.
fn decode_header(
    path: &Path,
    buf: &[u8],
    first_index: u64,
    id: &Identity,
) -> Result<usize, WalError> {
    let bad = |reason: String| WalError::corrupt(path, 0, reason);
    let mut r = Reader::new(buf);
    let magic = r
        .get_raw(MAGIC.len(), "segment magic")
        .map_err(|e| bad(format!("segment header cut short: {e}")))?;
    if magic != MAGIC {
        return Err(bad("not a WAL segment (bad magic)".into()));
    }
    let fields = (|| {
        let version = r.get_u32("segment version")?;
        let first = r.get_u64("segment first index")?;
        let node = r.get_u64("segment node id")?;
        let cluster = r.get_bytes("segment cluster id")?;
        let body_len = r.position();
        let crc = r.get_u32("segment header checksum")?;
        Ok((version, first, node, cluster, body_len, crc))
    })();
    let (version, first, node, cluster, body_len, crc) =
        fields.map_err(|e: crate::DecodeError| bad(format!("segment header cut short: {e}")))?;
    if crc32c::crc32c(&buf[..body_len]) != crc {
        return Err(bad("segment header fails its checksum".into()));
    }
    if version != VERSION {
        return Err(bad(format!("unsupported segment format version {version}")));
    }
    id.check(path, node, cluster)?;
    if first != first_index {
        return Err(bad(format!(
            "header says first index {first} but the file name says {first_index}"
        )));
    }
    Ok(r.position())
}

/// One segment file as known in memory.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Index of the first entry the file holds (or would hold, when empty).
    pub(crate) first_index: u64,
    /// Full path of the file.
    pub(crate) path: PathBuf,
    /// `offsets[i]` is the byte offset of the record of entry `first_index + i`.
    pub(crate) offsets: Vec<u64>,
    /// Bytes in use: the end of the last record. Invariant: the file is exactly
    /// this long except while an append is in flight.
    pub(crate) size: u64,
}

impl Segment {
    /// The index the next appended entry must have.
    pub(crate) fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    /// Creates an empty segment atomically (the header never appears half
    /// written under a `.wal` name) and returns it with its file open for writing.
    pub(crate) fn create(
        dir: &Path,
        first_index: u64,
        id: &Identity,
        durable: &mut Durability,
    ) -> Result<(Segment, File), WalError> {
        let name = file_name(first_index);
        let header = encode_header(first_index, id);
        let file = durable::replace_file(dir, &name, &header, durable)?;
        let seg = Segment {
            first_index,
            path: dir.join(name),
            offsets: Vec::new(),
            size: header.len() as u64,
        };
        Ok((seg, file))
    }

    /// Opens this segment's file for appending at `size`.
    pub(crate) fn open_for_write(&self) -> Result<File, WalError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| WalError::io("open", &self.path, e))
    }

    /// Reads and checks a whole segment file, returning it and its entries.
    ///
    /// `is_last` allows one thing only: a torn final record is reported as
    /// `torn_at = Some(offset)` so the caller can truncate it. Everything else
    /// that fails a check is [`WalError::Corrupt`].
    pub(crate) fn load(
        path: PathBuf,
        first_index: u64,
        id: &Identity,
        is_last: bool,
    ) -> Result<Loaded, WalError> {
        let buf = durable::read_file(&path)?;
        let header_len = decode_header(&path, &buf, first_index, id)?;
        let mut entries = Vec::new();
        let mut offsets = Vec::new();
        let mut at = header_len;
        let mut torn_at = None;
        loop {
            match record::next(&buf, at) {
                Scan::End => break,
                Scan::Bad { torn: true, .. } if is_last => {
                    torn_at = Some(at as u64);
                    break;
                }
                Scan::Bad { reason, .. } => {
                    return Err(WalError::corrupt(&path, at as u64, reason));
                }
                Scan::Record { payload, total_len } => {
                    let mut r = Reader::new(payload);
                    let entry = Entry::decode_from(&mut r)
                        .and_then(|e| r.finish("entry").map(|()| e))
                        .map_err(|e| {
                            WalError::corrupt(&path, at as u64, format!("bad entry: {e}"))
                        })?;
                    let expected = first_index + entries.len() as u64;
                    if entry.index != expected {
                        return Err(WalError::corrupt(
                            &path,
                            at as u64,
                            format!("expected entry {expected}, found entry {}", entry.index),
                        ));
                    }
                    offsets.push(at as u64);
                    entries.push(entry);
                    at += total_len;
                }
            }
        }
        let seg = Segment {
            first_index,
            path,
            offsets,
            size: at as u64,
        };
        Ok(Loaded {
            segment: seg,
            entries,
            torn_at,
        })
    }

    /// Reads back the entry at `index`, which this segment must hold.
    pub(crate) fn read_entry(&self, index: u64) -> Result<Entry, WalError> {
        use std::os::unix::fs::FileExt;
        let i = (index - self.first_index) as usize;
        let start = self.offsets[i];
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.size);
        let mut buf = vec![0; (end - start) as usize];
        let file = File::open(&self.path).map_err(|e| WalError::io("open", &self.path, e))?;
        file.read_exact_at(&mut buf, start)
            .map_err(|e| WalError::io("read", &self.path, e))?;
        let bad = |reason: String| WalError::corrupt(&self.path, start, reason);
        match record::next(&buf, 0) {
            Scan::Record { payload, .. } => {
                Entry::decode_from(&mut Reader::new(payload)).map_err(|e| bad(e.to_string()))
            }
            Scan::Bad { reason, .. } => Err(bad(reason.into())),
            Scan::End => Err(bad("record missing".into())),
        }
    }
}

/// A segment as found on disk by [`Segment::load`].
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The segment, sized to its last intact record.
    pub(crate) segment: Segment,
    /// Its entries, consecutive from `segment.first_index`.
    pub(crate) entries: Vec<Entry>,
    /// Offset of a torn final record that must be truncated away (last segment only).
    pub(crate) torn_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(file_name(1), "0000000000000001.wal");
        assert_eq!(parse_file_name(&file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_file_name("1.wal"), None);
        assert_eq!(parse_file_name("000000000000000g.wal"), None);
        assert_eq!(parse_file_name("000000000000000A.wal"), None);
        assert_eq!(parse_file_name("+00000000000000a.wal"), None);
        assert!(file_name(9) < file_name(10));
    }
}
