//! The profile: all of a client's local state, in one directory, encrypted under a key derived
//! from the passphrase (DESIGN.md P7 "At rest").
//!
//! # Layout of a profile directory
//!
//! | file | what it holds |
//! |---|---|
//! | `lock` | empty; an OS advisory lock on it (`flock`) is held while a [`Profile`] is open |
//! | `profile.header` | 247 bytes: the key-derivation parameters, a salt, and two slots: the wrapped master key, and duress settings or random bytes |
//! | `profile.sqlite` (+ `-wal`, `-shm`) | SQLite (WAL, `synchronous=FULL`, `secure_delete=ON`): one table of encrypted rows |
//! | `wipe-*` | only during a [`wipe`] (or after one a crash interrupted): database files being overwritten |
//!
//! The header's format and the keys are in the module `header`, the rows' in the module `rows`,
//! the wipe's steps in the module `wipe` (all private: their documentation is in the source).
//! A duress passphrase ([`Profile::set_duress`]) opens [`Unlocked::Duress`] instead of the
//! profile; `crate::open::open_profile` then wipes the profile and creates an empty one. What the client keeps in the rows, and
//! the format of each, is its users' business (`crate::engine`'s rows, `crate::invite`).
//!
//! # Versions
//!
//! The header carries its format version ([`HEADER_VERSION`]) and the database its schema version
//! in SQLite's `user_version` ([`SCHEMA_VERSION`]); a file of another version is refused with
//! [`StoreError::UnknownVersion`], naming it. The header is version 2 (version 1, one slot, is
//! read and rewritten as version 2 once opened with its passphrase); the schema is 1. A row's value is opaque here: each user
//! versions its own values.
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
//!   before can still unwrap the master key: to revoke a passphrase, create a new profile). For
//!   the same reasons a [`wipe`] cannot reach copies the storage keeps (docs/STORAGE.md "Wipe").
//! - Sizes: a row's length is its value's length plus a constant.

mod error;
mod files;
mod header;
mod rows;
mod wipe;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use qanat_network::file::{Access, write_atomically};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use zeroize::Zeroizing;

pub use error::StoreError;
pub use header::{DuressSettings, HEADER_LEN, HEADER_VERSION, KdfParams, Kek, Passphrase};
pub use wipe::{WIPE_PREFIX, wipe};

use files::{create_dir, exists, lock, random, restrict_permissions};
use header::{Decoded, Header, KEY_LEN, SALT_LEN, Unwrapped};
use rows::Keys;

/// The lock file's name in a profile directory.
pub const LOCK_FILE: &str = "lock";
/// The header file's name in a profile directory.
pub const HEADER_FILE: &str = "profile.header";
/// The database file's name in a profile directory.
pub const DATABASE_FILE: &str = "profile.sqlite";
/// The environment variable a binary may read the passphrase from ([`Passphrase::from_env`]).
pub const PASSPHRASE_ENV: &str = "QANAT_PASSPHRASE";
/// The database schema this code writes and reads (SQLite `user_version`).
pub const SCHEMA_VERSION: u32 = 1;
/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

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
    /// The header on disk, and the position of its real slot.
    header: Header,
    real_slot: usize,
    /// A transaction deleted or replaced a row and the checkpoint after it has not succeeded yet.
    scrub_owed: bool,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// What a passphrase opened ([`Profile::unlock`]).
#[derive(Debug)]
pub enum Unlocked {
    /// The real passphrase: the profile, open.
    Real(Box<Profile>),
    /// A duress passphrase: nothing was opened or changed yet; the directory stays locked until
    /// the [`Duress`] is dropped or [`Duress::wipe_and_create`] replaces the profile.
    Duress(Duress),
}

/// What a passphrase opens, checked without opening ([`Profile::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The real passphrase.
    Real,
    /// A duress passphrase, and its slot's settings.
    Duress(DuressSettings),
}

/// A duress passphrase was typed: the directory's lock, the key just derived from it, and the
/// settings its slot holds. What to do is the caller's: `crate::open::open_profile` wipes the
/// profile and creates a fresh one under the same passphrase (DESIGN: docs/APP.md §3).
pub struct Duress {
    dir: PathBuf,
    kek: Kek,
    settings: DuressSettings,
    lock: File,
}

impl fmt::Debug for Duress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Duress").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Duress {
    /// The settings the duress slot holds.
    pub fn settings(&self) -> DuressSettings {
        self.settings
    }

    /// The key derived from the duress passphrase (with the header's salt and parameters).
    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    /// Wipes the profile ([`wipe`]'s steps, under the lock already held) and creates an empty one
    /// in its place whose passphrase is the duress passphrase (same salt and parameters, a new
    /// master key; no second Argon2id run).
    pub fn wipe_and_create(self) -> Result<Profile, StoreError> {
        wipe::wipe_locked(&self.dir)?;
        Profile::create_locked(self.dir, self.lock, &self.kek)
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
        if passphrase.as_bytes().is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        let kek = Kek::derive(passphrase, params, random::<SALT_LEN>()?)?;
        Self::create_with_kek(dir, &kek)
    }

    /// [`Profile::create`] under a key already derived (with its salt and parameters): for the
    /// duress opening, which has just derived it.
    pub fn create_with_kek(dir: impl AsRef<Path>, kek: &Kek) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_owned();
        create_dir(&dir)?;
        let lock = lock(&dir)?;
        Self::create_locked(dir, lock, kek)
    }

    fn create_locked(dir: PathBuf, lock: File, kek: &Kek) -> Result<Self, StoreError> {
        wipe::finish_wipes(&dir)?;
        let header_path = dir.join(HEADER_FILE);
        let db_path = dir.join(DATABASE_FILE);
        if exists(&header_path)? || exists(&db_path)? {
            return Err(StoreError::AlreadyExists { dir });
        }
        let master = Zeroizing::new(random::<KEY_LEN>()?);
        let (header, real_slot) = Header::new(kek, &master)?;
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
        write_atomically(&header_path, &header.encode(), Access::OwnerOnly)?;
        Ok(Self {
            conn,
            keys: Keys::new(master),
            index: Index::new(),
            dir,
            db_path,
            _lock: lock,
            header,
            real_slot,
            scrub_owed: false,
        })
    }

    /// Opens the profile in `dir` with its real passphrase.
    ///
    /// Takes the directory's lock first ([`StoreError::InUse`] if another `Profile` holds it),
    /// then checks the passphrase ([`StoreError::WrongPassphrase`]) before opening the database;
    /// either failure changes no file. A damaged file gives [`StoreError::Corrupt`] naming it.
    /// A duress passphrase is refused here as a wrong one, touching nothing: a caller that
    /// honours it calls [`Profile::unlock`] (as `crate::open::open_profile` does).
    pub fn open(dir: impl AsRef<Path>, passphrase: &Passphrase) -> Result<Self, StoreError> {
        match Self::unlock(dir, passphrase)? {
            Unlocked::Real(p) => Ok(*p),
            Unlocked::Duress(d) => Err(StoreError::WrongPassphrase { dir: d.dir }),
        }
    }

    /// Opens the profile in `dir`: [`Unlocked::Real`] for the real passphrase,
    /// [`Unlocked::Duress`] for a duress passphrase, [`StoreError::WrongPassphrase`] for any other
    /// (no file touched). One Argon2id run, both slots tried, whatever the passphrase.
    ///
    /// Before the passphrase is checked, the lock is taken and the files of an unfinished wipe
    /// (`wipe-*`, after a crash) are finished. A version-1 header opened with the real passphrase
    /// is rewritten as version 2, atomically, once the database has opened.
    pub fn unlock(dir: impl AsRef<Path>, passphrase: &Passphrase) -> Result<Unlocked, StoreError> {
        let dir = dir.as_ref().to_owned();
        if !exists(&dir)? {
            return Err(StoreError::NotFound { dir });
        }
        let lock = lock(&dir)?;
        wipe::finish_wipes(&dir)?;
        let header_path = dir.join(HEADER_FILE);
        let db_path = dir.join(DATABASE_FILE);
        let bytes = match fs::read(&header_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound { dir }),
            Err(e) => return Err(StoreError::Io { path: header_path, source: e }),
        };
        let decoded = Decoded::decode(&bytes, &header_path)?;
        let kek = Kek::derive(passphrase, decoded.params(), decoded.salt())?;
        let (master, slot) = match decoded.unwrap(&kek, &header_path)? {
            Unwrapped::Real { master, slot } => (master, slot),
            Unwrapped::Duress(settings) => {
                return Ok(Unlocked::Duress(Duress { dir, kek, settings, lock }));
            }
            Unwrapped::Wrong => return Err(StoreError::WrongPassphrase { dir }),
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
        let (header, real_slot) = match decoded {
            Decoded::V2(h) => (h, slot),
            Decoded::V1(_) => {
                // Same salt and parameters, so the same passphrase opens it; the other slot random.
                let (h, slot) = Header::new(&kek, &master)?;
                write_atomically(&header_path, &h.encode(), Access::OwnerOnly)?;
                (h, slot)
            }
        };
        let keys = Keys::new(master);
        let index = load_index(&conn, &keys, &db_path)?;
        Ok(Unlocked::Real(Box::new(Self {
            conn,
            keys,
            index,
            dir,
            db_path,
            _lock: lock,
            header,
            real_slot,
            scrub_owed: false,
        })))
    }

    /// What `passphrase` opens of the profile in `dir`, without opening it: the header alone,
    /// read without the lock (the running client holds it). One Argon2id run, both slots tried,
    /// as [`Profile::unlock`]; [`StoreError::WrongPassphrase`] for neither. For a lock screen in
    /// front of a client that runs.
    pub fn check(dir: impl AsRef<Path>, passphrase: &Passphrase) -> Result<Checked, StoreError> {
        let dir = dir.as_ref();
        let header_path = dir.join(HEADER_FILE);
        let bytes = match fs::read(&header_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { dir: dir.into() });
            }
            Err(e) => return Err(StoreError::Io { path: header_path, source: e }),
        };
        let decoded = Decoded::decode(&bytes, &header_path)?;
        let kek = Kek::derive(passphrase, decoded.params(), decoded.salt())?;
        match decoded.unwrap(&kek, &header_path)? {
            Unwrapped::Real { .. } => Ok(Checked::Real),
            Unwrapped::Duress(settings) => Ok(Checked::Duress(settings)),
            Unwrapped::Wrong => Err(StoreError::WrongPassphrase { dir: dir.into() }),
        }
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

    /// The header's Argon2id parameters.
    pub fn kdf_params(&self) -> KdfParams {
        self.header.params
    }

    /// Re-wraps the master key under `new` (with `params` and a new salt): only the header
    /// changes, atomically. A new salt changes every key derived from a passphrase, so the duress
    /// slot is re-randomised (no duress passphrase opens the profile any more) unless `duress`
    /// gives a duress passphrase and its settings again; one that opens the real slot (the new
    /// passphrase itself) is refused with [`StoreError::DuressIsReal`], changing nothing.
    ///
    /// The old header's bytes may survive on the disk: see the module documentation.
    pub fn change_passphrase(
        &mut self,
        new: &Passphrase,
        params: KdfParams,
        duress: Option<(&Passphrase, DuressSettings)>,
    ) -> Result<(), StoreError> {
        if new.as_bytes().is_empty() || duress.is_some_and(|(d, _)| d.as_bytes().is_empty()) {
            return Err(StoreError::EmptyPassphrase);
        }
        let kek = Kek::derive(new, params, random::<SALT_LEN>()?)?;
        let (mut header, real_slot) = Header::new(&kek, &self.keys.master)?;
        if let Some((d, settings)) = duress {
            let duress_kek = Kek::derive(d, params, kek.salt())?;
            if header.opens(&duress_kek, real_slot) {
                return Err(StoreError::DuressIsReal);
            }
            header = header.with_duress(real_slot, &duress_kek, settings)?;
        }
        write_atomically(&self.dir.join(HEADER_FILE), &header.encode(), Access::OwnerOnly)?;
        self.header = header;
        self.real_slot = real_slot;
        Ok(())
    }

    /// Sets the duress passphrase: the header's other slot now holds `settings` under a key
    /// derived from `duress` with the header's salt (one Argon2id run), replacing any earlier
    /// duress passphrase. Refused with [`StoreError::DuressIsReal`], changing nothing, when
    /// `duress` opens the real slot (it is the real passphrase). The header is replaced
    /// atomically. The caller has checked the real passphrase (an open profile proves it was
    /// typed once; a running client's host asks for it again).
    pub fn set_duress(&mut self, duress: &Passphrase, settings: DuressSettings) -> Result<(), StoreError> {
        if duress.as_bytes().is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        let kek = Kek::derive(duress, self.header.params, self.header.salt)?;
        if self.header.opens(&kek, self.real_slot) {
            return Err(StoreError::DuressIsReal);
        }
        let header = self.header.with_duress(self.real_slot, &kek, settings)?;
        self.replace_header(header)
    }

    /// Removes any duress passphrase: the header's other slot becomes random bytes. The same
    /// write and the same answer whether a duress passphrase existed or not.
    pub fn remove_duress(&mut self) -> Result<(), StoreError> {
        let header = self.header.without_duress(self.real_slot)?;
        self.replace_header(header)
    }

    fn replace_header(&mut self, header: Header) -> Result<(), StoreError> {
        write_atomically(&self.dir.join(HEADER_FILE), &header.encode(), Access::OwnerOnly)?;
        self.header = header;
        Ok(())
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
