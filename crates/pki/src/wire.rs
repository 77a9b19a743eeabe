//! The canonical binary encoding shared by every directory message.
//!
//! Integers are big-endian and fixed-width; variable-length fields carry a length prefix of a
//! stated width; lists carry a count and are sorted strictly (so they hold no duplicates and
//! have one order); every message starts with a version byte and must be consumed exactly.
//! Each value therefore has exactly one encoding, and a decoder accepts only that encoding:
//! `encode(decode(b)) == b` for every `b` that decodes (the fuzz targets check it).

use crate::error::DecodeError;

/// Appends encoded fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A field of at most 255 bytes with a one-byte length. Callers only pass values that their
    /// constructors bounded; a longer one is truncated in the prefix and fails to decode.
    pub(crate) fn bytes8(&mut self, b: &[u8]) {
        self.u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
        self.raw(b);
    }

    /// A field with a two-byte length (same contract as [`Writer::bytes8`]).
    pub(crate) fn bytes16(&mut self, b: &[u8]) {
        self.u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
        self.raw(b);
    }

    /// A field with a four-byte length (same contract as [`Writer::bytes8`]).
    pub(crate) fn bytes32(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.raw(b);
    }
}

/// Reads encoded fields from a byte slice, never panicking on any input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.raw(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn checked(&mut self, len: usize, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if len > max {
            return Err(DecodeError::TooLarge { what });
        }
        self.raw(len)
    }

    pub(crate) fn bytes8(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u8()?);
        self.checked(len, max, what)
    }

    pub(crate) fn bytes16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        self.checked(len, max, what)
    }

    pub(crate) fn bytes32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32()?).map_err(|_| DecodeError::TooLarge { what })?;
        self.checked(len, max, what)
    }

    /// A count prefix (two bytes) bounded by `max`.
    pub(crate) fn count16(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(DecodeError::TooLarge { what });
        }
        Ok(n)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes) }
    }
}

/// Splits `signed ‖ signature`: the last 64 bytes are the signature.
pub(crate) fn split_signature(bytes: &[u8]) -> Result<(&[u8], [u8; 64]), DecodeError> {
    let Some(at) = bytes.len().checked_sub(64) else {
        return Err(DecodeError::Truncated);
    };
    let (body, sig) = bytes.split_at(at);
    let mut s = [0u8; 64];
    s.copy_from_slice(sig);
    Ok((body, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_round_trips_and_rejects_garbage() {
        let mut w = Writer::new();
        w.u8(1);
        w.u16(2);
        w.u32(3);
        w.u64(4);
        w.bytes8(b"abc");
        w.bytes16(b"de");
        w.bytes32(b"f");
        let b = w.into_bytes();
        let mut r = Reader::new(&b);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.bytes8(3, "x"), Ok(&b"abc"[..]));
        assert_eq!(r.bytes16(1, "y"), Err(DecodeError::TooLarge { what: "y" }));
        let mut r = Reader::new(&b[..b.len() - 1]);
        r.raw(1 + 2 + 4 + 8 + 4 + 4).unwrap();
        assert_eq!(r.bytes32(10, "z"), Err(DecodeError::Truncated));
        let r = Reader::new(&b);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
        assert_eq!(split_signature(&[0; 63]), Err(DecodeError::Truncated));
    }
}
