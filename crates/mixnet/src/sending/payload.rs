//! What a packet carries: the client payload inside every Sphinx forward payload, and its codec.
//!
//! Every packet a client sends has the network's one size. Its payload (the Sphinx forward
//! payload, [`Geometry::forward_payload_len`] bytes) is one of:
//!
//! ```text
//! DATA  = 0x01 ‖ SURB (surb_len) ‖ message id (16) ‖ index u16 ‖ count u16 ‖ length u16 ‖ data ‖ zeros
//! COVER = 0x02 ‖ random bytes                         (loops and drops)
//! ```
//!
//! and the reply a recipient sends back through the SURB of a DATA or SURBS packet is
//!
//! ```text
//! ACKS  = 0x04 ‖ n u8 ‖ n × (message id (16) ‖ bits u16 ‖ bitmap (⌈bits/8⌉)) ‖ zeros
//! ```
//!
//! A file ([`super::transfer`]) travels as shards without a SURB each, and a SURB per block round:
//!
//! ```text
//! CHUNK = 0x05 ‖ transfer (16) ‖ block u16 ‖ index u16 ‖ signature (64) ‖ shard (S) ‖ zeros
//! SURBS = 0x06 ‖ transfer (16) ‖ block u16 ‖ round u8 ‖ signature (64) ‖ SURB (surb_len) ‖ zeros
//! ```
//!
//! where `S` is [`shard_capacity`] (even, as the erasure code needs: 1,450 bytes at the default
//! geometry, against 781 of data in a DATA packet). The signatures are the transfer's own
//! Ed25519 key's ([`super::transfer`] says over what); this codec only carries them.
//!
//! One reply acknowledges every fragment the recipient has waiting for that sender: a bitmap of
//! fragment indices per message (bit `i` of byte `i/8`, `bits` = the highest index + 1), as many
//! messages as fit ([`ack_capacity`]). (`0x03 ‖ message id ‖ index u16 ‖ zeros`, one fragment,
//! is the format before; it is still read.)
//!
//! A message is split into `count` fragments of at most [`fragment_capacity`] bytes (at most
//! [`MAX_FRAGMENTS`] of them), each sent in its own DATA packet with its own SURB. Decoding is
//! strict: a DATA or ACKS payload has one encoding (zero padding, a canonical bitmap), and what
//! decodes encodes back to the same bytes (`fuzz/fuzz_targets/client_payload.rs`).
//!
//! # Who reads it
//!
//! Only the two ends. A DATA or COVER payload is sealed to the mailbox's owner before it leaves
//! ([`super::seal`]); an ACKS payload travels in a SURB reply, which only the SURB's creator can
//! decrypt. No gateway or mix sees these bytes: the message id, the fragment index and count are
//! for the recipient alone.

use qanat_codec::{DecodeError, Reader, Writer};
use qanat_packet::Geometry;
use rand_core::CryptoRng;

const KIND_DATA: u8 = 1;
const KIND_COVER: u8 = 2;
const KIND_ACK: u8 = 3;
const KIND_ACKS: u8 = 4;
const KIND_CHUNK: u8 = 5;
const KIND_SURBS: u8 = 6;
const DATA_HEADER: usize = 1 + 16 + 2 + 2 + 2;
const CHUNK_HEADER: usize = 1 + 16 + 2 + 2 + 64;
const SURBS_HEADER: usize = 1 + 16 + 2 + 1 + 64;

/// Longest message, in fragments.
pub const MAX_FRAGMENTS: usize = 4096;

/// A message's identifier: 16 random bytes chosen by its sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageId(..)")
    }
}

/// A file transfer's identifier: 16 random bytes chosen by its sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub [u8; 16]);

impl std::fmt::Debug for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferId(..)")
    }
}

/// Why a payload could not be read or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the payload length of the network.
    #[error("wrong payload length")]
    Length,
    /// Unknown kind byte.
    #[error("unknown payload kind")]
    Kind,
    /// A field is out of range (fragment index, count or length).
    #[error("malformed payload")]
    Malformed,
    /// A SURB does not fit in this network's payload.
    #[error("this network's payload cannot carry a SURB and data (raise forward_payload_len)")]
    NoRoom,
    /// The message is longer than [`MAX_FRAGMENTS`] fragments.
    #[error("message too long")]
    TooLong,
}

/// A decoded payload.
#[derive(Clone, PartialEq, Eq)]
pub enum Payload {
    /// A fragment of a message, with the SURB to acknowledge it.
    Data {
        /// The SURB.
        surb: Vec<u8>,
        /// The message.
        message_id: MessageId,
        /// Which fragment.
        index: u16,
        /// Of how many.
        count: u16,
        /// The fragment's bytes.
        data: Vec<u8>,
    },
    /// Cover traffic (a loop or a drop).
    Cover,
    /// Acknowledgements (decrypted from a SURB reply): at least one entry.
    Ack(Vec<AckEntry>),
    /// One shard of a file's block ([`super::transfer`]).
    Chunk {
        /// The transfer.
        transfer: TransferId,
        /// Which block.
        block: u16,
        /// Which shard of the block: data shards first, then parity.
        index: u16,
        /// The transfer key's signature ([`super::transfer`]).
        signature: [u8; 64],
        /// The shard: exactly [`shard_capacity`] bytes.
        shard: Vec<u8>,
    },
    /// A SURB for a block's acknowledgement.
    Surbs {
        /// The transfer.
        transfer: TransferId,
        /// Which block.
        block: u16,
        /// Which round of the block this SURB closes.
        round: u8,
        /// The transfer key's signature ([`super::transfer`]).
        signature: [u8; 64],
        /// The SURB.
        surb: Vec<u8>,
    },
}

/// The fragments of one message an acknowledgement covers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AckEntry {
    /// The message.
    pub message_id: MessageId,
    /// Its fragments: sorted, unique, each below [`MAX_FRAGMENTS`], at least one.
    pub indices: Vec<u16>,
}

impl AckEntry {
    /// The bytes of the entry in an ACKS payload.
    pub fn encoded_len(&self) -> usize {
        let bits = self.indices.last().map_or(0, |i| usize::from(*i) + 1);
        16 + 2 + bits.div_ceil(8)
    }
}

/// The bytes an ACKS payload has for its entries in `g`.
pub fn ack_capacity(g: &Geometry) -> usize {
    g.forward_payload_len().saturating_sub(2)
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data { index, count, data, .. } => {
                write!(f, "Data {{ index: {index}, count: {count}, {} bytes }}", data.len())
            }
            Self::Cover => f.write_str("Cover"),
            Self::Ack(entries) => write!(f, "Ack {{ {} entries }}", entries.len()),
            Self::Chunk { block, index, .. } => write!(f, "Chunk {{ block: {block}, index: {index} }}"),
            Self::Surbs { block, round, .. } => write!(f, "Surbs {{ block: {block}, round: {round} }}"),
        }
    }
}

/// Data bytes per DATA packet in `g`.
pub fn fragment_capacity(g: &Geometry) -> Result<usize, PayloadError> {
    g.forward_payload_len()
        .checked_sub(DATA_HEADER + g.surb_len())
        .filter(|n| *n > 0)
        .ok_or(PayloadError::NoRoom)
}

/// Bytes of a file per CHUNK packet in `g`: what is left after the header, rounded down to an
/// even number (the erasure code's shards are of even length).
pub fn shard_capacity(g: &Geometry) -> Result<usize, PayloadError> {
    g.forward_payload_len()
        .checked_sub(CHUNK_HEADER)
        .map(|n| n & !1)
        .filter(|n| *n > 0)
        .ok_or(PayloadError::NoRoom)
}

/// Whether a SURBS payload fits in `g`.
fn surbs_fit(g: &Geometry) -> Result<(), PayloadError> {
    if SURBS_HEADER + g.surb_len() <= g.forward_payload_len() { Ok(()) } else { Err(PayloadError::NoRoom) }
}

impl Payload {
    /// The payload's bytes in `g` (cover payloads take random bytes from `rng`).
    pub fn encode<R: CryptoRng + ?Sized>(&self, g: &Geometry, rng: &mut R) -> Result<Vec<u8>, PayloadError> {
        let len = g.forward_payload_len();
        let mut w = Writer::with_capacity(len);
        match self {
            Self::Data { surb, message_id, index, count, data } => {
                let cap = fragment_capacity(g)?;
                if surb.len() != g.surb_len() || data.len() > cap || index >= count {
                    return Err(PayloadError::Malformed);
                }
                w.u8(KIND_DATA);
                w.raw(surb);
                w.raw(&message_id.0);
                w.u16(*index);
                w.u16(*count);
                w.bytes16(data);
            }
            Self::Cover => {
                let mut out = vec![0u8; len];
                rng.fill_bytes(&mut out);
                if let Some(b) = out.first_mut() {
                    *b = KIND_COVER;
                }
                return Ok(out);
            }
            Self::Ack(entries) => {
                let total: usize = entries.iter().map(AckEntry::encoded_len).sum();
                if entries.is_empty() || total > ack_capacity(g) {
                    return Err(PayloadError::Malformed);
                }
                w.u8(KIND_ACKS);
                w.count8(entries.len());
                for e in entries {
                    let ordered = e.indices.windows(2).all(|p| p[0] < p[1]);
                    let Some(&last) = e.indices.last() else { return Err(PayloadError::Malformed) };
                    if !ordered || usize::from(last) >= MAX_FRAGMENTS {
                        return Err(PayloadError::Malformed);
                    }
                    let bits = last + 1;
                    let mut bitmap = vec![0u8; usize::from(bits).div_ceil(8)];
                    for i in &e.indices {
                        bitmap[usize::from(*i / 8)] |= 1 << (i % 8);
                    }
                    w.raw(&e.message_id.0);
                    w.u16(bits);
                    w.raw(&bitmap);
                }
            }
            Self::Chunk { transfer, block, index, signature, shard } => {
                if shard.len() != shard_capacity(g)? {
                    return Err(PayloadError::Malformed);
                }
                w.u8(KIND_CHUNK);
                w.raw(&transfer.0);
                w.u16(*block);
                w.u16(*index);
                w.raw(signature);
                w.raw(shard);
            }
            Self::Surbs { transfer, block, round, signature, surb } => {
                surbs_fit(g)?;
                if surb.len() != g.surb_len() {
                    return Err(PayloadError::Malformed);
                }
                w.u8(KIND_SURBS);
                w.raw(&transfer.0);
                w.u16(*block);
                w.u8(*round);
                w.raw(signature);
                w.raw(surb);
            }
        }
        // A count or length too large for its prefix (more than 255 entries), or more than the
        // payload holds (the checks above rule it out), is not a payload.
        let mut out = w.finish().map_err(|_| PayloadError::Malformed)?;
        if out.len() > len {
            return Err(PayloadError::Malformed);
        }
        out.resize(len, 0);
        Ok(out)
    }

    /// Strictly decodes a payload of `g` (padding must be zeros).
    pub fn decode(g: &Geometry, b: &[u8]) -> Result<Self, PayloadError> {
        if b.len() != g.forward_payload_len() {
            return Err(PayloadError::Length);
        }
        let mut r = Reader::new(b);
        let kind = r.u8().map_err(|_| PayloadError::Length)?;
        match kind {
            KIND_DATA => {
                let cap = fragment_capacity(g)?;
                let surb = r.raw(g.surb_len())?;
                let message_id = MessageId(r.array()?);
                let (index, count) = (r.u16()?, r.u16()?);
                let data = r.bytes16(cap, "fragment")?;
                if index >= count || usize::from(count) > MAX_FRAGMENTS {
                    return Err(PayloadError::Malformed);
                }
                r.finish_zero_padded()?;
                Ok(Self::Data { surb: surb.to_vec(), message_id, index, count, data: data.to_vec() })
            }
            KIND_COVER => Ok(Self::Cover),
            KIND_ACK => {
                let message_id = MessageId(r.array()?);
                let index = r.u16()?;
                if usize::from(index) >= MAX_FRAGMENTS {
                    return Err(PayloadError::Malformed);
                }
                r.finish_zero_padded()?;
                Ok(Self::Ack(vec![AckEntry { message_id, indices: vec![index] }]))
            }
            KIND_ACKS => {
                let n = r.u8()?;
                if n == 0 {
                    return Err(PayloadError::Malformed);
                }
                let mut entries = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    let message_id = MessageId(r.array()?);
                    let bits = usize::from(r.u16()?);
                    if bits == 0 || bits > MAX_FRAGMENTS {
                        return Err(PayloadError::Malformed);
                    }
                    let bitmap = r.raw(bits.div_ceil(8))?;
                    let set = |i: usize| bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
                    // Canonical: the highest bit is set and none beyond it.
                    if !set(bits - 1) || (bits..bitmap.len() * 8).any(set) {
                        return Err(PayloadError::Malformed);
                    }
                    // Bounded by MAX_FRAGMENTS above.
                    let indices = (0..bits).filter(|i| set(*i)).map(|i| i as u16).collect();
                    entries.push(AckEntry { message_id, indices });
                }
                r.finish_zero_padded()?;
                Ok(Self::Ack(entries))
            }
            KIND_CHUNK => {
                let len = shard_capacity(g)?;
                let transfer = TransferId(r.array()?);
                let (block, index) = (r.u16()?, r.u16()?);
                let signature = r.array()?;
                let shard = r.raw(len)?.to_vec();
                r.finish_zero_padded()?;
                Ok(Self::Chunk { transfer, block, index, signature, shard })
            }
            KIND_SURBS => {
                surbs_fit(g)?;
                let transfer = TransferId(r.array()?);
                let block = r.u16()?;
                let round = r.u8()?;
                let signature = r.array()?;
                let surb = r.raw(g.surb_len())?.to_vec();
                r.finish_zero_padded()?;
                Ok(Self::Surbs { transfer, block, round, signature, surb })
            }
            _ => Err(PayloadError::Kind),
        }
    }
}

/// Whatever the codec refuses (a field past the end, a fragment longer than the payload holds,
/// padding that is not zeros) is a malformed payload.
impl From<DecodeError> for PayloadError {
    fn from(_: DecodeError) -> Self {
        Self::Malformed
    }
}

#[cfg(test)]
mod tests {
    use chacha20::ChaCha20Rng;
    use proptest::prelude::*;
    use qanat_packet::Scheme;
    use rand_core::SeedableRng as _;

    use super::*;

    fn geometry() -> Geometry {
        Geometry::default_for(Scheme::X25519Kem)
    }

    #[test]
    fn payloads_round_trip_and_padding_is_checked() {
        let g = geometry();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let cap = fragment_capacity(&g).unwrap();
        assert_eq!(cap, 1536 - 23 - 732);
        let data = Payload::Data {
            surb: vec![7; g.surb_len()],
            message_id: MessageId([3; 16]),
            index: 1,
            count: 2,
            data: vec![9; cap],
        };
        let b = data.encode(&g, &mut rng).unwrap();
        assert_eq!(Payload::decode(&g, &b).unwrap(), data);
        let ack = Payload::Ack(vec![
            AckEntry { message_id: MessageId([4; 16]), indices: vec![7] },
            AckEntry { message_id: MessageId([5; 16]), indices: vec![0, 3, 8, 4095] },
        ]);
        assert_eq!(Payload::decode(&g, &ack.encode(&g, &mut rng).unwrap()).unwrap(), ack);
        assert_eq!(
            Payload::decode(&g, &Payload::Cover.encode(&g, &mut rng).unwrap()).unwrap(),
            Payload::Cover
        );

        let mut bad = ack.encode(&g, &mut rng).unwrap();
        *bad.last_mut().unwrap() = 1;
        assert_eq!(Payload::decode(&g, &bad), Err(PayloadError::Malformed));
        assert_eq!(Payload::decode(&g, &b[..100]), Err(PayloadError::Length));
        let mut unknown = b.clone();
        unknown[0] = 9;
        assert_eq!(Payload::decode(&g, &unknown), Err(PayloadError::Kind));
        // X-Wing's SURBs do not fit in the default payload.
        assert_eq!(fragment_capacity(&Geometry::default_for(Scheme::XWing)), Err(PayloadError::NoRoom));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// A DATA and an ACKS payload for fixed inputs, byte for byte (as the code before the port to
    /// `qanat-codec` wrote them), and the one-fragment ACK of before, still read.
    #[test]
    fn encodings_are_pinned() {
        let g = geometry();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let surb: Vec<u8> = (0..g.surb_len()).map(|i| i as u8).collect();
        let data = Payload::Data {
            surb: surb.clone(),
            message_id: MessageId(*b"0123456789abcdef"),
            index: 1,
            count: 3,
            data: b"hello".to_vec(),
        };
        let b = data.encode(&g, &mut rng).unwrap();
        assert_eq!(b.len(), 1536);
        let (kind, rest) = b.split_at(1);
        let (surb_field, rest) = rest.split_at(g.surb_len());
        let (fields, padding) = rest.split_at(16 + 2 + 2 + 2 + 5);
        assert_eq!(kind, [KIND_DATA]);
        assert_eq!(surb_field, surb);
        assert_eq!(
            hex(fields),
            concat!(
                "30313233343536373839616263646566", // message id
                "0001",                             // index
                "0003",                             // count
                "0005",                             // length
                "68656c6c6f",                       // "hello"
            )
        );
        assert!(padding.iter().all(|x| *x == 0));
        assert_eq!(Payload::decode(&g, &b).unwrap(), data);

        let ack = Payload::Ack(vec![
            AckEntry { message_id: MessageId([0x11; 16]), indices: vec![7] },
            AckEntry { message_id: MessageId([0x22; 16]), indices: vec![0, 3, 9] },
        ]);
        let b = ack.encode(&g, &mut rng).unwrap();
        assert_eq!(b.len(), 1536);
        let (fields, padding) = b.split_at(2 + (16 + 2 + 1) + (16 + 2 + 2));
        assert_eq!(
            hex(fields),
            concat!(
                "04",                               // ACKS
                "02",                               // two entries
                "11111111111111111111111111111111", // message id
                "0008",                             // bits
                "80",                               // {7}
                "22222222222222222222222222222222", // message id
                "000a",                             // bits
                "0902",                             // {0, 3, 9}
            )
        );
        assert!(padding.iter().all(|x| *x == 0));
        assert_eq!(Payload::decode(&g, &b).unwrap(), ack);

        let mut old_ack = vec![0u8; g.forward_payload_len()];
        old_ack[0] = KIND_ACK;
        old_ack[1..17].copy_from_slice(&[0x33; 16]);
        old_ack[17..19].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            Payload::decode(&g, &old_ack).unwrap(),
            Payload::Ack(vec![AckEntry { message_id: MessageId([0x33; 16]), indices: vec![7] }])
        );
        old_ack[19] = 1;
        assert_eq!(Payload::decode(&g, &old_ack), Err(PayloadError::Malformed));
    }

    /// A CHUNK and a SURBS payload for fixed inputs, byte for byte.
    #[test]
    fn file_encodings_are_pinned() {
        let g = geometry();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let s = shard_capacity(&g).unwrap();
        assert_eq!(s, 1450);
        let shard: Vec<u8> = (0..s).map(|i| (i % 251) as u8).collect();
        let chunk = Payload::Chunk {
            transfer: TransferId(*b"fedcba9876543210"),
            block: 0x0102,
            index: 0x0304,
            signature: [0x5a; 64],
            shard: shard.clone(),
        };
        let b = chunk.encode(&g, &mut rng).unwrap();
        assert_eq!(b.len(), 1536);
        assert_eq!(
            hex(&b[..21]),
            concat!(
                "05",                               // CHUNK
                "66656463626139383736353433323130", // transfer
                "0102",                             // block
                "0304",                             // index
            )
        );
        assert_eq!(b[21..85], [0x5a; 64]);
        assert_eq!(b[85..85 + s], shard[..]);
        assert_eq!(b[85 + s..], [0]);
        assert_eq!(Payload::decode(&g, &b).unwrap(), chunk);
        let mut padded = b.clone();
        padded[1535] = 1;
        assert_eq!(Payload::decode(&g, &padded), Err(PayloadError::Malformed));
        let short = Payload::Chunk {
            transfer: TransferId([0; 16]),
            block: 0,
            index: 0,
            signature: [0; 64],
            shard: vec![0; s - 2],
        };
        assert_eq!(short.encode(&g, &mut rng), Err(PayloadError::Malformed));

        let surb: Vec<u8> = (0..g.surb_len()).map(|i| (i * 7) as u8).collect();
        let surbs = Payload::Surbs {
            transfer: TransferId([0xab; 16]),
            block: 7,
            round: 2,
            signature: [0xc3; 64],
            surb: surb.clone(),
        };
        let b = surbs.encode(&g, &mut rng).unwrap();
        assert_eq!(b.len(), 1536);
        assert_eq!(
            hex(&b[..20]),
            concat!(
                "06",                               // SURBS
                "abababababababababababababababab", // transfer
                "0007",                             // block
                "02",                               // round
            )
        );
        assert_eq!(b[20..84], [0xc3; 64]);
        assert_eq!(b[84..84 + g.surb_len()], surb[..]);
        assert!(b[84 + g.surb_len()..].iter().all(|x| *x == 0));
        assert_eq!(Payload::decode(&g, &b).unwrap(), surbs);
        // X-Wing's SURBs do not fit beside the header in the default payload.
        let xw = Geometry::default_for(Scheme::XWing);
        assert_eq!(surbs.encode(&xw, &mut rng), Err(PayloadError::NoRoom));
    }

    proptest! {
        #[test]
        fn file_payloads_round_trip(
            transfer in any::<[u8; 16]>(),
            block in any::<u16>(),
            index in any::<u16>(),
            round in any::<u8>(),
            sig in proptest::collection::vec(any::<u8>(), 64),
            fill in any::<u8>(),
        ) {
            let g = geometry();
            let mut rng = ChaCha20Rng::seed_from_u64(0);
            let signature: [u8; 64] = sig.try_into().unwrap();
            let chunk = Payload::Chunk {
                transfer: TransferId(transfer), block, index, signature,
                shard: vec![fill; shard_capacity(&g).unwrap()],
            };
            prop_assert_eq!(Payload::decode(&g, &chunk.encode(&g, &mut rng).unwrap()).unwrap(), chunk);
            let surbs = Payload::Surbs {
                transfer: TransferId(transfer), block, round, signature, surb: vec![fill; g.surb_len()],
            };
            prop_assert_eq!(Payload::decode(&g, &surbs.encode(&g, &mut rng).unwrap()).unwrap(), surbs);
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 1536), kind in 0u8..8) {
            let mut b = bytes;
            b[0] = kind;
            let g = geometry();
            // Covers are random; the one-fragment ACK of before is written as ACKS.
            if let Ok(p) = Payload::decode(&g, &b) && p != Payload::Cover && kind != KIND_ACK {
                let mut rng = ChaCha20Rng::seed_from_u64(0);
                prop_assert_eq!(p.encode(&g, &mut rng).unwrap(), b);
            }
        }
    }

    proptest! {
        #[test]
        fn acknowledgements_round_trip(
            entries in proptest::collection::vec(
                (any::<[u8; 16]>(), proptest::collection::btree_set(0u16..4096, 1..40)),
                1..20,
            )
        ) {
            let g = geometry();
            let entries: Vec<AckEntry> = entries
                .into_iter()
                .map(|(id, set)| AckEntry { message_id: MessageId(id), indices: set.into_iter().collect() })
                .collect();
            let total: usize = entries.iter().map(AckEntry::encoded_len).sum();
            let p = Payload::Ack(entries);
            let mut rng = ChaCha20Rng::seed_from_u64(0);
            match p.encode(&g, &mut rng) {
                Ok(b) => prop_assert_eq!(Payload::decode(&g, &b).unwrap(), p),
                Err(e) => {
                    prop_assert!(total > ack_capacity(&g));
                    prop_assert_eq!(e, PayloadError::Malformed);
                }
            }
        }
    }
}
