//! What the engine's callers see: the events it reports, its configuration, and what the user
//! reads of contacts, groups and messages.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::invite;
use crate::mls;
use qanat_mixnet::sending::Delivery;

use super::hex;

/// What the engine reports to the user interface.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A text arrived (in order for its sender).
    Message {
        /// Its entry in the thread's history (as [`Engine::history`] lists it).
        ///
        /// [`Engine::history`]: super::Engine::history
        id: LocalMessageId,
        /// The contact or group.
        thread: String,
        /// Who sent it: the contact's name, or a group member's label.
        sender: String,
        /// The text.
        text: String,
        /// When the sender sent it (its clock).
        sent_at: SystemTime,
        /// When it was delivered here.
        received_at: SystemTime,
        /// A file or voice note (the text is its caption).
        file: Option<Box<super::FileInfo>>,
    },
    /// The delivery state of one of our messages changed.
    Delivery {
        /// The message (as [`Engine::send`] returned it).
        ///
        /// [`Engine::send`]: super::Engine::send
        message: LocalMessageId,
        /// Its state.
        state: Delivery,
    },
    /// A contact's conversation is set up: messages can flow.
    ContactReady {
        /// The contact.
        name: String,
    },
    /// This profile joined a group.
    GroupJoined {
        /// The group.
        name: String,
    },
    /// A group's membership changed.
    GroupChanged {
        /// The group.
        name: String,
        /// Members added (labels).
        added: Vec<String>,
        /// Members removed (labels).
        removed: Vec<String>,
    },
    /// This profile is out of a group (removed, or its leave was committed).
    Left {
        /// The group.
        name: String,
    },
    /// A contact invites this profile into a group: nothing happens until the user accepts
    /// ([`Engine::accept_group_invitation`]).
    ///
    /// [`Engine::accept_group_invitation`]: super::Engine::accept_group_invitation
    GroupInvitation {
        /// The invitation (see [`Engine::group_invitations`]).
        ///
        /// [`Engine::group_invitations`]: super::Engine::group_invitations
        id: String,
        /// The contact who invites.
        from: String,
        /// The group's name as the contact suggests it.
        group: String,
    },
    /// The gateway refused an invitation's mailbox (someone else registered it first: the link
    /// was seen by someone else): the invitation is dead, its contact entry is gone.
    InvitationRefused {
        /// The name the contact would have had.
        name: String,
    },
    /// A file moved on (its state, or at most once a second its progress).
    Transfer(Box<super::FileInfo>),
    /// An invitation of ours expired unanswered: its contact entry and mailbox are gone.
    InvitationExpired {
        /// The name the contact would have had.
        name: String,
    },
}

/// A group invitation waiting for the user's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInvitationInfo {
    /// Its id (for accept and decline).
    pub id: String,
    /// The contact who invites.
    pub from: String,
    /// The group's name as the contact suggests it.
    pub group: String,
    /// When it arrived.
    pub received_at: SystemTime,
}

/// A message of ours, for delivery state: `thread id ‖ counter`, local to this profile.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalMessageId(pub(super) Vec<u8>);

impl fmt::Debug for LocalMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalMessageId({})", hex(&self.0))
    }
}

impl LocalMessageId {
    /// The id from its bytes (as [`fmt::Display`] shows them in hex).
    pub fn from_bytes(b: Vec<u8>) -> Self {
        Self(b)
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for LocalMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Tunable parameters of the engine (not saved: the runtime passes them at every start).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// MLS parameters (the decision window must exceed twice the delivery delay).
    pub mls: mls::Config,
    /// How often the runtime fetches the mailboxes (the resend timers allow for it).
    pub fetch_interval: Duration,
    /// How long invitations stay valid.
    pub invitation_validity: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        // Long runs of messages may arrive out of order (resends); keep enough past keys.
        let mls = mls::Config { out_of_order_tolerance: 2048, ..mls::Config::default() };
        Self {
            mls,
            fetch_interval: Duration::from_secs(1),
            invitation_validity: Duration::from_millis(invite::DEFAULT_VALIDITY_MS),
        }
    }
}

/// A contact or group, as `qanat contacts` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// Its local name.
    pub name: String,
    /// Whether it is a group.
    pub group: bool,
    /// `"inviting"`, `"joining"`, `"active"` or `"left"`.
    pub state: &'static str,
    /// Members other than us: labels.
    pub members: Vec<String>,
    /// Unread incoming messages.
    pub unread: usize,
    /// The newest message, either way.
    pub last: Option<(LocalMessageId, HistoryEntry)>,
    /// When it last saw activity (Unix ms): its newest message, else when its invitation was
    /// made, else 0. Lists sort by it, newest first.
    pub activity_ms: u64,
    /// A contact still waiting for its invitation's answer: when the link expires (Unix ms).
    pub expires_at_ms: Option<u64>,
    /// A contact: the user marked its current safety code verified (always false for a group,
    /// whose codes are per member).
    pub verified: bool,
}

/// One message of a thread's history.
///
/// Saved as JSON in the profile's `engine.history` rows (version 1, see the module `rows`): a
/// change to its fields takes the next version of those rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Whether we sent it.
    pub outgoing: bool,
    /// The sender's label (`"me"` for ours).
    pub sender: String,
    /// The text.
    pub text: String,
    /// When it was sent (Unix ms, sender's clock).
    pub sent_at_ms: u64,
    /// When it arrived here (incoming) or was queued (ours).
    pub at_ms: u64,
    /// Ours: how many recipients, and how many have acknowledged it.
    pub recipients: u32,
    /// Ours: acknowledged by this many.
    pub delivered: u32,
    /// Ours: every packet has left at least once.
    pub sent: bool,
    /// Incoming: shown to the user.
    pub read: bool,
    /// A file or voice note (its `text` is the caption); absent in entries before files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// The file a history entry is about: enough to show it without reading its transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The key of its transfer's row: `engine.xfer_out`'s (16 bytes) for ours,
    /// `engine.xfer_in`'s (32) for one offered to us.
    pub key: Vec<u8>,
    /// What it is.
    pub kind: super::wire::FileKind,
    /// Its name (the sender's word).
    pub name: String,
    /// Its MIME type (the sender's word).
    pub mime: String,
    /// Its size.
    pub size: u64,
    /// A voice note's length (ms).
    pub duration_ms: u32,
}

impl HistoryEntry {
    /// Our message's delivery state.
    pub fn delivery(&self) -> Delivery {
        if self.delivered >= self.recipients {
            Delivery::Delivered
        } else if self.sent {
            Delivery::Sent
        } else {
            Delivery::Queued
        }
    }
}
