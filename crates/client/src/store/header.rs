//! The passphrase, its key derivation, and the header file that wraps the profile's master key
//! under it.
//!
//! # Keys
//!
//! ```text
//! KEK    = Argon2id(passphrase, salt, m, t, p) -> 32 bytes         (parameters and salt in the header)
//! master = 32 random bytes, stored as XChaCha20-Poly1305(KEK, nonce, master, aad = header prefix)
//! ```
//!
//! The rows' keys are derived from the master key (module `rows`). The master key is random and
//! only *wrapped* by the passphrase-derived key, so changing the passphrase
//! ([`Profile::change_passphrase`](super::Profile::change_passphrase)) rewrites the header and
//! nothing else. A wrong passphrase fails the wrap's authentication, so it is reported
//! ([`StoreError::WrongPassphrase`]) before the database is opened at all.
//!
//! # Header (`profile.header`, version 1, big-endian integers)
//!
//! ```text
//! "QANATPRF" (8) ‖ version u16 = 1 ‖ kdf u8 = 1 (Argon2id v1.3) ‖ m_kib u32 ‖ t u32 ‖ p u32
//!   ‖ salt (16) ‖ nonce (24) ‖ wrapped master key (32 + 16-byte tag)
//! ```

use std::fmt;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use qanat_codec::{DecodeError, Reader, Writer};
use zeroize::Zeroizing;

use super::files::random;
use super::{PASSPHRASE_ENV, StoreError};

/// The header format this code writes and reads.
pub const HEADER_VERSION: u16 = 1;

pub(super) const MAGIC: &[u8; 8] = b"QANATPRF";
pub(super) const KDF_ARGON2ID_13: u8 = 1;
pub(super) const SALT_LEN: usize = 16;
pub(super) const XNONCE_LEN: usize = 24;
pub(super) const TAG_LEN: usize = 16;
pub(super) const KEY_LEN: usize = 32;
pub(super) const HEADER_PREFIX_LEN: usize = 8 + 2 + 1 + 4 * 3 + SALT_LEN + XNONCE_LEN;
/// Length of `profile.header`.
pub const HEADER_LEN: usize = HEADER_PREFIX_LEN + KEY_LEN + TAG_LEN;

/// A passphrase. Zeroized on drop; `Debug` prints nothing of it.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps a passphrase typed by the user.
    pub fn new(passphrase: impl Into<String>) -> Self {
        Self(Zeroizing::new(passphrase.into().into_bytes()))
    }

    /// Wraps a passphrase given as bytes.
    pub fn from_bytes(passphrase: Vec<u8>) -> Self {
        Self(Zeroizing::new(passphrase))
    }

    /// The passphrase in [`PASSPHRASE_ENV`] (`QANAT_PASSPHRASE`), if set. A binary asks for the
    /// passphrase at a prompt (without echo) when this returns `None`.
    pub fn from_env() -> Option<Self> {
        let value = std::env::var_os(PASSPHRASE_ENV)?;
        #[cfg(unix)]
        let bytes = std::os::unix::ffi::OsStringExt::into_vec(value);
        #[cfg(not(unix))]
        let bytes = value.into_string().ok()?.into_bytes();
        Some(Self::from_bytes(bytes))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Argon2id parameters: memory in KiB, iterations, lanes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 3 iterations, 1 lane (about half a second on a phone).
    pub const DEFAULT: Self = Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };
    /// The least memory [`KdfParams::new`] accepts: 19 MiB (OWASP's floor for Argon2id).
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    /// The least iterations [`KdfParams::new`] accepts.
    pub const MIN_ITERATIONS: u32 = 2;
    /// The most memory any profile may ask for: 1 GiB (so a damaged header cannot exhaust memory).
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most iterations any profile may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes any profile may ask for.
    pub const MAX_PARALLELISM: u32 = 16;

    /// Parameters at least as strong as [`KdfParams::MIN_MEMORY_KIB`] and
    /// [`KdfParams::MIN_ITERATIONS`]. Weaker ones, for tests, come from [`danger::weak_kdf_params`].
    ///
    /// [`danger::weak_kdf_params`]: super::danger::weak_kdf_params
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, StoreError> {
        if memory_kib < Self::MIN_MEMORY_KIB || iterations < Self::MIN_ITERATIONS {
            return Err(StoreError::KdfParams(format!(
                "at least {} KiB and {} iterations",
                Self::MIN_MEMORY_KIB,
                Self::MIN_ITERATIONS
            )));
        }
        Self::checked(memory_kib, iterations, parallelism)
    }

    /// Memory in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Iterations.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Lanes.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// Any parameters Argon2 accepts, up to the maxima.
    pub(super) fn checked(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, StoreError> {
        if !(1..=Self::MAX_PARALLELISM).contains(&parallelism)
            || !(1..=Self::MAX_ITERATIONS).contains(&iterations)
            || memory_kib > Self::MAX_MEMORY_KIB
            || memory_kib < 8 * parallelism
        {
            return Err(StoreError::KdfParams(format!(
                "memory {memory_kib} KiB (8·lanes..={}), iterations {iterations} (1..={}), lanes {parallelism} (1..={})",
                Self::MAX_MEMORY_KIB,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM
            )));
        }
        Ok(Self { memory_kib, iterations, parallelism })
    }

    pub(super) fn derive(
        &self,
        passphrase: &Passphrase,
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, StoreError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(KEY_LEN))
            .map_err(|e| StoreError::KdfParams(e.to_string()))?;
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
            .map_err(|e| StoreError::KdfParams(e.to_string()))?;
        Ok(out)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The header, parsed.
pub(super) struct Header {
    pub(super) params: KdfParams,
    pub(super) salt: [u8; SALT_LEN],
    pub(super) nonce: [u8; XNONCE_LEN],
    pub(super) wrapped: [u8; KEY_LEN + TAG_LEN],
}

impl Header {
    /// The fields before the wrapped key: the wrap's associated data.
    pub(super) fn prefix(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_PREFIX_LEN);
        self.write_prefix(&mut w);
        // Fixed-width fields only: nothing can fail to fit.
        w.into_parts().0
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN);
        self.write_prefix(&mut w);
        w.raw(&self.wrapped);
        w.into_parts().0
    }

    fn write_prefix(&self, w: &mut Writer) {
        w.raw(MAGIC);
        w.u16(HEADER_VERSION);
        w.u8(KDF_ARGON2ID_13);
        w.u32(self.params.memory_kib);
        w.u32(self.params.iterations);
        w.u32(self.params.parallelism);
        w.raw(&self.salt);
        w.raw(&self.nonce);
    }

    pub(super) fn decode(bytes: &[u8], path: &Path) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
        let malformed = |e: DecodeError| corrupt(e.reason());
        let mut r = Reader::new(bytes);
        // The magic and the version first: a header of another version may have another length.
        let (Ok(magic), Ok(version)) = (r.array::<8>(), r.u16()) else {
            return Err(corrupt("not a Qanat profile header"));
        };
        if magic != *MAGIC {
            return Err(corrupt("not a Qanat profile header"));
        }
        if version != HEADER_VERSION {
            return Err(StoreError::UnknownVersion {
                path: path.to_owned(),
                found: version.into(),
                known: HEADER_VERSION.into(),
            });
        }
        if bytes.len() != HEADER_LEN {
            return Err(corrupt(&format!("{} bytes, expected {HEADER_LEN}", bytes.len())));
        }
        if r.u8().map_err(malformed)? != KDF_ARGON2ID_13 {
            return Err(corrupt("unknown key-derivation function"));
        }
        let m = r.u32().map_err(malformed)?;
        let t = r.u32().map_err(malformed)?;
        let p = r.u32().map_err(malformed)?;
        let params = KdfParams::checked(m, t, p).map_err(|e| corrupt(&e.to_string()))?;
        let salt = r.array().map_err(malformed)?;
        let nonce = r.array().map_err(malformed)?;
        let wrapped = r.array().map_err(malformed)?;
        r.finish().map_err(malformed)?;
        Ok(Self { params, salt, nonce, wrapped })
    }

    /// A header wrapping `master` under `passphrase`, with a fresh salt and nonce.
    pub(super) fn wrap(
        passphrase: &Passphrase,
        params: KdfParams,
        master: &[u8; KEY_LEN],
    ) -> Result<Self, StoreError> {
        Self::wrap_with(passphrase, params, master, random()?, random()?)
    }

    /// [`Header::wrap`] with the given salt and nonce (a known-answer test pins its bytes).
    fn wrap_with(
        passphrase: &Passphrase,
        params: KdfParams,
        master: &[u8; KEY_LEN],
        salt: [u8; SALT_LEN],
        nonce: [u8; XNONCE_LEN],
    ) -> Result<Self, StoreError> {
        let mut h = Self { params, salt, nonce, wrapped: [0; KEY_LEN + TAG_LEN] };
        let kek = params.derive(passphrase, &h.salt)?;
        let aead = XChaCha20Poly1305::new(&Key::from(*kek));
        let ct = aead
            .encrypt(&XNonce::from(h.nonce), Payload { msg: master, aad: &h.prefix() })
            .map_err(|_| StoreError::KdfParams("encryption failed".into()))?;
        h.wrapped.copy_from_slice(&ct);
        Ok(h)
    }

    /// The master key, if `passphrase` is the right one.
    pub(super) fn unwrap_key(
        &self,
        passphrase: &Passphrase,
    ) -> Option<Result<Zeroizing<[u8; KEY_LEN]>, StoreError>> {
        let kek = match self.params.derive(passphrase, &self.salt) {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        let aead = XChaCha20Poly1305::new(&Key::from(*kek));
        let pt = Zeroizing::new(
            aead.decrypt(&XNonce::from(self.nonce), Payload { msg: &self.wrapped, aad: &self.prefix() })
                .ok()?,
        );
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        master.copy_from_slice(pt.get(..KEY_LEN)?);
        Some(Ok(master))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::danger;

    #[test]
    fn header_round_trips_and_has_its_documented_length() {
        let pass = Passphrase::new("p");
        let params = danger::weak_kdf_params(8, 1, 1).unwrap();
        let h = Header::wrap(&pass, params, &[7; 32]).unwrap();
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(HEADER_LEN, 111);
        let back = Header::decode(&bytes, Path::new("h")).unwrap();
        assert_eq!(*back.unwrap_key(&pass).unwrap().unwrap(), [7; 32]);
        assert!(back.unwrap_key(&Passphrase::new("q")).is_none());
    }

    /// The header's bytes for fixed inputs, as version 1 has always written them: any change to
    /// the layout, the key derivation or the wrap fails here before it reaches a user's disk.
    #[test]
    fn header_bytes_are_pinned() {
        let pass = Passphrase::new("correct horse");
        let params = danger::weak_kdf_params(8, 1, 1).unwrap();
        let salt: [u8; SALT_LEN] = std::array::from_fn(|i| 1 + i as u8);
        let nonce: [u8; XNONCE_LEN] = std::array::from_fn(|i| 0x20 + i as u8);
        let master: [u8; KEY_LEN] = std::array::from_fn(|i| 0x40 + i as u8);
        let bytes = Header::wrap_with(&pass, params, &master, salt, nonce).unwrap().encode();
        let expected = concat!(
            "51414e4154505246",                                                 // "QANATPRF"
            "0001",                                                             // version 1
            "01",                                                               // Argon2id v1.3
            "00000008",                                                         // m = 8 KiB
            "00000001",                                                         // t = 1
            "00000001",                                                         // p = 1
            "0102030405060708090a0b0c0d0e0f10",                                 // salt
            "202122232425262728292a2b2c2d2e2f3031323334353637",                 // nonce
            "525d1ac0adb552555ec168db3e46299f87a252a8f623b50d7b6c005db10ab709", // wrapped key
            "93d00d8ddcbc9e50c5ddafc3ed865db9",                                 // its tag
        );
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        let back = Header::decode(&bytes, Path::new("h")).unwrap();
        assert_eq!(*back.unwrap_key(&pass).unwrap().unwrap(), master);
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn kdf_floor_is_enforced_outside_danger() {
        assert!(KdfParams::new(8, 1, 1).is_err());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB + 1, 3, 1).is_err());
        assert!(danger::weak_kdf_params(8, 1, 1).is_ok());
        assert!(danger::weak_kdf_params(7, 1, 1).is_err());
    }
}
