//! The saved form of one conversation (or one pending invitation): a single byte string.
//!
//! ```text
//! "QMLS" ‖ version (1 byte) ‖ kind (1 byte)
//! ‖ entries: u32 count ‖ (u32 key length ‖ key ‖ u32 value length ‖ value)*   (sorted by key)
//! ‖ u32 meta length ‖ meta (JSON)
//! ```
//! The entries are openmls' own storage (its key/value map, whose format openmls versions);
//! `meta` is this module's state around it (candidate commits, queued operations). Decoding never
//! panics: a truncated or altered blob is an error, and one of a later version is refused as
//! written by a newer Qanat. The version covers `meta` too (JSON of this module's private
//! records): a change to them takes the next version, whose decoder still reads the earlier ones.

use super::MlsError;

const MAGIC: &[u8; 4] = b"QMLS";
const VERSION: u8 = 1;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Conversation = 1,
    PendingJoin = 2,
}

pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn encode(kind: Kind, mut entries: Entries, meta: &[u8]) -> Result<Vec<u8>, MlsError> {
    entries.sort();
    let size = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(6 + 4 + size + 4 + meta.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    put_len(&mut out, entries.len())?;
    for (k, v) in &entries {
        put_len(&mut out, k.len())?;
        out.extend_from_slice(k);
        put_len(&mut out, v.len())?;
        out.extend_from_slice(v);
    }
    put_len(&mut out, meta.len())?;
    out.extend_from_slice(meta);
    Ok(out)
}

pub(crate) fn decode(kind: Kind, blob: &[u8]) -> Result<(Entries, &[u8]), MlsError> {
    let corrupt = || MlsError::CorruptState("truncated or malformed");
    let mut r = Reader(blob);
    if r.take(4).ok_or_else(corrupt)? != MAGIC {
        return Err(MlsError::CorruptState("not a saved MLS conversation"));
    }
    let header = r.take(2).ok_or_else(corrupt)?;
    if header[0] > VERSION {
        return Err(MlsError::CorruptState("of a later version: the profile was written by a newer Qanat"));
    }
    if header[0] != VERSION {
        return Err(MlsError::CorruptState("unknown version"));
    }
    if header[1] != kind as u8 {
        return Err(MlsError::CorruptState("wrong kind of saved state"));
    }
    let count = r.len().ok_or_else(corrupt)?;
    let mut entries = Vec::with_capacity(count.min(blob.len() / 8));
    for _ in 0..count {
        let k = r.bytes().ok_or_else(corrupt)?;
        let v = r.bytes().ok_or_else(corrupt)?;
        entries.push((k.to_vec(), v.to_vec()));
    }
    let meta = r.bytes().ok_or_else(corrupt)?;
    if !r.0.is_empty() {
        return Err(corrupt());
    }
    Ok((entries, meta))
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), MlsError> {
    let len = u32::try_from(len).map_err(|_| MlsError::Internal("state too large to save".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn len(&mut self) -> Option<usize> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(b)).ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_truncation_fails() {
        let entries = vec![(b"b".to_vec(), vec![1, 2]), (b"a".to_vec(), vec![])];
        let blob = encode(Kind::Conversation, entries, b"{}").unwrap();
        let (back, meta) = decode(Kind::Conversation, &blob).unwrap();
        assert_eq!(back, vec![(b"a".to_vec(), vec![]), (b"b".to_vec(), vec![1, 2])]);
        assert_eq!(meta, b"{}");
        assert!(decode(Kind::PendingJoin, &blob).is_err());
        for n in 0..blob.len() {
            assert!(decode(Kind::Conversation, &blob[..n]).is_err());
        }
    }
    #[test]
    fn a_later_version_is_refused_as_a_newer_qanats() {
        let mut blob = encode(Kind::Conversation, Vec::new(), b"{}").unwrap();
        blob[4] = VERSION + 1;
        let err = decode(Kind::Conversation, &blob).unwrap_err();
        assert!(matches!(err, MlsError::CorruptState(_)) && err.to_string().contains("newer Qanat"), "{err}");
    }
}
