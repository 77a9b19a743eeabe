//! What the engine keeps in the profile: its namespaces, the records saved in them, and their
//! versions.
//!
//! # Rows
//!
//! Integers are big-endian. A value starts with its kind's version ([`Row::VERSION`]), then its
//! body; the MLS states carry their own header instead (`mls::blob`: `"QMLS"` ‖ version ‖ kind).
//!
//! | namespace | key | body | version |
//! |---|---|---|---|
//! | `engine.settings` | `"settings"` | [`Settings`], JSON | 1 |
//! | `engine.thread` | thread id (16) | [`Thread`], JSON | 2 (1: one replaced mailbox at most) |
//! | `engine.conv` | thread id | the conversation (`Conversation::export`), no version byte | its own |
//! | `engine.join` | thread id | a join waiting for its Welcome (`PendingJoin::export`), likewise | its own |
//! | `engine.out` | message id (16) | [`OutRec`], JSON: a message of ours not yet delivered | 1 |
//! | `engine.frag` | message id ‖ index u16 ‖ count u16 | [`FragmentData`]: a fragment received | 1 |
//! | `engine.partial` | message id | [`PartialSince`]: first arrival (ms u64) ‖ source thread (16) | 1 |
//! | `engine.seen` | message id | [`SeenAt`]: when it was delivered (ms u64) | 1 |
//! | `engine.cursor` | mailbox (32) | [`Cursor`]: the last sequence number processed (u64) | 1 |
//! | `engine.history` | thread id ‖ counter u64 | [`HistoryEntry`](super::HistoryEntry), JSON | 1 |
//! | `engine.retired` | mailbox | [`RetiredCredential`]: its credential (32) | 1 |
//! | `engine.group_invites` | token (16) | [`GroupInvitationRec`], JSON | 1 |
//! | `engine.verified` | thread id ‖ member key (32) | [`VerifiedMark`]: the safety code the user marked verified, 60 ASCII digits | 1 |
//! | `engine.xfer_out` | transfer id (16) | [`XferOut`], JSON: a file we send, its keys and each recipient's state | 1 |
//! | `engine.xfer_state` | transfer id | [`XferState`]: the sender core's state (`TransferSend::save`) | 1 |
//! | `engine.xfer_in` | thread id ‖ transfer id (32) | [`XferIn`], JSON: a file offered to us, its keys and state | 1 |
//! | `engine.shard` | thread id ‖ transfer id ‖ block u16 ‖ index u16 | [`ShardData`]: a shard of a block not yet decoded | 1 |
//! | `engine.blob` | 0 (out) or thread id (in) (16) ‖ transfer id ‖ block u16 | [`BlobPart`]: a block's plaintext, zero-padded to 64 shards | 1 |
//!
//! The invitations keep their own rows (`invite.*`, see [`crate::invite`]), each versioned there.
//!
//! # Versions
//!
//! Two numbers: the profile's format ([`ENGINE_FORMAT`], in the settings) and each row kind's
//! version (the first byte of each value).
//!
//! - Format 1 came before sealed mailbox items; it is refused ([`EngineError::Format`]): its
//!   contacts cannot be carried over.
//! - Format 2 had no version bytes: the values were the bodies above. [`Engine::open`] upgrades
//!   such a profile in one transaction before it reads anything: every row of the engine's own
//!   kinds gets version 1 in front (a version 1 body is the format 2 value, byte for byte), and
//!   the settings say format 3 (`tests/data/profile-format2`, opened by `tests/formats.rs`).
//! - Format 3: every value of the engine's own kinds starts with its kind's version.
//!
//! The rule from now on: a change to what a kind's body holds (a field renamed or removed, a field
//! without a default, another encoding) takes the next version of that kind, whose decoder
//! ([`Row::from_body`]) still reads every earlier version; a row of a version newer than this
//! code's is refused by name ([`EngineError::NewerFormat`]: written by a newer Qanat), never
//! misread or dropped. [`ENGINE_FORMAT`] changes only for what no row's decoder can carry over,
//! and each format a release wrote keeps a fixture that a test opens (written by the engine's
//! test `write_profile_fixture` on the commit before the change). Versions stay below `{`
//! (0x7B), the first byte of every format 2 settings row, by which it is told apart.
//!
//! [`Engine::open`]: super::Engine::open

use std::collections::BTreeMap;

use qanat_packet::{MailboxId, NodeId};
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, Transaction};
use qanat_mixnet::sending::seal::SealKey;
use qanat_mixnet::sending::{MessageId, Route};

use super::safety::SafetyCode;
use super::wire::RouteEntry;
use super::{EngineError, HistoryEntry};

pub(super) const NS_SETTINGS: &str = "engine.settings";
pub(super) const NS_THREAD: &str = "engine.thread";
pub(super) const NS_CONV: &str = "engine.conv";
pub(super) const NS_JOIN: &str = "engine.join";
pub(super) const NS_OUT: &str = "engine.out";
pub(super) const NS_FRAG: &str = "engine.frag";
pub(super) const NS_SEEN: &str = "engine.seen";
/// Partly received messages. Added after format 1: a fragment without its row counts from when
/// it is read back.
pub(super) const NS_PARTIAL: &str = "engine.partial";
pub(super) const NS_CURSOR: &str = "engine.cursor";
pub(super) const NS_HISTORY: &str = "engine.history";
/// Mailboxes given up (a group left, an invitation expired) and not yet unregistered at the
/// gateway.
pub(super) const NS_RETIRED: &str = "engine.retired";
/// Group invitations waiting for the user's answer.
pub(super) const NS_GROUP_INVITES: &str = "engine.group_invites";
/// Safety codes the user compared and marked verified, per thread and other member (added in
/// format 3, with its version from its first row). A thread's marks go when its conversation
/// does (we leave or are removed), a member's when that member leaves; a thread deleted while
/// its invitation waits never had a conversation, so never a mark.
pub(super) const NS_VERIFIED: &str = "engine.verified";
/// Files (docs/ATTACHMENTS.md): what we send, the sender core's state, what is offered to us,
/// shards of blocks not yet decoded, and the files' plaintext by block. New since format 3, with
/// their versions from their first row.
pub(super) const NS_XFER_OUT: &str = "engine.xfer_out";
pub(super) const NS_XFER_STATE: &str = "engine.xfer_state";
pub(super) const NS_XFER_IN: &str = "engine.xfer_in";
pub(super) const NS_SHARD: &str = "engine.shard";
pub(super) const NS_BLOB: &str = "engine.blob";
pub(super) const SETTINGS_KEY: &[u8] = b"settings";

/// The key of a received fragment's row in `engine.frag`: message id ‖ index u16 ‖ count u16.
pub(super) fn fragment_key(id: MessageId, index: u16, count: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(FRAGMENT_KEY_LEN);
    k.extend_from_slice(&id.0);
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&count.to_be_bytes());
    k
}

/// What [`fragment_key`] made the key `k` of: `None` if it has another length.
pub(super) fn fragment_of_key(k: &[u8]) -> Option<(MessageId, u16, u16)> {
    let [id @ .., i0, i1, c0, c1]: [u8; FRAGMENT_KEY_LEN] = k.try_into().ok()?;
    Some((MessageId(id), u16::from_be_bytes([i0, i1]), u16::from_be_bytes([c0, c1])))
}

const FRAGMENT_KEY_LEN: usize = 16 + 2 + 2;

/// The namespaces of format 2, whose values start with a version byte since format 3 (the
/// upgrade gives them one): every one of the engine's then but the MLS states' (`engine.conv`,
/// `engine.join`), which carry their own. Namespaces added since (`engine.verified`) had a
/// version byte from their first row.
pub(super) const VERSIONED: [&str; 10] = [
    NS_SETTINGS,
    NS_THREAD,
    NS_OUT,
    NS_FRAG,
    NS_SEEN,
    NS_PARTIAL,
    NS_CURSOR,
    NS_HISTORY,
    NS_RETIRED,
    NS_GROUP_INVITES,
];

pub(super) fn format_one() -> u32 {
    1
}

/// The format of the engine's rows (see the module's "Versions"): 1 (stored as an absent field):
/// before sealed mailbox items; 2: routes, threads and the home mailbox carry seal keys; 3: every
/// value starts with its kind's version.
pub const ENGINE_FORMAT: u32 = 3;

/// The format before row versions, which [`Engine::open`](super::Engine::open) upgrades.
pub(super) const UNVERSIONED_FORMAT: u32 = 2;

/// The version every kind had when versions began: its body is the value of format 2.
pub(super) const FIRST_VERSION: u8 = 1;

/// A kind of row the engine saves: its namespace, and the version of its body this code writes.
pub(super) trait Row: Sized {
    /// The namespace its rows live in.
    const NS: &'static str;
    /// What an error calls it.
    const WHAT: &'static str;
    /// The version this code writes, and the newest it reads.
    const VERSION: u8;
    /// The body, which follows the version byte.
    fn body(&self) -> Vec<u8>;
    /// The record from the body of a row of `version` (1 to [`Row::VERSION`]); `None` if the
    /// body is damaged.
    fn from_body(version: u8, body: &[u8]) -> Option<Self>;
}

/// `version ‖ body` of `r`.
pub(super) fn encode<R: Row>(r: &R) -> Vec<u8> {
    let mut out = vec![R::VERSION];
    out.extend_from_slice(&r.body());
    out
}

/// The record a value of kind `R` holds: of any version up to [`Row::VERSION`];
/// [`EngineError::NewerFormat`] for a later one, [`EngineError::Corrupt`] for a damaged one.
pub(super) fn decode<R: Row>(value: &[u8]) -> Result<R, EngineError> {
    let Some((&version, body)) = value.split_first() else { return Err(EngineError::Corrupt(R::WHAT)) };
    if version > R::VERSION {
        return Err(EngineError::NewerFormat {
            what: R::WHAT,
            found: version.into(),
            known: R::VERSION.into(),
        });
    }
    if version == 0 {
        return Err(EngineError::Corrupt(R::WHAT));
    }
    R::from_body(version, body).ok_or(EngineError::Corrupt(R::WHAT))
}

/// Writes `r` under `key` in `tx`.
pub(super) fn put<R: Row>(tx: &mut Transaction<'_>, key: &[u8], r: &R) -> Result<(), StoreError> {
    tx.put(R::NS, key, &encode(r))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn of_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn of_u64(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.try_into().ok()?))
}

/// A group invitation waiting for the user's answer, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct GroupInvitationRec {
    /// The contact's thread it came over.
    pub(super) contact: [u8; 16],
    /// The suggested name (printable, at most `MAX_LOCAL_NAME` characters).
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
        Route { gateway: NodeId(self.gateway), mailbox: MailboxId(self.mailbox), seal: SealKey(self.seal) }
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
    /// The mailboxes this one replaced, oldest first, each while the others may still write
    /// there (at most [`MAX_REPLACED`](super::MAX_REPLACED)). Version 1 had one at
    /// most, as `old` (null or one record).
    #[serde(default, alias = "old", deserialize_with = "one_or_many")]
    pub(super) replaced: Vec<OldMailbox>,
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
    /// MLS messages for members whose route is not known yet (version 1: the bytes alone).
    #[serde(deserialize_with = "awaiting_any")]
    pub(super) awaiting: BTreeMap<String, Vec<Awaiting>>,
    /// Mailboxes each member moved away from, by member id (hex), newest last (at most
    /// [`MAX_REPLACED`](super::MAX_REPLACED) + 1 each): a ROUTE naming one again is
    /// an old one arriving late (MLS takes messages of past epochs), never taken back.
    #[serde(default)]
    pub(super) moved_from: BTreeMap<String, Vec<[u8; 32]>>,
    /// MLS messages that arrived before our Welcome (a member may merge our addition and write
    /// before the Welcome reaches us): handled right after we join.
    #[serde(default)]
    pub(super) early: Vec<Vec<u8>>,
    /// Group being joined: the invite's token.
    pub(super) join_token: Option<[u8; 16]>,
    /// Inviter: when the thread goes if the invitation is not answered (its expiry plus
    /// `invite::GRACE_MS`, as for the pending invitation itself), in ms since the epoch.
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
    /// The interface's language (`en`, `fr`, `ar`), once the user chose one (absent before
    /// 2026-12-06: the browser's).
    #[serde(default)]
    pub(super) language: Option<String>,
    /// After how many seconds without the user the interface locks (absent: the default).
    #[serde(default)]
    pub(super) lock_timeout_secs: Option<u32>,
    /// The largest file the user sends or accepts, below the network's (absent: the network's).
    #[serde(default)]
    pub(super) max_file_bytes: Option<u64>,
    /// Files up to this size are accepted without asking (absent: the profile's default).
    #[serde(default)]
    pub(super) auto_accept_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct OutRec {
    pub(super) route: RouteRec,
    pub(super) bytes: Vec<u8>,
    pub(super) history: Option<Vec<u8>>,
    /// The member of a thread it is for, when known (not for an invitation's answer): a ROUTE
    /// of that member moves it, that member's departure drops it. Absent in records saved
    /// before 2026-12-06 (read as unknown: they stay where they are).
    #[serde(default)]
    pub(super) to: Option<Recipient>,
    /// Whether it carries an MLS commit: those still go to a member who left until it
    /// acknowledges them or `farewell_until_ms` passes (absent before 2026-12-06: false).
    #[serde(default)]
    pub(super) commit: bool,
    /// When a commit to a member who left stops being sent (ms since the epoch); unset while
    /// the member is in the thread.
    #[serde(default)]
    pub(super) farewell_until_ms: Option<u64>,
}

/// A member of a thread: whom a queued message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Recipient {
    pub(super) thread: [u8; 16],
    pub(super) member: [u8; 32],
}

/// An MLS message for a member whose route is not known yet, with the history entry whose ticks
/// it counts in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Awaiting {
    pub(super) bytes: Vec<u8>,
    pub(super) history: Option<Vec<u8>>,
}

/// `awaiting` of a thread row: version 1 kept the bytes alone (no history entry).
fn awaiting_any<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<Awaiting>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Full(Awaiting),
        Bare(Vec<u8>),
    }
    let map = BTreeMap::<String, Vec<Any>>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .into_iter()
                .map(|a| match a {
                    Any::Full(a) => a,
                    Any::Bare(bytes) => Awaiting { bytes, history: None },
                })
                .collect();
            (k, v)
        })
        .collect())
}

impl Row for Settings {
    const NS: &'static str = NS_SETTINGS;
    const WHAT: &'static str = "client settings";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

/// `replaced` of a thread row: a list (version 2), or `old` of version 1: null or one record.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<OldMailbox>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<OldMailbox>),
        One(Option<OldMailbox>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(o) => o.into_iter().collect(),
    })
}

/// Version 1: a thread kept at most one replaced mailbox (`old`), and messages awaiting a
/// route as their bytes alone. Version 2: a list of replaced mailboxes (`replaced`), awaiting
/// messages with their history entry, the mailboxes members moved away from; version 1 bodies
/// read as a list of none or one, without history entries, none moved from.
impl Row for Thread {
    const NS: &'static str = NS_THREAD;
    const WHAT: &'static str = "contact or group";
    const VERSION: u8 = 2;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

impl Row for OutRec {
    const NS: &'static str = NS_OUT;
    const WHAT: &'static str = "message not yet delivered";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

impl Row for HistoryEntry {
    const NS: &'static str = NS_HISTORY;
    const WHAT: &'static str = "history entry";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

impl Row for GroupInvitationRec {
    const NS: &'static str = NS_GROUP_INVITES;
    const WHAT: &'static str = "group invitation";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

/// A fragment of a message partly received, as it arrived.
pub(super) struct FragmentData(pub(super) Vec<u8>);

impl Row for FragmentData {
    const NS: &'static str = NS_FRAG;
    const WHAT: &'static str = "fragment";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        Some(Self(body.to_vec()))
    }
}

/// When the first fragment of a message partly received arrived, and over which thread.
pub(super) struct PartialSince {
    pub(super) first_ms: u64,
    /// The thread the fragments come over (zeros in rows written before the inbox's bounds per
    /// source: they count as one source of their own).
    pub(super) source: [u8; 16],
}

impl Row for PartialSince {
    const NS: &'static str = NS_PARTIAL;
    const WHAT: &'static str = "partial message";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        let mut v = self.first_ms.to_be_bytes().to_vec();
        v.extend_from_slice(&self.source);
        v
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        let (at, source) = match body.len() {
            8 => (body, [0u8; 16]),
            24 => (&body[..8], body[8..].try_into().ok()?),
            _ => return None,
        };
        Some(Self { first_ms: of_u64(at)?, source })
    }
}

/// When a message was delivered (its id is kept so that resent copies are only acknowledged).
pub(super) struct SeenAt(pub(super) u64);

impl Row for SeenAt {
    const NS: &'static str = NS_SEEN;
    const WHAT: &'static str = "delivered message id";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_u64(body).map(Self)
    }
}

/// The last sequence number of a mailbox processed (the gateway may delete up to it).
pub(super) struct Cursor(pub(super) u64);

impl Row for Cursor {
    const NS: &'static str = NS_CURSOR;
    const WHAT: &'static str = "cursor";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_u64(body).map(Self)
    }
}

/// The safety code the user marked verified for a member of a thread (key: thread id ‖ the
/// member's key). The mark holds while it equals the current code.
pub(super) struct VerifiedMark(pub(super) SafetyCode);

impl Row for VerifiedMark {
    const NS: &'static str = NS_VERIFIED;
    const WHAT: &'static str = "safety code verified";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.digits().as_bytes().to_vec()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        SafetyCode::from_digits(std::str::from_utf8(body).ok()?).map(Self)
    }
}

/// The key of a mark in `engine.verified`: thread id ‖ member key.
pub(super) fn mark_key(thread: [u8; 16], member: &[u8; 32]) -> Vec<u8> {
    [&thread[..], &member[..]].concat()
}

/// The credential of a mailbox given up, to unregister it with.
pub(super) struct RetiredCredential(pub(super) [u8; 32]);

impl Row for RetiredCredential {
    const NS: &'static str = NS_RETIRED;
    const WHAT: &'static str = "retired mailbox";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.to_vec()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        body.try_into().ok().map(Self)
    }
}

/// How a recipient of a file of ours stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum PeerFile {
    /// Offered; waiting for its FILE_STATUS.
    Offered,
    /// Accepted: chunks go.
    Sending,
    /// It said the whole file arrived.
    Complete,
    /// It declined.
    Declined,
    /// We stopped (or it left the conversation).
    Cancelled,
    /// Its budget ran out.
    Failed,
}

/// One recipient of a file of ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct XferPeer {
    pub(super) member: [u8; 32],
    pub(super) state: PeerFile,
}

/// A file we send, as saved.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct XferOut {
    pub(super) thread: [u8; 16],
    /// Its history entry.
    pub(super) history: Vec<u8>,
    pub(super) kind: super::wire::FileKind,
    pub(super) name: String,
    pub(super) mime: String,
    pub(super) size: u64,
    pub(super) duration_ms: u32,
    pub(super) shard: u16,
    /// The file key and the transfer's signing key: zeros once every recipient is done.
    pub(super) file_key: [u8; 32],
    pub(super) signing: [u8; 32],
    pub(super) digest: [u8; 32],
    pub(super) created_ms: u64,
    pub(super) peers: Vec<XferPeer>,
    /// The user asked for the fast rate.
    #[serde(default)]
    pub(super) fast: bool,
}

impl std::fmt::Debug for XferOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XferOut")
            .field("size", &self.size)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Drop for XferOut {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.file_key.zeroize();
        self.signing.zeroize();
    }
}

impl Row for XferOut {
    const NS: &'static str = NS_XFER_OUT;
    const WHAT: &'static str = "outgoing file";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

/// The sender core's state of a file of ours.
pub(super) struct XferState(pub(super) Vec<u8>);

impl Row for XferState {
    const NS: &'static str = NS_XFER_STATE;
    const WHAT: &'static str = "outgoing file's state";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        Some(Self(body.to_vec()))
    }
}

/// How a file offered to us stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum InFile {
    /// Waiting for the user's yes.
    Offered,
    /// Accepted; chunks arrive.
    Receiving,
    /// Whole and checked.
    Complete,
    /// The user declined.
    Declined,
    /// The sender cancelled, or the user did.
    Cancelled,
    /// It did not check, or expired.
    Failed,
}

/// A file offered to us, as saved.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct XferIn {
    pub(super) thread: [u8; 16],
    pub(super) transfer: [u8; 16],
    /// Its sender (member key) and what we call it.
    pub(super) sender: [u8; 32],
    pub(super) history: Vec<u8>,
    pub(super) kind: super::wire::FileKind,
    pub(super) name: String,
    pub(super) mime: String,
    pub(super) size: u64,
    pub(super) duration_ms: u32,
    pub(super) shard: u16,
    /// Zeros once the file is complete or given up.
    pub(super) file_key: [u8; 32],
    pub(super) transfer_key: [u8; 32],
    pub(super) digest: [u8; 32],
    pub(super) offered_ms: u64,
    pub(super) state: InFile,
    /// Blocks decoded (their plaintext is in `engine.blob`).
    pub(super) decoded: Vec<u16>,
}

impl std::fmt::Debug for XferIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XferIn").field("size", &self.size).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Drop for XferIn {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.file_key.zeroize();
    }
}

impl Row for XferIn {
    const NS: &'static str = NS_XFER_IN;
    const WHAT: &'static str = "incoming file";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        to_json(self)
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        of_json(body)
    }
}

/// A shard of a block not yet decoded, as it arrived.
pub(super) struct ShardData(pub(super) Vec<u8>);

impl Row for ShardData {
    const NS: &'static str = NS_SHARD;
    const WHAT: &'static str = "file shard";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        Some(Self(body.to_vec()))
    }
}

/// A block of a file's plaintext, zero-padded to a whole block of shards (so that the rows of a
/// file show its bucket, not its size).
pub(super) struct BlobPart(pub(super) Vec<u8>);

impl Row for BlobPart {
    const NS: &'static str = NS_BLOB;
    const WHAT: &'static str = "file block";
    const VERSION: u8 = 1;
    fn body(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn from_body(_: u8, body: &[u8]) -> Option<Self> {
        Some(Self(body.to_vec()))
    }
}
