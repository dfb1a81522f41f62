//! Framing inside a segment file: batches of records.
//!
//! Every write of the WAL (one group commit, or the part of it that fits in a
//! segment) is one *batch*: a header, then its records.
//!
//! ```text
//! batch:  | magic "BRBT": u32 | seq: u64 | first_index: u64 | count: u32 |
//!         | bytes: u64 | crc32c of the 32 bytes before: u32 | records... |
//! record: | payload_len: u32 | crc32c(payload_len bytes): u32 | crc32c(payload): u32 | payload |
//! ```
//!
//! All integers little-endian. `seq` numbers batches in increasing order
//! across the whole log; `bytes` is the extent of the records that follow. So damage is
//! located by batch: if no valid header of a later batch follows a damaged
//! one, the damage lies inside the last write, which was never acknowledged
//! (it was not synced) and may be cut off — however it was torn, a missing
//! page in its middle included. Damage followed by a later batch is
//! corruption of synced data. A batch whose `first_index` is at or below the
//! last index so far replaces the log from there (a new leader overwrote a
//! tail): the WAL never overwrites synced bytes in place.
//!
//! The record length carries its own checksum so that a bit flip in a
//! length is reported as damage instead of sending the reader astray.

/// Bytes of framing before each payload.
pub(crate) const HEADER_LEN: usize = 12;

/// Bytes of a batch header.
pub(crate) const BATCH_HEADER_LEN: usize = 36;

const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"BRBT");

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Position of the batch in the log's sequence of batches.
    pub(crate) seq: u64,
    /// Index of the first entry in the batch.
    pub(crate) first_index: u64,
    /// Number of records.
    pub(crate) count: u32,
    /// Bytes of the records that follow the header.
    pub(crate) bytes: u64,
}

/// Writes the encoding of `h` into `out` ([`BATCH_HEADER_LEN`] bytes).
///
/// # Panics
/// If `out` is not exactly [`BATCH_HEADER_LEN`] bytes long.
pub(crate) fn write_batch_header(h: &BatchHeader, out: &mut [u8]) {
    assert_eq!(out.len(), BATCH_HEADER_LEN, "batch header size");
    out[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    out[4..12].copy_from_slice(&h.seq.to_le_bytes());
    out[12..20].copy_from_slice(&h.first_index.to_le_bytes());
    out[20..24].copy_from_slice(&h.count.to_le_bytes());
    out[24..32].copy_from_slice(&h.bytes.to_le_bytes());
    let crc = crc32c::crc32c(&out[..32]);
    out[32..36].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a framed record holding the encoding of `entry` to `buf`, encoding
/// the entry in place (no intermediate buffer); returns `buf`.
///
/// # Panics
/// If the encoded entry is longer than `u32::MAX` bytes (entries are far smaller).
pub(crate) fn encode_entry(entry: &bedrock_raft::Entry, mut buf: Vec<u8>) -> Vec<u8> {
    let at = buf.len();
    buf.resize(at + HEADER_LEN, 0);
    let mut w = bedrock_raft::codec::Writer::from_vec(buf);
    entry.encode_into(&mut w);
    let mut buf = w.into_vec();
    let payload_len = buf.len() - at - HEADER_LEN;
    let len = u32::try_from(payload_len).expect("WAL record longer than u32::MAX");
    let len_bytes = len.to_le_bytes();
    let payload_crc = crc32c::crc32c(&buf[at + HEADER_LEN..]);
    buf[at..at + 4].copy_from_slice(&len_bytes);
    buf[at + 4..at + 8].copy_from_slice(&crc32c::crc32c(&len_bytes).to_le_bytes());
    buf[at + 8..at + 12].copy_from_slice(&payload_crc.to_le_bytes());
    buf
}

/// Decodes the batch header at `buf[at..]`, or says why it is not one.
pub(crate) fn decode_batch_header(buf: &[u8], at: usize) -> Result<BatchHeader, &'static str> {
    let rest = &buf[at..];
    if rest.len() < BATCH_HEADER_LEN {
        return Err("batch header cut short by end of file");
    }
    if u32_at(rest, 0) != BATCH_MAGIC {
        return Err("no batch header where one should start");
    }
    if crc32c::crc32c(&rest[..32]) != u32_at(rest, 32) {
        return Err("batch header fails its checksum");
    }
    let u64_at = |o: usize| u64::from_le_bytes(rest[o..o + 8].try_into().expect("8 bytes"));
    Ok(BatchHeader {
        seq: u64_at(4),
        first_index: u64_at(12),
        count: u32_at(rest, 20),
        bytes: u64_at(24),
    })
}

/// True if a valid batch header with a sequence number above `after_seq`
/// starts anywhere in `buf[from..]`: the evidence that damage before it is
/// not in the last write.
pub(crate) fn later_batch_exists(buf: &[u8], from: usize, after_seq: u64) -> bool {
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut at = from;
    while at + BATCH_HEADER_LEN <= buf.len() {
        if buf[at..at + 4] == magic {
            if let Ok(h) = decode_batch_header(buf, at) {
                if h.seq > after_seq {
                    return true;
                }
            }
        }
        at += 1;
    }
    false
}

/// Appends one framed record holding `payload` to `out` (the tests' way of
/// building records; the WAL encodes entries in place with [`encode_entry`]).
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes (entries are far smaller).
#[cfg(test)]
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("WAL record longer than u32::MAX");
    let len_bytes = len.to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc32c::crc32c(&len_bytes).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What [`next`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan<'a> {
    /// A record whose framing and payload checksum are intact.
    Record {
        /// The payload bytes.
        payload: &'a [u8],
        /// Framing plus payload: the record occupies `[at, at + total_len)`.
        total_len: usize,
    },
    /// A damaged record, and what was wrong.
    Bad(&'static str),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes the record starting at `buf[at..]` (`buf` ends where the record's
/// batch ends).
pub(crate) fn next(buf: &[u8], at: usize) -> Scan<'_> {
    let rest = &buf[at..];
    if rest.len() < HEADER_LEN {
        return Scan::Bad("record header cut short");
    }
    let len = u32_at(rest, 0);
    if crc32c::crc32c(&rest[..4]) != u32_at(rest, 4) {
        return Scan::Bad("record length fails its checksum");
    }
    let total_len = HEADER_LEN + len as usize;
    if total_len > rest.len() {
        return Scan::Bad("record runs past the end of its batch");
    }
    let payload = &rest[HEADER_LEN..total_len];
    if crc32c::crc32c(payload) != u32_at(rest, 8) {
        return Scan::Bad("record payload fails its checksum");
    }
    Scan::Record { payload, total_len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut b = Vec::new();
        encode(b"first", &mut b);
        encode(b"second", &mut b);
        b
    }

    #[test]
    fn round_trip() {
        let b = two_records();
        let Scan::Record { payload, total_len } = next(&b, 0) else {
            panic!("expected a record")
        };
        assert_eq!(payload, b"first");
        assert_eq!(
            next(&b, total_len),
            Scan::Record {
                payload: b"second",
                total_len: HEADER_LEN + 6,
            }
        );
    }

    #[test]
    fn every_cut_and_every_bit_flip_is_damage() {
        let b = two_records();
        let second = HEADER_LEN + 5;
        for cut in second + 1..b.len() {
            assert!(
                matches!(next(&b[..cut], second), Scan::Bad(_)),
                "cut at {cut}"
            );
        }
        for byte in 0..HEADER_LEN + 5 {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                assert!(matches!(next(&c, 0), Scan::Bad(_)), "flip {byte}.{bit}");
            }
        }
    }

    #[test]
    fn batch_headers_round_trip_and_are_found_after_damage() {
        let h = BatchHeader {
            seq: 7,
            first_index: 42,
            count: 3,
            bytes: 99,
        };
        let mut b = vec![0xAB; 5 + BATCH_HEADER_LEN];
        write_batch_header(&h, &mut b[5..]);
        assert_eq!(decode_batch_header(&b, 5), Ok(h));
        assert!(later_batch_exists(&b, 0, 6));
        assert!(!later_batch_exists(&b, 0, 7));
        assert!(!later_batch_exists(&b, 6, 6));
        b[9] ^= 1;
        assert!(decode_batch_header(&b, 5).is_err());
        assert!(!later_batch_exists(&b, 0, 0));
    }
}
