//! The transport cipher: Noise's `ChaChaPoly` (ChaCha20-Poly1305, RFC 8439) under the session
//! keys Clatter's handshake derived, computed by AWS-LC.
//!
//! Clatter runs the handshake; once it is finished, each direction's key and nonce counter move
//! here. The bytes on the wire are exactly what Clatter's own `CipherState<ChaChaPoly>` would
//! produce (a test below checks both directions against it): the nonce is 32 zero bits followed
//! by the 64-bit little-endian counter, the associated data is empty, the tag follows the
//! ciphertext, and the counter value 2⁶⁴ − 1 is never used (Noise §5.1).
//!
//! Why not Clatter's: its RustCrypto `chacha20poly1305` backend costs about 3.3 µs per 2.2 KB
//! frame each way on the benchmark machine, AWS-LC's assembly about 1.3 µs, and a mix pays that
//! twice per packet (`docs/BENCHMARKS.md`, mix node section). AWS-LC is already in the tree for
//! the packet layer's X25519 and ML-KEM. The key lives in an AWS-LC context that AWS-LC wipes
//! when it is freed; the copy Clatter hands over is zeroized on drop.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use clatter::cipherstate::CipherState;
use clatter::crypto::cipher::ChaChaPoly;

use crate::frame::TAG_LEN;

/// One direction of an established link: the key and the next nonce.
pub(crate) struct FrameCipher {
    key: LessSafeKey,
    n: u64,
}

/// The AEAD refused: a nonce would repeat, or (when opening) authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CipherFailed;

impl FrameCipher {
    /// Takes over one direction of a finished Noise handshake.
    pub(crate) fn from_noise(state: CipherState<ChaChaPoly>) -> Result<Self, CipherFailed> {
        let (k, n) = state.take();
        let key = UnboundKey::new(&CHACHA20_POLY1305, k.as_slice()).map_err(|_| CipherFailed)?;
        Ok(Self { key: LessSafeKey::new(key), n })
    }

    /// The nonce for this message, and the counter moved past it.
    fn next_nonce(&mut self) -> Result<Nonce, CipherFailed> {
        if self.n == u64::MAX {
            return Err(CipherFailed);
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.n.to_le_bytes());
        self.n += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Encrypts `buf[..len - 16]` in place and writes the tag into the last 16 bytes.
    pub(crate) fn seal(&mut self, buf: &mut [u8]) -> Result<(), CipherFailed> {
        let split = buf.len().checked_sub(TAG_LEN).ok_or(CipherFailed)?;
        let nonce = self.next_nonce()?;
        let (text, tag_out) = buf.split_at_mut(split);
        let tag = self.key.seal_in_place_separate_tag(nonce, Aad::empty(), text).map_err(|_| CipherFailed)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticates and decrypts a whole message (ciphertext and tag) in place; returns the
    /// plaintext, the first `len - 16` bytes of `buf`.
    pub(crate) fn open<'a>(&mut self, buf: &'a mut [u8]) -> Result<&'a mut [u8], CipherFailed> {
        if buf.len() < TAG_LEN {
            return Err(CipherFailed);
        }
        let nonce = self.next_nonce()?;
        self.key.open_in_place(nonce, Aad::empty(), buf).map_err(|_| CipherFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = *b"a 32-byte key for the tests here";

    fn cipher(n: u64) -> FrameCipher {
        FrameCipher::from_noise(CipherState::new(&KEY, n)).unwrap()
    }

    #[test]
    fn wire_compatible_with_clatter_both_ways() {
        let mut ours = cipher(0);
        let mut theirs = CipherState::<ChaChaPoly>::new(&KEY, 0);
        let mut peer_ours = cipher(0);
        let mut peer_theirs = CipherState::<ChaChaPoly>::new(&KEY, 0);
        for len in [0usize, 1, 63, 64, 65, 2_213] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut a = msg.clone();
            a.resize(len + TAG_LEN, 0);
            let mut b = a.clone();
            ours.seal(&mut a).unwrap();
            theirs.encrypt_with_ad_in_place(&[], &mut b, len).unwrap();
            assert_eq!(a, b, "ciphertext of {len} bytes");
            assert_eq!(peer_ours.open(&mut a).unwrap(), &msg[..]);
            assert_eq!(peer_theirs.decrypt_with_ad_in_place(&[], &mut b, len + TAG_LEN).unwrap(), len);
            assert_eq!(&b[..len], &msg[..]);
        }
    }

    #[test]
    fn tampering_wrong_order_and_short_input_fail() {
        let (mut tx, mut rx) = (cipher(0), cipher(0));
        let mut first = vec![1u8; 40];
        let mut second = vec![2u8; 40];
        tx.seal(&mut first).unwrap();
        tx.seal(&mut second).unwrap();
        let mut flipped = first.clone();
        flipped[3] ^= 1;
        assert!(cipher(0).open(&mut flipped).is_err());
        assert!(cipher(0).open(&mut second.clone()).is_err());
        assert!(rx.open(&mut first).is_ok());
        assert!(rx.open(&mut second).is_ok());
        assert!(cipher(0).open(&mut [0u8; 15]).is_err());
        assert!(cipher(0).seal(&mut [0u8; 15]).is_err());
    }

    #[test]
    fn the_last_nonce_is_never_used() {
        let mut c = cipher(u64::MAX - 1);
        assert!(c.seal(&mut [0u8; 20]).is_ok());
        assert!(c.seal(&mut [0u8; 20]).is_err());
        assert!(cipher(u64::MAX).open(&mut [0u8; 20]).is_err());
    }
}
