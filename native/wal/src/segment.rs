//! Segment files: a header followed by batches of entry records (see
//! [`crate::record`]).
//!
//! A segment is named by the index of its first entry, as 16 hex digits
//! (`0000000000000001.wal`), so a directory listing sorts in log order.
//!
//! Header (little-endian), format version 2:
//!
//! ```text
//! | magic "BRWALSEG" | version: u32 | first_index: u64 | first_seq: u64 |
//! | node_id: u64 | cluster_id: u32 len + bytes | crc32c of everything before: u32 |
//! ```
//!
//! `first_seq` is the sequence number the segment's first batch carries, so
//! batches run on consecutively from one segment to the next.

use std::path::Path;

use bedrock_raft::codec::{Reader, Writer};
use bedrock_raft::{DecodeError, Entry};

use crate::error::WalError;
use crate::meta::Identity;
use crate::record::{self, BatchHeader, Scan, BATCH_HEADER_LEN};

const MAGIC: &[u8; 8] = b"BRWALSEG";
/// Version 2: batches with sequence numbers. Version 1 files are refused.
const VERSION: u32 = 2;
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

/// The header of a new segment.
pub(crate) fn encode_header(first_index: u64, first_seq: u64, id: &Identity) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + id.cluster_id.len());
    w.put_raw(MAGIC);
    w.put_u32(VERSION);
    w.put_u64(first_index);
    w.put_u64(first_seq);
    w.put_u64(id.node_id);
    w.put_bytes(id.cluster_id.as_bytes());
    let crc = crc32c::crc32c(w.as_slice());
    w.put_u32(crc);
    w.into_vec()
}

/// Checks a segment header; returns its length and the first batch's
/// sequence number.
pub(crate) fn decode_header(
    path: &Path,
    buf: &[u8],
    first_index: u64,
    id: &Identity,
) -> Result<(usize, u64), WalError> {
    let bad = |reason: String| WalError::corrupt(path, 0, reason);
    let mut r = Reader::new(buf);
    let magic = r
        .get_raw(MAGIC.len(), "segment magic")
        .map_err(|e| bad(format!("segment header cut short: {e}")))?;
    if magic != MAGIC {
        return Err(bad("not a WAL segment (bad magic)".into()));
    }
    let version = r
        .get_u32("segment version")
        .map_err(|e| bad(format!("segment header cut short: {e}")))?;
    if version != VERSION {
        return Err(bad(format!(
            "segment format version {version} is not supported by this build (it reads \
             version {VERSION} only; older files are not migrated)"
        )));
    }
    let fields = (|| {
        let first = r.get_u64("segment first index")?;
        let first_seq = r.get_u64("segment first batch")?;
        let node = r.get_u64("segment node id")?;
        let cluster = r.get_bytes("segment cluster id")?;
        let body_len = r.position();
        let crc = r.get_u32("segment header checksum")?;
        Ok((first, first_seq, node, cluster, body_len, crc))
    })();
    let (first, first_seq, node, cluster, body_len, crc) =
        fields.map_err(|e: DecodeError| bad(format!("segment header cut short: {e}")))?;
    if crc32c::crc32c(&buf[..body_len]) != crc {
        return Err(bad("segment header fails its checksum".into()));
    }
    id.check(path, node, cluster)?;
    if first != first_index {
        return Err(bad(format!(
            "header says first index {first} but the file name says {first_index}"
        )));
    }
    Ok((r.position(), first_seq))
}

/// An intact batch found by [`scan`].
#[derive(Debug)]
pub(crate) struct FoundBatch {
    /// Its header.
    pub(crate) header: BatchHeader,
    /// Where it starts in the file (its header).
    pub(crate) at: u64,
    /// Where it ends.
    pub(crate) end: u64,
    /// Its entries with their record's (offset, length) in the file.
    pub(crate) entries: Vec<(Entry, u64, u32)>,
}

/// How a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// After an intact batch (or the header), at the end of the file or,
    /// in the last segment, before only zeros (space the writer allocated
    /// ahead).
    Clean,
    /// A damaged last write starts at `at`: never acknowledged, it may be cut
    /// off (the caller checks the hard state first).
    Torn {
        /// Offset of the damaged batch.
        at: u64,
        /// What was damaged.
        reason: String,
    },
}

/// What [`scan`] learned about a segment.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// How it ended.
    pub(crate) end: ScanEnd,
    /// End of the last intact batch (the segment's useful size).
    pub(crate) size: u64,
    /// Sequence number the next batch must carry.
    pub(crate) next_seq: u64,
}

/// Reads the batches of a segment in order and hands each intact one to
/// `on_batch`. Zeros after the last batch of the last segment are space
/// allocated ahead, not damage. Damage in the last segment with no later batch after it is
/// reported as [`ScanEnd::Torn`]; any other damage is [`WalError::Corrupt`]
/// naming the file, the offset and what was wrong.
pub(crate) fn scan(
    path: &Path,
    buf: &[u8],
    header_len: usize,
    first_index: u64,
    first_seq: u64,
    is_last: bool,
    mut on_batch: impl FnMut(FoundBatch) -> Result<(), WalError>,
) -> Result<Scanned, WalError> {
    let mut at = header_len;
    let mut next_seq = first_seq;
    let mut next_index = first_index;
    loop {
        if at == buf.len() || (is_last && buf[at..].iter().all(|b| *b == 0)) {
            return Ok(Scanned {
                end: ScanEnd::Clean,
                size: at as u64,
                next_seq,
            });
        }
        match read_batch(buf, at, next_seq, first_index, next_index) {
            Ok((batch, end)) => {
                next_index = batch.header.first_index + u64::from(batch.header.count);
                next_seq = batch.header.seq + 1;
                on_batch(batch)?;
                at = end;
            }
            Err((bad_at, reason)) => {
                // The last good batch has seq `next_seq - 1`; a valid header
                // with a higher seq after the damage proves it is not the
                // last write.
                let later = record::later_batch_exists(buf, at + 1, next_seq.saturating_sub(1));
                if is_last && !later {
                    return Ok(Scanned {
                        end: ScanEnd::Torn {
                            at: at as u64,
                            reason,
                        },
                        size: at as u64,
                        next_seq,
                    });
                }
                let why = if later {
                    format!("{reason} (a later write follows, so this one had been synced)")
                } else {
                    format!("{reason} (not in the last segment)")
                };
                return Err(WalError::corrupt(path, bad_at as u64, why));
            }
        }
    }
}

/// Decodes the batch at `at`: (batch, end offset), or (offset, reason) of
/// the damage.
fn read_batch(
    buf: &[u8],
    at: usize,
    seq: u64,
    first_index: u64,
    next_index: u64,
) -> Result<(FoundBatch, usize), (usize, String)> {
    let h = record::decode_batch_header(buf, at).map_err(|r| (at, r.to_string()))?;
    if h.seq < seq {
        return Err((
            at,
            format!(
                "batch {} found where a batch numbered {seq} or later belongs",
                h.seq
            ),
        ));
    }
    if h.first_index < first_index || h.first_index > next_index {
        return Err((
            at,
            format!(
                "batch starts at entry {}, outside [{first_index}, {next_index}]",
                h.first_index
            ),
        ));
    }
    let start = at + BATCH_HEADER_LEN;
    let end = usize::try_from(h.bytes)
        .ok()
        .and_then(|b| start.checked_add(b))
        .filter(|e| *e <= buf.len())
        .ok_or_else(|| (at, "batch runs past the end of the file".to_string()))?;
    let body = &buf[..end];
    let mut entries = Vec::with_capacity(h.count as usize);
    let mut rat = start;
    while rat < end {
        let (payload, total_len) = match record::next(body, rat) {
            Scan::Record { payload, total_len } => (payload, total_len),
            Scan::Bad(reason) => return Err((rat, reason.to_string())),
        };
        let mut r = Reader::new(payload);
        let entry = Entry::decode_from(&mut r)
            .and_then(|e| r.finish("entry").map(|()| e))
            .map_err(|e| (rat, format!("bad entry: {e}")))?;
        let expected = h.first_index + entries.len() as u64;
        if entry.index != expected {
            return Err((
                rat,
                format!("expected entry {expected}, found entry {}", entry.index),
            ));
        }
        entries.push((entry, rat as u64, total_len as u32));
        rat += total_len;
    }
    if entries.len() != h.count as usize {
        return Err((
            at,
            format!(
                "batch holds {} records, its header says {}",
                entries.len(),
                h.count
            ),
        ));
    }
    Ok((
        FoundBatch {
            header: h,
            at: at as u64,
            end: end as u64,
            entries,
        },
        end,
    ))
}

/// Reads back one record written at `offset` (`len` bytes, framing
/// included) and decodes its entry.
pub(crate) fn decode_record(
    path: &Path,
    buf: &[u8],
    offset: u64,
    index: u64,
) -> Result<Entry, WalError> {
    let bad = |reason: String| WalError::corrupt(path, offset, reason);
    match record::next(buf, 0) {
        Scan::Record { payload, .. } => {
            let e =
                Entry::decode_from(&mut Reader::new(payload)).map_err(|e| bad(e.to_string()))?;
            if e.index != index {
                return Err(bad(format!("expected entry {index}, found {}", e.index)));
            }
            Ok(e)
        }
        Scan::Bad(reason) => Err(bad(reason.into())),
    }
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
