//! The one error type of store operations.

use std::path::PathBuf;

/// Why a store operation failed. When an [`append`](crate::MailboxStore::append) returns an
/// error, nothing in its batch may be acknowledged.
///
/// Variants carry a human-readable `detail` (no mailbox or item ids) rather than the
/// backend's error value, so that one failed group commit can report the same error to each of
/// its callers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The mailbox is not registered, or the credential is not the one it was registered with.
    /// The two are not distinguished, so that a caller without the credential learns nothing.
    #[error("unauthorized: no such mailbox, or the credential does not match")]
    Unauthorized,
    /// The disk, or the store's configured size limit, is full. Nothing from the failed call was
    /// stored; what was acknowledged before is intact.
    #[error("mailbox store is full ({detail}): free disk space or raise the store's size limit")]
    Full {
        /// What the backend reported.
        detail: String,
    },
    /// Reading or writing storage failed (permissions, a failing disk, a read-only file system).
    #[error("mailbox store I/O error: {detail}")]
    Io {
        /// What the backend reported.
        detail: String,
    },
    /// The store cannot serve now (busy, locked, shutting down, or a remote backend is
    /// unreachable): retry later.
    #[error("mailbox store unavailable ({detail}): retry later")]
    Unavailable {
        /// What the backend reported.
        detail: String,
    },
    /// Stored data is damaged or not what this version expects: restore from a backup.
    #[error("mailbox store data is corrupt ({detail}): restore the store from a backup")]
    Corrupt {
        /// What was found.
        detail: String,
    },
    /// The store at `path` could not be opened.
    #[error("cannot open the mailbox store at {}: {detail}", path.display())]
    Open {
        /// The path given to open.
        path: PathBuf,
        /// Why, and what to do about it.
        detail: String,
    },
    /// A remote store (the Redis Cluster backend) could not be reached or is not ready to serve:
    /// unreachable seed nodes, a cluster not in `cluster_state:ok`, a refused login.
    #[error("cannot connect to the mailbox store at {target}: {detail}")]
    Connect {
        /// Where the store was looked for (the seed nodes).
        target: String,
        /// Why, and what to do about it.
        detail: String,
    },
    /// A node of a remote store (the Redis Cluster backend) runs with persistence settings that
    /// would make an acknowledgement a lie (not `appendonly yes` with `appendfsync always`), or
    /// would not tell its settings: the store refuses to take writes. `node` is `host:port`.
    #[error("refusing the mailbox store: Redis node {node}: {detail}")]
    UnsafePersistence {
        /// The node, as `host:port`.
        node: String,
        /// What is wrong, and the fix.
        detail: String,
    },
    /// A bug in the store (an invariant did not hold): please report it.
    #[error("internal error in the mailbox store (a bug): {detail}")]
    Internal {
        /// What went wrong.
        detail: String,
    },
}

/// What a caller can do about a [`StoreError`]: [`StoreError::kind`] sorts every variant, so a
/// new variant has to be sorted there, and callers that decide by kind (a gateway answering its
/// clients, say) need not match the `#[non_exhaustive]` error with a silent default. Not
/// `#[non_exhaustive]`: a new kind is meant to fail the build of every caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No such mailbox, or the wrong credential ([`StoreError::Unauthorized`]).
    Unauthorized,
    /// The store cannot serve now but may later: full, an I/O failure, busy or unreachable
    /// ([`StoreError::Full`], [`StoreError::Io`], [`StoreError::Unavailable`]).
    Transient,
    /// Waiting will not help: damaged data, a store that could not be opened or connected to, or
    /// refuses writes, or a bug ([`StoreError::Corrupt`], [`StoreError::Open`],
    /// [`StoreError::Connect`], [`StoreError::UnsafePersistence`], [`StoreError::Internal`]).
    NeedsOperator,
}

impl StoreError {
    /// What a caller can do about it.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Unauthorized => StoreErrorKind::Unauthorized,
            StoreError::Full { .. } | StoreError::Io { .. } | StoreError::Unavailable { .. } => {
                StoreErrorKind::Transient
            }
            StoreError::Corrupt { .. }
            | StoreError::Open { .. }
            | StoreError::Connect { .. }
            | StoreError::UnsafePersistence { .. }
            | StoreError::Internal { .. } => StoreErrorKind::NeedsOperator,
        }
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        StoreError::Internal { detail: detail.into() }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        StoreError::Corrupt { detail: detail.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_kind() {
        let d = || String::from("d");
        let cases = [
            (StoreError::Unauthorized, StoreErrorKind::Unauthorized),
            (StoreError::Full { detail: d() }, StoreErrorKind::Transient),
            (StoreError::Io { detail: d() }, StoreErrorKind::Transient),
            (StoreError::Unavailable { detail: d() }, StoreErrorKind::Transient),
            (StoreError::Corrupt { detail: d() }, StoreErrorKind::NeedsOperator),
            (StoreError::Open { path: "p".into(), detail: d() }, StoreErrorKind::NeedsOperator),
            (StoreError::Connect { target: d(), detail: d() }, StoreErrorKind::NeedsOperator),
            (StoreError::UnsafePersistence { node: d(), detail: d() }, StoreErrorKind::NeedsOperator),
            (StoreError::Internal { detail: d() }, StoreErrorKind::NeedsOperator),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }
}
