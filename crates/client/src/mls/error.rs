//! The errors of conversations: what the peer got wrong apart from what this code got wrong.

use std::fmt;

/// Errors of this module. "The peer sent garbage" ([`MlsError::Malformed`],
/// [`MlsError::Rejected`], ...) is kept apart from "we have a bug" ([`MlsError::Internal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlsError {
    /// The bytes do not parse as the expected MLS structure.
    #[error("malformed MLS input")]
    Malformed,
    /// The message belongs to another conversation.
    #[error("the message belongs to another conversation")]
    WrongConversation,
    /// A well-formed message of a kind this conversation does not accept here.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// openmls refused the input: bad signature or tag, unknown epoch, replay, invalid commit.
    #[error("message rejected: {0}")]
    Rejected(String),
    /// A credential that is not the bare per-conversation signature key (P4).
    #[error("a credential carries something other than its per-conversation key")]
    IdentifyingCredential,
    /// A proposal or commit using MLS features this client does not allow.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// This member is no longer in the conversation (removed, or has left).
    #[error("not a member of this conversation any more")]
    NotMember,
    /// The member named is not in the conversation.
    #[error("no such member")]
    UnknownMember,
    /// A message for a later epoch that cannot wait now: the buffer is full, or the epoch is too
    /// far ahead. Nothing was kept: the caller must not acknowledge the message, so that its
    /// sender sends it again (by then the epoch may have come).
    #[error("too many messages waiting for a later epoch")]
    BufferFull,
    /// Saved state that cannot be read back.
    #[error("saved MLS state is unusable: {0}")]
    CorruptState(&'static str),
    /// A failure that should not happen: a bug here or in openmls.
    #[error("internal MLS error: {0}")]
    Internal(String),
}

/// A failure that should not happen ([`MlsError::Internal`]).
pub(super) fn internal(e: impl fmt::Debug) -> MlsError {
    MlsError::Internal(format!("{e:?}"))
}

/// Input that openmls refused ([`MlsError::Rejected`]).
pub(super) fn rejected(e: impl fmt::Debug) -> MlsError {
    MlsError::Rejected(format!("{e:?}"))
}
