//! The Katzenpost parameterisation of Sphinx's symmetric primitives.
//!
//! | role | primitive |
//! |---|---|
//! | KDF | HKDF-SHA256 expand (the shared secret is the PRK), info `katzenpost-kdf-v0-hkdf-sha256` |
//! | header MAC | HMAC-SHA256, 32-byte tag, compared in constant time |
//! | header stream cipher | AES-256-CTR, 128-bit big-endian counter starting at the IV |
//! | payload SPRP | AEZ v5, 48-byte key, 16-byte nonce, no associated data, τ = 0 |
//! | replay tag | SHA-512/256 of the group element or KEM ciphertext |
//! | blinding factor (NIKE) | first 32 bytes of ChaCha20 keyed by the KDF's last 32 bytes, zero nonce |
//!
//! All key material lives in types that zeroize on drop.

use aes::Aes256Enc;
use chacha20::ChaCha20Legacy;
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512_256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::aez::Aez;
use crate::geometry::MAC_LEN;

/// Length of the header MAC key.
pub(crate) const MAC_KEY_LEN: usize = 32;
/// Length of the header stream cipher key.
pub(crate) const STREAM_KEY_LEN: usize = 32;
/// Length of the header stream cipher IV.
pub(crate) const STREAM_IV_LEN: usize = 16;
/// Length of the payload SPRP key.
pub(crate) const SPRP_KEY_LEN: usize = 48;
/// Length of the payload SPRP IV (the header IV is reused: different key, different primitive).
pub(crate) const SPRP_IV_LEN: usize = STREAM_IV_LEN;
const BLINDING_SEED_LEN: usize = 32;
const KDF_INFO: &[u8] = b"katzenpost-kdf-v0-hkdf-sha256";
const OKM_LEN: usize = MAC_KEY_LEN + STREAM_KEY_LEN + STREAM_IV_LEN + SPRP_KEY_LEN + BLINDING_SEED_LEN;

/// The keys one hop derives from its shared secret. Zeroized on drop.
pub(crate) struct PacketKeys {
    pub(crate) header_mac: [u8; MAC_KEY_LEN],
    pub(crate) header_encryption: [u8; STREAM_KEY_LEN],
    pub(crate) header_encryption_iv: [u8; STREAM_IV_LEN],
    pub(crate) payload_encryption: [u8; SPRP_KEY_LEN],
    blinding_seed: [u8; BLINDING_SEED_LEN],
}

impl PacketKeys {
    /// Derives a hop's keys from its 32-byte shared secret; with `blinding` (the NIKE) also the
    /// blinding seed.
    ///
    /// The KEM variants never blind, so they expand only the first 128 bytes: HKDF-Expand's
    /// output blocks do not depend on the requested length, so these are the same bytes as the
    /// first 128 of Katzenpost's 160, one HMAC block (three SHA-256 compressions) cheaper per hop.
    /// The blinding seed of such keys stays zero and is never used.
    pub(crate) fn derive(shared_secret: &[u8; 32], blinding: bool) -> Self {
        let mut okm = SecretBytes([0u8; OKM_LEN]);
        let len = if blinding { OKM_LEN } else { OKM_LEN - BLINDING_SEED_LEN };
        // `from_prk` fails only for a PRK shorter than the hash, and `expand` only for an output
        // longer than 255 hash blocks; both lengths here are constants inside those bounds.
        #[allow(clippy::expect_used)]
        Hkdf::<Sha256>::from_prk(shared_secret)
            .expect("32-byte PRK")
            .expand(KDF_INFO, &mut okm.0[..len])
            .expect("at most 160-byte OKM");
        let mut k = Self {
            header_mac: [0; MAC_KEY_LEN],
            header_encryption: [0; STREAM_KEY_LEN],
            header_encryption_iv: [0; STREAM_IV_LEN],
            payload_encryption: [0; SPRP_KEY_LEN],
            blinding_seed: [0; BLINDING_SEED_LEN],
        };
        let mut rest: &[u8] = &okm.0;
        for dst in [
            &mut k.header_mac[..],
            &mut k.header_encryption[..],
            &mut k.header_encryption_iv[..],
            &mut k.payload_encryption[..],
            &mut k.blinding_seed[..],
        ] {
            let (head, tail) = rest.split_at(dst.len());
            dst.copy_from_slice(head);
            rest = tail;
        }
        k
    }

    /// The NIKE blinding factor: an X25519 scalar drawn from ChaCha20 keyed by the seed.
    ///
    /// As in Katzenpost: the original (64-bit nonce) ChaCha20 with an all-zero nonce.
    pub(crate) fn blinding_factor(&self) -> Zeroizing<[u8; 32]> {
        let mut bf = Zeroizing::new([0u8; 32]);
        let mut c = ChaCha20Legacy::new(&self.blinding_seed.into(), &[0u8; 8].into());
        c.apply_keystream(bf.as_mut());
        bf
    }

    /// The header stream cipher, positioned at the start of its key stream.
    pub(crate) fn header_stream(&self) -> HeaderStream {
        HeaderStream(Ctr128BE::<Aes256Enc>::new(
            &self.header_encryption.into(),
            &self.header_encryption_iv.into(),
        ))
    }

    /// The payload SPRP for this hop.
    pub(crate) fn sprp(&self) -> Sprp {
        Sprp::new(&self.payload_encryption, &self.header_encryption_iv)
    }

    /// HMAC-SHA256 over the concatenation of `parts`, keyed with the header MAC key.
    pub(crate) fn header_mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        hmac(&self.header_mac, parts)
    }
}

impl Drop for PacketKeys {
    fn drop(&mut self) {
        // Slices, not arrays: `zeroize` wipes a `[u8]` with one fill and an optimization barrier,
        // an `[u8; N]` byte by byte with volatile stores (several times slower on the hop path).
        for k in [
            &mut self.header_mac[..],
            &mut self.header_encryption[..],
            &mut self.header_encryption_iv[..],
            &mut self.payload_encryption[..],
            &mut self.blinding_seed[..],
        ] {
            k.zeroize();
        }
    }
}

/// A secret byte array wiped on drop through `zeroize`'s slice path (see [`PacketKeys`]'s drop).
pub(crate) struct SecretBytes<const N: usize>(pub(crate) [u8; N]);

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// AES-256-CTR over the routing information.
pub(crate) struct HeaderStream(Ctr128BE<Aes256Enc>);

impl HeaderStream {
    /// XORs the next key stream bytes into `buf`.
    pub(crate) fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

/// The payload SPRP (AEZ) with its key and IV.
pub(crate) struct Sprp {
    aez: Aez,
    iv: [u8; SPRP_IV_LEN],
}

impl Sprp {
    pub(crate) fn new(key: &[u8; SPRP_KEY_LEN], iv: &[u8; SPRP_IV_LEN]) -> Self {
        Self { aez: Aez::new(key), iv: *iv }
    }
    pub(crate) fn encrypt(&self, data: &mut [u8]) {
        self.aez.encrypt_in_place(&self.iv, data);
    }
    pub(crate) fn decrypt(&self, data: &mut [u8]) {
        self.aez.decrypt_in_place(&self.iv, data);
    }
}

impl Drop for Sprp {
    fn drop(&mut self) {
        self.iv.as_mut_slice().zeroize();
    }
}

fn hmac(key: &[u8; MAC_KEY_LEN], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // HMAC accepts keys of any length.
    #[allow(clippy::expect_used)]
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time equality of two MACs.
pub(crate) fn mac_eq(a: &[u8], b: &[u8; MAC_LEN]) -> bool {
    a.ct_eq(b).into()
}

/// The replay tag of a packet: SHA-512/256 of its group element or KEM ciphertext.
pub(crate) fn replay_tag(element: &[u8]) -> [u8; 32] {
    Sha512_256::digest(element).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The KEM derivation (128 bytes expanded) gives the same keys as the full 160-byte one.
    #[test]
    fn kem_keys_are_a_prefix_of_the_full_derivation() {
        let ss = [0x3c; 32];
        let (full, kem) = (PacketKeys::derive(&ss, true), PacketKeys::derive(&ss, false));
        assert_eq!(full.header_mac, kem.header_mac);
        assert_eq!(full.header_encryption, kem.header_encryption);
        assert_eq!(full.header_encryption_iv, kem.header_encryption_iv);
        assert_eq!(full.payload_encryption, kem.payload_encryption);
        assert_ne!(full.blinding_seed, [0; BLINDING_SEED_LEN]);
        assert_eq!(kem.blinding_seed, [0; BLINDING_SEED_LEN]);
    }
}
