//! A small, bounds-checked binary codec shared by messages and the WAL.
//!
//! Integers are fixed-width little-endian; byte strings are a `u32` length
//! followed by the bytes. Every read checks the remaining length first, so a
//! hostile or truncated buffer yields a [`DecodeError`] naming the field and
//! offset instead of a panic or an oversized allocation.

use thiserror::Error;

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot decode {what} at byte {offset}: {reason}")]
pub struct DecodeError {
    /// The field or structure being decoded.
    pub what: &'static str,
    /// Byte offset inside the buffer where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// Appends encoded values to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(cap),
        }
    }

    /// A writer that appends to `buf` (its bytes so far are kept).
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Writer { buf }
    }

    /// Appends one byte.
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a little-endian `u32`.
    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a little-endian `u64`.
    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a length-prefixed byte string.
    ///
    /// # Panics
    /// If `v` is longer than `u32::MAX` bytes (callers cap sizes far below).
    pub fn put_bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("byte string longer than u32::MAX");
        self.put_u32(len);
        self.buf.extend_from_slice(v);
    }

    /// Appends raw bytes with no length prefix.
    pub fn put_raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Consumes the writer, returning its bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads encoded values from a byte slice, checking bounds on every read.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error for `what` at the current offset.
    pub fn error(&self, what: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            what,
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.error(what, format!("need {n} bytes, {} left", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one byte.
    pub fn get_u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a little-endian `u32`.
    pub fn get_u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a little-endian `u64`.
    pub fn get_u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads a boolean encoded as 0 or 1.
    pub fn get_bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.get_u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError {
                what,
                offset: at,
                reason: format!("expected 0 or 1, found {v}"),
            }),
        }
    }

    /// Reads a length-prefixed byte string (borrowed).
    pub fn get_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.get_u32(what)? as usize;
        self.take(len, what)
    }

    /// Reads `n` raw bytes.
    pub fn get_raw(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        self.take(n, what)
    }

    /// Reads a `u32` element count and checks that `count * min_size` bytes
    /// could still follow, so a forged count cannot force a huge allocation.
    pub fn get_count(&mut self, what: &'static str, min_size: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.get_u32(what)? as usize;
        if n.saturating_mul(min_size.max(1)) > self.remaining() {
            return Err(DecodeError {
                what,
                offset: at,
                reason: format!("count {n} exceeds the {} bytes left", self.remaining()),
            });
        }
        Ok(n)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.error(what, format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut w = Writer::default();
        w.put_u8(7);
        w.put_u32(9);
        w.put_u64(u64::MAX);
        w.put_bytes(b"abc");
        let v = w.into_vec();
        let mut r = Reader::new(&v);
        assert_eq!(r.get_u8("a").unwrap(), 7);
        assert_eq!(r.get_u32("b").unwrap(), 9);
        assert_eq!(r.get_u64("c").unwrap(), u64::MAX);
        assert_eq!(r.get_bytes("d").unwrap(), b"abc");
        r.finish("end").unwrap();
        let mut short = Reader::new(&v[..3]);
        short.get_u8("a").unwrap();
        let e = short.get_u32("b").unwrap_err();
        assert_eq!(e.offset, 1);
        assert_eq!(e.what, "b");
    }

    #[test]
    fn forged_count_is_refused() {
        let mut w = Writer::default();
        w.put_u32(u32::MAX);
        let v = w.into_vec();
        assert!(Reader::new(&v).get_count("entries", 17).is_err());
    }
}
