//! ML-KEM-768 for Clatter's handshakes, on RustCrypto's `ml-kem` 0.3 (the version the rest of
//! the workspace uses; it validates encapsulation keys as FIPS 203 requires).
//!
//! Secret keys are the 64-byte FIPS 203 seed `d ‖ z`; the expanded key is derived when needed.

use clatter::KeyPair;
use clatter::bytearray::{ByteArray, HeapArray, SensitiveByteArray};
use clatter::error::{KemError, KemResult};
use clatter::traits::{CryptoComponent, Kem, Rng};
use ml_kem::array::Array;
use ml_kem::kem::{Decapsulate, KeyExport};
use ml_kem::{DecapsulationKey768, EncapsulationKey768};
use zeroize::Zeroizing;

/// Length of an ML-KEM-768 encapsulation key.
pub(crate) const PK_LEN: usize = 1184;
/// Length of an ML-KEM-768 seed (`d ‖ z`).
pub(crate) const SEED_LEN: usize = 64;
/// Length of an ML-KEM-768 ciphertext.
const CT_LEN: usize = 1088;

/// ML-KEM-768 (FIPS 203).
#[derive(Clone)]
pub(crate) struct MlKem768;

impl CryptoComponent for MlKem768 {
    fn name() -> &'static str {
        "MLKEM768"
    }
}

/// The decapsulation key for a 64-byte seed.
pub(crate) fn decapsulation_key(seed: &[u8; SEED_LEN]) -> DecapsulationKey768 {
    DecapsulationKey768::from_seed(Array::from(*seed))
}

/// The encoded encapsulation key for a 64-byte seed.
pub(crate) fn public_key(seed: &[u8; SEED_LEN]) -> [u8; PK_LEN] {
    let dk = decapsulation_key(seed);
    let mut out = [0u8; PK_LEN];
    out.copy_from_slice(dk.encapsulation_key().to_bytes().as_slice());
    out
}

/// Whether `pk` is a valid encoded encapsulation key (FIPS 203 §7.2 checks).
pub(crate) fn public_key_is_valid(pk: &[u8]) -> bool {
    parse_public(pk).is_ok()
}

fn parse_public(pk: &[u8]) -> KemResult<EncapsulationKey768> {
    let arr = Array::try_from(pk).map_err(|_| KemError::Input)?;
    EncapsulationKey768::new(&arr).map_err(|_| KemError::Input)
}

impl Kem for MlKem768 {
    type SecretKey = SensitiveByteArray<[u8; SEED_LEN]>;
    type PubKey = HeapArray<PK_LEN>;
    type Ct = HeapArray<CT_LEN>;
    type Ss = SensitiveByteArray<[u8; 32]>;

    fn genkey_rng<R: Rng>(rng: &mut R) -> KemResult<KeyPair<Self::PubKey, Self::SecretKey>> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        Ok(KeyPair {
            public: HeapArray::from_slice(&public_key(&seed)),
            secret: SensitiveByteArray::from_slice(seed.as_ref()),
        })
    }

    fn encapsulate<R: Rng>(pk: &[u8], rng: &mut R) -> KemResult<(Self::Ct, Self::Ss)> {
        let ek = parse_public(pk)?;
        let mut m = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(m.as_mut());
        let (ct, ss) = ek.encapsulate_deterministic(&Array::from(*m));
        let ss = Zeroizing::new(ss);
        Ok((HeapArray::from_slice(ct.as_slice()), SensitiveByteArray::from_slice(ss.as_slice())))
    }

    fn decapsulate(ct: &[u8], sk: &[u8]) -> KemResult<Self::Ss> {
        let seed: &[u8; SEED_LEN] = sk.try_into().map_err(|_| KemError::Input)?;
        let dk = decapsulation_key(seed);
        let ss = Zeroizing::new(dk.decapsulate_slice(ct).map_err(|_| KemError::Input)?);
        Ok(SensitiveByteArray::from_slice(ss.as_slice()))
    }
}
