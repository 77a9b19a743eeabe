//! Link keys: the hybrid static key pair (X25519 + ML-KEM-768) each node publishes in the
//! directory as its "link key", and each client generates for itself.

use std::fmt;

use clatter::bytearray::{ByteArray, SensitiveByteArray};
use clatter::crypto::dh::X25519;
use clatter::traits::Dh;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::KeyError;
use crate::mlkem;

/// Length of the X25519 part of a link key.
pub(crate) const DH_LEN: usize = 32;
/// Length of an ML-KEM-768 encapsulation key.
pub(crate) const KEM_PK_LEN: usize = mlkem::PK_LEN;
/// Length of an ML-KEM-768 secret key: the FIPS 203 seed `d ‖ z`.
pub(crate) const KEM_SK_LEN: usize = mlkem::SEED_LEN;

/// A link's static public key: `X25519 public key (32 bytes) ‖ ML-KEM-768 encapsulation key
/// (1,184 bytes)`, 1,216 bytes in all.
///
/// This is the value a node publishes in the directory as its link key. `Debug` prints no bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LinkPublicKey {
    dh: [u8; DH_LEN],
    kem: Box<[u8]>,
}

impl LinkPublicKey {
    /// Length of the encoding returned by [`LinkPublicKey::to_bytes`].
    pub const LEN: usize = DH_LEN + KEM_PK_LEN;

    /// The key's encoding: `X25519 (32) ‖ ML-KEM-768 encapsulation key (1,184)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.dh);
        out.extend_from_slice(&self.kem);
        out
    }

    /// Parses [`LinkPublicKey::to_bytes`]'s encoding. The ML-KEM part must pass FIPS 203's
    /// encapsulation-key checks.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != Self::LEN {
            return Err(KeyError::Length { expected: Self::LEN, got: bytes.len() });
        }
        let (dh, kem) = bytes.split_at(DH_LEN);
        Self::from_parts(dh, kem)
    }

    pub(crate) fn from_parts(dh: &[u8], kem: &[u8]) -> Result<Self, KeyError> {
        let dh: [u8; DH_LEN] =
            dh.try_into().map_err(|_| KeyError::Length { expected: DH_LEN, got: dh.len() })?;
        if kem.len() != KEM_PK_LEN {
            return Err(KeyError::Length { expected: KEM_PK_LEN, got: kem.len() });
        }
        if !mlkem::public_key_is_valid(kem) {
            return Err(KeyError::InvalidMlKemKey);
        }
        Ok(Self { dh, kem: kem.into() })
    }

    pub(crate) fn dh(&self) -> &[u8; DH_LEN] {
        &self.dh
    }

    pub(crate) fn kem(&self) -> &[u8] {
        &self.kem
    }
}

impl fmt::Debug for LinkPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkPublicKey(..)")
    }
}

/// A link's static secret key: an X25519 secret and an ML-KEM-768 seed. Zeroized on drop;
/// `Debug` prints no bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LinkSecretKey {
    dh: [u8; DH_LEN],
    kem: [u8; KEM_SK_LEN],
    #[zeroize(skip)]
    public: LinkPublicKey,
}

impl LinkSecretKey {
    /// Length of the encoding returned by [`LinkSecretKey::to_bytes`].
    pub const LEN: usize = DH_LEN + KEM_SK_LEN;

    /// Generates a fresh key pair from `rng` (96 bytes of it).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; Self::LEN]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_array(&bytes)
    }

    /// The key whose encoding is `bytes` (every string of this length is one).
    fn from_array(bytes: &[u8; Self::LEN]) -> Self {
        let (dh_part, kem_part) = bytes.split_at(DH_LEN);
        let mut dh = [0u8; DH_LEN];
        dh.copy_from_slice(dh_part);
        let mut kem = [0u8; KEM_SK_LEN];
        kem.copy_from_slice(kem_part);
        let dh_public = X25519::pubkey(&SensitiveByteArray::from_slice(&dh));
        let public = LinkPublicKey { dh: dh_public, kem: mlkem::public_key(&kem).into() };
        Self { dh, kem, public }
    }

    /// The public half.
    pub fn public_key(&self) -> &LinkPublicKey {
        &self.public
    }

    /// The key's encoding: `X25519 secret (32) ‖ ML-KEM-768 seed d ‖ z (64)`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(Self::LEN));
        out.extend_from_slice(&self.dh);
        out.extend_from_slice(&self.kem);
        out
    }

    /// Parses [`LinkSecretKey::to_bytes`]'s encoding. Every 96-byte string is a key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let array: &[u8; Self::LEN] =
            bytes.try_into().map_err(|_| KeyError::Length { expected: Self::LEN, got: bytes.len() })?;
        Ok(Self::from_array(array))
    }

    pub(crate) fn dh_secret(&self) -> &[u8; DH_LEN] {
        &self.dh
    }

    pub(crate) fn kem_secret(&self) -> &[u8; KEM_SK_LEN] {
        &self.kem
    }
}

impl fmt::Debug for LinkSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecretKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> impl rand_core::CryptoRng {
        use rand::SeedableRng;
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn secret_key_round_trips_and_keeps_its_public_key() {
        let sk = LinkSecretKey::generate(&mut rng());
        let again = LinkSecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(again.public_key(), sk.public_key());
        let pk = LinkPublicKey::from_bytes(&sk.public_key().to_bytes()).unwrap();
        assert_eq!(&pk, sk.public_key());
        assert_eq!(pk.to_bytes().len(), LinkPublicKey::LEN);
    }

    #[test]
    fn generation_is_deterministic_in_the_rng() {
        let a = LinkSecretKey::generate(&mut rng());
        let b = LinkSecretKey::generate(&mut rng());
        assert_eq!(a.public_key(), b.public_key());
    }

    #[test]
    fn public_key_with_out_of_range_coefficient_is_refused() {
        let sk = LinkSecretKey::generate(&mut rng());
        let mut bytes = sk.public_key().to_bytes();
        bytes[DH_LEN] = 0xff;
        bytes[DH_LEN + 1] |= 0x0f; // first coefficient = 0xfff, above q = 3329
        assert_eq!(LinkPublicKey::from_bytes(&bytes), Err(KeyError::InvalidMlKemKey));
        assert!(matches!(LinkPublicKey::from_bytes(&bytes[1..]), Err(KeyError::Length { .. })));
    }

    #[test]
    fn secret_key_of_wrong_length_is_refused() {
        assert!(LinkSecretKey::from_bytes(&[0; LinkSecretKey::LEN - 1]).is_err());
        assert!(LinkSecretKey::from_bytes(&[0; LinkSecretKey::LEN]).is_ok());
    }

    #[test]
    fn debug_prints_no_bytes() {
        let sk = LinkSecretKey::generate(&mut rng());
        assert_eq!(format!("{sk:?}"), "LinkSecretKey(..)");
        assert_eq!(format!("{:?}", sk.public_key()), "LinkPublicKey(..)");
    }
}
