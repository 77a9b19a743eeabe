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

use qanat_codec::{Reader, Writer};

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
    let mut w = Writer::with_capacity(6 + 4 + size + 4 + meta.len());
    w.raw(MAGIC);
    w.u8(VERSION);
    w.u8(kind as u8);
    w.count32(entries.len());
    for (k, v) in &entries {
        w.bytes32(k);
        w.bytes32(v);
    }
    w.bytes32(meta);
    w.finish().map_err(|_| MlsError::Internal("state too large to save".into()))
}

pub(crate) fn decode(kind: Kind, blob: &[u8]) -> Result<(Entries, &[u8]), MlsError> {
    let corrupt = |_| MlsError::CorruptState("truncated or malformed");
    let mut r = Reader::new(blob);
    if r.array::<4>().map_err(corrupt)? != *MAGIC {
        return Err(MlsError::CorruptState("not a saved MLS conversation"));
    }
    let [version, blob_kind] = r.array().map_err(corrupt)?;
    if version > VERSION {
        return Err(MlsError::CorruptState("of a later version: the profile was written by a newer Qanat"));
    }
    if version != VERSION {
        return Err(MlsError::CorruptState("unknown version"));
    }
    if blob_kind != kind as u8 {
        return Err(MlsError::CorruptState("wrong kind of saved state"));
    }
    // The blob is this profile's own, and bounded by its length: no limit of its own.
    let count = r.count32(usize::MAX, "entries").map_err(corrupt)?;
    let mut entries = Vec::with_capacity(r.capacity_for(count, 8));
    for _ in 0..count {
        let k = r.bytes32(usize::MAX, "key").map_err(corrupt)?;
        let v = r.bytes32(usize::MAX, "value").map_err(corrupt)?;
        entries.push((k.to_vec(), v.to_vec()));
    }
    let meta = r.bytes32(usize::MAX, "meta").map_err(corrupt)?;
    r.finish().map_err(corrupt)?;
    Ok((entries, meta))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn saved_state_round_trips_and_any_bytes_decode_without_panic(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..20),
                proptest::collection::vec(any::<u8>(), 0..50),
                0..10,
            ),
            meta in proptest::collection::vec(any::<u8>(), 0..50),
            junk in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let entries: Entries = entries.into_iter().collect();
            let blob = encode(Kind::PendingJoin, entries.clone(), &meta).unwrap();
            prop_assert_eq!(decode(Kind::PendingJoin, &blob).unwrap(), (entries, &meta[..]));
            let mut forged = b"QMLS\x01\x02".to_vec();
            forged.extend_from_slice(&junk);
            let _ = decode(Kind::PendingJoin, &forged);
            let _ = decode(Kind::PendingJoin, &junk);
        }
    }

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
