//! What the engine keeps in the profile: its namespaces and the records saved in them.

use std::collections::BTreeMap;

use qanat_packet::{NodeId, RecipientId};
use serde::{Deserialize, Serialize};

use crate::seal::SealKey;
use crate::sending::Route;

use super::EngineError;
use super::wire::RouteEntry;

pub(super) const NS_SETTINGS: &str = "engine.settings";
pub(super) const NS_THREAD: &str = "engine.thread";
pub(super) const NS_CONV: &str = "engine.conv";
pub(super) const NS_JOIN: &str = "engine.join";
pub(super) const NS_OUT: &str = "engine.out";
pub(super) const NS_FRAG: &str = "engine.frag";
pub(super) const NS_SEEN: &str = "engine.seen";
/// Partly received messages: message id → when the first fragment arrived (ms, u64 BE). Added
/// after version 1 of the profile: a fragment without it counts from when it is read back.
pub(super) const NS_PARTIAL: &str = "engine.partial";
pub(super) const NS_CURSOR: &str = "engine.cursor";
pub(super) const NS_HISTORY: &str = "engine.history";
/// Mailboxes given up (a group left, an invitation expired) and not yet unregistered at the
/// gateway: mailbox → credential.
pub(super) const NS_RETIRED: &str = "engine.retired";
/// Group invitations waiting for the user's answer: token → [`GroupInvitationRec`] (JSON).
pub(super) const NS_GROUP_INVITES: &str = "engine.group_invites";
pub(super) const SETTINGS_KEY: &[u8] = b"settings";

pub(super) fn format_one() -> u32 {
    1
}

/// The format of the engine's rows. 1 (stored as an absent field): before sealed mailbox items;
/// 2: routes, threads and the home mailbox carry seal keys.
pub const ENGINE_FORMAT: u32 = 2;

/// A group invitation waiting for the user's answer, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct GroupInvitationRec {
    /// The contact's thread it came over.
    pub(super) contact: [u8; 16],
    /// The suggested name (printable, at most [`MAX_LOCAL_NAME`] characters).
    pub(super) name: String,
    pub(super) received_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Kind {
    Contact,
    Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum ThreadState {
    /// Inviter: waiting for the invitation's answer.
    Inviting,
    /// Waiting for a Welcome.
    Joining,
    Active,
    Left,
}

impl ThreadState {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Inviting => "inviting",
            Self::Joining => "joining",
            Self::Active => "active",
            Self::Left => "left",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RouteRec {
    pub(super) gateway: [u8; 32],
    pub(super) mailbox: [u8; 32],
    /// The mailbox's seal key.
    pub(super) seal: [u8; 32],
}

impl RouteRec {
    pub(super) fn route(self) -> Route {
        Route { gateway: NodeId(self.gateway), mailbox: RecipientId(self.mailbox), seal: SealKey(self.seal) }
    }

    pub(super) fn entry(self, member: [u8; 32]) -> RouteEntry {
        RouteEntry { member, gateway: self.gateway, mailbox: self.mailbox, seal: self.seal }
    }

    pub(super) fn of_entry(r: &RouteEntry) -> Self {
        Self { gateway: r.gateway, mailbox: r.mailbox, seal: r.seal }
    }
}

/// A thread's mailbox before its last rotation: still read, its items opened with its own seal
/// key, until `retire_at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct OldMailbox {
    pub(super) mailbox: [u8; 32],
    pub(super) credential: [u8; 32],
    pub(super) seal: [u8; 32],
    pub(super) retire_at_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct RecvState {
    pub(super) next: Option<u64>,
    pub(super) held: BTreeMap<u64, (u64, Option<u64>, u64, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Thread {
    pub(super) id: [u8; 16],
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) state: ThreadState,
    pub(super) mailbox: [u8; 32],
    pub(super) credential: [u8; 32],
    /// The key that seals what others write into `mailbox`.
    pub(super) seal: [u8; 32],
    /// The mailbox this one replaced, while the others may still write there.
    #[serde(default)]
    pub(super) old: Option<OldMailbox>,
    /// A contact's route before its member id is known (accepter, waiting for the Welcome).
    pub(super) peer_route: Option<RouteRec>,
    /// Other members' routes, by member id (hex).
    pub(super) roster: BTreeMap<String, RouteRec>,
    /// Local labels of members, by member id (hex).
    pub(super) labels: BTreeMap<String, String>,
    pub(super) join_epoch: u64,
    pub(super) next_seq: u64,
    pub(super) last_epoch: Option<u64>,
    pub(super) recv: BTreeMap<String, RecvState>,
    /// MLS messages for members whose route is not known yet.
    pub(super) awaiting: BTreeMap<String, Vec<Vec<u8>>>,
    /// MLS messages that arrived before our Welcome (a member may merge our addition and write
    /// before the Welcome reaches us): handled right after we join.
    #[serde(default)]
    pub(super) early: Vec<Vec<u8>>,
    /// Group being joined: the invite's token.
    pub(super) join_token: Option<[u8; 16]>,
    /// Inviter: when the thread goes if the invitation is not answered (its expiry plus
    /// [`invite::GRACE_MS`], as for the pending invitation itself), in ms since the epoch.
    #[serde(default)]
    pub(super) give_up_at_ms: Option<u64>,
    /// Group adds in progress: token (hex) → contact thread id.
    pub(super) pending_adds: BTreeMap<String, [u8; 16]>,
    /// Welcomes to deliver: member (hex) → (contact thread id, token).
    pub(super) welcome_to: BTreeMap<String, ([u8; 16], [u8; 16])>,
    pub(super) history_next: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Settings {
    /// [`ENGINE_FORMAT`] when the profile was made (absent in profiles of format 1).
    #[serde(default = "format_one")]
    pub(super) format: u32,
    pub(super) gateway: [u8; 32],
    pub(super) home_mailbox: [u8; 32],
    pub(super) home_credential: [u8; 32],
    /// Seals our loops into the home mailbox (absent in profiles of format 1: read as zeros,
    /// never used, since [`Engine::open`] refuses them).
    #[serde(default)]
    pub(super) home_seal: [u8; 32],
    pub(super) traffic: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct OutRec {
    pub(super) route: RouteRec,
    pub(super) bytes: Vec<u8>,
    pub(super) history: Option<Vec<u8>>,
}

pub(super) fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

pub(super) fn from_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(b).map_err(|_| EngineError::Corrupt("unreadable record"))
}
