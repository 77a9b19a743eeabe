//! The passphrase, its key derivation, and the header file that wraps the profile's master key
//! under it, in one of two slots (the other may hold duress settings).
//!
//! # Keys
//!
//! ```text
//! KEK    = Argon2id(passphrase, salt, m, t, p) -> 32 bytes         (parameters and salt in the header)
//! master = 32 random bytes, stored in the real slot under the KEK
//! ```
//!
//! The rows' keys are derived from the master key (module `rows`). The master key is random and
//! only *wrapped* by the passphrase-derived key, so changing the passphrase
//! ([`Profile::change_passphrase`](super::Profile::change_passphrase)) rewrites the header and
//! nothing else. A wrong passphrase fails both slots' authentication, so it is reported
//! ([`StoreError::WrongPassphrase`]) before the database is opened at all.
//!
//! # Header (`profile.header`, version 2, 247 bytes, big-endian integers)
//!
//! ```text
//! prefix = "QANATPRF" (8) ‖ version u16 = 2 ‖ kdf u8 = 1 (Argon2id v1.3) ‖ m_kib u32 ‖ t u32 ‖ p u32 ‖ salt (16)
//! header = prefix ‖ slot 0 ‖ slot 1
//! slot i = nonce (24) ‖ XChaCha20-Poly1305(KEK of its passphrase, nonce, pt (64), aad = prefix ‖ u8 i) (80)
//! pt, real slot   = master (32) ‖ 0^32
//! pt, duress slot = "QANATDUR" ‖ gateway index u16 ‖ traffic u8 ‖ language u8 ‖ lock_timeout_secs u32 ‖ 0^48
//! a slot not in use = 104 random bytes
//! ```
//!
//! One salt for both slots, so an unlock costs one Argon2id run, whatever is typed; both slots
//! are always tried ([`Header::unwrap`]). The real slot's position is drawn at random each time
//! the real slot is written. A slot not in use is random bytes, which nobody can tell from a slot
//! sealed under a key they do not have: the file's length, its bytes and the time an unlock
//! takes say nothing of whether a duress passphrase exists, and no flag anywhere records it. The
//! duress slot holds no key: whoever learns the duress passphrase decrypts nothing with it.
//!
//! # Version 1 (read, then rewritten as version 2)
//!
//! ```text
//! "QANATPRF" (8) ‖ version u16 = 1 ‖ kdf u8 = 1 ‖ m_kib u32 ‖ t u32 ‖ p u32
//!   ‖ salt (16) ‖ nonce (24) ‖ XChaCha20-Poly1305(KEK, nonce, master, aad = everything before it) (48)
//! ```
//!
//! A version-1 header opened with its passphrase is replaced by a version-2 header with the same
//! salt and parameters (so the same KEK), the master key in a random slot, the other slot random.
//!
//! # Hostile input
//!
//! The header is read from a file anyone with the device can alter. Its decoder checks the magic,
//! the version, the exact length and the parameters' ranges (a damaged header cannot make Argon2
//! exhaust memory) and answers [`StoreError::Corrupt`] or [`StoreError::UnknownVersion`], never
//! a panic; an altered slot fails authentication.

use std::fmt;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use qanat_codec::{DecodeError, Reader, Writer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::files::random;
use super::{PASSPHRASE_ENV, StoreError};

/// The header format this code writes (it reads this one and version 1).
pub const HEADER_VERSION: u16 = 2;

pub(super) const MAGIC: &[u8; 8] = b"QANATPRF";
pub(super) const KDF_ARGON2ID_13: u8 = 1;
pub(super) const SALT_LEN: usize = 16;
pub(super) const XNONCE_LEN: usize = 24;
pub(super) const TAG_LEN: usize = 16;
pub(super) const KEY_LEN: usize = 32;
/// The fields before the slots (the slots' associated data, with the slot's index).
pub(super) const PREFIX_LEN: usize = 8 + 2 + 1 + 4 * 3 + SALT_LEN;
/// A slot's plaintext.
const SLOT_PT_LEN: usize = 64;
/// A slot: nonce, sealed plaintext, tag.
pub(super) const SLOT_LEN: usize = XNONCE_LEN + SLOT_PT_LEN + TAG_LEN;
/// Length of `profile.header`.
pub const HEADER_LEN: usize = PREFIX_LEN + 2 * SLOT_LEN;
/// Length of a version-1 header.
const V1_PREFIX_LEN: usize = PREFIX_LEN + XNONCE_LEN;
const V1_LEN: usize = V1_PREFIX_LEN + KEY_LEN + TAG_LEN;
/// The first bytes of a duress slot's plaintext.
const DURESS_MARKER: &[u8; 8] = b"QANATDUR";
/// Where a duress slot's zero padding begins.
const DURESS_FIELDS_END: usize = 16;

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

/// What a duress slot holds: the settings of the fresh profile a duress opening creates (they
/// were the profile's when the duress passphrase was set, so the new profile looks like the old
/// one from outside: same gateway, same traffic, same language, same lock timeout).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DuressSettings {
    /// The gateway's position in the network file's list.
    pub gateway_index: u16,
    /// The traffic profile: 0 standard, 1 metered.
    pub traffic: u8,
    /// The app's language: 0 English, 1 French, 2 Arabic.
    pub language: u8,
    /// The app's lock timeout, in seconds.
    pub lock_timeout_secs: u32,
}

impl DuressSettings {
    fn encode(&self) -> Zeroizing<[u8; SLOT_PT_LEN]> {
        let mut pt = Zeroizing::new([0u8; SLOT_PT_LEN]);
        pt[..8].copy_from_slice(DURESS_MARKER);
        pt[8..10].copy_from_slice(&self.gateway_index.to_be_bytes());
        pt[10] = self.traffic;
        pt[11] = self.language;
        pt[12..16].copy_from_slice(&self.lock_timeout_secs.to_be_bytes());
        pt
    }

    fn decode(pt: &[u8; SLOT_PT_LEN]) -> Self {
        Self {
            gateway_index: u16::from_be_bytes([pt[8], pt[9]]),
            traffic: pt[10],
            language: pt[11],
            lock_timeout_secs: u32::from_be_bytes([pt[12], pt[13], pt[14], pt[15]]),
        }
    }
}

/// A key derived from a passphrase with a header's salt and parameters (the key-encryption key,
/// KEK). Zeroized on drop; `Debug` prints nothing of it. Obtained from a duress opening
/// ([`Duress::kek`](super::Duress::kek)) to create a profile under the same passphrase without a
/// second Argon2id run ([`Profile::create_with_kek`](super::Profile::create_with_kek)).
pub struct Kek {
    key: Zeroizing<[u8; KEY_LEN]>,
    params: KdfParams,
    salt: [u8; SALT_LEN],
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Argon2id of `passphrase` under `params` and `salt`: the one expensive step of an unlock.
    pub(super) fn derive(
        passphrase: &Passphrase,
        params: KdfParams,
        salt: [u8; SALT_LEN],
    ) -> Result<Self, StoreError> {
        Ok(Self { key: params.derive(passphrase, &salt)?, params, salt })
    }

    pub(super) fn params(&self) -> KdfParams {
        self.params
    }

    pub(super) fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    fn aead(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.key))
    }

    /// Slot `index` holding `pt`, under this key and a fresh nonce.
    fn seal(&self, index: usize, pt: &[u8; SLOT_PT_LEN]) -> Result<[u8; SLOT_LEN], StoreError> {
        self.seal_with(index, pt, random()?)
    }

    fn seal_with(
        &self,
        index: usize,
        pt: &[u8; SLOT_PT_LEN],
        nonce: [u8; XNONCE_LEN],
    ) -> Result<[u8; SLOT_LEN], StoreError> {
        let aad = slot_aad(self.params, &self.salt, index);
        let ct = self
            .aead()
            .encrypt(&XNonce::from(nonce), Payload { msg: pt, aad: &aad })
            .map_err(|_| StoreError::KdfParams("encryption failed".into()))?;
        let mut slot = [0u8; SLOT_LEN];
        slot[..XNONCE_LEN].copy_from_slice(&nonce);
        slot[XNONCE_LEN..].copy_from_slice(&ct);
        Ok(slot)
    }

    /// Slot `index`'s plaintext, if this key sealed it.
    fn open(&self, index: usize, slot: &[u8; SLOT_LEN]) -> Option<Zeroizing<[u8; SLOT_PT_LEN]>> {
        let aad = slot_aad(self.params, &self.salt, index);
        let (nonce, ct) = slot.split_at(XNONCE_LEN);
        let nonce: [u8; XNONCE_LEN] = nonce.try_into().ok()?;
        let pt =
            Zeroizing::new(self.aead().decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad }).ok()?);
        let mut out = Zeroizing::new([0u8; SLOT_PT_LEN]);
        out.copy_from_slice(pt.get(..SLOT_PT_LEN)?);
        Some(out)
    }
}

/// `prefix ‖ u8 index`: a slot's associated data.
fn slot_aad(params: KdfParams, salt: &[u8; SALT_LEN], index: usize) -> Vec<u8> {
    let mut w = Writer::with_capacity(PREFIX_LEN + 1);
    write_prefix(&mut w, HEADER_VERSION, params, salt);
    // Two slots: the index is 0 or 1.
    w.u8(u8::from(index == 1));
    w.into_parts().0
}

fn write_prefix(w: &mut Writer, version: u16, params: KdfParams, salt: &[u8; SALT_LEN]) {
    w.raw(MAGIC);
    w.u16(version);
    w.u8(KDF_ARGON2ID_13);
    w.u32(params.memory_kib);
    w.u32(params.iterations);
    w.u32(params.parallelism);
    w.raw(salt);
}

/// What a passphrase's key opens in a header.
pub(super) enum Unwrapped {
    /// The real slot, at `slot`: the master key.
    Real { master: Zeroizing<[u8; KEY_LEN]>, slot: usize },
    /// The duress slot.
    Duress(DuressSettings),
    /// Neither slot.
    Wrong,
}

/// A version-2 header, parsed.
#[derive(Clone)]
pub(super) struct Header {
    pub(super) params: KdfParams,
    pub(super) salt: [u8; SALT_LEN],
    slots: [[u8; SLOT_LEN]; 2],
}

/// A header of either version, parsed.
pub(super) enum Decoded {
    V1(HeaderV1),
    V2(Header),
}

impl Decoded {
    pub(super) fn params(&self) -> KdfParams {
        match self {
            Self::V1(h) => h.params,
            Self::V2(h) => h.params,
        }
    }

    pub(super) fn salt(&self) -> [u8; SALT_LEN] {
        match self {
            Self::V1(h) => h.salt,
            Self::V2(h) => h.salt,
        }
    }

    /// What `kek` (derived with this header's salt and parameters) opens. A version-1 header has
    /// only a real slot; its master key comes back with slot 0 (meaningless until rewritten).
    pub(super) fn unwrap(&self, kek: &Kek, path: &Path) -> Result<Unwrapped, StoreError> {
        match self {
            Self::V1(h) => Ok(match h.unwrap(kek) {
                Some(master) => Unwrapped::Real { master, slot: 0 },
                None => Unwrapped::Wrong,
            }),
            Self::V2(h) => h.unwrap(kek, path),
        }
    }

    pub(super) fn decode(bytes: &[u8], path: &Path) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
        let malformed = |e: DecodeError| corrupt(e.reason());
        let mut r = Reader::new(bytes);
        // The magic and the version first: a header of another version has another length.
        let (Ok(magic), Ok(version)) = (r.array::<8>(), r.u16()) else {
            return Err(corrupt("not a Qanat profile header"));
        };
        if magic != *MAGIC {
            return Err(corrupt("not a Qanat profile header"));
        }
        let len = match version {
            1 => V1_LEN,
            HEADER_VERSION => HEADER_LEN,
            _ => {
                return Err(StoreError::UnknownVersion {
                    path: path.to_owned(),
                    found: version.into(),
                    known: HEADER_VERSION.into(),
                });
            }
        };
        if bytes.len() != len {
            return Err(corrupt(&format!("{} bytes, expected {len}", bytes.len())));
        }
        if r.u8().map_err(malformed)? != KDF_ARGON2ID_13 {
            return Err(corrupt("unknown key-derivation function"));
        }
        let m = r.u32().map_err(malformed)?;
        let t = r.u32().map_err(malformed)?;
        let p = r.u32().map_err(malformed)?;
        let params = KdfParams::checked(m, t, p).map_err(|e| corrupt(&e.to_string()))?;
        let salt = r.array().map_err(malformed)?;
        let out = if version == 1 {
            let nonce = r.array().map_err(malformed)?;
            let wrapped = r.array().map_err(malformed)?;
            Self::V1(HeaderV1 { params, salt, nonce, wrapped })
        } else {
            let slots = [r.array().map_err(malformed)?, r.array().map_err(malformed)?];
            Self::V2(Header { params, salt, slots })
        };
        r.finish().map_err(malformed)?;
        Ok(out)
    }
}

impl Header {
    /// A header with `master` in a slot drawn at random, under `kek` (and its salt and
    /// parameters); the other slot random. With the real slot's position.
    pub(super) fn new(kek: &Kek, master: &[u8; KEY_LEN]) -> Result<(Self, usize), StoreError> {
        let real = usize::from(random::<1>()?[0] & 1);
        let mut pt = Zeroizing::new([0u8; SLOT_PT_LEN]);
        pt[..KEY_LEN].copy_from_slice(master);
        let mut slots = [random()?, random()?];
        slots[real] = kek.seal(real, &pt)?;
        Ok((Self { params: kek.params(), salt: kek.salt(), slots }, real))
    }

    /// This header with the slot other than `real` holding `settings` under `kek` (derived with
    /// this header's salt and parameters).
    pub(super) fn with_duress(
        &self,
        real: usize,
        kek: &Kek,
        settings: DuressSettings,
    ) -> Result<Self, StoreError> {
        let mut h = self.clone();
        let other = 1 - real.min(1);
        h.slots[other] = kek.seal(other, &settings.encode())?;
        Ok(h)
    }

    /// This header with the slot other than `real` random bytes.
    pub(super) fn without_duress(&self, real: usize) -> Result<Self, StoreError> {
        let mut h = self.clone();
        h.slots[1 - real.min(1)] = random()?;
        Ok(h)
    }

    /// Whether `kek` opens slot `index` (to refuse a duress passphrase that opens the real slot).
    pub(super) fn opens(&self, kek: &Kek, index: usize) -> bool {
        self.slots.get(index).is_some_and(|s| kek.open(index, s).is_some())
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN);
        write_prefix(&mut w, HEADER_VERSION, self.params, &self.salt);
        w.raw(&self.slots[0]);
        w.raw(&self.slots[1]);
        // Fixed-width fields only: nothing can fail to fit.
        w.into_parts().0
    }

    /// What `kek` opens. Both slots are always tried and both plaintexts classified, so the work
    /// is the same whatever the passphrase was.
    fn unwrap(&self, kek: &Kek, path: &Path) -> Result<Unwrapped, StoreError> {
        let opened = [kek.open(0, &self.slots[0]), kek.open(1, &self.slots[1])];
        let mut real = None;
        let mut duress = None;
        for (i, pt) in opened.iter().enumerate() {
            let Some(pt) = pt else { continue };
            // A duress slot's padding covers a real slot's, so the marker is checked first (a
            // random master key begins with it and has zeros in bytes 16..32 with probability 2^-192).
            let is_duress: bool = (pt[..DURESS_MARKER.len()].ct_eq(DURESS_MARKER)
                & pt[DURESS_FIELDS_END..].ct_eq(&[0u8; SLOT_PT_LEN - DURESS_FIELDS_END]))
            .into();
            let is_real: bool = pt[KEY_LEN..].ct_eq(&[0u8; SLOT_PT_LEN - KEY_LEN]).into();
            if is_duress {
                duress = Some(DuressSettings::decode(pt));
            } else if is_real {
                real = Some(i);
            } else {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    reason: "a slot opens to neither a key nor duress settings".into(),
                });
            }
        }
        Ok(match (real, duress) {
            (Some(slot), _) => {
                let mut master = Zeroizing::new([0u8; KEY_LEN]);
                if let Some(pt) = &opened[slot] {
                    master.copy_from_slice(&pt[..KEY_LEN]);
                }
                Unwrapped::Real { master, slot }
            }
            (None, Some(s)) => Unwrapped::Duress(s),
            (None, None) => Unwrapped::Wrong,
        })
    }
}

/// A version-1 header, parsed: read to be rewritten as version 2.
pub(super) struct HeaderV1 {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; XNONCE_LEN],
    wrapped: [u8; KEY_LEN + TAG_LEN],
}

impl HeaderV1 {
    fn prefix(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(V1_PREFIX_LEN);
        write_prefix(&mut w, 1, self.params, &self.salt);
        w.raw(&self.nonce);
        w.into_parts().0
    }

    fn unwrap(&self, kek: &Kek) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let pt = Zeroizing::new(
            kek.aead()
                .decrypt(&XNonce::from(self.nonce), Payload { msg: &self.wrapped, aad: &self.prefix() })
                .ok()?,
        );
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        master.copy_from_slice(pt.get(..KEY_LEN)?);
        Some(master)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::danger;

    fn weak() -> KdfParams {
        danger::weak_kdf_params(8, 1, 1).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn unwrap_with(h: &Decoded, pass: &str) -> Unwrapped {
        let kek = Kek::derive(&Passphrase::new(pass), h.params(), h.salt()).unwrap();
        h.unwrap(&kek, Path::new("h")).unwrap()
    }

    #[test]
    fn header_round_trips_and_has_its_documented_length() {
        let kek = Kek::derive(&Passphrase::new("p"), weak(), [3; SALT_LEN]).unwrap();
        let h = Header::new(&kek, &[7; 32]).unwrap().0;
        let bytes = h.encode();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(HEADER_LEN, 247);
        let back = Decoded::decode(&bytes, Path::new("h")).unwrap();
        assert!(matches!(unwrap_with(&back, "p"), Unwrapped::Real { master, .. } if *master == [7; 32]));
        assert!(matches!(unwrap_with(&back, "q"), Unwrapped::Wrong));
    }

    #[test]
    fn the_real_slot_is_at_a_random_position() {
        let kek = Kek::derive(&Passphrase::new("p"), weak(), [3; SALT_LEN]).unwrap();
        let mut seen = [false; 2];
        for _ in 0..64 {
            let h = Decoded::V2(Header::new(&kek, &[7; 32]).unwrap().0);
            if let Unwrapped::Real { slot, .. } = h.unwrap(&kek, Path::new("h")).unwrap() {
                seen[slot] = true;
            }
        }
        assert_eq!(seen, [true, true]);
    }

    /// The version-2 header's bytes for fixed inputs (the real slot first, a duress slot second):
    /// any change to the layout, the key derivation or the seal fails here before it reaches a
    /// user's disk.
    #[test]
    fn header_bytes_are_pinned() {
        let salt: [u8; SALT_LEN] = std::array::from_fn(|i| 1 + i as u8);
        let master: [u8; KEY_LEN] = std::array::from_fn(|i| 0x40 + i as u8);
        let real = Kek::derive(&Passphrase::new("correct horse"), weak(), salt).unwrap();
        let duress = Kek::derive(&Passphrase::new("duress"), weak(), salt).unwrap();
        let settings = DuressSettings { gateway_index: 2, traffic: 1, language: 2, lock_timeout_secs: 300 };
        let mut pt = [0u8; SLOT_PT_LEN];
        pt[..KEY_LEN].copy_from_slice(&master);
        let slot0 = real.seal_with(0, &pt, std::array::from_fn(|i| 0x20 + i as u8)).unwrap();
        let slot1 = duress.seal_with(1, &settings.encode(), std::array::from_fn(|i| 0x60 + i as u8)).unwrap();
        let bytes = Header { params: weak(), salt, slots: [slot0, slot1] }.encode();
        let expected = concat!(
            "51414e4154505246",                                                 // "QANATPRF"
            "0002",                                                             // version 2
            "01",                                                               // Argon2id v1.3
            "00000008",                                                         // m = 8 KiB
            "00000001",                                                         // t = 1
            "00000001",                                                         // p = 1
            "0102030405060708090a0b0c0d0e0f10",                                 // salt
            "202122232425262728292a2b2c2d2e2f3031323334353637",                 // slot 0: nonce
            "525d1ac0adb552555ec168db3e46299f87a252a8f623b50d7b6c005db10ab709", // slot 0 (master ‖ 0^32): sealed plaintext
            "428ae136017f323b8d008b2ea48bf0a3677a9531e4aa99fdff9aa32faae77f31",
            "bb31a1c5ceb9a89e6cbfaec0dd62964f",                 // its tag
            "606162636465666768696a6b6c6d6e6f7071727374757677", // slot 1: nonce
            "0a8a8e6c89cf1e203665c5a68d18b9cb0cf0e6c21b205f6f8044666138a886e5", // slot 1 (duress settings): sealed plaintext
            "2b4501523c3e88c9015844a03ef3f0bfac3025b8543b93e99fdb9692aa7375d5",
            "61da087d3a6ef6f413094712e205aa9b", // its tag
        );
        assert_eq!(hex(&bytes), expected);
        let back = Decoded::decode(&bytes, Path::new("h")).unwrap();
        assert!(
            matches!(unwrap_with(&back, "correct horse"), Unwrapped::Real { master: m, slot: 0 } if *m == master)
        );
        assert!(matches!(unwrap_with(&back, "duress"), Unwrapped::Duress(s) if s == settings));
        assert!(matches!(unwrap_with(&back, "wrong"), Unwrapped::Wrong));
        let Decoded::V2(h) = back else { panic!("version 2") };
        assert_eq!(h.encode(), bytes);
    }

    /// A version-1 header as version 1 always wrote it still opens (to be rewritten).
    #[test]
    fn a_version_1_header_still_opens() {
        let v1 = unhex(concat!(
            "51414e4154505246",
            "0001",
            "01",
            "00000008",
            "00000001",
            "00000001",
            "0102030405060708090a0b0c0d0e0f10",
            "202122232425262728292a2b2c2d2e2f3031323334353637",
            "525d1ac0adb552555ec168db3e46299f87a252a8f623b50d7b6c005db10ab709",
            "93d00d8ddcbc9e50c5ddafc3ed865db9",
        ));
        let master: [u8; KEY_LEN] = std::array::from_fn(|i| 0x40 + i as u8);
        let h = Decoded::decode(&v1, Path::new("h")).unwrap();
        assert!(matches!(h, Decoded::V1(_)));
        assert!(
            matches!(unwrap_with(&h, "correct horse"), Unwrapped::Real { master: m, .. } if *m == master)
        );
        assert!(matches!(unwrap_with(&h, "wrong"), Unwrapped::Wrong));
    }

    /// Whatever bytes the file holds, the decoder answers an error or a header, never a panic.
    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let kek = Kek::derive(&Passphrase::new("p"), weak(), [3; SALT_LEN]).unwrap();
        let good = Header::new(&kek, &[7; 32]).unwrap().0.encode();
        for len in 0..=good.len() + 1 {
            let mut b = good.clone();
            b.resize(len, 0xff);
            let r = Decoded::decode(&b, Path::new("h"));
            assert_eq!(r.is_ok(), len == HEADER_LEN, "{len}");
        }
        for i in 0..PREFIX_LEN {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                if let Ok(h) = Decoded::decode(&b, Path::new("h")) {
                    // Parameters that still decode: the slots no longer authenticate.
                    if h.params() == weak() {
                        assert!(matches!(unwrap_with(&h, "p"), Unwrapped::Wrong), "byte {i} bit {bit}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any bytes after a valid magic and a version: a header that re-encodes to the same
        /// bytes, or an error; never a panic. (No key is derived: the parameters are arbitrary.)
        #[test]
        fn any_header_bytes_decode_or_fail_without_panic(
            version in 0u16..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&version.to_be_bytes());
            b.extend_from_slice(&tail);
            if let Ok(Decoded::V2(h)) = Decoded::decode(&b, Path::new("h")) {
                proptest::prop_assert_eq!(h.encode(), b);
            }
        }

        /// A valid header with one byte replaced: an error, or a header whose real slot no
        /// longer opens with the passphrase (unless the byte was unchanged, or in the slot not in
        /// use); never a panic.
        #[test]
        fn an_altered_header_fails_cleanly(i in 0..HEADER_LEN, x in proptest::prelude::any::<u8>()) {
            let kek = Kek::derive(&Passphrase::new("p"), weak(), [3; SALT_LEN]).unwrap();
            let (h, real) = Header::new(&kek, &[7; 32]).unwrap();
            let good = h.encode();
            let other = PREFIX_LEN + (1 - real) * SLOT_LEN;
            let mut b = good.clone();
            b[i] = x;
            if let Ok(h) = Decoded::decode(&b, Path::new("h"))
                && h.params() == weak()
            {
                let opened = matches!(unwrap_with(&h, "p"), Unwrapped::Real { .. });
                proptest::prop_assert_eq!(opened, b == good || (other..other + SLOT_LEN).contains(&i));
            }
        }
    }

    #[test]
    fn kdf_floor_is_enforced_outside_danger() {
        assert!(KdfParams::new(8, 1, 1).is_err());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB + 1, 3, 1).is_err());
        assert!(danger::weak_kdf_params(8, 1, 1).is_ok());
        assert!(danger::weak_kdf_params(7, 1, 1).is_err());
    }
}
