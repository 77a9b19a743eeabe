//! [`Writer`]: fields appended to a buffer, length prefixes checked.

use crate::EncodeError;

/// Appends fields to a buffer. Writes cannot fail one by one: a byte string too long for its
/// length prefix, or a count too large for its width, is not written and is remembered, and
/// [`Writer::finish`] then returns the error instead of bytes, so no caller can send a prefix
/// that disagrees with its field.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
    error: Option<EncodeError>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes (give the exact length when the bytes are
    /// secret and will be zeroized: the buffer then never moves).
    pub fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity), error: None }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far (for a checksum over them).
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes, or the first field that did not fit its prefix.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.error {
            None => Ok(self.buf),
            Some(e) => Err(e),
        }
    }

    /// The bytes written and the first field that did not fit its prefix, if any: for a caller
    /// whose bytes are secret, which must wipe them whether or not the encoding succeeded
    /// ([`Writer::finish`] drops them as they are on an error).
    pub fn into_parts(self) -> (Vec<u8>, Option<EncodeError>) {
        (self.buf, self.error)
    }

    /// Bytes as they are (a fixed-length field).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.raw(&v.to_be_bytes());
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.raw(&v.to_be_bytes());
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.raw(&v.to_be_bytes());
    }

    /// `false` as 0, `true` as 1.
    pub fn flag(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A byte string after a one-byte length (at most 255 bytes).
    pub fn bytes8(&mut self, b: &[u8]) {
        if let Some(n) = self.fit::<u8>(b.len(), 1) {
            self.u8(n);
            self.raw(b);
        }
    }

    /// A byte string after a big-endian two-byte length (at most 65,535 bytes).
    pub fn bytes16(&mut self, b: &[u8]) {
        if let Some(n) = self.fit::<u16>(b.len(), 2) {
            self.u16(n);
            self.raw(b);
        }
    }

    /// A byte string after a big-endian four-byte length.
    pub fn bytes32(&mut self, b: &[u8]) {
        if let Some(n) = self.fit::<u32>(b.len(), 4) {
            self.u32(n);
            self.raw(b);
        }
    }

    /// A one-byte count (at most 255).
    pub fn count8(&mut self, n: usize) {
        if let Some(n) = self.fit::<u8>(n, 1) {
            self.u8(n);
        }
    }

    /// A big-endian two-byte count (at most 65,535).
    pub fn count16(&mut self, n: usize) {
        if let Some(n) = self.fit::<u16>(n, 2) {
            self.u16(n);
        }
    }

    /// A big-endian four-byte count.
    pub fn count32(&mut self, n: usize) {
        if let Some(n) = self.fit::<u32>(n, 4) {
            self.u32(n);
        }
    }

    /// `n` in the prefix type `T`, or `None` with the error remembered.
    fn fit<T: TryFrom<usize> + Bounded>(&mut self, n: usize, width: usize) -> Option<T> {
        match T::try_from(n) {
            Ok(v) => Some(v),
            Err(_) => {
                self.error.get_or_insert(EncodeError::TooLong { len: n, width, max: T::MAX_U64 });
                None
            }
        }
    }
}

/// The largest value of a prefix type.
trait Bounded {
    const MAX_U64: u64;
}

impl Bounded for u8 {
    const MAX_U64: u64 = u8::MAX as u64;
}

impl Bounded for u16 {
    const MAX_U64: u64 = u16::MAX as u64;
}

impl Bounded for u32 {
    const MAX_U64: u64 = u32::MAX as u64;
}
