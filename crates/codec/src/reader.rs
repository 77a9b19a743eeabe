//! [`Reader`]: fields off a byte slice, every read checked.

use crate::DecodeError;

/// Reads fields off a byte slice from its start. Never panics and never allocates: byte
/// strings come back as slices of the input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input, offset: 0 }
    }

    /// Bytes read so far (where the next field starts).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `n` bytes.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or_else(|| self.truncated(n))?;
        self.advance(tail, n);
        Ok(head)
    }

    /// The next `N` bytes, as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self.rest.split_first_chunk::<N>().ok_or_else(|| self.truncated(N))?;
        self.advance(tail, N);
        Ok(*head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// One byte that must be 0 (`false`) or 1 (`true`).
    pub fn flag(&mut self) -> Result<bool, DecodeError> {
        let offset = self.offset;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid { what: "flag (0 or 1)", offset }),
        }
    }

    /// A byte string after a one-byte length, refused if longer than `max`.
    pub fn bytes8(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u8()?;
        self.bounded(u64::from(len), max, what)
    }

    /// A byte string after a big-endian two-byte length, refused if longer than `max`.
    pub fn bytes16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.bounded(u64::from(len), max, what)
    }

    /// A byte string after a big-endian four-byte length, refused if longer than `max`.
    pub fn bytes32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()?;
        self.bounded(u64::from(len), max, what)
    }

    /// A one-byte count, refused if larger than `max`.
    pub fn count8(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u8()?;
        check(u64::from(n), max, what)
    }

    /// A big-endian two-byte count, refused if larger than `max`.
    pub fn count16(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u16()?;
        check(u64::from(n), max, what)
    }

    /// A big-endian four-byte count, refused if larger than `max`.
    pub fn count32(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32()?;
        check(u64::from(n), max, what)
    }

    /// How many of `count` items of at least `min_item_len` bytes each the rest of the input can
    /// hold: a bound for `Vec::with_capacity` that a forged count cannot inflate.
    pub fn capacity_for(&self, count: usize, min_item_len: usize) -> usize {
        count.min(self.rest.len() / min_item_len.max(1))
    }

    /// Everything left (the last field of a format whose end is the input's end).
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = std::mem::take(&mut self.rest);
        self.offset += rest.len();
        rest
    }

    /// Succeeds only if every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { offset: self.offset, count: self.rest.len() })
        }
    }

    /// Succeeds only if every byte left is zero (a message padded to a fixed-size frame).
    pub fn finish_zero_padded(self) -> Result<(), DecodeError> {
        match self.rest.iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(i) => Err(DecodeError::Invalid { what: "padding (zeros)", offset: self.offset + i }),
        }
    }

    fn truncated(&self, needed: usize) -> DecodeError {
        DecodeError::Truncated { offset: self.offset, needed, remaining: self.rest.len() }
    }

    fn advance(&mut self, rest: &'a [u8], read: usize) {
        self.rest = rest;
        self.offset += read;
    }

    fn bounded(&mut self, len: u64, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = check(len, max, what)?;
        self.raw(len)
    }
}

/// `n` as a `usize` if at most `max`.
fn check(n: u64, max: usize, what: &'static str) -> Result<usize, DecodeError> {
    match usize::try_from(n) {
        Ok(v) if v <= max => Ok(v),
        _ => Err(DecodeError::TooLong { what, len: n, max }),
    }
}
