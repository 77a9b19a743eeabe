//! The node's key store, in `DATA_DIR/keys/`:
//!
//! ```text
//! keys/                     mode 0700
//!   identity.key            Ed25519 identity seed (32 bytes)
//!   link.key                link secret key (X25519 secret ‖ ML-KEM-768 seed, 96 bytes)
//!   packet/                 mode 0700
//!     epoch-<N>.key         packet secret key for epoch N (32 bytes, scheme in the header)
//! ```
//!
//! Every file is mode 0600 and has the same small binary format:
//!
//! ```text
//! magic "QNATKEY\0" (8) | version 1 (1) | kind (1) | scheme (1) | reserved 0 (1) |
//! epoch u64 BE (8) | body length u16 BE (2) | body | SHA-256 of everything before (32)
//! ```
//!
//! `kind` is 1 identity, 2 link, 3 packet; `scheme` is 0 for non-packet keys, else 1 X25519
//! NIKE, 2 X25519 KEM, 3 X-Wing; `epoch` is 0 for non-packet keys. A truncated, altered or
//! mislabelled file is refused with an error naming it, never a panic.
//!
//! Files are written atomically (a temporary file created 0600, written, `fsync`ed, renamed
//! over the target, then the directory `fsync`ed), so a crash leaves either the old file or the
//! new one.
//!
//! # Why packet keys are kept on disk
//!
//! A node publishes its packet keys for the current epoch and the next ones in its descriptor
//! (clients build packets to them ahead of time). A node restarted under load must still be able
//! to unwrap packets encrypted to the keys it already published, so keys are created once,
//! persisted, and reloaded; [`NodeKeys::rotate`] creates the missing ones of the window and
//! deletes those older than the grace window. The identity and link keys are created on the first
//! start only: if one exists without the other, the store refuses to start rather than silently
//! become a different node. Deleting a packet key also deletes its replay log
//! ([`crate::replay_log`]), which is useless (and a record of traffic) without the key.
//!
//! Secrets are held in types that zeroize on drop ([`IdentitySecret`], [`LinkSecretKey`],
//! [`SecretKey`]) and every buffer holding secret bytes is [`Zeroizing`].

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use qanat_codec::{Reader, Writer};
use qanat_link::LinkSecretKey;
use qanat_network::file::{Access, write_atomically};
use qanat_packet::{Scheme, SecretKey};
use qanat_pki::{Epoch, EpochPeriod, IdentitySecret, UnixMillis};
use rand_core::CryptoRng;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::data_files::{FileError, create_dir, entries, epoch_file, epoch_of, io_err, sync_dir};

const MAGIC: &[u8; 8] = b"QNATKEY\0";
const VERSION: u8 = 1;
const KIND_IDENTITY: u8 = 1;
const KIND_LINK: u8 = 2;
const KIND_PACKET: u8 = 3;
const HEADER_LEN: usize = 8 + 1 + 1 + 1 + 1 + 8 + 2;
const CHECKSUM_LEN: usize = 32;
/// Largest key file accepted (bigger than any key, smaller than anything worth reading).
const MAX_FILE_LEN: u64 = 4096;

/// Which packet keys a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWindow {
    /// Epochs after the current one with a key (published ahead so no packet is lost at an
    /// epoch boundary).
    pub ahead: u64,
    /// Epochs before the current one whose key is still kept (packets in flight across the
    /// boundary).
    pub grace: u64,
}

impl Default for KeyWindow {
    /// The current epoch and two ahead (the three keys a descriptor needs), one behind.
    fn default() -> Self {
        Self { ahead: 2, grace: 1 }
    }
}

/// An error of the key store. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// A file or directory could not be read, written, renamed or removed.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A key file is truncated, altered or not a key file of the expected kind.
    #[error(
        "{}: corrupt key file: {problem}; restore it from a backup (a corrupt packet key may instead be deleted, losing packets sent to it)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// One of the identity and link keys exists without the other.
    #[error(
        "{}: missing, while {} exists; restore it from a backup, or delete the keys directory to start as a new node",
        missing.display(), present.display()
    )]
    Missing {
        /// The missing file.
        missing: PathBuf,
        /// The file that exists.
        present: PathBuf,
    },
    /// The key file format has no code for this packet scheme yet.
    #[error("packet scheme {0} cannot be stored by this version of the key store; use another scheme")]
    UnsupportedScheme(&'static str),
}

fn corrupt(path: &Path, problem: impl Into<String>) -> KeyStoreError {
    KeyStoreError::Corrupt { path: path.to_owned(), problem: problem.into() }
}

/// The node's keys, loaded from (and kept in step with) `DATA_DIR/keys/`.
pub struct NodeKeys {
    dir: PathBuf,
    identity: IdentitySecret,
    link: LinkSecretKey,
    packet: BTreeMap<Epoch, SecretKey>,
    window: KeyWindow,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("identity", &self.identity.public())
            .field("packet_epochs", &self.packet.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What [`NodeKeys::rotate`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Epochs whose key was created.
    pub created: Vec<Epoch>,
    /// Epochs whose key was deleted.
    pub deleted: Vec<Epoch>,
}

impl NodeKeys {
    /// Opens the key store in `data_dir` (creating it and the identity and link keys on the first
    /// start), loads the packet keys on disk and [rotates](Self::rotate) them for `now`: new
    /// packet keys are of `scheme`; keys already on disk keep theirs.
    pub fn open<R: CryptoRng + ?Sized>(
        data_dir: &Path,
        window: KeyWindow,
        now: UnixMillis,
        period: EpochPeriod,
        scheme: Scheme,
        rng: &mut R,
    ) -> Result<Self, KeyStoreError> {
        let dir = data_dir.join("keys");
        create_dir(data_dir)?;
        create_dir(&dir)?;
        create_dir(&dir.join("packet"))?;
        remove_temp_files(&dir)?;
        remove_temp_files(&dir.join("packet"))?;

        let id_path = dir.join("identity.key");
        let link_path = dir.join("link.key");
        let (has_id, has_link) = (exists(&id_path)?, exists(&link_path)?);
        // The link key is written first and the identity key last, so a link key alone with no
        // packet key is a first start cut short: nothing was ever published with it.
        let first_start = !has_id && (!has_link || !has_packet_keys(&dir.join("packet"))?);
        let (identity, link) = if first_start {
            let identity = IdentitySecret::generate(rng);
            let link = LinkSecretKey::generate(rng);
            write_key(&link_path, KIND_LINK, 0, 0, &link.to_bytes())?;
            write_key(&id_path, KIND_IDENTITY, 0, 0, identity.to_bytes().as_ref())?;
            (identity, link)
        } else if !has_id {
            return Err(KeyStoreError::Missing { missing: id_path, present: link_path });
        } else if !has_link {
            return Err(KeyStoreError::Missing { missing: link_path, present: id_path });
        } else {
            (load_identity(&id_path)?, load_link(&link_path)?)
        };
        let packet = load_packet_keys(&dir.join("packet"))?;
        let mut keys = Self { dir, identity, link, packet, window };
        keys.rotate(now, period, scheme, rng)?;
        Ok(keys)
    }

    /// Makes the packet keys on disk and in memory exactly the window around the epoch of `now`:
    /// creates (and persists, before returning) the missing keys of the current epoch and the
    /// `ahead` next ones, and deletes the keys of epochs before `current - grace`. Keys of later
    /// epochs than the window (from a clock that was ahead) are kept.
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        now: UnixMillis,
        period: EpochPeriod,
        scheme: Scheme,
        rng: &mut R,
    ) -> Result<Rotation, KeyStoreError> {
        let current = Epoch::at(now, period);
        let oldest = Epoch(current.0.saturating_sub(self.window.grace));
        let packet_dir = self.dir.join("packet");
        let mut rotation = Rotation::default();
        for n in 0..=self.window.ahead {
            let e = current.plus(n);
            if self.packet.contains_key(&e) {
                continue;
            }
            let code = scheme_code(scheme).ok_or(KeyStoreError::UnsupportedScheme(scheme.name()))?;
            let key = SecretKey::generate(scheme, rng);
            write_key(&packet_path(&packet_dir, e), KIND_PACKET, code, e.0, key.to_bytes().as_ref())?;
            self.packet.insert(e, key);
            rotation.created.push(e);
        }
        let old: Vec<Epoch> = self.packet.range(..oldest).map(|(e, _)| *e).collect();
        for e in old {
            let path = packet_path(&packet_dir, e);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_err(&path, "delete the expired packet key")(err).into()),
            }
            if let Some(data_dir) = self.dir.parent() {
                crate::replay_log::delete_log(data_dir, e.0).map_err(io_err(
                    &crate::replay_log::replay_dir(data_dir),
                    "delete the replay log of the expired packet key",
                ))?;
            }
            self.packet.remove(&e);
            rotation.deleted.push(e);
        }
        if !rotation.deleted.is_empty() {
            sync_dir(&packet_dir)?;
        }
        Ok(rotation)
    }

    /// The identity key.
    pub fn identity(&self) -> &IdentitySecret {
        &self.identity
    }

    /// The link key.
    pub fn link(&self) -> &LinkSecretKey {
        &self.link
    }

    /// The packet key of `epoch`, if the node has one.
    pub fn packet_key(&self, epoch: Epoch) -> Option<&SecretKey> {
        self.packet.get(&epoch)
    }

    /// Every packet key held, oldest epoch first.
    pub fn packet_keys(&self) -> impl Iterator<Item = (Epoch, &SecretKey)> {
        self.packet.iter().map(|(e, k)| (*e, k))
    }

    /// The directory holding the keys (`DATA_DIR/keys`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn packet_path(dir: &Path, e: Epoch) -> PathBuf {
    epoch_file(dir, e.0, ".key")
}

fn scheme_code(s: Scheme) -> Option<u8> {
    match s {
        Scheme::X25519Nike => Some(1),
        Scheme::X25519Kem => Some(2),
        Scheme::XWing => Some(3),
        _ => None,
    }
}

fn scheme_from_code(c: u8) -> Option<Scheme> {
    match c {
        1 => Some(Scheme::X25519Nike),
        2 => Some(Scheme::X25519Kem),
        3 => Some(Scheme::XWing),
        _ => None,
    }
}

fn exists(path: &Path) -> Result<bool, FileError> {
    path.try_exists().map_err(io_err(path, "look up"))
}

fn remove_temp_files(dir: &Path) -> Result<(), KeyStoreError> {
    for entry in entries(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err(&p, "remove the leftover temporary file"))?;
        }
    }
    Ok(())
}

/// Encodes a key file.
fn encode(kind: u8, scheme: u8, epoch: u64, body: &[u8]) -> Zeroizing<Vec<u8>> {
    // The exact length, so that the buffer holding the secret never moves.
    let mut w = Writer::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    w.raw(MAGIC);
    w.raw(&[VERSION, kind, scheme, 0]);
    w.u64(epoch);
    w.bytes16(body);
    let sum = Sha256::digest(w.as_slice());
    w.raw(&sum);
    let (bytes, error) = w.into_parts();
    let bytes = Zeroizing::new(bytes);
    // Bodies are at most 96 bytes (fixed key sizes), so the prefix always fits; were it not to,
    // the empty file would be refused as truncated at the next start, never read as a key.
    if error.is_some() { Zeroizing::new(Vec::new()) } else { bytes }
}

/// A decoded key file.
struct Decoded {
    scheme: u8,
    epoch: u64,
    body: Zeroizing<Vec<u8>>,
}

fn decode(path: &Path, bytes: &[u8], kind: u8) -> Result<Decoded, KeyStoreError> {
    let min = HEADER_LEN + CHECKSUM_LEN;
    if bytes.len() < min {
        return Err(corrupt(
            path,
            format!("truncated: {} bytes, a key file has at least {min}", bytes.len()),
        ));
    }
    let malformed = |e: qanat_codec::DecodeError| corrupt(path, e.to_string());
    let mut r = Reader::new(bytes);
    if r.array::<8>().map_err(malformed)? != *MAGIC {
        return Err(corrupt(path, "not a Qanat key file (bad magic)"));
    }
    let [version, file_kind, scheme, _reserved] = r.array().map_err(malformed)?;
    if version != VERSION {
        return Err(corrupt(path, format!("unsupported format version {version}")));
    }
    if file_kind != kind {
        return Err(corrupt(path, format!("holds a key of kind {file_kind}, expected {kind}")));
    }
    let epoch = r.u64().map_err(malformed)?;
    let body_len = usize::from(r.u16().map_err(malformed)?);
    let total = HEADER_LEN + body_len + CHECKSUM_LEN;
    if bytes.len() != total {
        return Err(corrupt(
            path,
            format!("{} bytes, its header says {total} (truncated or extended)", bytes.len()),
        ));
    }
    let body = r.raw(body_len).map_err(malformed)?;
    let sum = r.array::<CHECKSUM_LEN>().map_err(malformed)?;
    r.finish().map_err(malformed)?;
    if Sha256::digest(bytes.get(..HEADER_LEN + body_len).unwrap_or_default()).as_slice() != sum {
        return Err(corrupt(path, "checksum mismatch (the file was altered or damaged)"));
    }
    Ok(Decoded { scheme, epoch, body: Zeroizing::new(body.to_vec()) })
}

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyStoreError> {
    let f = File::open(path).map_err(io_err(path, "open the key file"))?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(MAX_FILE_LEN + 1).read_to_end(&mut buf).map_err(io_err(path, "read the key file"))?;
    if buf.len() as u64 > MAX_FILE_LEN {
        return Err(corrupt(path, format!("longer than {MAX_FILE_LEN} bytes")));
    }
    Ok(buf)
}

fn has_packet_keys(dir: &Path) -> Result<bool, KeyStoreError> {
    for entry in entries(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("epoch-") {
            return Ok(true);
        }
    }
    Ok(false)
}

fn load_identity(path: &Path) -> Result<IdentitySecret, KeyStoreError> {
    let d = decode(path, &read_file(path)?, KIND_IDENTITY)?;
    let seed: &[u8; 32] = d
        .body
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(path, format!("identity key of {} bytes, expected 32", d.body.len())))?;
    Ok(IdentitySecret::from_bytes(seed))
}

fn load_link(path: &Path) -> Result<LinkSecretKey, KeyStoreError> {
    let d = decode(path, &read_file(path)?, KIND_LINK)?;
    LinkSecretKey::from_bytes(&d.body).map_err(|e| corrupt(path, format!("invalid link key: {e}")))
}

fn load_packet_keys(dir: &Path) -> Result<BTreeMap<Epoch, SecretKey>, KeyStoreError> {
    let mut keys = BTreeMap::new();
    for entry in entries(dir)? {
        let entry = entry?;
        let Some(epoch) = epoch_of(&entry.file_name(), ".key") else {
            continue; // Not ours; leave it alone.
        };
        let path = entry.path();
        let d = decode(&path, &read_file(&path)?, KIND_PACKET)?;
        if d.epoch != epoch {
            return Err(corrupt(&path, format!("holds the key of epoch {}, not {epoch}", d.epoch)));
        }
        let scheme = scheme_from_code(d.scheme)
            .ok_or_else(|| corrupt(&path, format!("unknown scheme code {}", d.scheme)))?;
        let key = SecretKey::from_bytes(scheme, &d.body)
            .map_err(|e| corrupt(&path, format!("invalid packet key: {e}")))?;
        keys.insert(Epoch(epoch), key);
    }
    Ok(keys)
}

/// Writes a key file atomically with mode 0600.
fn write_key(path: &Path, kind: u8, scheme: u8, epoch: u64, body: &[u8]) -> Result<(), KeyStoreError> {
    let bytes = encode(kind, scheme, epoch, body);
    write_atomically(path, &bytes, Access::OwnerOnly).map_err(|e| KeyStoreError::Io(e.into()))
}

#[cfg(test)]
mod tests;
