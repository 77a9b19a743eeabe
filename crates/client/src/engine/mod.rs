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
//! ROUTE inside the conversation (which whoever left cannot read). Each replaced mailbox is still
//! read for [`ROTATION_GRACE_MS`], for what was sent before the news arrived, then retired (a
//! thread reads at most [`MAX_REPLACED`] of them; past it the oldest goes
//! early, counted). A member's own ROUTE moves what we have queued for that member (each queued
//! message names the thread and member it is for) to the new mailbox, due again at once
//! (`Outbox::reroute`), so a sender away longer than the grace loses nothing, and no member's
//! announcement can move what waits for another. A ROUTE is refused for a non-member, for one of
//! our own mailboxes, or for a mailbox its member moved away from (an old ROUTE arriving late).
//! What waits for a member who left is dropped, and no longer counts against its message's
//! ticks.
//!
//! # Order
//! Texts are delivered exactly once (the inbox de-duplicates by message id, MLS refuses a reused
//! generation) and in order per sender: see [`wire`] for the rule.
//!
//! # Where things are
//! One `impl Engine` block per concern, in the order a message travels:
//!
//! | module | what it holds |
//! |---|---|
//! | `types`, `error`, `stats` | what callers see: events, configuration, listings; [`EngineError`] and its rule [`EngineError::is_fatal`]; [`EngineStats`] |
//! | `rows`, `persist` | what stays in the profile (namespaces, saved records and their format) and how: opening a profile, one transaction per change (`flush`) |
//! | `network` | the directory document in use, the rates, until when its keys carry our packets |
//! | `threads`, `mailboxes` | finding and making threads; registering, rotating and retiring mailboxes |
//! | `contacts`, `groups` | the user's commands and the protocols behind them: invitation → answer → Welcome; GROUP_INVITE → GROUP_JOIN → GROUP_WELCOME, removals, leaving |
//! | `send` | a text into a conversation, MLS output into the outbox, the packet of each sending slot |
//! | `files` | files and voice notes: offers and answers in the conversation, transfers beside it (docs/ATTACHMENTS.md) |
//! | `receive` | fetched items, reassembly, MLS input, routes, texts in order |
//! | `timers`, `queries` | what time does (resends, MLS decisions, expiries); what the user reads |
//! | [`safety`], `verify` | the safety code of a pair of members (IO-free); the user's marks of codes compared |
//! | [`wire`] | the formats of what a conversation carries |

#[cfg(any(test, feature = "attacks"))]
pub mod attacks;
mod contacts;
mod error;
mod files;
mod groups;
mod mailboxes;
mod network;
mod persist;
mod queries;
mod receive;
mod rows;
pub mod safety;
mod send;
mod settings;
mod stats;
mod threads;
mod timers;
mod types;
mod verify;
pub mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::SystemTime;

use crate::gateway::MailboxAccess;
use crate::mls::Conversation;
use crate::store::Profile;
use qanat_mixnet::sending::acks::AckQueue;
use qanat_mixnet::sending::{Inbox, MessageId, Outbox, Schedule, TrafficProfile};

pub use error::EngineError;
pub use files::{
    AUTO_ACCEPT_BYTES, DEFAULT_MAX_FILE_BYTES, FAST_FACTOR, FileEstimate, FileInfo, FileSpec,
    MAX_OFFERS_PER_THREAD, MAX_RECEIVING, OFFER_TTL, RECEIVE_TTL, UPLOAD_IDLE,
};
pub use groups::{GROUP_INVITATION_TTL, MAX_GROUP_INVITATIONS, MAX_GROUP_INVITATIONS_PER_CONTACT};
pub use mailboxes::{MAX_REPLACED, ROTATION_GRACE_MS};
pub use receive::{MAX_EARLY, MAX_EARLY_BYTES};
pub use rows::ENGINE_FORMAT;
pub use send::FAREWELL;
pub use settings::{
    DEFAULT_LOCK_TIMEOUT_SECS, LANGUAGES, LOCK_TIMEOUT_SECS, NetworkInfo, ProfileCost, UiSettings,
};
pub use stats::EngineStats;
pub use types::{
    EngineConfig, EngineEvent, FileRef, GroupInvitationInfo, HistoryEntry, LocalMessageId, ThreadInfo,
};

use network::Network;
use persist::Write;
use rows::{GroupInvitationRec, OutRec, Settings, Thread};

/// Longest local name of a contact or group.
pub const MAX_LOCAL_NAME: usize = 64;

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
    /// Mailboxes to unregister at the gateway: mailbox → credential (saved in `rows::NS_RETIRED`).
    retired: BTreeMap<[u8; 32], [u8; 32]>,
    /// When expired invitation records were last dropped.
    last_forget: Option<SystemTime>,
    /// Group invitations waiting for the user's answer, by token.
    group_invites: BTreeMap<[u8; 16], GroupInvitationRec>,
    /// Files we send and files offered to us.
    files: files::Files,
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

fn check_name(name: &str) -> Result<(), EngineError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_LOCAL_NAME || name.chars().any(char::is_control) || name.trim() != name {
        return Err(EngineError::InvalidName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
