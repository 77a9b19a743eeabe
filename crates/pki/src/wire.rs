//! The canonical binary encoding shared by every directory message.
//!
//! Integers are big-endian and fixed-width; variable-length fields carry a length prefix of a
//! stated width; lists carry a count and are sorted strictly (so they hold no duplicates and
//! have one order); every message starts with a version byte and must be consumed exactly.
//! Each value therefore has exactly one encoding, and a decoder accepts only that encoding:
//! `encode(decode(b)) == b` for every `b` that decodes (the fuzz targets check it).
//!
//! The fields are read and written by `qanat-codec`, the one codec of Qanat's hand-written
//! formats; this module adds what is particular to the directory: its error type and the
//! signature at the end of a signed message.

use crate::error::DecodeError;

pub(crate) use qanat_codec::{Reader, Writer};

impl From<qanat_codec::DecodeError> for DecodeError {
    fn from(e: qanat_codec::DecodeError) -> Self {
        use qanat_codec::DecodeError as E;
        match e {
            E::Truncated { .. } => Self::Truncated,
            E::TrailingBytes { .. } => Self::TrailingBytes,
            E::TooLong { what, .. } => Self::TooLarge { what },
            _ => Self::Invalid { what: e.reason() },
        }
    }
}

impl From<qanat_codec::DecodeError> for crate::error::PeerMessageError {
    fn from(e: qanat_codec::DecodeError) -> Self {
        Self::Malformed(e.into())
    }
}

/// The bytes of a message whose constructors bound every field, so that none overflows its
/// length or count prefix. Were one to, the message would come out empty, which every decoder
/// refuses: never a prefix that disagrees with its field.
pub(crate) fn encoded(w: Writer) -> Vec<u8> {
    w.finish().unwrap_or_default()
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
        let b = encoded(w);
        let mut r = Reader::new(&b);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.bytes8(3, "x"), Ok(&b"abc"[..]));
        assert_eq!(r.bytes16(1, "y").map_err(DecodeError::from), Err(DecodeError::TooLarge { what: "y" }));
        let mut r = Reader::new(&b[..b.len() - 1]);
        r.raw(1 + 2 + 4 + 8 + 4 + 4).unwrap();
        assert_eq!(r.bytes32(10, "z").map_err(DecodeError::from), Err(DecodeError::Truncated));
        let r = Reader::new(&b);
        assert_eq!(r.finish().map_err(DecodeError::from), Err(DecodeError::TrailingBytes));
        let mut w = Writer::new();
        w.bytes8(&[0; 256]);
        assert_eq!(encoded(w), Vec::<u8>::new());
        assert_eq!(split_signature(&[0; 63]), Err(DecodeError::Truncated));
    }
}
