//! Why an engine operation failed, and the rule that decides whether the client stops on it
//! ([`EngineError::is_fatal`], applied part by part by `Engine::go_on`).

use crate::invite::InviteError;
use crate::mls::MlsError;
use crate::store::StoreError;
use qanat_mixnet::sending::{PayloadError, RouteError};

use super::wire::TooLong;
use super::{ENGINE_FORMAT, Engine, MAX_LOCAL_NAME};

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The profile failed (nothing of the operation was saved).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An invitation could not be made or accepted.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// MLS refused the operation.
    #[error(transparent)]
    Mls(#[from] MlsError),
    /// A message could not be split into packets.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A packet could not be built.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A message has a field over its format's limit (a group too large for its Welcome to list
    /// every member's route): it was not sent.
    #[error(transparent)]
    TooLong(#[from] TooLong),
    /// No contact or group has this name.
    #[error("no contact or group named {0:?} (see `qanat contacts`)")]
    UnknownName(String),
    /// The name is already used by a contact or group.
    #[error("the name {0:?} is already used by a contact or group; choose another")]
    NameTaken(String),
    /// The name is empty, too long or has control characters.
    #[error("invalid name {0:?}: use 1 to {MAX_LOCAL_NAME} printable characters")]
    InvalidName(String),
    /// The operation needs a conversation that is not ready (still being set up, or left).
    #[error("{0:?} is not ready: {1}")]
    NotReady(String, &'static str),
    /// The operation needs a group, and the name is a contact (or the reverse).
    #[error("{0:?} is {1}")]
    WrongKind(String, &'static str),
    /// No group invitation has this id.
    #[error("no group invitation {0:?} (see `qanat group invitations`)")]
    UnknownInvitation(String),
    /// No message has this id.
    #[error("no message with this id")]
    UnknownMessage,
    /// No member of the group matches.
    #[error("no member of {0:?} matches {1:?} (see `qanat group members`)")]
    UnknownMember(String, String),
    /// A setting's value is not one the user may choose: which setting, and what it takes.
    #[error("invalid {0}: {1}")]
    Setting(&'static str, &'static str),
    /// A group's safety code is per member: the member must be named.
    #[error(
        "{0:?} is a group: each member has a safety code of their own; name one (see `qanat group members`)"
    )]
    MemberNeeded(String),
    /// A safety code to mark is not the current one (mistyped, or from another conversation):
    /// nothing was marked.
    #[error(
        "that is not the current safety code of {0:?}: nothing was marked; compare the code shown now (`qanat verify`) and mark that one"
    )]
    NotCurrentCode(String),
    /// The engine has no directory document yet.
    #[error(
        "no network directory yet: this needs the running client (start `qanat run` and wait until it reaches the network)"
    )]
    NoNetwork,
    /// The user's gateway is not in the directory.
    #[error("this profile's gateway is not in the current directory")]
    GatewayMissing,
    /// A file over the limit (the network's, or the profile's).
    #[error("the file is {size} bytes, and the limit here is {limit} bytes")]
    FileTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// No such file (or it was deleted).
    #[error("no such file")]
    NoSuchFile,
    /// The file has not arrived whole yet, or the action does not fit its state.
    #[error("the file is not ready for that: {0}")]
    FileNotReady(&'static str),
    /// The directory's packet geometry cannot be used.
    #[error("the directory's packet geometry is not usable: {0}")]
    Geometry(&'static str),
    /// Saved engine state cannot be read (a damaged profile).
    #[error("saved client state is unreadable: {0}")]
    Corrupt(&'static str),
    /// The profile was never set up with `Engine::init`.
    #[error("this profile has no client settings (run `qanat init`)")]
    NotInitialized,
    /// The profile's client state has an earlier format that cannot be carried over.
    #[error(
        "this profile's client state has format {0}, and this Qanat reads format {ENGINE_FORMAT} (and upgrades format 2 to it): format 1 profiles come from before mailbox items were sealed end to end, and their contacts cannot be carried over (their mailboxes have no seal keys). Make a new profile in another directory (`qanat init --home DIR`) and invite your contacts again"
    )]
    Format(u32),
    /// The profile was written by a newer Qanat: its client state, or one of its saved records,
    /// has a format version this code does not know. Nothing was changed.
    #[error(
        "this profile was written by a newer Qanat: its {what} has format version {found}, and this Qanat reads up to version {known}. Open it with the newer Qanat (or a later one)"
    )]
    NewerFormat {
        /// What has the newer format (the client state, or a kind of record).
        what: &'static str,
        /// Its version.
        found: u32,
        /// The newest version this code reads.
        known: u32,
    },
}

impl EngineError {
    /// A short stable code for the kind of refusal, for an interface that words it in the
    /// user's language (the app's message catalogue); the `Display` text stays the English
    /// wording for the terminal. Codes are never renamed, only added.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownName(_) => "unknown_name",
            Self::NameTaken(_) => "name_taken",
            Self::InvalidName(_) => "invalid_name",
            Self::NotReady(..) => "not_ready",
            Self::WrongKind(..) => "wrong_kind",
            Self::UnknownInvitation(_) => "unknown_invitation",
            Self::UnknownMember(..) => "unknown_member",
            Self::Setting(..) => "invalid_setting",
            Self::UnknownMessage => "unknown_message",
            Self::MemberNeeded(_) => "member_needed",
            Self::NotCurrentCode(_) => "not_current_code",
            Self::NoNetwork => "no_network",
            Self::GatewayMissing => "gateway_missing",
            Self::FileTooLarge { .. } => "file_too_large",
            Self::NoSuchFile => "no_such_file",
            Self::FileNotReady(_) => "file_not_ready",
            Self::Payload(PayloadError::TooLong) | Self::TooLong(_) => "too_long",
            Self::Invite(e) => match e {
                InviteError::NotALink | InviteError::Malformed(_) | InviteError::UnknownVersion(_) => {
                    "invitation_invalid"
                }
                InviteError::Expired { .. } => "invitation_expired",
                InviteError::AlreadyAccepted | InviteError::AlreadyUsed => "invitation_used",
                InviteError::OwnInvitation => "invitation_own",
                _ if self.is_fatal() => "profile",
                _ => "invitation_refused",
            },
            Self::Mls(MlsError::NotMember) => "not_member",
            Self::Mls(MlsError::UnknownMember) => "unknown_member",
            _ if self.is_fatal() => "profile",
            _ => "refused",
        }
    }

    /// Whether the client must stop on this error rather than go on without what failed.
    ///
    /// The rule: nothing that arrives from the network (a contact, a group member, a gateway, a
    /// directory document) may stop the client; an error caused by one item or one peer fails
    /// that item only, is counted ([`EngineStats::failed`]), and the client goes on. Fatal are
    /// only the errors after which going on could acknowledge what is not durably kept, or
    /// build on state that cannot be trusted:
    /// - the profile failed ([`EngineError::Store`], an invitation's [`InviteError::Store`]):
    ///   a write that failed is lost, so memory and profile no longer agree, and an
    ///   acknowledgement could leave for what is not kept;
    /// - saved state is unreadable or of another format ([`EngineError::Corrupt`],
    ///   [`EngineError::Format`], [`EngineError::NewerFormat`], [`EngineError::NotInitialized`],
    ///   [`MlsError::CorruptState`], an invitation's [`InviteError::NewerRecord`]);
    /// - an internal invariant failed ([`MlsError::Internal`]: a bug here or in openmls; the
    ///   conversation may be half-changed in memory). What a peer controls never reaches it:
    ///   `Conversation` refuses, as the peer's fault, what openmls cannot take.
    ///
    /// A restart resumes from the profile after a fatal error.
    ///
    /// [`EngineStats::failed`]: super::EngineStats::failed
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Store(_)
            | Self::Corrupt(_)
            | Self::Format(_)
            | Self::NewerFormat { .. }
            | Self::NotInitialized => true,
            Self::Invite(e) => matches!(e, InviteError::Store(_) | InviteError::NewerRecord { .. }),
            Self::Mls(e) => matches!(e, MlsError::Internal(_) | MlsError::CorruptState(_)),
            Self::Payload(_)
            | Self::Route(_)
            | Self::TooLong(_)
            | Self::UnknownName(_)
            | Self::NameTaken(_)
            | Self::InvalidName(_)
            | Self::NotReady(..)
            | Self::WrongKind(..)
            | Self::UnknownInvitation(_)
            | Self::UnknownMember(..)
            | Self::Setting(..)
            | Self::UnknownMessage
            | Self::MemberNeeded(_)
            | Self::NotCurrentCode(_)
            | Self::NoNetwork
            | Self::GatewayMissing
            | Self::FileTooLarge { .. }
            | Self::NoSuchFile
            | Self::FileNotReady(_)
            | Self::Geometry(_) => false,
        }
    }
}

impl Engine {
    /// The rule of [`EngineError::is_fatal`] for what MLS refuses of a peer's input (a message,
    /// a KeyPackage, a Welcome) or of what such input led to (a commit that fails to apply): an
    /// [`MlsError::Internal`] is our bug and is returned; anything else is the peer's, counted in
    /// [`EngineStats::rejected`], and `None`.
    ///
    /// [`EngineStats::rejected`]: super::EngineStats::rejected
    pub(super) fn or_rejected<T>(&mut self, r: Result<T, MlsError>) -> Result<Option<T>, EngineError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(MlsError::Internal(e)) => Err(EngineError::Mls(MlsError::Internal(e))),
            Err(_) => {
                self.stats.rejected += 1;
                Ok(None)
            }
        }
    }

    /// The rule of [`EngineError::is_fatal`] for one part of an operation: a fatal error is
    /// returned (the caller stops); any other concerns that part alone: it is logged and
    /// counted, and the operation goes on (`None`: the part failed).
    pub(crate) fn go_on<T>(
        &mut self,
        what: &str,
        r: Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                tracing::warn!("{what} failed, the client goes on without it: {e}");
                self.stats.failed += 1;
                Ok(None)
            }
        }
    }
}
