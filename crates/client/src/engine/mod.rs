//! The client engine: what ties the profile, invitations, MLS conversations and the Loopix sender
//! together into contacts and groups that a person uses.
//!
//! The engine does no network IO and reads no clock: the runtime (or a test) hands it the
//! directory's document, the items fetched from the user's mailboxes and `now`, and takes from it
//! the packets to send (one per sending slot), the mailboxes to register and the events to show.
//! Its only IO is the encrypted profile: every change it makes is written there in one
//! transaction before anything that depends on it leaves (an acknowledgement is sent only after
//! the fragment it acknowledges is saved), so a crash or restart at any point loses nothing.
//!
//! # Threads
//! A *thread* is a conversation as the user sees it: a contact (an MLS group of two, made by an
//! invitation) or a group. Each has a local name chosen by the user (never sent anywhere), its own
//! MLS conversation, its own mailbox at the user's gateway, and a roster: where each other member
//! receives this conversation's messages. Nothing ties one thread to another outside this profile.
//!
//! # Making a contact (module `invite` for the formats)
//! 1. The inviter makes an invitation: a fresh mailbox (the thread's mailbox from then on).
//! 2. The accepter makes a KeyPackage and a fresh mailbox, and sends the encrypted answer to the
//!    invitation's mailbox (outer kind ANSWER).
//! 3. The inviter creates the conversation, adds the accepter, and sends the Welcome to the
//!    accepter's mailbox (outer kind WELCOME). Both now talk with MLS messages (outer kind MLS).
//!
//! # Groups
//! A group member adds one of its contacts in three messages over their contact conversation:
//! GROUP_INVITE (a token), GROUP_JOIN (the contact's KeyPackage and a fresh mailbox for the group),
//! and, once the add commit has won, GROUP_WELCOME (the Welcome and every member's route).
//! Between the first two the user decides: a GROUP_INVITE only records an invitation
//! ([`Engine::group_invitations`], at most [`MAX_GROUP_INVITATIONS_PER_CONTACT`] per contact and
//! [`MAX_GROUP_INVITATIONS`] in all, dropped after [`GROUP_INVITATION_TTL`]); nothing is made on
//! this side (no mailbox, no KeyPackage) until [`Engine::accept_group_invitation`]. A decline
//! sends nothing. The
//! adder also tells the group where the newcomer receives (ROUTE). A message for a member whose
//! route is not yet known waits until it is.
//!
//! # Mailbox rotation
//! A mailbox and its seal key can become known to someone who should not read it: the
//! invitation's (the link carries the mailbox and the token the key is derived from, and links
//! travel over channels the adversary may watch), the accepter's first one (it travels in the
//! answer, sealed under the invitation's key), and every member's group mailbox to a member who
//! is removed. So each side of a new contact, once the conversation is set up, and every member
//! who stays after a removal, moves to a fresh mailbox and seal key and tells the others in a
//! ROUTE inside the conversation (which whoever left cannot read). The replaced mailbox is still
//! read for [`ROTATION_GRACE_MS`], for what was sent before the news arrived, then retired.
//!
//! # Order
//! Texts are delivered exactly once (the inbox de-duplicates by message id, MLS refuses a reused
//! generation) and in order per sender: see [`wire`] for the rule.

#[cfg(any(test, feature = "attacks"))]
pub mod attacks;
pub mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qanat_mixnet::sending::acks::{AckGroup, AckQueue};
use qanat_mixnet::sending::seal::{self, SealKey};
use qanat_mixnet::sending::{
    self, Delivery, Inbox, MessageId, NetworkView, Outbox, OutboxEvent, Payload, PayloadError, Received,
    ResendPolicy, Route, RouteError, Schedule, TrafficProfile,
};
use qanat_mixnet::{Hop, MailboxItem, Time, Topology};
use qanat_packet::{NodeId, RecipientId, Sphinx};
use qanat_pki::{Document, EpochPeriod, UnixTime};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::gateway::{Fetched, MailboxAccess};
use crate::invite::{self, Invitation, InviteError, PendingInvitation};
use crate::mls::{
    self, Conversation, Event as MlsEvent, MemberId, MlsError, OutgoingKind, Output, PendingJoin,
};
use crate::store::{Profile, StoreError, Transaction};
use wire::{Content, Outer, RouteEntry};

const NS_SETTINGS: &str = "engine.settings";
const NS_THREAD: &str = "engine.thread";
const NS_CONV: &str = "engine.conv";
const NS_JOIN: &str = "engine.join";
const NS_OUT: &str = "engine.out";
const NS_FRAG: &str = "engine.frag";
const NS_SEEN: &str = "engine.seen";
/// Partly received messages: message id → when the first fragment arrived (ms, u64 BE). Added
/// after version 1 of the profile: a fragment without it counts from when it is read back.
const NS_PARTIAL: &str = "engine.partial";
const NS_CURSOR: &str = "engine.cursor";
const NS_HISTORY: &str = "engine.history";
/// Mailboxes given up (a group left, an invitation expired) and not yet unregistered at the
/// gateway: mailbox → credential.
const NS_RETIRED: &str = "engine.retired";
/// Group invitations waiting for the user's answer: token → [`GroupInvitationRec`] (JSON).
const NS_GROUP_INVITES: &str = "engine.group_invites";
/// How often expired invitation records are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(3600);
const SETTINGS_KEY: &[u8] = b"settings";

fn format_one() -> u32 {
    1
}

/// The format of the engine's rows. 1 (stored as an absent field): before sealed mailbox items;
/// 2: routes, threads and the home mailbox carry seal keys.
pub const ENGINE_FORMAT: u32 = 2;

/// How long a thread's mailbox is still read after it was replaced (see the module's "Mailbox
/// rotation"): what the others sent before they learned the new one still
/// arrives there. The same grace as an expired invitation's.
pub const ROTATION_GRACE_MS: u64 = invite::GRACE_MS;

/// Most MLS messages kept for a conversation we are still joining (more wait, unacknowledged,
/// at their senders).
pub const MAX_EARLY: usize = 1_000;

/// Most bytes of them.
pub const MAX_EARLY_BYTES: usize = 16 << 20;

/// At most this many group invitations from one contact wait for the user's answer (more are
/// dropped, and counted in [`EngineStats::rejected`]).
pub const MAX_GROUP_INVITATIONS_PER_CONTACT: usize = 8;

/// At most this many group invitations wait in all.
pub const MAX_GROUP_INVITATIONS: usize = 64;

/// A group invitation not answered in this long is dropped.
pub const GROUP_INVITATION_TTL: Duration = Duration::from_secs(14 * 86_400);

/// Longest local name of a contact or group.
pub const MAX_LOCAL_NAME: usize = 64;

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
    /// No member of the group matches.
    #[error("no member of {0:?} matches {1:?} (see `qanat group members`)")]
    UnknownMember(String, String),
    /// The engine has no directory document yet.
    #[error(
        "no network directory yet: this needs the running client (start `qanat run` and wait until it reaches the network)"
    )]
    NoNetwork,
    /// The user's gateway is not in the directory.
    #[error("this profile's gateway is not in the current directory")]
    GatewayMissing,
    /// The directory's packet geometry cannot be used.
    #[error("the directory's packet geometry is not usable: {0}")]
    Geometry(&'static str),
    /// Saved engine state cannot be read (damaged profile, or a newer version).
    #[error("saved client state is unreadable: {0}")]
    Corrupt(&'static str),
    /// The profile was never set up with `Engine::init`.
    #[error("this profile has no client settings (run `qanat init`)")]
    NotInitialized,
    /// The profile's client state has another format.
    #[error(
        "this profile's client state has format {0}, and this Qanat reads format {ENGINE_FORMAT} only: format 1 profiles come from before mailbox items were sealed end to end, and their contacts cannot be carried over (their mailboxes have no seal keys). Make a new profile in another directory (`qanat init --home DIR`) and invite your contacts again"
    )]
    Format(u32),
}

impl EngineError {
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
    ///   [`EngineError::Format`], [`EngineError::NotInitialized`],
    ///   [`MlsError::CorruptState`]);
    /// - an internal invariant failed ([`MlsError::Internal`]: a bug here or in openmls; the
    ///   conversation may be half-changed in memory). What a peer controls never reaches it:
    ///   `Conversation` refuses, as the peer's fault, what openmls cannot take.
    ///
    /// A restart resumes from the profile after a fatal error.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Store(_) | Self::Corrupt(_) | Self::Format(_) | Self::NotInitialized => true,
            Self::Invite(e) => matches!(e, InviteError::Store(_)),
            Self::Mls(e) => matches!(e, MlsError::Internal(_) | MlsError::CorruptState(_)),
            Self::Payload(_)
            | Self::Route(_)
            | Self::UnknownName(_)
            | Self::NameTaken(_)
            | Self::InvalidName(_)
            | Self::NotReady(..)
            | Self::WrongKind(..)
            | Self::UnknownInvitation(_)
            | Self::UnknownMember(..)
            | Self::NoNetwork
            | Self::GatewayMissing
            | Self::Geometry(_) => false,
        }
    }
}

/// What the engine reports to the user interface.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A text arrived (in order for its sender).
    Message {
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
    },
    /// The delivery state of one of our messages changed.
    Delivery {
        /// The message (as [`Engine::send`] returned it).
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
    GroupInvitation {
        /// The invitation (see [`Engine::group_invitations`]).
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
    /// An invitation of ours expired unanswered: its contact entry and mailbox are gone.
    InvitationExpired {
        /// The name the contact would have had.
        name: String,
    },
}

/// A group invitation waiting for the user's answer, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupInvitationRec {
    /// The contact's thread it came over.
    contact: [u8; 16],
    /// The suggested name (printable, at most [`MAX_LOCAL_NAME`] characters).
    name: String,
    received_ms: u64,
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
pub struct LocalMessageId(Vec<u8>);

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
}

/// One message of a thread's history.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Contact,
    Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ThreadState {
    /// Inviter: waiting for the invitation's answer.
    Inviting,
    /// Waiting for a Welcome.
    Joining,
    Active,
    Left,
}

impl ThreadState {
    fn name(self) -> &'static str {
        match self {
            Self::Inviting => "inviting",
            Self::Joining => "joining",
            Self::Active => "active",
            Self::Left => "left",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RouteRec {
    gateway: [u8; 32],
    mailbox: [u8; 32],
    /// The mailbox's seal key.
    seal: [u8; 32],
}

impl RouteRec {
    fn route(self) -> Route {
        Route { gateway: NodeId(self.gateway), mailbox: RecipientId(self.mailbox), seal: SealKey(self.seal) }
    }

    fn entry(self, member: [u8; 32]) -> RouteEntry {
        RouteEntry { member, gateway: self.gateway, mailbox: self.mailbox, seal: self.seal }
    }

    fn of_entry(r: &RouteEntry) -> Self {
        Self { gateway: r.gateway, mailbox: r.mailbox, seal: r.seal }
    }
}

/// A thread's mailbox before its last rotation: still read, its items opened with its own seal
/// key, until `retire_at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct OldMailbox {
    mailbox: [u8; 32],
    credential: [u8; 32],
    seal: [u8; 32],
    retire_at_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RecvState {
    next: Option<u64>,
    held: BTreeMap<u64, (u64, Option<u64>, u64, String)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Thread {
    id: [u8; 16],
    name: String,
    kind: Kind,
    state: ThreadState,
    mailbox: [u8; 32],
    credential: [u8; 32],
    /// The key that seals what others write into `mailbox`.
    seal: [u8; 32],
    /// The mailbox this one replaced, while the others may still write there.
    #[serde(default)]
    old: Option<OldMailbox>,
    /// A contact's route before its member id is known (accepter, waiting for the Welcome).
    peer_route: Option<RouteRec>,
    /// Other members' routes, by member id (hex).
    roster: BTreeMap<String, RouteRec>,
    /// Local labels of members, by member id (hex).
    labels: BTreeMap<String, String>,
    join_epoch: u64,
    next_seq: u64,
    last_epoch: Option<u64>,
    recv: BTreeMap<String, RecvState>,
    /// MLS messages for members whose route is not known yet.
    awaiting: BTreeMap<String, Vec<Vec<u8>>>,
    /// MLS messages that arrived before our Welcome (a member may merge our addition and write
    /// before the Welcome reaches us): handled right after we join.
    #[serde(default)]
    early: Vec<Vec<u8>>,
    /// Group being joined: the invite's token.
    join_token: Option<[u8; 16]>,
    /// Inviter: when the thread goes if the invitation is not answered (its expiry plus
    /// [`invite::GRACE_MS`], as for the pending invitation itself), in ms since the epoch.
    #[serde(default)]
    give_up_at_ms: Option<u64>,
    /// Group adds in progress: token (hex) → contact thread id.
    pending_adds: BTreeMap<String, [u8; 16]>,
    /// Welcomes to deliver: member (hex) → (contact thread id, token).
    welcome_to: BTreeMap<String, ([u8; 16], [u8; 16])>,
    history_next: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Settings {
    /// [`ENGINE_FORMAT`] when the profile was made (absent in profiles of format 1).
    #[serde(default = "format_one")]
    format: u32,
    gateway: [u8; 32],
    home_mailbox: [u8; 32],
    home_credential: [u8; 32],
    /// Seals our loops into the home mailbox (absent in profiles of format 1: read as zeros,
    /// never used, since [`Engine::open`] refuses them).
    #[serde(default)]
    home_seal: [u8; 32],
    traffic: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct OutRec {
    route: RouteRec,
    bytes: Vec<u8>,
    history: Option<Vec<u8>>,
}

/// Where an incoming mailbox item belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Home,
    Thread([u8; 16]),
}

/// The directory as the engine uses it.
struct Network {
    sphinx: Sphinx,
    view: NetworkView,
    own_gateway: invite::Gateway,
    /// Until when our own packets are built with `view`'s keys ([`keys_usable_until`]).
    keys_until: Time,
}

/// Until when the engine builds its own packets with the keys of `epoch`'s document: the end of
/// the epoch plus half the key grace ([`EpochPeriod::key_grace`]). Mixes and gateways accept
/// those keys until the end plus the whole grace; the other half is for the packet's way through
/// them (the link, the mixes' delays, a replay log's write at each hop) and for clocks a little
/// apart. After it, a packet built with them is dropped at the first hop, so a message put in it
/// would be lost and wait for the outbox's resend (tens of seconds): it waits for the next
/// epoch's document instead, which the runtime applies as soon as it comes.
fn keys_usable_until(epoch: u64, period: EpochPeriod) -> Time {
    let end = qanat_pki::Epoch(epoch).end(period).as_millis().saturating_mul(1000);
    let half_grace = u64::try_from(period.key_grace().as_micros() / 2).unwrap_or(u64::MAX);
    Time(end.saturating_add(half_grace))
}

/// An acknowledgement owed for a fragment, queued once the fragment is saved.
struct OwedAck {
    group: AckGroup,
    surb: Vec<u8>,
    message_id: MessageId,
    index: u16,
}

/// One change to write in the next transaction.
enum Write {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Del(&'static str, Vec<u8>),
    TakeAnswer([u8; 32], Vec<u8>),
}

/// Counters of input the engine dropped (from the network: never an error).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Items that did not decode.
    pub malformed: u64,
    /// MLS messages or Welcomes refused.
    pub rejected: u64,
    /// Duplicate fragments (acknowledged again).
    pub duplicates: u64,
    /// Cover packets received (loops).
    pub cover: u64,
    /// Acknowledgements received.
    pub acks: u64,
    /// Packets sent: real, acknowledgements, cover.
    pub sent_real: u64,
    /// Acknowledgement packets sent.
    pub sent_acks: u64,
    /// Fragments whose acknowledgement was dropped unsent (the queue was full, or it waited too
    /// long): their senders send them again.
    pub acks_dropped: u64,
    /// Mailbox registrations the gateway refused for good.
    pub registrations_refused: u64,
    /// Fragments or messages refused for now, unacknowledged, because what waits is at its
    /// bound (partial messages, messages for a later epoch): their senders send them again.
    pub deferred: u64,
    /// Cover packets sent (drops and loops).
    pub sent_cover: u64,
    /// Fragments that could not leave in their slot because no packet could be built for them
    /// (their recipient's gateway missing from the directory); each is tried again later.
    pub unroutable: u64,
    /// Slots that carried nothing: not even a cover packet could be built (an empty layer).
    pub unsendable: u64,
    /// Messages partly received and held now, a gauge (at most
    /// [`sending::MAX_PARTIAL_MESSAGES`]; each expires [`sending::REMEMBER_DELIVERED`] after its
    /// first fragment).
    pub partial_messages: u64,
    /// The bytes of their fragments, a gauge (at most [`sending::MAX_PARTIAL_BYTES`]).
    pub partial_bytes: u64,
    /// Payload slots that left a queued message waiting (and carried an acknowledgement or a
    /// drop) because the directory document in use is of an epoch whose keys the network no
    /// longer accepts: the next epoch's document had not come yet.
    pub held_for_directory: u64,
    /// Operations on one item or peer that failed part-way with an error that is not fatal
    /// ([`EngineError::is_fatal`]): the item was refused (a message is taken as MLS's refusals
    /// are, what it changed is saved), and the client went on. None is known to happen: this
    /// is the rule's backstop.
    pub failed: u64,
    /// Messages of ours dropped unsent because the network cannot carry them (more than
    /// [`sending::MAX_FRAGMENTS`] fragments: the Welcome of a group of some 1,600 members,
    /// which carries its whole ratchet tree, say): their recipients never get them.
    pub too_long: u64,
}

/// The client engine of one profile.
pub struct Engine {
    profile: Profile,
    config: EngineConfig,
    settings: Settings,
    traffic: TrafficProfile,
    threads: BTreeMap<[u8; 16], Thread>,
    convs: HashMap<[u8; 16], Conversation>,
    cursors: HashMap<[u8; 32], u64>,
    outbox: Outbox,
    out_recs: HashMap<MessageId, OutRec>,
    inbox: Inbox,
    acks: AckQueue,
    /// Whose turn the next payload slot is when acknowledgements and our own messages both
    /// wait: they alternate.
    acks_turn: bool,
    schedule: Option<Schedule>,
    network: Option<Network>,
    events: VecDeque<EngineEvent>,
    registrations: Vec<MailboxAccess>,
    writes: Vec<Write>,
    dirty_convs: Vec<[u8; 16]>,
    stats: EngineStats,
    idle_cost: Option<(f64, f64)>,
    /// Mailboxes to unregister at the gateway: mailbox → credential (saved in [`NS_RETIRED`]).
    retired: BTreeMap<[u8; 32], [u8; 32]>,
    /// When expired invitation records were last dropped.
    last_forget: Option<SystemTime>,
    /// Group invitations waiting for the user's answer, by token.
    group_invites: BTreeMap<[u8; 16], GroupInvitationRec>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("threads", &self.threads.len()).finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn core_time(t: SystemTime) -> Time {
    Time(t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain records cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(b).map_err(|_| EngineError::Corrupt("unreadable record"))
}

fn check_name(name: &str) -> Result<(), EngineError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_LOCAL_NAME || name.chars().any(char::is_control) || name.trim() != name {
        return Err(EngineError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// The topology of a verified document (nodes without a key for its epoch are left out).
pub fn topology_of(doc: &Document) -> Topology {
    let epoch = doc.epoch();
    let hop = |id: NodeId| doc.packet_key(&id, epoch).map(|k| Hop { id, key: k.clone() });
    let layers = (0..doc.layer_count()).map(|l| doc.layer(l).filter_map(|n| hop(n.id())).collect()).collect();
    let gateways = doc.gateways().filter_map(|n| hop(n.id())).collect();
    Topology { epoch: epoch.0, layers, gateways }
}

impl Engine {
    /// Sets up the client on a new `profile` whose gateway is `gateway`: a home mailbox (loops and
    /// acknowledgements come back there) and the traffic profile.
    pub fn init<R: CryptoRng>(
        profile: &mut Profile,
        gateway: NodeId,
        traffic: TrafficProfile,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let mut home_mailbox = [0u8; 32];
        let mut home_credential = [0u8; 32];
        rng.fill_bytes(&mut home_mailbox);
        rng.fill_bytes(&mut home_credential);
        let s = Settings {
            format: ENGINE_FORMAT,
            gateway: gateway.0,
            home_mailbox,
            home_credential,
            home_seal: SealKey::random(rng).0,
            traffic: traffic.name().into(),
        };
        profile.put(NS_SETTINGS, SETTINGS_KEY, &json(&s))?;
        Ok(())
    }

    /// Whether `profile` was set up with [`Engine::init`].
    pub fn is_initialized(profile: &Profile) -> Result<bool, EngineError> {
        Ok(profile.get(NS_SETTINGS, SETTINGS_KEY)?.is_some())
    }

    /// The gateway `profile` uses.
    pub fn gateway_of(profile: &Profile) -> Result<NodeId, EngineError> {
        let s: Settings =
            from_json(&profile.get(NS_SETTINGS, SETTINGS_KEY)?.ok_or(EngineError::NotInitialized)?)?;
        if s.format != ENGINE_FORMAT {
            return Err(EngineError::Format(s.format));
        }
        Ok(NodeId(s.gateway))
    }

    /// Opens the engine on an initialised profile, resuming every conversation and every message
    /// not yet delivered.
    pub fn open(profile: Profile, config: EngineConfig) -> Result<Self, EngineError> {
        let settings: Settings =
            from_json(&profile.get(NS_SETTINGS, SETTINGS_KEY)?.ok_or(EngineError::NotInitialized)?)?;
        if settings.format != ENGINE_FORMAT {
            return Err(EngineError::Format(settings.format));
        }
        let traffic =
            TrafficProfile::from_name(&settings.traffic).ok_or(EngineError::Corrupt("traffic profile"))?;
        let mut threads = BTreeMap::new();
        for (_, v) in profile.scan(NS_THREAD)? {
            let t: Thread = from_json(&v)?;
            threads.insert(t.id, t);
        }
        let mut convs = HashMap::new();
        for (k, v) in profile.scan(NS_CONV)? {
            let id: [u8; 16] =
                k.as_slice().try_into().map_err(|_| EngineError::Corrupt("conversation key"))?;
            convs.insert(id, Conversation::import(&v, &config.mls)?);
        }
        let mut cursors = HashMap::new();
        for (k, v) in profile.scan(NS_CURSOR)? {
            let (Ok(m), Ok(c)) = (<[u8; 32]>::try_from(k.as_slice()), <[u8; 8]>::try_from(v.as_slice()))
            else {
                return Err(EngineError::Corrupt("cursor"));
            };
            cursors.insert(m, u64::from_be_bytes(c));
        }
        let outbox =
            Outbox::new(ResendPolicy { first: Duration::from_secs(10), max: Duration::from_secs(600) });
        let mut out_recs = HashMap::new();
        let mut pending_out = Vec::new();
        for (k, v) in profile.scan(NS_OUT)? {
            let id: [u8; 16] = k.as_slice().try_into().map_err(|_| EngineError::Corrupt("outbox key"))?;
            let rec: OutRec = from_json(&v)?;
            pending_out.push((MessageId(id), rec));
        }
        // Queued again (with their ids) once the first document gives the geometry.
        out_recs.extend(pending_out);
        let mut inbox = Inbox::default();
        let mut since = HashMap::new();
        for (k, v) in profile.scan(NS_PARTIAL)? {
            // value: first arrival, ms u64 ‖ source thread (16; absent in rows written before
            // the inbox's bounds per source, which count as one source of their own)
            let id =
                <[u8; 16]>::try_from(k.as_slice()).map_err(|_| EngineError::Corrupt("partial message"))?;
            let (at, source) = match v.len() {
                8 => (&v[..8], [0u8; 16]),
                24 => (&v[..8], <[u8; 16]>::try_from(&v[8..]).unwrap_or_default()),
                _ => return Err(EngineError::Corrupt("partial message")),
            };
            let at = u64::from_be_bytes(at.try_into().unwrap_or_default());
            since.insert(id, (core_time(UNIX_EPOCH + Duration::from_millis(at)), source));
        }
        let loaded = core_time(SystemTime::now());
        for (k, v) in profile.scan(NS_FRAG)? {
            // key: message id (16) ‖ index u16 ‖ count u16
            if k.len() != 20 {
                return Err(EngineError::Corrupt("fragment key"));
            }
            let mut id = [0u8; 16];
            id.copy_from_slice(&k[..16]);
            let index = u16::from_be_bytes([k[16], k[17]]);
            let count = u16::from_be_bytes([k[18], k[19]]);
            let (at, source) = since.get(&id).copied().unwrap_or((loaded, [0u8; 16]));
            inbox.restore(at, source, MessageId(id), index, count, v.to_vec());
        }
        let mut group_invites = BTreeMap::new();
        for (k, v) in profile.scan(NS_GROUP_INVITES)? {
            let token: [u8; 16] =
                k.as_slice().try_into().map_err(|_| EngineError::Corrupt("group invitation"))?;
            group_invites.insert(token, from_json::<GroupInvitationRec>(&v)?);
        }
        let mut retired = BTreeMap::new();
        for (k, v) in profile.scan(NS_RETIRED)? {
            let (Ok(m), Ok(c)) = (<[u8; 32]>::try_from(k.as_slice()), <[u8; 32]>::try_from(v.as_slice()))
            else {
                return Err(EngineError::Corrupt("retired mailbox"));
            };
            retired.insert(m, c);
        }
        let mut registrations =
            vec![MailboxAccess { mailbox: settings.home_mailbox, credential: settings.home_credential }];
        for t in threads.values() {
            if t.state != ThreadState::Left {
                registrations.push(MailboxAccess { mailbox: t.mailbox, credential: t.credential });
                if let Some(o) = t.old {
                    registrations.push(MailboxAccess { mailbox: o.mailbox, credential: o.credential });
                }
            }
        }
        Ok(Self {
            profile,
            config,
            settings,
            traffic,
            threads,
            convs,
            cursors,
            outbox,
            out_recs,
            inbox,
            acks: AckQueue::default(),
            acks_turn: false,
            schedule: None,
            network: None,
            events: VecDeque::new(),
            registrations,
            writes: Vec::new(),
            dirty_convs: Vec::new(),
            stats: EngineStats::default(),
            idle_cost: None,
            retired,
            last_forget: None,
            group_invites,
        })
    }

    /// Closes the engine, giving the profile back.
    pub fn into_profile(self) -> Profile {
        self.profile
    }

    /// Counters of dropped input and sent packets, and what is held of partly received messages.
    pub fn stats(&self) -> EngineStats {
        let (partial_messages, partial_bytes) = self.inbox.partial();
        EngineStats {
            acks_dropped: self.acks.stats().dropped,
            unroutable: self.outbox.unroutable(),
            partial_messages: partial_messages as u64,
            partial_bytes: partial_bytes as u64,
            ..self.stats
        }
    }

    /// The traffic profile.
    pub fn traffic(&self) -> TrafficProfile {
        self.traffic
    }

    /// This profile's sending rates under the current directory, once it has one.
    pub fn rates(&self) -> Option<sending::Rates> {
        self.schedule.as_ref().map(Schedule::rates)
    }

    /// Whether the engine has a directory document (and so can build packets).
    pub fn has_network(&self) -> bool {
        self.network.is_some()
    }

    /// What this profile's traffic costs while idle, in bytes per day to and from the gateway
    /// ([`TrafficProfile::idle_bytes_per_day`]), under the last document's parameters; `None`
    /// before the first document.
    pub fn idle_bytes_per_day(&self) -> Option<(f64, f64)> {
        self.idle_cost
    }

    /// The gateway this profile uses.
    pub fn gateway(&self) -> NodeId {
        NodeId(self.settings.gateway)
    }

    /// Takes the directory's verified document for the current epoch: packets are built with it
    /// from now on, at the rates it sets for this profile.
    pub fn set_document(&mut self, doc: &Document) -> Result<(), EngineError> {
        let gw_id = NodeId(self.settings.gateway);
        let node = doc.node(&gw_id).ok_or(EngineError::GatewayMissing)?;
        let d = node.descriptor();
        let own_gateway = invite::Gateway::new(gw_id, d.address().clone(), d.link_key().to_vec())?;
        self.set_network(topology_of(doc), doc.parameters(), own_gateway)
    }

    /// [`Engine::set_document`] from its parts: the epoch's topology, the network's parameters
    /// and this profile's gateway as invitations name it.
    pub fn set_network(
        &mut self,
        topology: Topology,
        params: &qanat_pki::Parameters,
        own_gateway: invite::Gateway,
    ) -> Result<(), EngineError> {
        if *own_gateway.node_id() != NodeId(self.settings.gateway) {
            return Err(EngineError::GatewayMissing);
        }
        let geometry = params.geometry().clone();
        // A network keeps its geometry (its nodes refuse a document of another): the fragments
        // in the outbox are cut for it. And one whose payload has no room for a fragment beside
        // its SURB cannot carry a message. Either document is refused whole: nothing changes.
        if let Some(net) = &self.network
            && *net.sphinx.geometry() != geometry
        {
            return Err(EngineError::Geometry("it differs from the one in use"));
        }
        if sending::fragment_capacity(&geometry).is_err() {
            return Err(EngineError::Geometry("its payload has no room for a fragment beside a SURB"));
        }
        let first_time = self.network.is_none();
        let view = NetworkView {
            topology,
            mean_delay: Duration::from_millis(u64::from(params.mean_delay_ms())),
            gateway: NodeId(self.settings.gateway),
        };
        let rates = self.traffic.rates(params);
        self.idle_cost = qanat_link::FrameSize::for_packet_len(geometry.packet_len())
            .ok()
            .map(|size| self.traffic.idle_bytes_per_day(params, size.wire_len()));
        // The wait for an acknowledgement: a slot at each end, the delays of every hop both ways,
        // and a fetch at each end; doubled for the tail.
        let slot = Duration::from_secs_f64(1.0 / rates.payload.max(1e-6));
        let hops = view.mean_delay * (2 * params.mix_layers() as u32);
        let first = (slot * 2 + hops + self.config.fetch_interval * 2) * 2;
        self.outbox.set_policy(ResendPolicy {
            first: first.max(Duration::from_secs(1)),
            max: (first * 16).min(Duration::from_secs(1800)),
        });
        if self.schedule.as_ref().is_none_or(|s| s.rates() != rates) {
            self.schedule = Some(Schedule::new(rates));
        }
        let keys_until = keys_usable_until(view.topology.epoch, params.epoch_period());
        self.network = Some(Network { sphinx: Sphinx::new(geometry.clone()), view, own_gateway, keys_until });
        if first_time {
            // Messages saved before a restart go back in the queue, with their ids.
            let mut recs: Vec<(MessageId, OutRec)> =
                self.out_recs.iter().map(|(k, v)| (*k, v.clone())).collect();
            recs.sort_by_key(|(id, _)| id.0);
            for (id, rec) in recs {
                let reply = RecipientId(self.settings.home_mailbox);
                if let Err(e) = self.outbox.queue_as(id, &geometry, rec.route.route(), reply, &rec.bytes) {
                    // Queued before the first document (no size to check then): too long for
                    // this network, as in `queue_out`.
                    tracing::warn!(bytes = rec.bytes.len(), "a saved message of ours cannot be sent: {e}");
                    self.stats.too_long += 1;
                    self.out_recs.remove(&id);
                    self.writes.push(Write::Del(NS_OUT, id.0.to_vec()));
                }
            }
        }
        Ok(())
    }

    /// Every mailbox to register (all of them after [`Engine::open`], then each new one once).
    pub fn take_registrations(&mut self) -> Vec<MailboxAccess> {
        std::mem::take(&mut self.registrations)
    }

    /// Every mailbox to fetch, with the sequence number already processed.
    pub fn mailboxes(&self) -> Vec<(MailboxAccess, u64)> {
        let mut out = vec![(
            MailboxAccess { mailbox: self.settings.home_mailbox, credential: self.settings.home_credential },
            self.cursors.get(&self.settings.home_mailbox).copied().unwrap_or(0),
        )];
        for t in self.threads.values().filter(|t| t.state != ThreadState::Left) {
            let old = t.old.map(|o| (o.mailbox, o.credential));
            for (mailbox, credential) in std::iter::once((t.mailbox, t.credential)).chain(old) {
                out.push((
                    MailboxAccess { mailbox, credential },
                    self.cursors.get(&mailbox).copied().unwrap_or(0),
                ));
            }
        }
        out
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    fn name_used(&self, name: &str) -> bool {
        self.threads.values().any(|t| t.name == name)
    }

    fn thread_by_name(&self, name: &str) -> Result<[u8; 16], EngineError> {
        self.threads
            .values()
            .find(|t| t.name == name)
            .map(|t| t.id)
            .ok_or_else(|| EngineError::UnknownName(name.into()))
    }

    fn new_thread<R: CryptoRng>(
        &mut self,
        name: String,
        kind: Kind,
        state: ThreadState,
        rng: &mut R,
    ) -> Thread {
        let mut id = [0u8; 16];
        let mut mailbox = [0u8; 32];
        let mut credential = [0u8; 32];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut mailbox);
        rng.fill_bytes(&mut credential);
        Thread {
            id,
            name,
            kind,
            state,
            mailbox,
            credential,
            seal: SealKey::random(rng).0,
            old: None,
            peer_route: None,
            roster: BTreeMap::new(),
            labels: BTreeMap::new(),
            join_epoch: 0,
            next_seq: 0,
            last_epoch: None,
            recv: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            early: Vec::new(),
            join_token: None,
            give_up_at_ms: None,
            pending_adds: BTreeMap::new(),
            welcome_to: BTreeMap::new(),
            history_next: 0,
        }
    }

    fn network(&self) -> Result<&Network, EngineError> {
        self.network.as_ref().ok_or(EngineError::NoNetwork)
    }

    /// Makes a one-time invitation for a new contact, to be called `name` here.
    pub fn invite<R: CryptoRng>(
        &mut self,
        name: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Invitation, EngineError> {
        check_name(name)?;
        if self.name_used(name) {
            return Err(EngineError::NameTaken(name.into()));
        }
        let gw = self.network()?.own_gateway.clone();
        let validity = self.config.invitation_validity.as_millis() as u64;
        let mut thread = self.new_thread(name.into(), Kind::Contact, ThreadState::Inviting, rng);
        let pending: PendingInvitation = self.profile.transaction(|tx| {
            let p = invite::create(tx, rng, gw, UnixTime::from_millis(ms(now)), validity)?;
            thread.give_up_at_ms =
                Some(p.invitation().expires_at().as_millis().saturating_add(invite::GRACE_MS));
            thread.mailbox = p.invitation().mailbox().0;
            thread.credential = *p.mailbox_credential();
            thread.seal = p.invitation().seal_key().0;
            tx.put(NS_THREAD, &thread.id, &json(&thread))?;
            Ok::<_, EngineError>(p)
        })?;
        self.registrations.push(MailboxAccess { mailbox: thread.mailbox, credential: thread.credential });
        self.threads.insert(thread.id, thread);
        Ok(pending.invitation().clone())
    }

    /// Accepts the invitation `link`; the new contact is called `name` here. The answer leaves
    /// with the next sending slots; [`EngineEvent::ContactReady`] follows the inviter's Welcome.
    pub fn accept<R: CryptoRng>(
        &mut self,
        link: &str,
        name: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        check_name(name)?;
        if self.name_used(name) {
            return Err(EngineError::NameTaken(name.into()));
        }
        // Check the link before anything else (a bad link is reported even without a network)
        // and before making keys for it.
        Invitation::parse(link)?.check_expiry(UnixTime::from_millis(ms(now)))?;
        self.network()?;
        let (join, key_package) = PendingJoin::new()?;
        self.accept_as(link, name, now, rng, &join, &key_package)
    }

    /// [`Engine::accept`] with the conversation's identity `join` and its KeyPackage made by the
    /// caller (`attacks` hands in one of its own).
    fn accept_as<R: CryptoRng>(
        &mut self,
        link: &str,
        name: &str,
        now: SystemTime,
        rng: &mut R,
        join: &PendingJoin,
        key_package: &[u8],
    ) -> Result<(), EngineError> {
        let net = self.network()?;
        let gw = net.own_gateway.clone();
        let geometry = net.sphinx.geometry().clone();
        let join_saved = join.export()?;
        let mut thread = self.new_thread(name.into(), Kind::Contact, ThreadState::Joining, rng);
        let mut out_id = [0u8; 16];
        rng.fill_bytes(&mut out_id);
        let (accepted_mailbox, rec) = self.profile.transaction(|tx| {
            let seal = SealKey(thread.seal);
            let a = invite::accept(tx, rng, link, UnixTime::from_millis(ms(now)), gw, seal, key_package)?;
            thread.mailbox = a.mailbox.0;
            thread.credential = *a.mailbox_credential;
            let inv = &a.invitation;
            let route = RouteRec {
                gateway: inv.gateway().node_id().0,
                mailbox: inv.mailbox().0,
                seal: inv.seal_key().0,
            };
            thread.peer_route = Some(route);
            let rec = OutRec { route, bytes: Outer::Answer(a.answer.clone()).encode(), history: None };
            tx.put(NS_THREAD, &thread.id, &json(&thread))?;
            tx.put(NS_JOIN, &thread.id, &join_saved)?;
            tx.put(NS_OUT, &out_id, &json(&rec))?;
            Ok::<_, EngineError>((a.mailbox, rec))
        })?;
        let _ = accepted_mailbox;
        let reply = RecipientId(self.settings.home_mailbox);
        self.outbox.queue_as(MessageId(out_id), &geometry, rec.route.route(), reply, &rec.bytes)?;
        self.out_recs.insert(MessageId(out_id), rec);
        self.registrations.push(MailboxAccess { mailbox: thread.mailbox, credential: thread.credential });
        self.threads.insert(thread.id, thread);
        Ok(())
    }

    /// Creates a group with only us in it, called `name` here.
    pub fn create_group<R: CryptoRng>(&mut self, name: &str, rng: &mut R) -> Result<(), EngineError> {
        check_name(name)?;
        if self.name_used(name) {
            return Err(EngineError::NameTaken(name.into()));
        }
        let conv = Conversation::create(&self.config.mls)?;
        let thread = self.new_thread(name.into(), Kind::Group, ThreadState::Active, rng);
        let id = thread.id;
        self.registrations.push(MailboxAccess { mailbox: thread.mailbox, credential: thread.credential });
        self.writes.push(Write::Put(NS_THREAD, id.to_vec(), json(&thread)));
        self.threads.insert(id, thread);
        self.convs.insert(id, conv);
        self.dirty_convs.push(id);
        self.flush()
    }

    /// Adds the contact `contact` to the group `group` (it takes a round trip with the contact,
    /// then the decision window of the add).
    pub fn group_add<R: CryptoRng>(
        &mut self,
        group: &str,
        contact: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let g = self.thread_by_name(group)?;
        let c = self.thread_by_name(contact)?;
        self.require(g, Kind::Group)?;
        self.require(c, Kind::Contact)?;
        let mut token = [0u8; 16];
        rng.fill_bytes(&mut token);
        if let Some(t) = self.threads.get_mut(&g) {
            t.pending_adds.insert(hex(&token), c);
        }
        self.save_thread(g);
        self.send_content(c, &Content::GroupInvite { token, name: group.into() }, None, now, rng)?;
        self.flush()
    }

    /// Removes a member (a contact name or a label shown by [`Engine::members`]) from a group.
    pub fn group_remove<R: CryptoRng>(
        &mut self,
        group: &str,
        member: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let g = self.thread_by_name(group)?;
        self.require(g, Kind::Group)?;
        let id = self
            .member_by_label(g, member)
            .ok_or_else(|| EngineError::UnknownMember(group.into(), member.into()))?;
        let conv = self.convs.get_mut(&g).ok_or(EngineError::NotReady(group.into(), "no conversation"))?;
        let out = conv.remove(&id, now)?;
        self.dirty_convs.push(g);
        self.dispatch(g, out, now, rng)?;
        self.flush()
    }

    /// Leaves a group.
    pub fn group_leave<R: CryptoRng>(
        &mut self,
        group: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let g = self.thread_by_name(group)?;
        self.require(g, Kind::Group)?;
        let conv = self.convs.get_mut(&g).ok_or(EngineError::NotReady(group.into(), "no conversation"))?;
        let out = conv.leave(now)?;
        self.dirty_convs.push(g);
        self.dispatch(g, out, now, rng)?;
        self.flush()
    }

    /// The members of a group (or contact conversation) other than us: labels.
    pub fn members(&self, name: &str) -> Result<Vec<String>, EngineError> {
        let t = self.thread_by_name(name)?;
        Ok(self.member_labels(t))
    }

    fn member_labels(&self, t: [u8; 16]) -> Vec<String> {
        let Some(conv) = self.convs.get(&t) else { return Vec::new() };
        let own = conv.own_id();
        conv.members().into_iter().filter(|m| *m != own).map(|m| self.label(t, &m)).collect()
    }

    fn label(&self, t: [u8; 16], m: &MemberId) -> String {
        let h = hex(m.as_bytes());
        let Some(th) = self.threads.get(&t) else { return h[..8].to_owned() };
        if th.kind == Kind::Contact {
            return th.name.clone();
        }
        th.labels.get(&h).cloned().unwrap_or_else(|| format!("member-{}", &h[..8]))
    }

    fn member_by_label(&self, t: [u8; 16], label: &str) -> Option<MemberId> {
        let conv = self.convs.get(&t)?;
        let own = conv.own_id();
        let members: Vec<MemberId> = conv.members().into_iter().filter(|m| *m != own).collect();
        if let Some(m) = members.iter().find(|m| self.label(t, m) == label) {
            return Some(*m);
        }
        let prefix = label.strip_prefix("member-").unwrap_or(label);
        let mut hits = members.iter().filter(|m| prefix.len() >= 4 && hex(m.as_bytes()).starts_with(prefix));
        let first = hits.next()?;
        hits.next().is_none().then_some(*first)
    }

    fn require(&self, t: [u8; 16], kind: Kind) -> Result<(), EngineError> {
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        if th.kind != kind {
            return Err(EngineError::WrongKind(
                th.name.clone(),
                if kind == Kind::Group { "a contact, not a group" } else { "a group, not a contact" },
            ));
        }
        if th.state != ThreadState::Active {
            return Err(EngineError::NotReady(th.name.clone(), "its conversation is not set up (yet)"));
        }
        Ok(())
    }

    /// Sends `text` to the contact or group `name`. Returns the message's local id (its delivery
    /// state comes as [`EngineEvent::Delivery`]).
    pub fn send<R: CryptoRng>(
        &mut self,
        name: &str,
        text: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<LocalMessageId, EngineError> {
        let t = self.thread_by_name(name)?;
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        if th.state != ThreadState::Active {
            return Err(EngineError::NotReady(
                name.into(),
                "its conversation is not set up yet (waiting for the other side)",
            ));
        }
        if text.len() > wire::MAX_TEXT_LEN {
            return Err(EngineError::Payload(PayloadError::TooLong));
        }
        let conv = self.convs.get(&t).ok_or(EngineError::NotReady(name.into(), "no conversation"))?;
        let epoch = conv.epoch();
        let content = Content::Text {
            seq: th.next_seq,
            epoch,
            prev_epoch: th.last_epoch,
            sent_at_ms: ms(now),
            text: text.into(),
        };
        let hkey = self.history_key(t);
        let recipients = self.send_content(t, &content, Some(hkey.clone()), now, rng)?;
        if let Some(th) = self.threads.get_mut(&t) {
            th.next_seq += 1;
            th.last_epoch = Some(epoch);
        }
        self.save_thread(t);
        let entry = HistoryEntry {
            outgoing: true,
            sender: "me".into(),
            text: text.into(),
            sent_at_ms: ms(now),
            at_ms: ms(now),
            recipients,
            delivered: 0,
            sent: false,
            read: true,
        };
        self.writes.push(Write::Put(NS_HISTORY, hkey.clone(), json(&entry)));
        self.flush()?;
        let id = LocalMessageId(hkey);
        if recipients == 0 {
            self.events.push_back(EngineEvent::Delivery { message: id.clone(), state: Delivery::Delivered });
        }
        Ok(id)
    }

    fn history_key(&mut self, t: [u8; 16]) -> Vec<u8> {
        let n = self.threads.get_mut(&t).map(|th| {
            th.history_next += 1;
            th.history_next
        });
        let mut k = t.to_vec();
        k.extend_from_slice(&n.unwrap_or(0).to_be_bytes());
        k
    }

    /// Encrypts `content` in thread `t`'s conversation and queues it for every other member;
    /// returns how many.
    fn send_content<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        content: &Content,
        history: Option<Vec<u8>>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<u32, EngineError> {
        let conv = self.convs.get_mut(&t).ok_or(EngineError::Corrupt("conversation"))?;
        let out = conv.send(&content.encode())?;
        self.dirty_convs.push(t);
        let n = out.to.len() as u32;
        for m in &out.to {
            self.queue_mls(t, m, Outer::Mls(out.bytes.clone()).encode(), history.clone(), rng);
        }
        let _ = now;
        Ok(n)
    }

    /// Queues outer message `bytes` for member `m` of thread `t` (or keeps it until its route is
    /// known).
    fn queue_mls<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        m: &MemberId,
        bytes: Vec<u8>,
        history: Option<Vec<u8>>,
        rng: &mut R,
    ) {
        let h = hex(m.as_bytes());
        let Some(th) = self.threads.get_mut(&t) else { return };
        match th.roster.get(&h).copied() {
            Some(route) => self.queue_out(route, bytes, history, rng),
            None => {
                th.awaiting.entry(h).or_default().push(bytes);
                self.save_thread(t);
            }
        }
    }

    /// Queues `bytes` for `route`. Acknowledgements come back to the home mailbox, where those of
    /// messages to every contact and a share of the loops land together (docs/EVALUATION.md says
    /// why not the thread's own mailbox).
    ///
    /// Never fails: a message the network cannot carry (more than [`sending::MAX_FRAGMENTS`]
    /// fragments; our texts are bounded far below, but a Welcome carries the group's whole
    /// ratchet tree, and a member can swell a group) is dropped, counted in
    /// [`EngineStats::too_long`]. Only its recipient misses it; stopping would stop every
    /// conversation, again at each restart.
    fn queue_out<R: CryptoRng>(
        &mut self,
        route: RouteRec,
        bytes: Vec<u8>,
        history: Option<Vec<u8>>,
        rng: &mut R,
    ) {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let rec = OutRec { route, bytes, history };
        if let Some(net) = &self.network {
            let g = net.sphinx.geometry().clone();
            let reply = RecipientId(self.settings.home_mailbox);
            if let Err(e) = self.outbox.queue_as(MessageId(id), &g, route.route(), reply, &rec.bytes) {
                tracing::warn!(bytes = rec.bytes.len(), "a message of ours cannot be sent: {e}");
                self.stats.too_long += 1;
                return;
            }
        }
        self.writes.push(Write::Put(NS_OUT, id.to_vec(), json(&rec)));
        self.out_recs.insert(MessageId(id), rec);
    }

    /// Gives thread `t` a fresh mailbox and seal key and tells the other members (a ROUTE inside
    /// the conversation); the mailbox it replaces is still read for [`ROTATION_GRACE_MS`] (one
    /// replaced before is given up now).
    fn rotate_mailbox<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(own) = self.convs.get(&t).filter(|c| c.can_send()).map(|c| *c.own_id().as_bytes()) else {
            return Ok(());
        };
        let mut mailbox = [0u8; 32];
        let mut credential = [0u8; 32];
        rng.fill_bytes(&mut mailbox);
        rng.fill_bytes(&mut credential);
        let seal = SealKey::random(rng).0;
        let older = {
            let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
            if th.state != ThreadState::Active {
                return Ok(());
            }
            let older = th.old.replace(OldMailbox {
                mailbox: th.mailbox,
                credential: th.credential,
                seal: th.seal,
                retire_at_ms: ms(now).saturating_add(ROTATION_GRACE_MS),
            });
            (th.mailbox, th.credential, th.seal) = (mailbox, credential, seal);
            older
        };
        if let Some(o) = older {
            self.retire(o.mailbox, o.credential);
        }
        self.registrations.push(MailboxAccess { mailbox, credential });
        self.save_thread(t);
        let announce =
            Content::Route(RouteEntry { member: own, gateway: self.settings.gateway, mailbox, seal });
        self.send_content(t, &announce, None, now, rng)?;
        Ok(())
    }

    fn save_thread(&mut self, t: [u8; 16]) {
        if let Some(th) = self.threads.get(&t) {
            self.writes.push(Write::Put(NS_THREAD, t.to_vec(), json(th)));
        }
    }

    /// Writes every pending change in one transaction. Every error it returns is fatal
    /// ([`EngineError::is_fatal`]): the pending changes are gone, so the profile no longer
    /// holds what memory does.
    fn flush(&mut self) -> Result<(), EngineError> {
        let mut writes = std::mem::take(&mut self.writes);
        let mut dirty = std::mem::take(&mut self.dirty_convs);
        dirty.sort_unstable();
        dirty.dedup();
        for t in dirty {
            if let Some(c) = self.convs.get(&t) {
                writes.push(Write::Put(NS_CONV, t.to_vec(), c.export()?.to_vec()));
            } else {
                writes.push(Write::Del(NS_CONV, t.to_vec()));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.profile.transaction(|tx: &mut Transaction<'_>| {
            for w in &writes {
                match w {
                    Write::Put(ns, k, v) => tx.put(ns, k, v)?,
                    Write::Del(ns, k) => {
                        tx.delete(ns, k)?;
                    }
                    Write::TakeAnswer(mailbox, bytes) => {
                        // Read and opened just before, in this process: an error other than the
                        // profile's means the saved invitation changed under us. Either way the
                        // transaction's writes are lost: fatal (`EngineError::is_fatal`).
                        invite::take_answer(tx, &RecipientId(*mailbox), bytes).map_err(|e| match e {
                            InviteError::Store(e) => EngineError::Store(e),
                            _ => EngineError::Corrupt("a pending invitation changed under its answer"),
                        })?;
                    }
                }
            }
            Ok::<_, EngineError>(())
        })
    }

    /// The packets due at `now`: one per sending slot (an acknowledgement or a queued fragment
    /// in a payload slot, else a drop; a loop in a loop slot; a drop in a drop slot).
    pub fn poll_transmit<R: CryptoRng>(
        &mut self,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        let t = core_time(now);
        let (Some(net), Some(schedule)) = (&self.network, &mut self.schedule) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for slot in schedule.poll(t, rng) {
            let p = match slot {
                sending::Slot::Payload => {
                    // Our own messages are built with the directory's keys: once the network no
                    // longer accepts them (the next epoch's document is late) they wait for it.
                    // Acknowledgements travel in the SURBs their senders made, and still go.
                    let current = t < net.keys_until;
                    if !current && self.outbox.has_queued() {
                        self.stats.held_for_directory += 1;
                    }
                    // Acknowledgements and our own messages take turns, so that nothing others
                    // send can keep the user from speaking.
                    let acks_first = self.acks_turn || !self.outbox.has_queued() || !current;
                    let mut packet = None;
                    for acks in [acks_first, !acks_first] {
                        packet = if acks {
                            self.acks.next_packet(t, &net.sphinx, rng).inspect(|_| self.stats.sent_acks += 1)
                        } else if !current {
                            None
                        } else {
                            self.outbox
                                .next_packet(t, &net.sphinx, &net.view, rng)
                                .map(|p| p.packet)
                                .inspect(|_| self.stats.sent_real += 1)
                        };
                        if packet.is_some() {
                            self.acks_turn = !acks;
                            break;
                        }
                    }
                    match packet {
                        Some(p) => Some(p),
                        None => {
                            self.stats.sent_cover += 1;
                            sending::cover_packet(&net.sphinx, &net.view, None, rng).ok().map(|p| p.packet)
                        }
                    }
                }
                sending::Slot::Loop => {
                    self.stats.sent_cover += 1;
                    // Half the loops go home, where they blur the acknowledgements; the other
                    // half to one of the conversations' mailboxes, so that what lands in those
                    // is not only data (the gateway cannot tell a message from cover by where
                    // it lands).
                    let live: Vec<([u8; 32], [u8; 32])> = self
                        .threads
                        .values()
                        .filter(|t| t.state != ThreadState::Left)
                        .map(|t| (t.mailbox, t.seal))
                        .collect();
                    let (m, k) = if live.is_empty() || rng.next_u64() & 1 == 0 {
                        (self.settings.home_mailbox, self.settings.home_seal)
                    } else {
                        live[(rng.next_u64() % live.len() as u64) as usize]
                    };
                    sending::cover_packet(&net.sphinx, &net.view, Some((RecipientId(m), SealKey(k))), rng)
                        .ok()
                        .map(|p| p.packet)
                }
                sending::Slot::Drop => {
                    self.stats.sent_cover += 1;
                    sending::cover_packet(&net.sphinx, &net.view, None, rng).ok().map(|p| p.packet)
                }
            };
            // A cover packet fails only when the directory has an empty layer: the network
            // cannot carry anything then, and the slot stays empty (counted).
            match p {
                Some(p) => out.push(p),
                None => self.stats.unsendable += 1,
            }
        }
        self.outbox_events()?;
        Ok(out)
    }

    fn outbox_events(&mut self) -> Result<(), EngineError> {
        let mut any = false;
        while let Some(OutboxEvent::State(id, state)) = self.outbox.poll_event() {
            let Some(rec) = self.out_recs.get(&id) else { continue };
            let history = rec.history.clone();
            if state == Delivery::Delivered {
                self.out_recs.remove(&id);
                self.writes.push(Write::Del(NS_OUT, id.0.to_vec()));
                any = true;
            }
            let Some(hkey) = history else { continue };
            if state == Delivery::Queued {
                continue;
            }
            let Some(raw) = self.profile.get(NS_HISTORY, &hkey)? else { continue };
            let mut e: HistoryEntry = from_json(&raw)?;
            let before = e.delivery();
            match state {
                Delivery::Sent => e.sent = true,
                Delivery::Delivered => {
                    e.sent = true;
                    e.delivered = (e.delivered + 1).min(e.recipients);
                }
                Delivery::Queued => {}
            }
            // Apply pending updates of the same entry in this batch too.
            self.writes.push(Write::Put(NS_HISTORY, hkey.clone(), json(&e)));
            any = true;
            let after = e.delivery();
            if after != before {
                self.events
                    .push_back(EngineEvent::Delivery { message: LocalMessageId(hkey.clone()), state: after });
            }
            // Write now: later events may read the same entry.
            self.flush()?;
        }
        if any {
            self.flush()?;
        }
        Ok(())
    }

    /// Lets time pass: resends overdue fragments and decides MLS epochs whose window is over.
    pub fn handle_timeout<R: CryptoRng>(&mut self, now: SystemTime, rng: &mut R) -> Result<(), EngineError> {
        self.outbox.handle_timeout(core_time(now));
        let r = self.expire_invitations(now);
        self.go_on("expiring invitations", r)?;
        let due: Vec<[u8; 16]> = self
            .convs
            .iter()
            .filter(|(_, c)| c.next_deadline().is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            let Some(c) = self.convs.get_mut(&t) else { continue };
            let out = match c.tick(now) {
                Ok(out) => out,
                Err(MlsError::Internal(e)) => return Err(EngineError::Mls(MlsError::Internal(e))),
                // Not fatal: a conversation we are out of, or a commit that failed to apply.
                Err(_) => {
                    self.stats.rejected += 1;
                    continue;
                }
            };
            self.dirty_convs.push(t);
            let r = self.dispatch(t, out, now, rng);
            self.go_on("a conversation's deadline", r)?;
        }
        self.flush()
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

    /// Drops our invitations that can no longer be answered (their thread, mailbox and cursor),
    /// and once an hour the expired invitation records.
    fn expire_invitations(&mut self, now: SystemTime) -> Result<(), EngineError> {
        let now_ms = ms(now);
        let gone: Vec<[u8; 16]> = self
            .threads
            .values()
            .filter(|t| t.state == ThreadState::Inviting && t.give_up_at_ms.is_some_and(|at| now_ms >= at))
            .map(|t| t.id)
            .collect();
        for id in gone {
            let Some(t) = self.threads.remove(&id) else { continue };
            self.writes.push(Write::Del(NS_THREAD, id.to_vec()));
            self.retire(t.mailbox, t.credential);
            self.events.push_back(EngineEvent::InvitationExpired { name: t.name });
        }
        // Group invitations left unanswered.
        let ttl = GROUP_INVITATION_TTL.as_millis() as u64;
        let stale: Vec<[u8; 16]> = self
            .group_invites
            .iter()
            .filter(|(_, r)| now_ms.saturating_sub(r.received_ms) >= ttl)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.group_invites.remove(&t);
            self.writes.push(Write::Del(NS_GROUP_INVITES, t.to_vec()));
        }
        // Replaced mailboxes whose grace is over.
        let done: Vec<[u8; 16]> = self
            .threads
            .values()
            .filter(|t| t.old.is_some_and(|o| now_ms >= o.retire_at_ms))
            .map(|t| t.id)
            .collect();
        for id in done {
            let Some(o) = self.threads.get_mut(&id).and_then(|t| t.old.take()) else { continue };
            self.save_thread(id);
            self.retire(o.mailbox, o.credential);
        }
        self.flush()?;
        if self.last_forget.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= FORGET_EVERY) {
            self.last_forget = Some(now);
            self.profile.transaction(|tx| invite::forget_expired(tx, UnixTime::from_millis(now_ms)))?;
            self.forget_received(now)?;
        }
        Ok(())
    }

    /// The gateway refused to register `mailbox` for good (another credential holds it). Only
    /// that mailbox fails: an invitation's makes the invitation dead (reported); a conversation's
    /// is replaced by a fresh one, announced to the others; the home mailbox's is counted.
    pub fn registration_refused<R: CryptoRng>(
        &mut self,
        mailbox: [u8; 32],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        self.stats.registrations_refused += 1;
        let Some(t) = self.threads.values().find(|t| t.mailbox == mailbox).map(|t| (t.id, t.state)) else {
            return Ok(());
        };
        match t.1 {
            ThreadState::Inviting => {
                let Some(th) = self.threads.remove(&t.0) else { return Ok(()) };
                self.writes.push(Write::Del(NS_THREAD, t.0.to_vec()));
                self.writes.push(Write::Del(invite::NS_PENDING, mailbox.to_vec()));
                self.cursors.remove(&mailbox);
                self.writes.push(Write::Del(NS_CURSOR, mailbox.to_vec()));
                self.events.push_back(EngineEvent::InvitationRefused { name: th.name });
            }
            ThreadState::Active => self.rotate_mailbox(t.0, now, rng)?,
            _ => {}
        }
        self.flush()
    }

    /// Drops what is remembered of received messages past [`sending::REMEMBER_DELIVERED`]: the
    /// ids of delivered messages (kept so that resent copies are only acknowledged; their
    /// senders have long stopped) and partly received messages that never completed.
    fn forget_received(&mut self, now: SystemTime) -> Result<(), EngineError> {
        for (id, count) in self.inbox.expire(core_time(now)) {
            for i in 0..count {
                let mut k = id.0.to_vec();
                k.extend_from_slice(&i.to_be_bytes());
                k.extend_from_slice(&count.to_be_bytes());
                self.writes.push(Write::Del(NS_FRAG, k));
            }
            self.writes.push(Write::Del(NS_PARTIAL, id.0.to_vec()));
        }
        let cutoff = ms(now).saturating_sub(sending::REMEMBER_DELIVERED.as_millis() as u64);
        for (k, v) in self.profile.scan(NS_SEEN)? {
            let at = <[u8; 8]>::try_from(v.as_slice()).map(u64::from_be_bytes).unwrap_or(0);
            if at < cutoff {
                self.writes.push(Write::Del(NS_SEEN, k));
            }
        }
        self.flush()
    }

    /// Gives up `mailbox`: it is no longer fetched, and is unregistered at the gateway (see
    /// [`Engine::retired`]). Saved with the next flush.
    fn retire(&mut self, mailbox: [u8; 32], credential: [u8; 32]) {
        self.retired.insert(mailbox, credential);
        self.cursors.remove(&mailbox);
        self.writes.push(Write::Put(NS_RETIRED, mailbox.to_vec(), credential.to_vec()));
        self.writes.push(Write::Del(NS_CURSOR, mailbox.to_vec()));
    }

    /// Mailboxes given up (a group left, an invitation expired) that the gateway should forget,
    /// with everything in them; report each with [`Engine::unregistered`].
    pub fn retired(&self) -> Vec<MailboxAccess> {
        self.retired.iter().map(|(m, c)| MailboxAccess { mailbox: *m, credential: *c }).collect()
    }

    /// The gateway forgot `mailbox` (or refused to: it did not know it).
    pub fn unregistered(&mut self, mailbox: [u8; 32]) -> Result<(), EngineError> {
        if self.retired.remove(&mailbox).is_some() {
            self.writes.push(Write::Del(NS_RETIRED, mailbox.to_vec()));
        }
        self.flush()
    }

    /// When [`Engine::handle_timeout`] or [`Engine::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        let from_core = |t: Time| UNIX_EPOCH + Duration::from_micros(t.0);
        [
            self.schedule.as_ref().and_then(Schedule::poll_timeout).map(from_core),
            self.outbox.poll_timeout().map(from_core),
            self.convs.values().filter_map(Conversation::next_deadline).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Items fetched from `mailbox`: processes and saves them, and returns the sequence number up
    /// to which the gateway may delete (everything processed is saved).
    pub fn handle_fetched<R: CryptoRng>(
        &mut self,
        mailbox: [u8; 32],
        items: Vec<Fetched>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<u64, EngineError> {
        let target = if mailbox == self.settings.home_mailbox {
            Target::Home
        } else if let Some(t) = self
            .threads
            .values()
            .find(|t| t.mailbox == mailbox || t.old.is_some_and(|o| o.mailbox == mailbox))
        {
            Target::Thread(t.id)
        } else {
            return Ok(0);
        };
        let mut cursor = self.cursors.get(&mailbox).copied().unwrap_or(0);
        let mut acks = Vec::new();
        for f in items {
            if f.seq <= cursor {
                continue;
            }
            cursor = f.seq;
            self.handle_item(target, mailbox, f.item, now, rng, &mut acks)?;
        }
        self.cursors.insert(mailbox, cursor);
        self.writes.push(Write::Put(NS_CURSOR, mailbox.to_vec(), cursor.to_be_bytes().to_vec()));
        self.flush()?;
        // Only now that the fragments are saved may their acknowledgements leave.
        let t = core_time(now);
        for a in acks {
            self.acks.add(t, a.group, a.surb, a.message_id, a.index);
        }
        self.outbox_events()?;
        Ok(cursor)
    }

    fn handle_item<R: CryptoRng>(
        &mut self,
        target: Target,
        mailbox: [u8; 32],
        item: MailboxItem,
        now: SystemTime,
        rng: &mut R,
        acks: &mut Vec<OwedAck>,
    ) -> Result<(), EngineError> {
        let Some(net) = &self.network else { return Ok(()) };
        let g = net.sphinx.geometry().clone();
        if item.body.len() != g.payload_tag_len() + g.forward_payload_len() {
            // An item of another geometry, or of the format before sealing.
            self.stats.malformed += 1;
            return Ok(());
        }
        // An acknowledgement through one of our SURBs (they point at the home mailbox), else
        // something sealed to this mailbox: data, or one of our loops.
        if self.outbox.handle_reply(&net.sphinx, item.id, &item.body) {
            self.stats.acks += 1;
            return Ok(());
        }
        let key = match target {
            Target::Home => SealKey(self.settings.home_seal),
            Target::Thread(t) => match self.threads.get(&t) {
                Some(th) if th.mailbox == mailbox => SealKey(th.seal),
                Some(th) => match th.old {
                    Some(o) if o.mailbox == mailbox => SealKey(o.seal),
                    _ => return Ok(()),
                },
                None => return Ok(()),
            },
        };
        let Ok(plain) = seal::open(&key, &item.id.0, &item.body) else {
            // Not sealed to this mailbox: the reply to a SURB we no longer wait for (its message
            // was delivered through another), or garbage.
            return Ok(());
        };
        let payload = match Payload::decode(&g, &plain) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return Ok(());
            }
        };
        let Payload::Data { surb, message_id, index, count, data } = payload else {
            self.stats.cover += 1;
            return Ok(());
        };
        let Target::Thread(t) = target else {
            // Data in the home mailbox: nobody was given it.
            self.stats.malformed += 1;
            return Ok(());
        };
        let group = match self.threads.get(&t).map(|th| th.kind) {
            Some(Kind::Contact) => AckGroup::Mailbox(mailbox),
            _ => AckGroup::Message(message_id),
        };
        let owed = OwedAck { group, surb, message_id, index };
        if self.profile.get(NS_SEEN, &message_id.0)?.is_some() {
            self.stats.duplicates += 1;
            acks.push(owed);
            return Ok(());
        }
        let mut fkey = message_id.0.to_vec();
        fkey.extend_from_slice(&index.to_be_bytes());
        fkey.extend_from_slice(&count.to_be_bytes());
        let first = self.inbox.partial_since(&message_id).is_none();
        match self.inbox.handle(core_time(now), t, message_id, index, count, data.clone()) {
            Received::Partial => {
                if first {
                    let mut v = ms(now).to_be_bytes().to_vec();
                    v.extend_from_slice(&t);
                    self.writes.push(Write::Put(NS_PARTIAL, message_id.0.to_vec(), v));
                }
                self.writes.push(Write::Put(NS_FRAG, fkey, data));
                acks.push(owed);
            }
            Received::Duplicate => {
                self.stats.duplicates += 1;
                acks.push(owed);
            }
            Received::Refused => self.stats.deferred += 1,
            Received::Message(id, bytes) => {
                let r = self.handle_outer(t, &bytes, now, rng);
                // One whose handling failed part-way (not fatally) is taken as one MLS refuses:
                // counted, acknowledged, and what it changed saved with the rest.
                let taken = self.go_on("a received message", r)?.unwrap_or(true);
                if !taken {
                    // Not taken now: neither kept nor acknowledged; its sender sends the last
                    // fragment again.
                    self.inbox.refuse(id, index);
                    return Ok(());
                }
                self.inbox.commit(id, core_time(now));
                for i in 0..count {
                    let mut k = id.0.to_vec();
                    k.extend_from_slice(&i.to_be_bytes());
                    k.extend_from_slice(&count.to_be_bytes());
                    self.writes.push(Write::Del(NS_FRAG, k));
                }
                self.writes.push(Write::Del(NS_PARTIAL, id.0.to_vec()));
                self.writes.push(Write::Put(NS_SEEN, id.0.to_vec(), ms(now).to_be_bytes().to_vec()));
                acks.push(owed);
            }
        }
        Ok(())
    }

    fn handle_outer<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        bytes: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<bool, EngineError> {
        let Ok(outer) = Outer::decode(bytes) else {
            self.stats.malformed += 1;
            return Ok(true);
        };
        let Some(th) = self.threads.get(&t) else { return Ok(true) };
        match (outer, th.state) {
            (Outer::Answer(answer), ThreadState::Inviting) => {
                self.on_answer(t, answer, now, rng).map(|()| true)
            }
            (Outer::Welcome(welcome), ThreadState::Joining) if th.kind == Kind::Contact => {
                self.on_contact_welcome(t, &welcome, now, rng).map(|()| true)
            }
            (Outer::Mls(m), ThreadState::Joining) => {
                let Some(th) = self.threads.get_mut(&t) else { return Ok(true) };
                let held: usize = th.early.iter().map(Vec::len).sum();
                if th.early.len() >= MAX_EARLY || held + m.len() > MAX_EARLY_BYTES {
                    // Not now: unacknowledged, it is sent again.
                    self.stats.deferred += 1;
                    return Ok(false);
                }
                th.early.push(m);
                self.save_thread(t);
                Ok(true)
            }
            (Outer::Mls(m), ThreadState::Active) => {
                let Some(conv) = self.convs.get_mut(&t) else { return Ok(true) };
                match conv.receive(&m, now) {
                    Ok(out) => {
                        self.dirty_convs.push(t);
                        self.dispatch(t, out, now, rng).map(|()| true)
                    }
                    Err(MlsError::Internal(e)) => Err(EngineError::Mls(MlsError::Internal(e))),
                    Err(MlsError::BufferFull) => {
                        self.stats.deferred += 1;
                        Ok(false)
                    }
                    Err(_) => {
                        self.stats.rejected += 1;
                        Ok(true)
                    }
                }
            }
            _ => {
                self.stats.rejected += 1;
                Ok(true)
            }
        }
    }

    fn on_answer<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        answer: Vec<u8>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(th) = self.threads.get(&t) else { return Ok(()) };
        let Some(saved) = self.profile.get(invite::NS_PENDING, &th.mailbox)? else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let pending = PendingInvitation::decode(&saved)?;
        let Ok(a) = pending.open_answer(&answer) else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let Ok(member) = mls::key_package_member(&a.key_package) else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let mut conv = Conversation::create(&self.config.mls)?;
        let out = match conv.add(&a.key_package, now) {
            // Alone in the conversation, the add is decided at once: the accepter is in it, or
            // its KeyPackage was refused.
            Ok(o) if conv.members().contains(&member) => o,
            Ok(_) => {
                self.stats.rejected += 1;
                return Ok(());
            }
            Err(MlsError::Internal(e)) => return Err(EngineError::Mls(MlsError::Internal(e))),
            Err(_) => {
                self.stats.rejected += 1;
                return Ok(());
            }
        };
        let mailbox = self.threads.get(&t).map(|th| th.mailbox).unwrap_or_default();
        self.writes.push(Write::TakeAnswer(mailbox, answer));
        let name = {
            let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
            th.state = ThreadState::Active;
            th.roster.insert(
                hex(member.as_bytes()),
                RouteRec { gateway: a.gateway.node_id().0, mailbox: a.mailbox.0, seal: a.seal.0 },
            );
            th.join_epoch = 0;
            th.name.clone()
        };
        self.convs.insert(t, conv);
        self.dirty_convs.push(t);
        self.save_thread(t);
        self.dispatch(t, out, now, rng)?;
        self.events.push_back(EngineEvent::ContactReady { name });
        // The invitation's mailbox and its key (derived from the link) are known to whoever saw
        // the link: the conversation goes on in a fresh mailbox, told inside MLS.
        self.rotate_mailbox(t, now, rng)
    }

    fn on_contact_welcome<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        welcome: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(saved) = self.profile.get(NS_JOIN, &t)? else { return Ok(()) };
        let join = PendingJoin::import(&saved)?;
        let (conv, out) = match join.join(welcome, &self.config.mls) {
            Ok(x) => x,
            Err(MlsError::Internal(e)) => return Err(EngineError::Mls(MlsError::Internal(e))),
            Err(_) => {
                self.stats.rejected += 1;
                return Ok(());
            }
        };
        let own = conv.own_id();
        let others: Vec<MemberId> = conv.members().into_iter().filter(|m| *m != own).collect();
        let epoch = conv.epoch();
        let name = {
            let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
            if let (Some(route), [peer]) = (th.peer_route, others.as_slice()) {
                th.roster.insert(hex(peer.as_bytes()), route);
            }
            th.state = ThreadState::Active;
            th.join_epoch = epoch;
            th.name.clone()
        };
        self.convs.insert(t, conv);
        self.dirty_convs.push(t);
        self.writes.push(Write::Del(NS_JOIN, t.to_vec()));
        self.save_thread(t);
        // The join's own output only reports the epoch.
        let _ = out;
        self.events.push_back(EngineEvent::ContactReady { name });
        self.replay_early(t, now, rng)?;
        // Our mailbox and its key travelled in the answer, which whoever saw the invitation link
        // can open: the conversation goes on in a fresh mailbox, told inside MLS.
        self.rotate_mailbox(t, now, rng)
    }

    /// Handles the messages that arrived before we joined thread `t`.
    fn replay_early<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let early = match self.threads.get_mut(&t) {
            Some(th) => std::mem::take(&mut th.early),
            None => return Ok(()),
        };
        if early.is_empty() {
            return Ok(());
        }
        self.save_thread(t);
        for m in early {
            let Some(conv) = self.convs.get_mut(&t) else { return Ok(()) };
            match conv.receive(&m, now) {
                Ok(out) => {
                    self.dirty_convs.push(t);
                    self.dispatch(t, out, now, rng)?;
                }
                Err(MlsError::Internal(e)) => return Err(EngineError::Mls(MlsError::Internal(e))),
                Err(_) => self.stats.rejected += 1,
            }
        }
        Ok(())
    }

    /// Carries out what an MLS call produced in thread `t`.
    fn dispatch<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        out: Output,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        for o in out.outgoing {
            if o.kind == OutgoingKind::Welcome {
                for m in &o.to {
                    self.deliver_welcome(t, m, &o.bytes, now, rng)?;
                }
                continue;
            }
            for m in &o.to {
                self.queue_mls(t, m, Outer::Mls(o.bytes.clone()).encode(), None, rng);
            }
        }
        for e in out.events {
            self.on_mls_event(t, e, now, rng)?;
        }
        Ok(())
    }

    fn deliver_welcome<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        m: &MemberId,
        welcome: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(th) = self.threads.get(&t) else { return Ok(()) };
        let h = hex(m.as_bytes());
        if th.kind == Kind::Contact {
            if let Some(route) = th.roster.get(&h).copied() {
                self.queue_out(route, Outer::Welcome(welcome.to_vec()).encode(), None, rng);
            }
            return Ok(());
        }
        let Some((contact, token)) = th.welcome_to.get(&h).copied() else { return Ok(()) };
        let Some(route) = th.roster.get(&h).copied() else { return Ok(()) };
        let name = th.name.clone();
        let conv = self.convs.get(&t).ok_or(EngineError::Corrupt("conversation"))?;
        let own = conv.own_id();
        let mut roster: Vec<RouteEntry> =
            th.roster.iter().filter_map(|(k, r)| Some(r.entry(unhex32(k)?))).collect();
        roster.push(RouteEntry {
            member: *own.as_bytes(),
            gateway: self.settings.gateway,
            mailbox: th.mailbox,
            seal: th.seal,
        });
        let content = Content::GroupWelcome { token, name, welcome: welcome.to_vec(), roster };
        if self.threads.get(&contact).is_some_and(|c| c.state == ThreadState::Active)
            && self.convs.get(&contact).is_some_and(Conversation::can_send)
        {
            self.send_content(contact, &content, None, now, rng)?;
        }
        if let Some(th) = self.threads.get_mut(&t) {
            th.welcome_to.remove(&h);
        }
        self.save_thread(t);
        // Tell the group where the newcomer receives, unless we are leaving it (our commit that
        // adds the newcomer won after we asked to leave): then the newcomer's own ROUTE, sent as
        // it joins, tells them.
        if self.convs.get(&t).is_some_and(Conversation::can_send) {
            let announce = Content::Route(route.entry(*m.as_bytes()));
            self.send_content(t, &announce, None, now, rng)?;
        }
        Ok(())
    }

    fn on_mls_event<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        e: MlsEvent,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        match e {
            MlsEvent::Message { sender, bytes } => match Content::decode(&bytes) {
                Ok(c) => self.on_content(t, sender, c, now, rng),
                Err(_) => {
                    self.stats.malformed += 1;
                    Ok(())
                }
            },
            MlsEvent::EpochChanged { added, removed, .. } => {
                let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                for m in &removed {
                    let h = hex(m.as_bytes());
                    th.roster.remove(&h);
                    th.awaiting.remove(&h);
                }
                let (kind, name) = (th.kind, th.name.clone());
                self.save_thread(t);
                // (Our own removal comes as `Removed`; a commit that removes us may list us here.)
                let own = self.convs.get(&t).map(Conversation::own_id);
                let someone_left = !removed.is_empty() && !removed.iter().any(|m| Some(*m) == own);
                if kind == Kind::Group && (!added.is_empty() || !removed.is_empty()) {
                    let added = added.iter().map(|m| self.label(t, m)).collect();
                    let removed = removed.iter().map(|m| self.label(t, m)).collect();
                    self.events.push_back(EngineEvent::GroupChanged { name, added, removed });
                }
                // Whoever left knows our mailbox and its seal key: a fresh pair, told only to
                // those who stay (we are still a member: our own removal is `Removed`).
                if someone_left {
                    self.rotate_mailbox(t, now, rng)?;
                }
                Ok(())
            }
            MlsEvent::AddRefused { member } => {
                // A contact's KeyPackage the group could not take after all: that add is over,
                // and what was kept for the newcomer goes.
                self.stats.rejected += 1;
                let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                let h = hex(member.as_bytes());
                th.welcome_to.remove(&h);
                th.roster.remove(&h);
                th.labels.remove(&h);
                th.awaiting.remove(&h);
                self.save_thread(t);
                Ok(())
            }
            MlsEvent::Removed => {
                let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                th.state = ThreadState::Left;
                th.awaiting.clear();
                th.roster.clear();
                let name = th.name.clone();
                let (mailbox, credential) = (th.mailbox, th.credential);
                let old = th.old.take();
                self.save_thread(t);
                self.retire(mailbox, credential);
                if let Some(o) = old {
                    self.retire(o.mailbox, o.credential);
                }
                // Out of the conversation: its keys go (P7); the history stays.
                self.convs.remove(&t);
                self.dirty_convs.push(t);
                self.events.push_back(EngineEvent::Left { name });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_content<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        sender: MemberId,
        c: Content,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let kind = self.threads.get(&t).map(|th| th.kind);
        match c {
            Content::Text { seq, epoch, prev_epoch, sent_at_ms, text } => {
                self.on_text(t, sender, seq, epoch, prev_epoch, sent_at_ms, text, now);
                Ok(())
            }
            Content::Route(r) if kind.is_some() => {
                // A member's own announcement sets its route; anyone else's (the adder telling
                // the group where a newcomer receives) only fills a route not known yet. So no
                // member can move another's route, or give others a seal key it chose, once the
                // member has spoken for itself.
                let own = sender.as_bytes() == &r.member;
                let h = hex(&r.member);
                let waiting = {
                    let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                    let known = th.roster.contains_key(&h);
                    let is_self = self.convs.get(&t).is_some_and(|c| c.own_id().as_bytes() == &r.member);
                    if r.seal == [0u8; 32] || is_self || (known && !own) {
                        self.stats.rejected += 1;
                        return Ok(());
                    }
                    th.roster.insert(h.clone(), RouteRec::of_entry(&r));
                    th.awaiting.remove(&h).unwrap_or_default()
                };
                self.save_thread(t);
                let route = RouteRec::of_entry(&r);
                for b in waiting {
                    self.queue_out(route, b, None, rng);
                }
                Ok(())
            }
            Content::GroupInvite { token, name } if kind == Some(Kind::Contact) => {
                self.on_group_invite(t, token, &name, now);
                Ok(())
            }
            Content::GroupJoin { token, gateway, mailbox, seal, key_package }
                if kind == Some(Kind::Contact) =>
            {
                let key = hex(&token);
                let Some(g) =
                    self.threads.values().find(|g| g.pending_adds.get(&key) == Some(&t)).map(|g| g.id)
                else {
                    self.stats.rejected += 1;
                    return Ok(());
                };
                let Ok(member) = mls::key_package_member(&key_package) else {
                    self.stats.rejected += 1;
                    return Ok(());
                };
                let contact_name = self.threads.get(&t).map(|c| c.name.clone()).unwrap_or_default();
                let Some(conv) = self.convs.get_mut(&g) else { return Ok(()) };
                let out = match conv.add(&key_package, now) {
                    Ok(o) => o,
                    Err(MlsError::Internal(e)) => return Err(EngineError::Mls(MlsError::Internal(e))),
                    Err(_) => {
                        self.stats.rejected += 1;
                        return Ok(());
                    }
                };
                self.dirty_convs.push(g);
                if let Some(th) = self.threads.get_mut(&g) {
                    let h = hex(member.as_bytes());
                    th.pending_adds.remove(&key);
                    th.roster.insert(h.clone(), RouteRec { gateway, mailbox, seal });
                    th.labels.insert(h.clone(), contact_name);
                    th.welcome_to.insert(h, (t, token));
                }
                self.save_thread(g);
                self.dispatch(g, out, now, rng)
            }
            Content::GroupWelcome { token, name: _, welcome, roster } if kind == Some(Kind::Contact) => {
                let Some(g) = self
                    .threads
                    .values()
                    .find(|g| g.join_token == Some(token) && g.state == ThreadState::Joining)
                    .map(|g| g.id)
                else {
                    self.stats.rejected += 1;
                    return Ok(());
                };
                let Some(saved) = self.profile.get(NS_JOIN, &g)? else { return Ok(()) };
                let join = PendingJoin::import(&saved)?;
                let (conv, out) = match join.join(&welcome, &self.config.mls) {
                    Ok(x) => x,
                    Err(MlsError::Internal(e)) => return Err(EngineError::Mls(MlsError::Internal(e))),
                    Err(_) => {
                        self.stats.rejected += 1;
                        return Ok(());
                    }
                };
                let own = *conv.own_id().as_bytes();
                let epoch = conv.epoch();
                let committer = out.events.iter().find_map(|e| match e {
                    MlsEvent::EpochChanged { committer, .. } => Some(*committer),
                    _ => None,
                });
                let contact_name = self.threads.get(&t).map(|c| c.name.clone()).unwrap_or_default();
                let name = {
                    let Some(th) = self.threads.get_mut(&g) else { return Ok(()) };
                    for r in roster.iter().filter(|r| r.member != own && r.seal != [0u8; 32]) {
                        th.roster.insert(hex(&r.member), RouteRec::of_entry(r));
                    }
                    if let Some(c) = committer {
                        th.labels.insert(hex(c.as_bytes()), contact_name);
                    }
                    th.state = ThreadState::Active;
                    th.join_epoch = epoch;
                    th.join_token = None;
                    th.name.clone()
                };
                self.convs.insert(g, conv);
                self.dirty_convs.push(g);
                self.writes.push(Write::Del(NS_JOIN, g.to_vec()));
                self.save_thread(g);
                self.events.push_back(EngineEvent::GroupJoined { name });
                self.replay_early(g, now, rng)?;
                // We speak for ourselves: our own ROUTE is the one the members keep, whatever the
                // adder told them. (Unless what waited for the Welcome already took us out.)
                let Some(th) = self.threads.get(&g) else { return Ok(()) };
                if !self.convs.get(&g).is_some_and(Conversation::can_send) {
                    return Ok(());
                }
                let announce = Content::Route(RouteEntry {
                    member: own,
                    gateway: self.settings.gateway,
                    mailbox: th.mailbox,
                    seal: th.seal,
                });
                self.send_content(g, &announce, None, now, rng)?;
                Ok(())
            }
            _ => {
                self.stats.rejected += 1;
                Ok(())
            }
        }
    }

    /// A contact invites us into a group: kept for the user's answer, within bounds.
    fn on_group_invite(&mut self, contact: [u8; 16], token: [u8; 16], name: &str, now: SystemTime) {
        if self.group_invites.contains_key(&token)
            || self.threads.values().any(|g| g.join_token == Some(token))
        {
            return;
        }
        let from_contact = self.group_invites.values().filter(|i| i.contact == contact).count();
        if from_contact >= MAX_GROUP_INVITATIONS_PER_CONTACT
            || self.group_invites.len() >= MAX_GROUP_INVITATIONS
        {
            self.stats.rejected += 1;
            return;
        }
        let name: String = name.chars().filter(|c| !c.is_control()).take(MAX_LOCAL_NAME).collect();
        let name = if name.trim().is_empty() { "group".to_owned() } else { name.trim().to_owned() };
        let rec = GroupInvitationRec { contact, name: name.clone(), received_ms: ms(now) };
        self.writes.push(Write::Put(NS_GROUP_INVITES, token.to_vec(), json(&rec)));
        self.group_invites.insert(token, rec);
        let from = self.threads.get(&contact).map(|c| c.name.clone()).unwrap_or_default();
        self.events.push_back(EngineEvent::GroupInvitation { id: hex(&token), from, group: name });
    }

    /// The group invitations waiting for the user's answer, oldest first.
    pub fn group_invitations(&self) -> Vec<GroupInvitationInfo> {
        let mut v: Vec<GroupInvitationInfo> = self
            .group_invites
            .iter()
            .map(|(token, r)| GroupInvitationInfo {
                id: hex(token),
                from: self.threads.get(&r.contact).map(|c| c.name.clone()).unwrap_or_default(),
                group: r.name.clone(),
                received_at: UNIX_EPOCH + Duration::from_millis(r.received_ms),
            })
            .collect();
        v.sort_by_key(|i| i.received_at);
        v
    }

    fn group_invitation(&self, id: &str) -> Result<[u8; 16], EngineError> {
        let id = id.trim().to_ascii_lowercase();
        let mut found = self.group_invites.keys().filter(|t| !id.is_empty() && hex(&t[..]).starts_with(&id));
        match (found.next(), found.next()) {
            (Some(t), None) => Ok(*t),
            _ => Err(EngineError::UnknownInvitation(id)),
        }
    }

    /// Accepts group invitation `id` (or a unique prefix of it): joins the group under `name`
    /// (the suggested name if `None`, with a number if it is taken). Returns the local name.
    pub fn accept_group_invitation<R: CryptoRng>(
        &mut self,
        id: &str,
        name: Option<&str>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<String, EngineError> {
        let token = self.group_invitation(id)?;
        let Some(rec) = self.group_invites.get(&token).cloned() else {
            return Err(EngineError::UnknownInvitation(id.into()));
        };
        let contact_name = self.threads.get(&rec.contact).map(|c| c.name.clone()).unwrap_or_default();
        if self.threads.get(&rec.contact).is_none_or(|c| c.state != ThreadState::Active) {
            return Err(EngineError::NotReady(contact_name, "the contact who invited you is not active"));
        }
        let local = match name {
            Some(n) => {
                check_name(n)?;
                if self.name_used(n) {
                    return Err(EngineError::NameTaken(n.into()));
                }
                n.to_owned()
            }
            None => {
                // The suggested name if free, else with a number.
                let base: String = rec.name.chars().take(MAX_LOCAL_NAME - 4).collect();
                let mut local = base.clone();
                let mut i = 2;
                while self.name_used(&local) {
                    local = format!("{base}-{i}");
                    i += 1;
                }
                local
            }
        };
        let (join, key_package) = PendingJoin::new()?;
        self.join_group_as(token, rec.contact, local, now, rng, &join, key_package)
    }

    /// Joins the group of invitation `token` from `contact` as `local`, with the conversation's
    /// identity `join` and its KeyPackage made by the caller (`attacks` hands in one of its own).
    #[allow(clippy::too_many_arguments)]
    fn join_group_as<R: CryptoRng>(
        &mut self,
        token: [u8; 16],
        contact: [u8; 16],
        local: String,
        now: SystemTime,
        rng: &mut R,
        join: &PendingJoin,
        key_package: Vec<u8>,
    ) -> Result<String, EngineError> {
        let mut g = self.new_thread(local.clone(), Kind::Group, ThreadState::Joining, rng);
        g.join_token = Some(token);
        let content = Content::GroupJoin {
            token,
            gateway: self.settings.gateway,
            mailbox: g.mailbox,
            seal: g.seal,
            key_package,
        };
        self.registrations.push(MailboxAccess { mailbox: g.mailbox, credential: g.credential });
        self.writes.push(Write::Put(NS_JOIN, g.id.to_vec(), join.export()?.to_vec()));
        self.writes.push(Write::Put(NS_THREAD, g.id.to_vec(), json(&g)));
        self.writes.push(Write::Del(NS_GROUP_INVITES, token.to_vec()));
        self.group_invites.remove(&token);
        self.threads.insert(g.id, g);
        self.send_content(contact, &content, None, now, rng)?;
        self.flush()?;
        Ok(local)
    }

    /// Declines group invitation `id` (or a unique prefix): it is forgotten, and the contact is
    /// told nothing (to them it looks as if it was not answered yet).
    pub fn decline_group_invitation(&mut self, id: &str) -> Result<(), EngineError> {
        let token = self.group_invitation(id)?;
        self.group_invites.remove(&token);
        self.writes.push(Write::Del(NS_GROUP_INVITES, token.to_vec()));
        self.flush()
    }

    #[allow(clippy::too_many_arguments)]
    fn on_text(
        &mut self,
        t: [u8; 16],
        sender: MemberId,
        seq: u64,
        epoch: u64,
        prev_epoch: Option<u64>,
        sent_at_ms: u64,
        text: String,
        now: SystemTime,
    ) {
        if seq == u64::MAX {
            // No sender counts that far; the number after it would not exist. (So every `seq`
            // taken, held or expected next below is at most `u64::MAX - 1`, and `+ 1` fits.)
            self.stats.malformed += 1;
            return;
        }
        let h = hex(sender.as_bytes());
        let label = self.label(t, &sender);
        let mut deliver = Vec::new();
        let thread_name = {
            let Some(th) = self.threads.get_mut(&t) else { return };
            let join_epoch = th.join_epoch;
            let st = th.recv.entry(h).or_default();
            let first_readable = prev_epoch.is_none_or(|p| p < join_epoch);
            match st.next {
                Some(n) if seq < n => return,
                Some(n) if seq > n => {
                    st.held.insert(seq, (epoch, prev_epoch, sent_at_ms, text));
                }
                None if !first_readable => {
                    st.held.insert(seq, (epoch, prev_epoch, sent_at_ms, text));
                }
                _ => {
                    deliver.push((sent_at_ms, text));
                    st.next = Some(seq + 1);
                }
            }
            // Drain what is now in order.
            while let Some(n) = st.next {
                let Some((_, _, at, text)) = st.held.remove(&n) else { break };
                deliver.push((at, text));
                st.next = Some(n + 1);
            }
            th.name.clone()
        };
        self.save_thread(t);
        for (at, text) in deliver {
            let hkey = self.history_key(t);
            let entry = HistoryEntry {
                outgoing: false,
                sender: label.clone(),
                text: text.clone(),
                sent_at_ms: at,
                at_ms: ms(now),
                recipients: 0,
                delivered: 0,
                sent: false,
                read: false,
            };
            self.writes.push(Write::Put(NS_HISTORY, hkey, json(&entry)));
            self.events.push_back(EngineEvent::Message {
                thread: thread_name.clone(),
                sender: label.clone(),
                text,
                sent_at: UNIX_EPOCH + Duration::from_millis(at),
                received_at: now,
            });
        }
        self.save_thread(t);
    }

    /// Every contact and group.
    pub fn threads(&self) -> Result<Vec<ThreadInfo>, EngineError> {
        let history = self.profile.scan(NS_HISTORY)?;
        let mut unread: HashMap<[u8; 16], usize> = HashMap::new();
        for (k, v) in &history {
            let Ok(t) = <[u8; 16]>::try_from(&k[..16.min(k.len())]) else { continue };
            let e: HistoryEntry = from_json(v)?;
            if !e.outgoing && !e.read {
                *unread.entry(t).or_default() += 1;
            }
        }
        Ok(self
            .threads
            .values()
            .map(|t| ThreadInfo {
                name: t.name.clone(),
                group: t.kind == Kind::Group,
                state: t.state.name(),
                members: self.member_labels(t.id),
                unread: unread.get(&t.id).copied().unwrap_or(0),
            })
            .collect())
    }

    /// The history of `name` (oldest first).
    pub fn history(&self, name: &str) -> Result<Vec<(LocalMessageId, HistoryEntry)>, EngineError> {
        let t = self.thread_by_name(name)?;
        let mut out = Vec::new();
        for (k, v) in self.profile.scan(NS_HISTORY)? {
            if k.starts_with(&t) {
                out.push((LocalMessageId(k.clone()), from_json(&v)?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The unread incoming messages of every thread (thread name, entry), oldest first per
    /// thread, and marks them read.
    pub fn take_unread(&mut self) -> Result<Vec<(String, HistoryEntry)>, EngineError> {
        let mut out = Vec::new();
        let mut rows = self.profile.scan(NS_HISTORY)?;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in rows {
            let mut e: HistoryEntry = from_json(&v)?;
            if e.outgoing || e.read {
                continue;
            }
            let Ok(t) = <[u8; 16]>::try_from(&k[..16.min(k.len())]) else { continue };
            let name = self.threads.get(&t).map(|t| t.name.clone()).unwrap_or_default();
            e.read = true;
            self.writes.push(Write::Put(NS_HISTORY, k.clone(), json(&e)));
            out.push((name, e));
        }
        self.flush()?;
        Ok(out)
    }

    /// The delivery state of one of our messages.
    pub fn delivery(&self, id: &LocalMessageId) -> Result<Option<Delivery>, EngineError> {
        Ok(match self.profile.get(NS_HISTORY, &id.0)? {
            Some(v) => Some(from_json::<HistoryEntry>(&v)?.delivery()),
            None => None,
        })
    }

    /// How many of our messages are not yet delivered (in the outbox).
    pub fn undelivered(&self) -> usize {
        self.out_recs.len()
    }
}

#[cfg(test)]
mod tests;
