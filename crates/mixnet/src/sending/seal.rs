//! Sealed mailbox items: what a gateway stores is, to it, random bytes of one length.
//!
//! Every packet a client sends to a mailbox is built with [`Sphinx::new_opaque_packet`](qanat_packet::Sphinx::new_opaque_packet): its last
//! hop carries a SURB-reply command with a fresh random identifier, and its whole payload (the
//! Sphinx payload tag included, `payload_tag_len + forward_payload_len` bytes) is the *sealed
//! body*. A reply made from a SURB (an acknowledgement) has the same form: a random identifier
//! and a payload only the SURB's creator can decrypt. So the last gateway stores, for every
//! packet, `item = identifier (16) ‖ body`, of one length, and learns the mailbox and the arrival
//! time, nothing else: not the kind (data, acknowledgement, loop, invitation answer), not the
//! message id, fragment index or count, not the group or epoch inside.
//!
//! # Construction (version 1)
//!
//! The owner of a mailbox makes a 32-byte *seal key* `K` with the mailbox and gives it, with the
//! mailbox id, to whoever may write there (in the invitation link, the invitation's answer, and a
//! group's route announcements, all of which travel end-to-end encrypted). For each packet:
//!
//! ```text
//! id   = 16 random bytes (the SURB-reply identifier in the Sphinx header)
//! r    = 16 random bytes
//! k    = HKDF-SHA256(salt = id ‖ r, ikm = K, info = "qanat-seal v1")     (32 bytes)
//! body = r ‖ ChaCha20-Poly1305(k, nonce = 0, aad = "qanat-seal v1", payload)
//! ```
//!
//! where `payload` is the client payload of exactly `forward_payload_len` bytes, so
//! `|body| = 16 + forward_payload_len + 16 = payload_tag_len + forward_payload_len`.
//!
//! Each packet has its own key (256 bits of fresh salt; a repeat needs 2^128 packets), so the
//! all-zero nonce is never reused under one key, and one group message sent to ten members is
//! ten bodies under ten keys. The AEAD and the KDF are RustCrypto's audited `chacha20poly1305`
//! and `hkdf`; nothing here is a new primitive. The construction follows the per-queue
//! encryption layer of SimpleX's SMP (a symmetric layer between the two ends of a queue, under
//! a key the server never sees) and Katzenpost's choice of making every delivered payload look
//! like a SURB reply to the provider.
//!
//! The seal hides metadata from gateways; it does not replace the MLS layer inside (which gives
//! forward secrecy and authenticity). Whoever knows `K` (the mailbox's owner and the contacts or
//! group members it gave `K` to) can open the items of that mailbox: a contact colluding with the
//! gateway learns what it could already know, that it wrote to this mailbox.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The version of the construction, bound into every key and tag.
pub const SEAL_VERSION: u8 = 1;
const LABEL: &[u8] = b"qanat-seal v1";
/// Bytes of salt carried in the body.
pub const SALT_LEN: usize = 16;
/// Bytes of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes a body has beyond the payload it seals.
pub const OVERHEAD: usize = SALT_LEN + TAG_LEN;

/// A mailbox's seal key. `Debug` prints no bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealKey(pub [u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A fresh random key.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    fn aead(&self, id: &[u8; 16], salt: &[u8]) -> ChaCha20Poly1305 {
        let mut ikm_salt = [0u8; 16 + SALT_LEN];
        ikm_salt[..16].copy_from_slice(id);
        ikm_salt[16..].copy_from_slice(salt);
        let hk = Hkdf::<Sha256>::new(Some(&ikm_salt), &self.0);
        let mut k = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit of 8,160.
        let _ = hk.expand(LABEL, k.as_mut());
        let aead = ChaCha20Poly1305::new(&Key::from(*k));
        k.zeroize();
        aead
    }
}

/// A body could not be opened (not sealed under this key, or changed on the way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mailbox item not sealed under this key")]
pub struct OpenError;

/// A payload could not be sealed (longer than ChaCha20-Poly1305 allows: never for a packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("payload too long to seal")]
pub struct SealError;

/// Seals `payload` for the packet whose SURB-reply identifier is `id`: returns a body of
/// `payload.len() + OVERHEAD` bytes.
pub fn seal<R: CryptoRng + ?Sized>(
    key: &SealKey,
    id: &[u8; 16],
    payload: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SealError> {
    let mut body = Vec::with_capacity(payload.len() + OVERHEAD);
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    body.extend_from_slice(&salt);
    body.extend_from_slice(payload);
    let aead = key.aead(id, &salt);
    match aead.encrypt_inout_detached(&Nonce::default(), LABEL, (&mut body[SALT_LEN..]).into()) {
        Ok(tag) => body.extend_from_slice(&tag),
        Err(_) => {
            // Never leave the payload in the clear behind an error.
            body.zeroize();
            return Err(SealError);
        }
    }
    Ok(body)
}

/// Opens a body sealed by [`seal`] under `key` for identifier `id`; returns the payload.
pub fn open(key: &SealKey, id: &[u8; 16], body: &[u8]) -> Result<Vec<u8>, OpenError> {
    if body.len() < OVERHEAD {
        return Err(OpenError);
    }
    let (salt, rest) = body.split_at(SALT_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut out = ct.to_vec();
    let aead = key.aead(id, salt);
    let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| OpenError)?;
    aead.decrypt_inout_detached(&Nonce::default(), LABEL, (&mut out[..]).into(), &tag)
        .map_err(|_| OpenError)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn round_trip_and_rejections() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let k = SealKey::random(&mut rng);
        let payload = vec![7u8; 1536];
        let body = seal(&k, &[1; 16], &payload, &mut rng).unwrap();
        assert_eq!(body.len(), payload.len() + OVERHEAD);
        assert_eq!(open(&k, &[1; 16], &body).unwrap(), payload);
        // Another identifier, another key, a changed byte, a short body: refused.
        assert_eq!(open(&k, &[2; 16], &body), Err(OpenError));
        assert_eq!(open(&SealKey::random(&mut rng), &[1; 16], &body), Err(OpenError));
        for i in [0, 20, body.len() - 1] {
            let mut b = body.clone();
            b[i] ^= 1;
            assert_eq!(open(&k, &[1; 16], &b), Err(OpenError));
        }
        assert_eq!(open(&k, &[1; 16], &body[..OVERHEAD - 1]), Err(OpenError));
    }

    #[test]
    fn one_payload_seals_to_unrelated_bodies() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let k = SealKey::random(&mut rng);
        let payload = vec![0u8; 256];
        let a = seal(&k, &[1; 16], &payload, &mut rng).unwrap();
        let b = seal(&k, &[1; 16], &payload, &mut rng).unwrap();
        // No 8-byte run in common (a random pair shares one with probability ~2^-50).
        let runs: std::collections::HashSet<&[u8]> = a.windows(8).collect();
        assert!(b.windows(8).all(|w| !runs.contains(w)));
    }
}
