//! The one reader and writer of Qanat's hand-written binary formats.
//!
//! Every format Qanat encodes by hand (directory messages, the client–gateway control protocol,
//! the authorities' chunks, invitations, saved MLS state, key files, the replay log) is a
//! sequence of three kinds of field: fixed-width big-endian integers, byte strings of a fixed
//! length, and byte strings or lists after a length (or count) prefix of a stated width.
//! [`Writer`] appends them to a buffer; [`Reader`] takes them back off a slice. Each format's
//! module keeps its own layout, versions and meaning; this crate only keeps every one of them to
//! the same rules:
//!
//! - **No panic, on any input.** Every read is checked; a read past the end is
//!   [`DecodeError::Truncated`], whatever the input.
//! - **Bounded.** A length-prefixed field is refused ([`DecodeError::TooLong`]) as soon as its
//!   prefix is read, when it exceeds the maximum the caller gives, before any of it is read. The
//!   reader never allocates: it returns slices of its input, and [`Reader::capacity_for`] bounds
//!   a caller's `Vec::with_capacity` by what the rest of the input can hold.
//! - **Strict.** [`Reader::finish`] refuses trailing bytes, [`Reader::finish_zero_padded`]
//!   anything but zeros after a message carried in a fixed-size frame, [`Reader::flag`] any
//!   byte but 0 and 1. A decoder built from these accepts one encoding per value.
//! - **Errors say what was expected**: how many bytes at which offset, which field was too long
//!   and its limit, where the trailing bytes start. Each format maps them onto its own error
//!   type (a `From` impl), which names the message.
//! - **Nothing is cut silently on the way out.** A field too long for its length prefix (or a
//!   count too large for its width) is not written, and [`Writer::finish`] then returns
//!   [`EncodeError`] instead of bytes.
//!
//! The crate does no IO and depends on nothing but `thiserror`, so that every crate, down to the
//! IO-free protocol cores, can use it.
//!
//! ```
//! use qanat_codec::{DecodeError, Reader, Writer};
//!
//! let mut w = Writer::new();
//! w.u8(1);
//! w.u64(77);
//! w.bytes16(b"hello");
//! let bytes = w.finish()?;
//!
//! let mut r = Reader::new(&bytes);
//! assert_eq!(r.u8()?, 1);
//! assert_eq!(r.u64()?, 77);
//! assert_eq!(r.bytes16(64, "greeting")?, b"hello");
//! r.finish()?;
//!
//! let mut r = Reader::new(&bytes);
//! r.u8()?;
//! r.u64()?;
//! assert_eq!(r.bytes16(4, "greeting"), Err(DecodeError::TooLong { what: "greeting", len: 5, max: 4 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod reader;
mod writer;

pub use reader::Reader;
pub use writer::Writer;

/// Why bytes did not decode. Every variant means the input is not a message of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated: {needed} bytes expected at byte {offset}, {remaining} left")]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// The field's length.
        needed: usize,
        /// What was left of the input.
        remaining: usize,
    },
    /// A length or count prefix exceeds the maximum the format allows for the field.
    #[error("{what} is {len} long, more than its limit of {max}")]
    TooLong {
        /// The field, as the format names it.
        what: &'static str,
        /// The length (or count) its prefix gives.
        len: u64,
        /// The format's maximum.
        max: usize,
    },
    /// Bytes are left after the message.
    #[error("{count} trailing bytes after the message, from byte {offset}")]
    TrailingBytes {
        /// Where the message ended.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// A field holds a value outside its domain (a flag that is neither 0 nor 1, padding that
    /// is not zero).
    #[error("invalid {what} at byte {offset}")]
    Invalid {
        /// What was expected there.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
    },
}

impl DecodeError {
    /// A short description without numbers (`"truncated"`, `"trailing bytes"`, the field's
    /// name), for formats whose errors carry a static string.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::TooLong { what, .. } | Self::Invalid { what, .. } => what,
            Self::TrailingBytes { .. } => "trailing bytes",
        }
    }
}

/// Why a [`Writer`] produced no bytes: a field did not fit its length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A byte string longer, or a count larger, than its prefix can state.
    #[error("a length or count of {len} does not fit a {width}-byte prefix (at most {max})")]
    TooLong {
        /// The length or count.
        len: usize,
        /// The prefix's width in bytes.
        width: usize,
        /// The largest value the prefix can state.
        max: u64,
    },
}

#[cfg(test)]
mod tests;
