//! The profile: all of a client's local state, in one directory, encrypted under a key derived
//! from the passphrase (DESIGN.md P7 "At rest").
//!
//! # Layout of a profile directory
//!
//! | file | what it holds |
//! |---|---|
//! | `lock` | empty; an OS advisory lock on it (`flock`) is held while a [`Profile`] is open |
//! | `profile.header` | 111 bytes: the key-derivation parameters, a salt, and the wrapped master key |
//! | `profile.sqlite` (+ `-wal`, `-shm`) | SQLite (WAL, `synchronous=FULL`, `secure_delete=ON`): one table of encrypted rows |
//!
//! # Keys
//!
//! ```text
//! KEK    = Argon2id(passphrase, salt, m, t, p) -> 32 bytes         (parameters and salt in the header)
//! master = 32 random bytes, stored as XChaCha20-Poly1305(KEK, nonce, master, aad = header prefix)
//! aead   = HKDF-SHA256(ikm = master, salt = "", info = "qanat-client store v1 aead")
//! mac    = HKDF-SHA256(ikm = master, salt = "", info = "qanat-client store v1 row name")
//! ```
//!
//! The master key is random and only *wrapped* by the passphrase-derived key, so changing the
//! passphrase ([`Profile::change_passphrase`]) rewrites the header and nothing else. A wrong
//! passphrase fails the wrap's authentication, so it is reported ([`StoreError::WrongPassphrase`])
//! before the database is opened at all.
//!
//! # Header (`profile.header`, version 1, big-endian integers)
//!
//! ```text
//! "QANATPRF" (8) ‖ version u16 = 1 ‖ kdf u8 = 1 (Argon2id v1.3) ‖ m_kib u32 ‖ t u32 ‖ p u32
//!   ‖ salt (16) ‖ nonce (24) ‖ wrapped master key (32 + 16-byte tag)
//! ```
//!
//! # Rows
//!
//! One table `kv(name BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID`, schema version in
//! SQLite's `user_version` (1). Each logical entry `(namespace, key) -> value` is one row:
//!
//! ```text
//! name  = HMAC-SHA256(mac, "qanat-client store v1 row\0" ‖ u8 len(ns) ‖ ns ‖ key)
//! value = nonce (24) ‖ XChaCha20-Poly1305(aead, nonce, plaintext, aad = "qanat-client store v1 row\0" ‖ name)
//! plaintext = u8 len(ns) ‖ ns ‖ u16 len(key) ‖ key ‖ value
//! ```
//!
//! So the file shows neither namespaces, keys nor values: only the number of rows and their
//! sizes. A row cannot be moved to another name (the name is authenticated). The logical
//! namespace and key are inside the ciphertext so that [`Profile::scan`] can work: at open, every
//! row is decrypted once to build an in-memory index of `(namespace, key)`; a profile is held by
//! one process at a time, so that index stays true.
//!
//! # What this does not protect against
//!
//! - An adversary who can *write* the files (and hand the device back): it can roll the whole
//!   database back to an older copy, or delete rows; each row is authentic, the set is not.
//! - Deleted rows: `secure_delete` zeroes the bytes of a deleted or replaced row in its page, and
//!   a transaction that deleted or replaced a row is followed by `wal_checkpoint(TRUNCATE)`, so
//!   that the older versions of the page leave the write-ahead log (and the database file) before
//!   [`Profile::transaction`] returns (a checkpoint that fails is retried after the next
//!   transaction and at close; `tests/store.rs` scans the files for a deleted row's ciphertext).
//!   But the file system and flash storage may keep old blocks; and the header of a previous passphrase may survive on
//!   disk after [`Profile::change_passphrase`] (whoever knew the old passphrase and imaged the disk
//!   before can still unwrap the master key: to revoke a passphrase, create a new profile).
//! - Sizes: a row's length is its value's length plus a constant.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::SysRng;
use rand_core::TryRng;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The lock file's name in a profile directory.
pub const LOCK_FILE: &str = "lock";
/// The header file's name in a profile directory.
pub const HEADER_FILE: &str = "profile.header";
/// The database file's name in a profile directory.
pub const DATABASE_FILE: &str = "profile.sqlite";
/// The environment variable a binary may read the passphrase from ([`Passphrase::from_env`]).
pub const PASSPHRASE_ENV: &str = "QANAT_PASSPHRASE";
/// The header format this code writes and reads.
pub const HEADER_VERSION: u16 = 1;
/// The database schema this code writes and reads (SQLite `user_version`).
pub const SCHEMA_VERSION: u32 = 1;
/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

const MAGIC: &[u8; 8] = b"QANATPRF";
const KDF_ARGON2ID_13: u8 = 1;
const SALT_LEN: usize = 16;
const XNONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const HEADER_PREFIX_LEN: usize = 8 + 2 + 1 + 4 * 3 + SALT_LEN + XNONCE_LEN;
/// Length of `profile.header`.
pub const HEADER_LEN: usize = HEADER_PREFIX_LEN + KEY_LEN + TAG_LEN;
const ROW_DOMAIN: &[u8] = b"qanat-client store v1 row\0";
const INFO_AEAD: &[u8] = b"qanat-client store v1 aead";
const INFO_MAC: &[u8] = b"qanat-client store v1 row name";

/// What can go wrong with a profile. Every message names the file or directory concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The passphrase does not unlock the profile. Nothing was changed.
    #[error("wrong passphrase for the profile in {dir} (or its header was altered)")]
    WrongPassphrase {
        /// The profile directory.
        dir: PathBuf,
    },
    /// Another [`Profile`] (in this process or another) holds the directory's lock.
    #[error(
        "the profile in {dir} is in use by another process (or already open in this one); close it first"
    )]
    InUse {
        /// The profile directory.
        dir: PathBuf,
    },
    /// The directory holds no profile.
    #[error("no profile in {dir} ({HEADER_FILE} is missing)")]
    NotFound {
        /// The profile directory.
        dir: PathBuf,
    },
    /// [`Profile::create`] found a profile (or part of one) already there; nothing was changed.
    #[error("{dir} already holds a profile; open it, or choose another directory")]
    AlreadyExists {
        /// The profile directory.
        dir: PathBuf,
    },
    /// A file of the profile is damaged (or was altered).
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file has a format version this code does not know (written by a newer Qanat?).
    #[error(
        "{path} has format version {found}, which this version of Qanat does not read (it reads version {known})"
    )]
    UnknownVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this code reads.
        known: u32,
    },
    /// Key-derivation parameters out of range.
    #[error("invalid key-derivation parameters: {0}")]
    KdfParams(String),
    /// [`Profile::create`] or [`Profile::change_passphrase`] was given an empty passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// A namespace or key of the wrong length (a bug in the caller).
    #[error("invalid store name: {0}")]
    InvalidName(&'static str),
    /// A file system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A database error other than corruption (disk full, I/O error, …).
    #[error("database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

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

    fn as_bytes(&self) -> &[u8] {
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
    fn checked(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, StoreError> {
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

    fn derive(&self, passphrase: &Passphrase, salt: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, StoreError> {
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

/// Settings that weaken the profile's protection. For tests only.
pub mod danger {
    use super::{KdfParams, StoreError};

    /// Argon2id parameters below [`KdfParams::new`]'s floor (as low as 8 KiB and 1 iteration), so
    /// that tests run fast. A profile created with them falls to a passphrase guesser quickly.
    pub fn weak_kdf_params(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<KdfParams, StoreError> {
        KdfParams::checked(memory_kib, iterations, parallelism)
    }
}

/// The header, parsed.
struct Header {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; XNONCE_LEN],
    wrapped: [u8; KEY_LEN + TAG_LEN],
}

impl Header {
    fn prefix(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&HEADER_VERSION.to_be_bytes());
        v.push(KDF_ARGON2ID_13);
        v.extend_from_slice(&self.params.memory_kib.to_be_bytes());
        v.extend_from_slice(&self.params.iterations.to_be_bytes());
        v.extend_from_slice(&self.params.parallelism.to_be_bytes());
        v.extend_from_slice(&self.salt);
        v.extend_from_slice(&self.nonce);
        v
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = self.prefix();
        v.extend_from_slice(&self.wrapped);
        v
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
        if bytes.len() < MAGIC.len() + 2 || bytes.get(..MAGIC.len()) != Some(MAGIC) {
            return Err(corrupt("not a Qanat profile header"));
        }
        let mut r = Reader(bytes.get(MAGIC.len()..).unwrap_or_default());
        let version = r.u16().ok_or_else(|| corrupt("truncated"))?;
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
        let kdf = r.u8().ok_or_else(|| corrupt("truncated"))?;
        if kdf != KDF_ARGON2ID_13 {
            return Err(corrupt("unknown key-derivation function"));
        }
        let (m, t, p) = (r.u32(), r.u32(), r.u32());
        let (Some(m), Some(t), Some(p)) = (m, t, p) else { return Err(corrupt("truncated")) };
        let params = KdfParams::checked(m, t, p).map_err(|e| corrupt(&e.to_string()))?;
        let salt = r.array().ok_or_else(|| corrupt("truncated"))?;
        let nonce = r.array().ok_or_else(|| corrupt("truncated"))?;
        let wrapped = r.array().ok_or_else(|| corrupt("truncated"))?;
        Ok(Self { params, salt, nonce, wrapped })
    }

    /// A header wrapping `master` under `passphrase`.
    fn wrap(passphrase: &Passphrase, params: KdfParams, master: &[u8; KEY_LEN]) -> Result<Self, StoreError> {
        let mut h = Self { params, salt: random()?, nonce: random()?, wrapped: [0; KEY_LEN + TAG_LEN] };
        let kek = params.derive(passphrase, &h.salt)?;
        let aead = XChaCha20Poly1305::new(&Key::from(*kek));
        let ct = aead
            .encrypt(&XNonce::from(h.nonce), Payload { msg: master, aad: &h.prefix() })
            .map_err(|_| StoreError::KdfParams("encryption failed".into()))?;
        h.wrapped.copy_from_slice(&ct);
        Ok(h)
    }

    /// The master key, if `passphrase` is the right one.
    fn unwrap_key(&self, passphrase: &Passphrase) -> Option<Result<Zeroizing<[u8; KEY_LEN]>, StoreError>> {
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

/// The keys of an open profile. Zeroized on drop (the AEAD zeroizes its own key).
struct Keys {
    master: Zeroizing<[u8; KEY_LEN]>,
    aead: XChaCha20Poly1305,
    mac: Zeroizing<[u8; KEY_LEN]>,
}

impl Keys {
    fn new(master: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let hk = Hkdf::<Sha256>::new(None, master.as_ref());
        let mut aead_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut mac = Zeroizing::new([0u8; KEY_LEN]);
        // Expanding 32 bytes from HKDF-SHA256 cannot fail (the limit is 255 · 32).
        let _ = hk.expand(INFO_AEAD, aead_key.as_mut());
        let _ = hk.expand(INFO_MAC, mac.as_mut());
        let aead = XChaCha20Poly1305::new(&Key::from(*aead_key));
        Self { master, aead, mac }
    }

    fn row_name(&self, ns: &str, key: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length.
        let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(self.mac.as_ref()) else {
            return [0; 32];
        };
        m.update(ROW_DOMAIN);
        m.update(&[ns.len() as u8]);
        m.update(ns.as_bytes());
        m.update(key);
        m.finalize().into_bytes().into()
    }

    fn seal(&self, name: &[u8; 32], ns: &str, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut pt = Zeroizing::new(Vec::with_capacity(1 + ns.len() + 2 + key.len() + value.len()));
        pt.push(ns.len() as u8);
        pt.extend_from_slice(ns.as_bytes());
        pt.extend_from_slice(&(key.len() as u16).to_be_bytes());
        pt.extend_from_slice(key);
        pt.extend_from_slice(value);
        let nonce: [u8; XNONCE_LEN] = random()?;
        let aad = [ROW_DOMAIN, name].concat();
        let ct = self
            .aead
            .encrypt(&XNonce::from(nonce), Payload { msg: &pt, aad: &aad })
            .map_err(|_| StoreError::InvalidName("value too long"))?;
        let mut out = Vec::with_capacity(XNONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// `(namespace, key, value)` of a row, if it is authentic and its name matches its content.
    fn open(&self, name: &[u8], sealed: &[u8]) -> Option<(String, Vec<u8>, Zeroizing<Vec<u8>>)> {
        let (nonce, ct) = sealed.split_at_checked(XNONCE_LEN)?;
        let nonce: [u8; XNONCE_LEN] = nonce.try_into().ok()?;
        let aad = [ROW_DOMAIN, name].concat();
        let pt =
            Zeroizing::new(self.aead.decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad }).ok()?);
        let mut r = Reader(&pt);
        let ns_len = r.u8()?;
        let ns = std::str::from_utf8(r.take(ns_len.into())?).ok()?.to_owned();
        let key_len = r.u16()?;
        let key = r.take(key_len.into())?.to_vec();
        let value = Zeroizing::new(r.0.to_vec());
        let expected = self.row_name(&ns, &key);
        if !bool::from(expected.ct_eq(name)) {
            return None;
        }
        Some((ns, key, value))
    }
}

/// One `(key, value)` of a namespace, as [`Profile::scan`] returns it.
pub type Entry = (Vec<u8>, Zeroizing<Vec<u8>>);

/// `(namespace, key) -> row name` of every row.
type Index = HashMap<String, BTreeMap<Vec<u8>, [u8; 32]>>;

/// An open profile: the directory's lock, its keys and its database.
///
/// Values are opaque bytes in namespaces (`"mls.group"`, `"send.queue"`, …). Reads return
/// [`Zeroizing`] buffers. Writes are durable when they return (`synchronous=FULL`).
pub struct Profile {
    // Field order is drop order: the database closes before the lock is released.
    conn: Connection,
    keys: Keys,
    index: Index,
    dir: PathBuf,
    db_path: PathBuf,
    _lock: File,
    /// A transaction deleted or replaced a row and the checkpoint after it has not succeeded yet.
    scrub_owed: bool,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Profile {
    /// Creates a profile in `dir` (created if missing, mode 0700) with the default Argon2id
    /// parameters. Fails with [`StoreError::AlreadyExists`] if `dir` already holds a profile.
    pub fn create(dir: impl AsRef<Path>, passphrase: &Passphrase) -> Result<Self, StoreError> {
        Self::create_with(dir, passphrase, KdfParams::DEFAULT)
    }

    /// [`Profile::create`] with explicit Argon2id parameters.
    pub fn create_with(
        dir: impl AsRef<Path>,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_owned();
        if passphrase.as_bytes().is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        create_dir(&dir)?;
        let lock = lock(&dir)?;
        let header_path = dir.join(HEADER_FILE);
        let db_path = dir.join(DATABASE_FILE);
        if exists(&header_path)? || exists(&db_path)? {
            return Err(StoreError::AlreadyExists { dir });
        }
        let master = Zeroizing::new(random::<KEY_LEN>()?);
        let header = Header::wrap(passphrase, params, &master)?;
        let conn = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_error(&db_path, e))?;
        restrict_permissions(&db_path)?;
        configure(&conn).map_err(|e| db_error(&db_path, e))?;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             CREATE TABLE kv (name BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
             PRAGMA user_version = {SCHEMA_VERSION};
             COMMIT;"
        ))
        .map_err(|e| db_error(&db_path, e))?;
        // The header last: a directory without one holds no profile yet.
        write_atomically(&dir, &header_path, &header.encode())?;
        Ok(Self {
            conn,
            keys: Keys::new(master),
            index: Index::new(),
            dir,
            db_path,
            _lock: lock,
            scrub_owed: false,
        })
    }

    /// Opens the profile in `dir`.
    ///
    /// Takes the directory's lock first ([`StoreError::InUse`] if another `Profile` holds it),
    /// then checks the passphrase ([`StoreError::WrongPassphrase`]) before opening the database;
    /// either failure changes no file. A damaged file gives [`StoreError::Corrupt`] naming it.
    pub fn open(dir: impl AsRef<Path>, passphrase: &Passphrase) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_owned();
        if !exists(&dir)? {
            return Err(StoreError::NotFound { dir });
        }
        let lock = lock(&dir)?;
        let header_path = dir.join(HEADER_FILE);
        let db_path = dir.join(DATABASE_FILE);
        let bytes = match fs::read(&header_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound { dir }),
            Err(e) => return Err(StoreError::Io { path: header_path, source: e }),
        };
        let header = Header::decode(&bytes, &header_path)?;
        let master = match header.unwrap_key(passphrase) {
            Some(r) => r?,
            None => return Err(StoreError::WrongPassphrase { dir }),
        };
        if !exists(&db_path)? {
            return Err(StoreError::Corrupt { path: db_path, reason: "missing".into() });
        }
        let conn = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_error(&db_path, e))?;
        let version: u32 =
            conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| db_error(&db_path, e))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::UnknownVersion { path: db_path, found: version, known: SCHEMA_VERSION });
        }
        configure(&conn).map_err(|e| db_error(&db_path, e))?;
        let keys = Keys::new(master);
        let index = load_index(&conn, &keys, &db_path)?;
        Ok(Self { conn, keys, index, dir, db_path, _lock: lock, scrub_owed: false })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The value under `(ns, key)`.
    pub fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        check_name(ns, key)?;
        get_row(&self.conn, &self.keys, &self.db_path, ns, key)
    }

    /// Every `(key, value)` of namespace `ns`, in key order.
    pub fn scan(&self, ns: &str) -> Result<Vec<Entry>, StoreError> {
        check_name(ns, b"")?;
        let mut out = Vec::new();
        for key in self.index.get(ns).into_iter().flat_map(|m| m.keys()) {
            if let Some(v) = get_row(&self.conn, &self.keys, &self.db_path, ns, key)? {
                out.push((key.clone(), v));
            }
        }
        Ok(out)
    }

    /// The keys of namespace `ns`, in order (without decrypting the values).
    pub fn keys(&self, ns: &str) -> Vec<Vec<u8>> {
        self.index.get(ns).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Sets `(ns, key)` to `value`, durably.
    pub fn put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.transaction(|tx| tx.put(ns, key, value))
    }

    /// Deletes `(ns, key)`, durably; whether it existed.
    pub fn delete(&mut self, ns: &str, key: &[u8]) -> Result<bool, StoreError> {
        self.transaction(|tx| tx.delete(ns, key))
    }

    /// Runs `f` in one database transaction: if `f` returns `Ok`, all its writes are committed
    /// durably together; if it returns `Err` (or panics), none is. When it deleted or replaced a
    /// row, the write-ahead log is checkpointed and truncated before this returns, so that the old
    /// row leaves the files (see the module documentation).
    pub fn transaction<T, E>(&mut self, f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let db_path = &self.db_path;
        let sql = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| E::from(db_error(db_path, e)))?;
        let (out, changes, scrub) = {
            let mut tx = Transaction {
                sql,
                keys: &self.keys,
                index: &self.index,
                db_path,
                changes: BTreeMap::new(),
                scrub: false,
            };
            // On `Err` (or a panic) `tx` drops here, and rusqlite rolls the transaction back.
            let out = f(&mut tx)?;
            let Transaction { sql, changes, scrub, .. } = tx;
            sql.commit().map_err(|e| E::from(db_error(db_path, e)))?;
            (out, changes, scrub)
        };
        // The commit stands whatever the checkpoint does; one that fails is owed until it succeeds.
        self.scrub_owed |= scrub;
        if self.scrub_owed && self.checkpoint().is_ok() {
            self.scrub_owed = false;
        }
        for ((ns, key), name) in changes {
            match name {
                Some(name) => {
                    self.index.entry(ns).or_default().insert(key, name);
                }
                None => {
                    if let Some(m) = self.index.get_mut(&ns) {
                        m.remove(&key);
                        if m.is_empty() {
                            self.index.remove(&ns);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Re-wraps the master key under `new` (with `params`): only the header changes, atomically.
    ///
    /// The old header's bytes may survive on the disk: see the module documentation.
    pub fn change_passphrase(&mut self, new: &Passphrase, params: KdfParams) -> Result<(), StoreError> {
        if new.as_bytes().is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        let header = Header::wrap(new, params, &self.keys.master)?;
        write_atomically(&self.dir, &self.dir.join(HEADER_FILE), &header.encode())
    }

    /// Copies the WAL into the database and truncates it, so that deleted rows leave the WAL
    /// (done after every transaction that deleted or replaced a row, and when the profile is
    /// dropped).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| db_error(&self.db_path, e))?;
        if busy != 0 {
            return Err(StoreError::Database {
                path: self.db_path.clone(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the checkpoint could not finish: another connection reads the database".into()),
                ),
            });
        }
        Ok(())
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = self.checkpoint();
    }
}

/// Writes in progress in [`Profile::transaction`]. Reads see the transaction's own writes.
pub struct Transaction<'p> {
    sql: rusqlite::Transaction<'p>,
    keys: &'p Keys,
    index: &'p Index,
    db_path: &'p Path,
    /// `(ns, key) -> Some(row name)` for a put, `None` for a delete.
    changes: BTreeMap<(String, Vec<u8>), Option<[u8; 32]>>,
    /// A committed row was deleted or replaced: checkpoint after the commit.
    scrub: bool,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}

impl Transaction<'_> {
    /// The value under `(ns, key)`.
    pub fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        check_name(ns, key)?;
        get_row(&self.sql, self.keys, self.db_path, ns, key)
    }

    /// Sets `(ns, key)` to `value`.
    pub fn put(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_name(ns, key)?;
        let name = self.keys.row_name(ns, key);
        let sealed = self.keys.seal(&name, ns, key, value)?;
        self.scrub |= self.index.get(ns).is_some_and(|m| m.contains_key(key));
        self.sql
            .prepare_cached(
                "INSERT INTO kv (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2",
            )
            .and_then(|mut s| s.execute(params![&name[..], sealed]))
            .map_err(|e| db_error(self.db_path, e))?;
        self.changes.insert((ns.to_owned(), key.to_vec()), Some(name));
        Ok(())
    }

    /// Deletes `(ns, key)`; whether it existed.
    pub fn delete(&mut self, ns: &str, key: &[u8]) -> Result<bool, StoreError> {
        check_name(ns, key)?;
        let name = self.keys.row_name(ns, key);
        let n = self
            .sql
            .prepare_cached("DELETE FROM kv WHERE name = ?1")
            .and_then(|mut s| s.execute(params![&name[..]]))
            .map_err(|e| db_error(self.db_path, e))?;
        self.changes.insert((ns.to_owned(), key.to_vec()), None);
        self.scrub |= n > 0;
        Ok(n > 0)
    }

    /// Every `(key, value)` of namespace `ns`, in key order, with this transaction's writes.
    pub fn scan(&self, ns: &str) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for key in self.keys(ns) {
            if let Some(v) = get_row(&self.sql, self.keys, self.db_path, ns, &key)? {
                out.push((key, v));
            }
        }
        Ok(out)
    }

    /// The keys of namespace `ns`, in order, with this transaction's writes.
    pub fn keys(&self, ns: &str) -> Vec<Vec<u8>> {
        let mut keys: std::collections::BTreeSet<Vec<u8>> =
            self.index.get(ns).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for ((n, key), change) in &self.changes {
            if n == ns {
                if change.is_some() {
                    keys.insert(key.clone());
                } else {
                    keys.remove(key);
                }
            }
        }
        keys.into_iter().collect()
    }
}

fn check_name(ns: &str, key: &[u8]) -> Result<(), StoreError> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN {
        return Err(StoreError::InvalidName("a namespace has 1 to 255 bytes"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::InvalidName("a key has at most 65,535 bytes"));
    }
    Ok(())
}

fn get_row(
    conn: &Connection,
    keys: &Keys,
    db_path: &Path,
    ns: &str,
    key: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let name = keys.row_name(ns, key);
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM kv WHERE name = ?1")
        .and_then(|mut s| s.query_row(params![&name[..]], |r| r.get(0)).optional())
        .map_err(|e| db_error(db_path, e))?;
    let Some(sealed) = sealed else { return Ok(None) };
    match keys.open(&name, &sealed) {
        Some((_, _, value)) => Ok(Some(value)),
        None => Err(StoreError::Corrupt {
            path: db_path.to_owned(),
            reason: "a record fails authentication".into(),
        }),
    }
}

fn load_index(conn: &Connection, keys: &Keys, db_path: &Path) -> Result<Index, StoreError> {
    let mut index = Index::new();
    let mut stmt = conn.prepare("SELECT name, value FROM kv").map_err(|e| db_error(db_path, e))?;
    let mut rows = stmt.query([]).map_err(|e| db_error(db_path, e))?;
    while let Some(row) = rows.next().map_err(|e| db_error(db_path, e))? {
        let corrupt = || StoreError::Corrupt {
            path: db_path.to_owned(),
            reason: "a record fails authentication".into(),
        };
        let name: Vec<u8> = row.get(0).map_err(|_| corrupt())?;
        let sealed: Vec<u8> = row.get(1).map_err(|_| corrupt())?;
        let name: [u8; 32] = name.as_slice().try_into().map_err(|_| corrupt())?;
        let (ns, key, _) = keys.open(&name, &sealed).ok_or_else(corrupt)?;
        index.entry(ns).or_default().insert(key, name);
    }
    Ok(index)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidQuery);
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;",
    )
}

/// A database error, as [`StoreError::Corrupt`] when SQLite says the file is damaged.
fn db_error(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, DatabaseCorrupt | NotADatabase) => {
            StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() }
        }
        _ => StoreError::Database { path: path.to_owned(), source: e },
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists().map_err(io_error(path))
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io_error(dir))
}

/// Opens `dir/lock` and takes an exclusive `flock` on it, without waiting.
fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(&path).map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse { dir: dir.to_owned() }),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
    }
}

fn restrict_permissions(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
    }
    Ok(())
}

/// Writes `path` through a temporary file, `fsync`, rename and `fsync` of the directory.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(io_error(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_error(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_error(path))?;
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    SysRng.try_fill_bytes(&mut out).map_err(|_| StoreError::Rng)?;
    Ok(out)
}

/// A cursor over bytes whose reads fail (never panic) past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn kdf_floor_is_enforced_outside_danger() {
        assert!(KdfParams::new(8, 1, 1).is_err());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB + 1, 3, 1).is_err());
        assert!(danger::weak_kdf_params(8, 1, 1).is_ok());
        assert!(danger::weak_kdf_params(7, 1, 1).is_err());
    }
}
