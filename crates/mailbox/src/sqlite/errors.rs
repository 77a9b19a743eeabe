//! SQLite's errors as [`StoreError`]s: what an operation fails with (`OpError`: a database error,
//! or an outcome of its own), the database's error codes classified, and the errors met while
//! opening explained with their fix.

use rusqlite::ErrorCode;

use crate::StoreError;

/// What an operation can fail with: a database error (which may have aborted the transaction)
/// or an outcome of its own (unauthorized, corrupt data).
pub(super) enum OpError {
    Db(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Db(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl OpError {
    pub(super) fn into_store(self) -> StoreError {
        match self {
            OpError::Db(e) => db_error(e),
            OpError::Store(e) => e,
        }
    }
}

/// Classifies a SQLite error.
pub(super) fn db_error(e: rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full { detail },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt { detail },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable { detail },
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::OutOfMemory,
        ) => StoreError::Io { detail },
        _ => StoreError::Internal { detail },
    }
}

/// Explains an error met while opening, with the fix where there is one.
pub(super) fn open_detail(e: &rusqlite::Error) -> String {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::CannotOpen) => {
            "cannot open the file: check that its directory exists and that this user may read and write it"
        }
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            "permission denied: the file and its directory must be writable by this user"
        }
        Some(ErrorCode::NotADatabase) => "the file is not a SQLite database: check the path",
        Some(ErrorCode::DatabaseCorrupt) => "the database is corrupt: restore it from a backup",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the database is locked: is another process using it?"
        }
        Some(ErrorCode::DiskFull) => "the disk is full: free some space",
        _ => return e.to_string(),
    };
    format!("{hint} ({e})")
}
