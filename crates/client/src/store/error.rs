//! What can go wrong with a profile: [`StoreError`], whose every message names the file or
//! directory concerned.

use std::io;
use std::path::PathBuf;

use super::HEADER_FILE;

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
    /// Another [`Profile`](super::Profile) (in this process or another) holds the directory's
    /// lock.
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
    /// [`Profile::create`](super::Profile::create) found a profile (or part of one) already
    /// there; nothing was changed.
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
    /// [`Profile::create`](super::Profile::create) or
    /// [`Profile::change_passphrase`](super::Profile::change_passphrase) was given an empty
    /// passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// A duress passphrase that opens the real slot (it is the real passphrase) was refused;
    /// nothing was changed.
    #[error("the duress passphrase must differ from the passphrase; nothing was changed")]
    DuressIsReal,
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
    /// Replacing the profile's header failed, at the step the error names: the old header is
    /// kept, unless only the last step (the directory's sync) failed.
    #[error("{0}")]
    Write(#[from] qanat_network::file::WriteError),
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
