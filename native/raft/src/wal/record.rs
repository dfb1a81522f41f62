//! Record framing inside a segment file.
//!
//! ```text
//! | payload_len: u32 | crc32c(payload_len bytes): u32 | crc32c(payload): u32 | payload |
//! ```
//!
//! All integers little-endian. The length carries its own checksum so that a
//! bit flip in a middle record's length is reported as corruption instead of
//! sending the reader past the end of the file, where it would look like a
//! torn final write and be truncated away.

/// Bytes of framing before each payload.
pub(crate) const HEADER_LEN: usize = 12;

/// Appends one framed record holding `payload` to `out`.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes (entries are far smaller).
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
    /// Exactly at the end of the buffer.
    End,
    /// A damaged record.
    Bad {
        /// What was wrong.
        reason: &'static str,
        /// True when the damage is what an unacknowledged, interrupted final
        /// append can leave behind. Only then, and only at the end of the last
        /// segment, may the record be truncated away.
        torn: bool,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Decodes the record starting at `buf[at..]`.
///
/// A torn final append shows up as: fewer than [`HEADER_LEN`] bytes, a valid
/// header whose payload runs past the end, zeros where the record should be
/// (a file extended before its data block was written), or a payload checksum
/// failure on a record followed by nothing but zeros. Anything else that fails
/// a check — in particular a bad length or payload with real bytes after it —
/// is corruption (`torn: false`).
pub(crate) fn next(buf: &[u8], at: usize) -> Scan<'_> {
    let rest = &buf[at..];
    if rest.is_empty() {
        return Scan::End;
    }
    if all_zero(rest) {
        return Scan::Bad {
            reason: "zero-filled tail",
            torn: true,
        };
    }
    if rest.len() < HEADER_LEN {
        return Scan::Bad {
            reason: "record header cut short by end of file",
            torn: true,
        };
    }
    let len = u32_at(rest, 0);
    if crc32c::crc32c(&rest[..4]) != u32_at(rest, 4) {
        return Scan::Bad {
            reason: "record length fails its checksum",
            torn: all_zero(&rest[HEADER_LEN..]),
        };
    }
    let total_len = HEADER_LEN + len as usize;
    if total_len > rest.len() {
        return Scan::Bad {
            reason: "record runs past end of file",
            torn: true,
        };
    }
    let payload = &rest[HEADER_LEN..total_len];
    if crc32c::crc32c(payload) != u32_at(rest, 8) {
        return Scan::Bad {
            reason: "record payload fails its checksum",
            torn: all_zero(&rest[total_len..]),
        };
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
        assert_eq!(next(&b, total_len), {
            Scan::Record {
                payload: b"second",
                total_len: HEADER_LEN + 6,
            }
        });
        assert_eq!(next(&b, b.len()), Scan::End);
    }

    #[test]
    fn every_cut_of_the_last_record_is_torn() {
        let b = two_records();
        let second = HEADER_LEN + 5;
        for cut in second + 1..b.len() {
            match next(&b[..cut], second) {
                Scan::Bad { torn: true, .. } => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_bit_flip_in_a_middle_record_is_corruption() {
        let b = two_records();
        for byte in 0..HEADER_LEN + 5 {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                match next(&c, 0) {
                    Scan::Bad { torn: false, .. } => {}
                    other => panic!("flip {byte}.{bit}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn zeros_and_a_bad_final_payload_are_torn() {
        let mut b = two_records();
        b.extend_from_slice(&[0; 40]);
        let end = b.len() - 40;
        assert!(matches!(next(&b, end), Scan::Bad { torn: true, .. }));
        let mut c = two_records();
        let last = c.len() - 1;
        c[last] ^= 1;
        assert!(matches!(
            next(&c, HEADER_LEN + 5),
            Scan::Bad { torn: true, .. }
        ));
    }
}
