//! The commands a user gives the client (`qanat invite`, `send`, ...), as requests and responses
//! that the running client answers, or that a command answers itself on the profile when no
//! client runs ([`execute`] either way).
//!
//! On the control socket (`HOME/control.sock`, a Unix socket only the profile's owner can open)
//! each request is one line of JSON and each response one line of JSON.
//!
//! (Over 800 lines on purpose: this file is the API every front end uses, the terminal's and the
//! app's; `Request` and `Response` with their documented fields are most of it, and keeping every
//! command and its answer in one place is what lets a reader see all a user can do.)

use std::time::SystemTime;

use qanat_pki::UnixMillis;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use qanat_mixnet::sending::{Delivery, TrafficProfile};

use crate::engine::{Engine, EngineError, EngineEvent, HistoryEntry, LocalMessageId, ProfileCost};
use crate::invite::Invitation;

/// File name of the control socket in the profile directory.
pub const SOCKET_FILE: &str = "control.sock";

/// A command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The client's state.
    Status,
    /// Make an invitation for a contact to be called `name`.
    Invite {
        /// The local name.
        name: String,
    },
    /// Accept an invitation link; the inviter is called `name` here.
    Accept {
        /// The link.
        link: String,
        /// The local name.
        name: String,
    },
    /// Contacts and groups.
    Contacts,
    /// Send a text to a contact or group.
    Send {
        /// The contact or group.
        to: String,
        /// The text.
        text: String,
    },
    /// Unread messages (marked read).
    Inbox,
    /// A conversation's history, oldest first.
    History {
        /// The contact or group.
        name: String,
        /// Only messages older than this one (its `MessageOut::id`): to page back.
        #[serde(default)]
        before: Option<String>,
        /// Only the newest this many (of those older than `before`).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Mark a conversation's incoming messages read.
    MarkRead {
        /// The contact or group.
        name: String,
    },
    /// The invitation of a contact still waiting for its answer, again.
    Invitation {
        /// The contact.
        name: String,
    },
    /// Switch traffic profile.
    SetTraffic {
        /// `standard` or `metered`.
        traffic: String,
    },
    /// The settings.
    Settings,
    /// Change the interface's settings (those given).
    SetSettings {
        /// `en`, `fr` or `ar`.
        #[serde(default)]
        language: Option<String>,
        /// Seconds without the user before the interface locks (60 to 3600).
        #[serde(default)]
        lock_timeout_secs: Option<u32>,
        /// The largest file sent or accepted (0: back to the network's limit).
        #[serde(default)]
        max_file_bytes: Option<u64>,
        /// Files up to this size are accepted without asking (0: none).
        #[serde(default)]
        auto_accept_bytes: Option<u64>,
    },
    /// The network in use, and what each traffic profile costs there.
    Network,
    /// The delivery state of a message we sent.
    Delivery {
        /// As `Send` returned it.
        id: String,
    },
    /// Create a group.
    GroupCreate {
        /// Its local name.
        name: String,
    },
    /// Add a contact to a group.
    GroupAdd {
        /// The group.
        group: String,
        /// The contact.
        contact: String,
    },
    /// Remove a member from a group.
    GroupRemove {
        /// The group.
        group: String,
        /// A contact name or member label.
        member: String,
    },
    /// Leave a group.
    GroupLeave {
        /// The group.
        group: String,
    },
    /// A group's members.
    Members {
        /// The group or contact.
        name: String,
    },
    /// Group invitations waiting for an answer.
    GroupInvitations,
    /// Accept a group invitation: join the group.
    GroupAccept {
        /// The invitation's id (or a unique prefix of it).
        invitation: String,
        /// The group's local name (default: the one suggested, numbered if taken).
        #[serde(default)]
        name: Option<String>,
    },
    /// Decline a group invitation (the contact is told nothing).
    GroupDecline {
        /// The invitation's id (or a unique prefix of it).
        invitation: String,
    },
    /// The safety code of a conversation with one member (see
    /// [`engine::safety`](crate::engine::safety)).
    SafetyCode {
        /// The contact or group.
        name: String,
        /// A group's member (a label, as `Members` lists them); none for a contact.
        #[serde(default)]
        member: Option<String>,
    },
    /// Mark a safety code verified (or take the mark away). Refused unless `code` is the current
    /// code (whitespace ignored).
    SetVerified {
        /// The contact or group.
        name: String,
        /// A group's member; none for a contact.
        #[serde(default)]
        member: Option<String>,
        /// The code compared, as `SafetyCode` gave it.
        code: String,
        /// Whether it is verified.
        verified: bool,
    },
    /// Stream events (the connection stays open; one `Event` response per event).
    Watch,
    /// What sending a file of `size` bytes to `to` would take.
    Estimate {
        /// The contact or group.
        to: String,
        /// Its size.
        size: u64,
    },
    /// Begin a file handed over in parts (the app's way; parts of at most [`MAX_PART`] bytes).
    AttachBegin {
        /// The contact or group.
        to: String,
        /// Its name.
        name: String,
        /// Its MIME type.
        mime: String,
        /// Its size.
        size: u64,
        /// `file`, `voice` or `image`.
        kind: String,
        /// A voice note's length (ms).
        #[serde(default)]
        duration_ms: Option<u32>,
        /// Words with it.
        #[serde(default)]
        caption: Option<String>,
    },
    /// The next part of an upload (in order).
    AttachPart {
        /// As `AttachBegin` answered it.
        id: String,
        /// Where it goes.
        offset: u64,
        /// Its bytes, base64 (standard alphabet, padded).
        data: String,
    },
    /// Send the upload.
    AttachCommit {
        /// As `AttachBegin` answered it.
        id: String,
        /// At a raised payload rate while it runs (it shows on the link: warn first).
        #[serde(default)]
        fast: bool,
    },
    /// Drop the upload.
    AttachAbort {
        /// As `AttachBegin` answered it.
        id: String,
    },
    /// Send the file at `path` (the terminal's way; the app's server refuses it).
    SendFile {
        /// The contact or group.
        to: String,
        /// The file on this computer.
        path: String,
        /// The name to give it (its file name by default).
        #[serde(default)]
        name: Option<String>,
        /// At a raised payload rate while it runs (it shows on the link: warn first).
        #[serde(default)]
        fast: bool,
        /// Words with it.
        #[serde(default)]
        caption: Option<String>,
    },
    /// Write a file (ours, or one received whole) to `path` (the terminal's way; the app's
    /// server refuses it). Refuses to overwrite unless `force`.
    FileSave {
        /// Its message id.
        id: String,
        /// Where.
        path: String,
        /// Overwrite.
        #[serde(default)]
        force: bool,
    },
    /// Bytes of a file (ours, or one received whole).
    FilePart {
        /// Its message id.
        id: String,
        /// From.
        offset: u64,
        /// How many (at most [`MAX_PART`]).
        len: u32,
    },
    /// Accept a file offered.
    FileAccept {
        /// Its message id.
        id: String,
    },
    /// Decline a file offered (its sender is told).
    FileDecline {
        /// Its message id.
        id: String,
    },
    /// Stop a file in progress, ours or one arriving.
    TransferCancel {
        /// Its message id.
        id: String,
    },
    /// Files, newest first.
    Transfers {
        /// Of one contact or group (all when absent).
        #[serde(default)]
        name: Option<String>,
    },
}

/// The largest part of a file in one `AttachPart` or `FilePart` (before base64: 48,000 bytes
/// make 64,000 characters, under the app's 64 KiB body with the JSON around them).
pub const MAX_PART: usize = 48_000;

/// Frames the client's link to its gateway carried (each `frame_bytes` on the wire, before TCP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounts {
    /// Frames sent (packets and control requests).
    pub frames_out: u64,
    /// Frames received (control answers).
    pub frames_in: u64,
    /// Bytes of one frame on the wire.
    pub frame_bytes: u64,
    /// The epoch of the directory document in use (0: none yet); documents come through the
    /// gateway's pull answers.
    #[serde(default)]
    pub directory_epoch: u64,
    /// Whether a session with the gateway is up now.
    #[serde(default)]
    pub connected: bool,
    /// Bytes on the link since `today_since_ms`: up, down.
    #[serde(default)]
    pub today: [u64; 2],
    /// Since when `today` counts (Unix ms): the client's start, or its first count after
    /// midnight (UTC).
    #[serde(default)]
    pub today_since_ms: u64,
}

/// What the client dropped, refused or holds of what others sent it: the counters of
/// [`EngineStats`](crate::engine::EngineStats) that show an attack (docs/RELIABILITY.md,
/// "Bounds").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputCounts {
    /// Items that did not decode.
    pub malformed: u64,
    /// MLS messages, Welcomes or group invitations refused.
    pub rejected: u64,
    /// Duplicate fragments (acknowledged again).
    pub duplicates: u64,
    /// Fragments or messages refused for now, unacknowledged (a bound was reached, or a fragment
    /// contradicted the ones before): their senders send them again.
    pub deferred: u64,
    /// Fragments whose acknowledgement was dropped unsent.
    pub acks_dropped: u64,
    /// Messages partly received and held now.
    pub partial_messages: u64,
    /// The bytes of their fragments.
    pub partial_bytes: u64,
    /// Operations on one item or peer that failed with an error that is not fatal: that item
    /// was refused and the client went on ([`EngineStats::failed`](crate::engine::EngineStats)).
    #[serde(default)]
    pub failed: u64,
}

/// Files' packets sent and received since the start: the counters of
/// [`EngineStats`](crate::engine::EngineStats) for files (docs/ATTACHMENTS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounts {
    /// Chunks and SURBS sent (probes included).
    pub sent: u64,
    /// Block answers sent through senders' SURBs.
    pub answers: u64,
    /// Shards kept for files being received.
    pub stored: u64,
    /// Shards that arrived again.
    pub duplicate: u64,
    /// Shards and SURBS refused (no file accepted, bad signature, out of range, too many open).
    pub refused: u64,
    /// Offers refused (over a limit or a bound).
    pub offers_refused: u64,
    /// Files received whole and checked.
    pub received: u64,
    /// Files whose bytes did not check (given up).
    pub corrupt: u64,
}

/// One message, as commands print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageOut {
    /// Its id in the history (hex): what `History`'s `before` takes, what a `Delivery` event
    /// and an arriving `message` event name.
    #[serde(default)]
    pub id: String,
    /// The contact or group.
    pub thread: String,
    /// Who sent it (`"me"` for ours).
    pub sender: String,
    /// The text.
    pub text: String,
    /// When it was sent (Unix ms, sender's clock).
    pub sent_at_ms: u64,
    /// When it arrived (or was queued, for ours).
    pub at_ms: u64,
    /// Ours: `queued`, `sent` or `delivered`.
    pub state: Option<String>,
    /// Ours: how many recipients acknowledged it, of how many.
    #[serde(default)]
    pub delivered: Option<[u32; 2]>,
    /// A file or voice note (`text` is its caption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileOut>,
}

/// A file, as commands print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOut {
    /// Its message id (as `file_part` and the others take it).
    pub transfer: String,
    /// Its name (the sender's word).
    pub name: String,
    /// Its MIME type (the sender's word).
    pub mime: String,
    /// `file`, `voice` or `image`.
    pub kind: String,
    /// Its size.
    pub size: u64,
    /// A voice note's length (ms).
    pub duration_ms: Option<u32>,
    /// `offered`, `receiving`, `received`, `sending`, `sent`, `declined`, `cancelled`, `failed`.
    pub state: String,
    /// Bytes there (the least of the recipients', for ours).
    pub done_bytes: u64,
    /// Its size again (for a progress bar).
    pub total_bytes: u64,
    /// Recipients that have it whole, of how many (ours).
    pub recipients: [u32; 2],
    /// Bytes a second (measured, else expected at the profile's rates).
    pub rate_bps: u64,
    /// Seconds left, while in progress.
    pub eta_secs: Option<u64>,
    /// Sent faster than the profile's slots.
    pub fast: bool,
}

/// `f` for an interface.
pub fn file_out(f: &crate::engine::FileInfo) -> FileOut {
    FileOut {
        transfer: f.message.to_string(),
        name: f.name.clone(),
        mime: f.mime.clone(),
        kind: f.kind.as_str().into(),
        size: f.size,
        duration_ms: (f.duration_ms > 0).then_some(f.duration_ms),
        state: f.state.into(),
        done_bytes: f.done_bytes,
        total_bytes: f.size,
        recipients: f.recipients,
        rate_bps: f.rate_bps,
        eta_secs: f.eta_secs,
        fast: f.fast,
    }
}

/// A group invitation, as commands print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInvitationOut {
    /// Its id.
    pub id: String,
    /// The contact who invites.
    pub from: String,
    /// The group's suggested name.
    pub group: String,
    /// When it arrived (Unix ms).
    pub at_ms: u64,
}

/// A contact or group, as commands print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadOut {
    /// Its name.
    pub name: String,
    /// Whether it is a group.
    pub group: bool,
    /// Its state.
    pub state: String,
    /// Other members.
    pub members: Vec<String>,
    /// Unread messages.
    pub unread: usize,
    /// The newest message.
    #[serde(default)]
    pub last: Option<MessageOut>,
    /// Its last activity (Unix ms): the newest message, else the invitation made, else 0.
    #[serde(default)]
    pub activity_ms: u64,
    /// Waiting for its invitation's answer: when the link expires (Unix ms).
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// A contact: its current safety code is marked verified.
    #[serde(default)]
    pub verified: bool,
}

/// What one traffic profile costs and how long its messages take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostOut {
    /// Packets per second: payload (λ_P), loops (λ_L), drops (λ_D).
    pub rates: [f64; 3],
    /// Bytes per day to and from the gateway, whatever the user does.
    pub bytes_per_day: [u64; 2],
    /// A message's typical delay (ms).
    pub expected_delay_ms: u64,
}

/// An event, for an interface (the `Watch` stream and the app's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventOut {
    /// A message arrived.
    Message {
        /// Its id in the history.
        id: String,
        /// The contact or group.
        thread: String,
        /// Who sent it.
        sender: String,
        /// The text.
        text: String,
        /// When it was sent (Unix ms, sender's clock).
        sent_at_ms: u64,
        /// When it arrived (Unix ms).
        at_ms: u64,
        /// A file or voice note (`text` is its caption).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileOut>,
    },
    /// A file moved on: its state, or (at most once a second) its progress.
    Transfer {
        /// Its message id.
        id: String,
        /// The contact or group.
        thread: String,
        /// `in` or `out`.
        direction: String,
        /// As [`FileOut::state`].
        state: String,
        /// Bytes there.
        done_bytes: u64,
        /// Its size.
        total_bytes: u64,
        /// Bytes a second.
        rate_bps: u64,
        /// Seconds left, while in progress.
        eta_secs: Option<u64>,
        /// Recipients that have it whole, of how many (ours).
        recipients: [u32; 2],
    },
    /// One of our messages moved on.
    Delivery {
        /// Its id.
        id: String,
        /// `queued`, `sent` or `delivered`.
        state: String,
    },
    /// A contact's conversation is set up.
    ContactReady {
        /// The contact.
        name: String,
    },
    /// A group was joined.
    GroupJoined {
        /// The group.
        name: String,
    },
    /// A group's membership changed.
    GroupChanged {
        /// The group.
        name: String,
        /// Members added.
        added: Vec<String>,
        /// Members removed.
        removed: Vec<String>,
    },
    /// Out of a group.
    Left {
        /// The group.
        name: String,
    },
    /// A contact invites us into a group.
    GroupInvitation {
        /// The invitation's id.
        id: String,
        /// The contact.
        from: String,
        /// The group's suggested name.
        group: String,
    },
    /// An invitation's mailbox was taken by someone else: the link was seen.
    InvitationRefused {
        /// The contact it was for.
        name: String,
    },
    /// An invitation expired unanswered.
    InvitationExpired {
        /// The contact it was for.
        name: String,
    },
}

impl EventOut {
    /// `e` for an interface.
    pub fn of(e: &EngineEvent) -> Self {
        let ms = |t: SystemTime| UnixMillis::from_system_time(t).as_millis();
        match e.clone() {
            EngineEvent::Message { id, thread, sender, text, sent_at, received_at, file } => Self::Message {
                id: id.to_string(),
                thread,
                sender,
                text,
                sent_at_ms: ms(sent_at),
                at_ms: ms(received_at),
                file: file.map(|f| file_out(&f)),
            },
            EngineEvent::Transfer(f) => Self::Transfer {
                id: f.message.to_string(),
                thread: f.thread.clone(),
                direction: if f.outgoing { "out" } else { "in" }.into(),
                state: f.state.into(),
                done_bytes: f.done_bytes,
                total_bytes: f.size,
                rate_bps: f.rate_bps,
                eta_secs: f.eta_secs,
                recipients: f.recipients,
            },
            EngineEvent::Delivery { message, state } => {
                Self::Delivery { id: message.to_string(), state: state_name(state).into() }
            }
            EngineEvent::ContactReady { name } => Self::ContactReady { name },
            EngineEvent::GroupJoined { name } => Self::GroupJoined { name },
            EngineEvent::GroupChanged { name, added, removed } => Self::GroupChanged { name, added, removed },
            EngineEvent::Left { name } => Self::Left { name },
            EngineEvent::GroupInvitation { id, from, group } => Self::GroupInvitation { id, from, group },
            EngineEvent::InvitationRefused { name } => Self::InvitationRefused { name },
            EngineEvent::InvitationExpired { name } => Self::InvitationExpired { name },
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// Refused, with the reason for the user.
    Error {
        /// The reason, in English.
        message: String,
        /// Its kind ([`EngineError::code`]), for an interface that words it in the user's
        /// language; absent for what is not the engine's.
        #[serde(default)]
        code: Option<String>,
    },
    /// An invitation.
    Invitation {
        /// The link.
        link: String,
        /// Its QR code, for a terminal.
        qr: String,
        /// When it expires (Unix ms).
        #[serde(default)]
        expires_at_ms: u64,
    },
    /// A message was queued.
    Sent {
        /// Its id (for `Delivery`).
        id: String,
    },
    /// The client's state.
    Status {
        /// `standard` or `metered`.
        traffic: String,
        /// Whether the client runs (this answer came from it).
        running: bool,
        /// Whether it has the network's directory.
        network: bool,
        /// Our messages not yet delivered.
        undelivered: usize,
        /// Packets sent since the start: real, acknowledgements, cover.
        sent: [u64; 3],
        /// Frames on the link to the gateway since the start (running client only).
        link: Option<LinkCounts>,
        /// What the traffic profile costs while idle, in bytes per day up and down (known once
        /// the client has the directory's parameters).
        #[serde(default)]
        idle_bytes_per_day: Option<[u64; 2]>,
        /// What it dropped, refused or holds of what others sent it.
        #[serde(default)]
        input: InputCounts,
        /// Files' packets sent and received.
        #[serde(default)]
        files: FileCounts,
    },
    /// Contacts and groups.
    Threads {
        /// The list.
        list: Vec<ThreadOut>,
    },
    /// Messages.
    Messages {
        /// The list.
        list: Vec<MessageOut>,
    },
    /// Members of a group.
    Members {
        /// Labels.
        list: Vec<String>,
        /// Contacts invited who have not joined (yet).
        #[serde(default)]
        invited: Vec<String>,
    },
    /// Group invitations waiting for an answer.
    GroupInvitations {
        /// The list, oldest first.
        list: Vec<GroupInvitationOut>,
    },
    /// A group was joined under this local name.
    Joining {
        /// The group's local name.
        name: String,
    },
    /// A safety code.
    SafetyCode {
        /// Its 60 digits (shown as 12 groups of 5).
        code: String,
        /// Whether the user marked this code verified.
        verified: bool,
        /// Whether the user marked another code verified for this member: the code changed
        /// since (docs/APP.md §4: the page says so instead of showing the mark).
        #[serde(default)]
        changed: bool,
    },
    /// A delivery state.
    Delivery {
        /// `queued`, `sent`, `delivered`, or `unknown`.
        state: String,
    },
    /// An event (for `Watch`).
    Event {
        /// What happened, for people.
        text: String,
        /// A message's latency in ms, when the event is a message.
        latency_ms: Option<u64>,
        /// The event, for an interface.
        #[serde(default)]
        event: Option<EventOut>,
    },
    /// The settings.
    Settings {
        /// `standard` or `metered`.
        traffic: String,
        /// The interface's language, once chosen.
        language: Option<String>,
        /// Seconds without the user before the interface locks.
        lock_timeout_secs: u32,
        /// The largest file sent or accepted here (the network's and the user's limit).
        #[serde(default)]
        max_file_bytes: u64,
        /// Files up to this size are accepted without asking.
        #[serde(default)]
        auto_accept_bytes: u64,
    },
    /// The host's state (`qanat app`): whether a profile exists and is open.
    State {
        /// `none` (first run), `closed` (locked, client stopped) or `open`.
        profile: String,
        /// The network file's gateways by name, to choose one at the first run.
        gateways: Vec<String>,
    },
    /// The profile is open and its client runs.
    Unlocked,
    /// The network in use (`None` fields: no directory yet).
    Network {
        /// The epoch of the directory document in use.
        directory_epoch: Option<u64>,
        /// An epoch's length (s).
        epoch_secs: Option<u64>,
        /// Mix layers.
        layers: Option<u32>,
        /// Each mix's mean delay (ms).
        mean_delay_ms: Option<u64>,
        /// This profile's traffic profile.
        traffic: String,
        /// Packets sent since the start: real, acknowledgements, cover.
        sent: [u64; 3],
        /// The standard profile's cost.
        standard: Option<CostOut>,
        /// The metered profile's cost.
        metered: Option<CostOut>,
        /// The link to the gateway (running client only).
        link: Option<LinkCounts>,
    },
    /// What sending a file would take.
    Estimate {
        /// The size bucket it goes as.
        bucket: u64,
        /// Packets of its first round, per recipient.
        packets: u64,
        /// Recipients.
        recipients: u32,
        /// Whether it may be sent here.
        allowed: bool,
        /// The largest file that may be.
        limit: u64,
        /// Sent in the profile's slots: nothing shows.
        hidden: CostEstimate,
        /// Sent faster (none: not offered here).
        fast: Option<CostEstimate>,
    },
    /// An upload began.
    Attach {
        /// Its id.
        id: String,
    },
    /// Bytes of a file.
    FileData {
        /// Base64.
        data: String,
        /// The file's size.
        total: u64,
    },
    /// Files.
    Transfers {
        /// Newest first.
        list: Vec<FileOut>,
    },
}

/// What a file would cost: seconds (low: recipients online, little loss; high: with loss and
/// texts sharing the slots) and bytes beyond what the profile spends anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// Seconds, at best.
    pub secs_low: u64,
    /// Seconds, with loss and texts.
    pub secs_high: u64,
    /// Bytes up beyond the profile's.
    pub bytes_up: u64,
    /// Bytes down beyond the profile's.
    pub bytes_down: u64,
}

fn hex16(b: &[u8; 16]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse16(s: &str) -> Result<[u8; 16], EngineError> {
    parse_id(s)
        .and_then(|id| <[u8; 16]>::try_from(id.as_bytes()).ok())
        .ok_or(EngineError::FileNotReady("no such upload"))
}

fn file_spec(
    name: String,
    mime: String,
    kind: &str,
    duration_ms: Option<u32>,
    caption: Option<String>,
) -> Result<crate::engine::FileSpec, EngineError> {
    let kind = match kind {
        "file" => crate::engine::wire::FileKind::File,
        "voice" => crate::engine::wire::FileKind::Voice,
        "image" => crate::engine::wire::FileKind::Image,
        _ => return Err(EngineError::Setting("kind", "file, voice or image")),
    };
    Ok(crate::engine::FileSpec {
        name,
        mime,
        kind,
        duration_ms: duration_ms.unwrap_or(0),
        caption: caption.unwrap_or_default(),
    })
}

/// A MIME type for a file sent from the terminal: from its first bytes for the kinds an
/// interface shows (images, audio), else from its name's extension, else bytes.
fn mime_of(name: &str, bytes: &[u8]) -> &'static str {
    let magic: [(&[u8], &str); 6] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"\x1a\x45\xdf\xa3", "audio/webm"),
        (b"OggS", "audio/ogg"),
        (b"%PDF-", "application/pdf"),
    ];
    if let Some((_, m)) = magic.iter().find(|(p, _)| bytes.starts_with(p)) {
        return m;
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        return "audio/wav";
    }
    match name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).as_deref() {
        Some("txt") => "text/plain",
        Some("pdf") => "application/pdf",
        Some("mp3") => "audio/mpeg",
        Some("m4a") => "audio/mp4",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Writes `bytes` to a new file at `path` (0600), refusing to replace one unless `force`.
fn write_new_file(path: &std::path::Path, bytes: &[u8], force: bool) -> Result<(), EngineError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            EngineError::FileNotReady("a file is already there (add --force to replace it)")
        }
        _ => EngineError::FileNotReady("the file cannot be written there"),
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|_| EngineError::FileNotReady("the file could not be written"))
}

impl Response {
    /// A refusal with a code (for what is not an [`EngineError`]: the host's).
    pub fn error_code(message: impl Into<String>, code: &str) -> Self {
        Self::Error { message: message.into(), code: Some(code.into()) }
    }

    /// A refusal that is not the engine's (no code).
    pub fn error(message: impl Into<String>) -> Self {
        Self::Error { message: message.into(), code: None }
    }

    /// The engine's refusal, with its code.
    pub fn refused(e: &EngineError) -> Self {
        Self::Error { message: e.to_string(), code: Some(e.code().into()) }
    }

    /// An event as `Watch` streams it.
    pub fn event(e: &EngineEvent) -> Self {
        let (text, latency_ms) = describe(e);
        Self::Event { text, latency_ms, event: Some(EventOut::of(e)) }
    }
}

fn state_name(d: Delivery) -> &'static str {
    match d {
        Delivery::Queued => "queued",
        Delivery::Sent => "sent",
        Delivery::Delivered => "delivered",
    }
}

/// An event as a line for people (and its latency, for messages).
pub fn describe(e: &EngineEvent) -> (String, Option<u64>) {
    match e {
        EngineEvent::Message { thread, sender, text, sent_at, received_at, .. } => {
            let latency = received_at.duration_since(*sent_at).map(|d| d.as_millis() as u64).ok();
            let at = if thread == sender { thread.clone() } else { format!("{thread}/{sender}") };
            (format!("[{at}] {text}"), latency)
        }
        EngineEvent::Delivery { message, state } => {
            (format!("message {message}: {}", state_name(*state)), None)
        }
        EngineEvent::ContactReady { name } => (format!("contact {name} is ready"), None),
        EngineEvent::GroupJoined { name } => (format!("joined group {name}"), None),
        EngineEvent::GroupChanged { name, added, removed } => {
            (format!("group {name}: added {added:?}, removed {removed:?}"), None)
        }
        EngineEvent::Left { name } => (format!("left group {name}"), None),
        EngineEvent::GroupInvitation { id, from, group } => (
            format!(
                "{from} invites you to the group {group:?} (`qanat group accept {}` or `qanat group decline {}`)",
                &id[..8.min(id.len())],
                &id[..8.min(id.len())]
            ),
            None,
        ),
        EngineEvent::InvitationRefused { name } => (
            format!(
                "the invitation for {name} is dead: someone else took its mailbox at the gateway, so the link was seen by someone else; make a new invitation and share it more carefully"
            ),
            None,
        ),
        EngineEvent::InvitationExpired { name } => {
            (format!("the invitation for {name} expired unanswered; {name} is forgotten"), None)
        }
        EngineEvent::Transfer(f) => {
            let pct = (f.done_bytes * 100).checked_div(f.size).unwrap_or(100);
            (format!("file {} ({}): {} {pct}%", f.message, f.thread, f.state), None)
        }
    }
}

fn parse_id(s: &str) -> Option<LocalMessageId> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    bytes.map(LocalMessageId::from_bytes)
}

/// Carries out `req` on `engine` (`running`: whether this is the long-running client).
pub fn execute<R: CryptoRng>(
    engine: &mut Engine,
    req: Request,
    running: bool,
    now: SystemTime,
    rng: &mut R,
) -> Response {
    match try_execute(engine, req, running, now, rng) {
        Ok(r) => r,
        Err(e) => Response::refused(&e),
    }
}

/// [`execute`], with the engine's error as it came: the running client answers it as
/// [`Response::Error`], and stops if it is fatal ([`EngineError::is_fatal`]: the profile
/// failed, so what the command changed in memory is not saved).
pub fn try_execute<R: CryptoRng>(
    engine: &mut Engine,
    req: Request,
    running: bool,
    now: SystemTime,
    rng: &mut R,
) -> Result<Response, EngineError> {
    Ok(match req {
        Request::Status => {
            let s = engine.stats();
            Response::Status {
                traffic: engine.traffic().name().into(),
                running,
                network: engine.has_network(),
                undelivered: engine.undelivered(),
                sent: [s.sent_real, s.sent_acks, s.sent_cover],
                link: None,
                idle_bytes_per_day: engine
                    .idle_bytes_per_day()
                    .map(|(up, down)| [up.round() as u64, down.round() as u64]),
                input: InputCounts {
                    malformed: s.malformed,
                    rejected: s.rejected,
                    duplicates: s.duplicates,
                    deferred: s.deferred,
                    acks_dropped: s.acks_dropped,
                    partial_messages: s.partial_messages,
                    partial_bytes: s.partial_bytes,
                    failed: s.failed,
                },
                files: FileCounts {
                    sent: s.sent_file,
                    answers: s.sent_file_answers,
                    stored: s.shards_stored,
                    duplicate: s.shards_duplicate,
                    refused: s.shards_refused,
                    offers_refused: s.offers_refused,
                    received: s.files_received,
                    corrupt: s.files_corrupt,
                },
            }
        }
        Request::Invite { name } => invitation(&engine.invite(&name, now, rng)?),
        Request::Invitation { name } => invitation(&engine.invitation(&name)?),
        Request::Accept { link, name } => {
            engine.accept(link.trim(), &name, now, rng)?;
            Response::Ok
        }
        Request::Contacts => Response::Threads {
            list: engine
                .threads()?
                .into_iter()
                .map(|t| ThreadOut {
                    last: t.last.map(|(id, e)| message_out(engine, &t.name, &id, e)),
                    name: t.name,
                    group: t.group,
                    state: t.state.into(),
                    members: t.members,
                    unread: t.unread,
                    activity_ms: t.activity_ms,
                    expires_at_ms: t.expires_at_ms,
                    verified: t.verified,
                })
                .collect(),
        },
        Request::Send { to, text } => Response::Sent { id: engine.send(&to, &text, now, rng)?.to_string() },
        Request::Inbox => Response::Messages {
            list: engine
                .take_unread()?
                .into_iter()
                .map(|(thread, id, e)| message_out(engine, &thread, &id, e))
                .collect(),
        },
        Request::History { name, before, limit } => {
            let before = match before {
                Some(b) => Some(parse_id(&b).ok_or(EngineError::UnknownMessage)?),
                None => None,
            };
            Response::Messages {
                list: engine
                    .history_page(&name, before.as_ref(), limit.map(|n| n as usize))?
                    .into_iter()
                    .map(|(id, e)| message_out(engine, &name, &id, e))
                    .collect(),
            }
        }
        Request::MarkRead { name } => {
            engine.mark_read(&name)?;
            Response::Ok
        }
        Request::SetTraffic { traffic } => {
            let t = TrafficProfile::from_name(&traffic)
                .ok_or(EngineError::Setting("traffic profile", "standard or metered"))?;
            engine.set_traffic(t)?;
            Response::Ok
        }
        Request::Settings => {
            let s = engine.ui_settings();
            Response::Settings {
                traffic: engine.traffic().name().into(),
                language: s.language,
                lock_timeout_secs: s.lock_timeout_secs,
                max_file_bytes: engine.max_file_bytes(),
                auto_accept_bytes: engine.auto_accept_bytes(),
            }
        }
        Request::SetSettings { language, lock_timeout_secs, max_file_bytes, auto_accept_bytes } => {
            if language.is_some() || lock_timeout_secs.is_some() {
                engine.set_ui_settings(language.as_deref(), lock_timeout_secs)?;
            }
            if max_file_bytes.is_some() || auto_accept_bytes.is_some() {
                engine.set_file_settings(
                    max_file_bytes.map(|m| (m > 0).then_some(m)),
                    auto_accept_bytes.map(Some),
                )?;
            }
            Response::Ok
        }
        Request::Network => {
            let info = engine.network_info();
            let s = engine.stats();
            let cost = |c: &ProfileCost| CostOut {
                rates: [c.rates.payload, c.rates.loops, c.rates.drops],
                bytes_per_day: [c.bytes_per_day.0.round() as u64, c.bytes_per_day.1.round() as u64],
                expected_delay_ms: c.expected_delay.as_millis() as u64,
            };
            Response::Network {
                directory_epoch: info.as_ref().map(|i| i.epoch),
                epoch_secs: info.as_ref().map(|i| i.epoch_period.as_secs()),
                layers: info.as_ref().map(|i| i.layers as u32),
                mean_delay_ms: info.as_ref().map(|i| i.mean_delay.as_millis() as u64),
                traffic: engine.traffic().name().into(),
                sent: [s.sent_real, s.sent_acks, s.sent_cover],
                standard: info.as_ref().map(|i| cost(&i.standard)),
                metered: info.as_ref().map(|i| cost(&i.metered)),
                link: None,
            }
        }
        Request::Delivery { id } => {
            let state = match parse_id(&id) {
                Some(id) => engine.delivery(&id)?.map(state_name).unwrap_or("unknown"),
                None => "unknown",
            };
            Response::Delivery { state: state.into() }
        }
        Request::GroupCreate { name } => {
            engine.create_group(&name, rng)?;
            Response::Ok
        }
        Request::GroupAdd { group, contact } => {
            engine.group_add(&group, &contact, now, rng)?;
            Response::Ok
        }
        Request::GroupRemove { group, member } => {
            engine.group_remove(&group, &member, now, rng)?;
            Response::Ok
        }
        Request::GroupLeave { group } => {
            engine.group_leave(&group, now, rng)?;
            Response::Ok
        }
        Request::Members { name } => {
            Response::Members { list: engine.members(&name)?, invited: engine.invited(&name)? }
        }
        Request::GroupInvitations => Response::GroupInvitations {
            list: engine
                .group_invitations()
                .into_iter()
                .map(|i| GroupInvitationOut {
                    id: i.id,
                    from: i.from,
                    group: i.group,
                    at_ms: UnixMillis::from_system_time(i.received_at).as_millis(),
                })
                .collect(),
        },
        Request::GroupAccept { invitation, name } => Response::Joining {
            name: engine.accept_group_invitation(&invitation, name.as_deref(), now, rng)?,
        },
        Request::GroupDecline { invitation } => {
            engine.decline_group_invitation(&invitation)?;
            Response::Ok
        }
        Request::SafetyCode { name, member } => {
            let (code, verified) = engine.safety_code(&name, member.as_deref())?;
            let changed = engine.safety_code_changed(&name, member.as_deref())?;
            Response::SafetyCode { code: code.digits().into(), verified, changed }
        }
        Request::SetVerified { name, member, code, verified } => {
            engine.set_verified(&name, member.as_deref(), &code, verified)?;
            Response::Ok
        }
        Request::Watch => Response::error("watch needs the running client (start `qanat run`)"),
        Request::Estimate { to, size } => {
            let e = engine.estimate_file(&to, size)?;
            Response::Estimate {
                bucket: e.bucket,
                packets: e.packets,
                recipients: e.recipients,
                allowed: e.allowed,
                limit: e.limit,
                hidden: CostEstimate {
                    secs_low: e.secs_low,
                    secs_high: e.secs_high,
                    bytes_up: 0,
                    bytes_down: 0,
                },
                fast: e.fast.map(|(secs_low, secs_high, bytes_up)| CostEstimate {
                    secs_low,
                    secs_high,
                    bytes_up,
                    bytes_down: 0,
                }),
            }
        }
        Request::AttachBegin { to, name, mime, size, kind, duration_ms, caption } => {
            let spec = file_spec(name, mime, &kind, duration_ms, caption)?;
            Response::Attach { id: hex16(&engine.attach_begin(&to, spec, size, now, rng)?) }
        }
        Request::AttachPart { id, offset, data } => {
            let id = parse16(&id)?;
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data.as_bytes())
                .map_err(|_| EngineError::FileNotReady("a part that is not base64"))?;
            if bytes.len() > MAX_PART {
                return Err(EngineError::FileNotReady("a part larger than 48,000 bytes"));
            }
            engine.attach_part(&id, offset, &bytes, now)?;
            Response::Ok
        }
        Request::AttachCommit { id, fast } => {
            Response::Sent { id: engine.attach_commit(&parse16(&id)?, fast, now, rng)?.to_string() }
        }
        Request::AttachAbort { id } => {
            engine.attach_abort(&parse16(&id)?);
            Response::Ok
        }
        Request::SendFile { to, path, name, fast, caption } => {
            let p = std::path::Path::new(&path);
            let meta = std::fs::metadata(p).map_err(|_| EngineError::NoSuchFile)?;
            let limit = engine.max_file_bytes();
            if !meta.is_file() {
                return Err(EngineError::NoSuchFile);
            }
            if meta.len() > limit {
                return Err(EngineError::FileTooLarge { size: meta.len(), limit });
            }
            let bytes = zeroize::Zeroizing::new(std::fs::read(p).map_err(|_| EngineError::NoSuchFile)?);
            let name = name
                .or_else(|| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .ok_or(EngineError::NoSuchFile)?;
            let mime = mime_of(&name, &bytes);
            let kind = if mime.starts_with("image/") {
                "image"
            } else if mime.starts_with("audio/") {
                "voice"
            } else {
                "file"
            };
            let spec = file_spec(name, mime.into(), kind, None, caption)?;
            Response::Sent { id: engine.send_file(&to, spec, &bytes, fast, now, rng)?.to_string() }
        }
        Request::FileSave { id, path, force } => {
            let id = parse_id(&id).ok_or(EngineError::UnknownMessage)?;
            let info = engine.file_info(&id).ok_or(EngineError::NoSuchFile)?;
            let (bytes, _) = engine.file_bytes(&id, 0, info.size as usize)?;
            write_new_file(std::path::Path::new(&path), &bytes, force)?;
            Response::Ok
        }
        Request::FilePart { id, offset, len } => {
            let id = parse_id(&id).ok_or(EngineError::UnknownMessage)?;
            let len = (len as usize).min(MAX_PART);
            let (bytes, total) = engine.file_bytes(&id, offset, len)?;
            Response::FileData {
                data: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes),
                total,
            }
        }
        Request::FileAccept { id } => {
            engine.accept_file(&parse_id(&id).ok_or(EngineError::UnknownMessage)?, now, rng)?;
            Response::Ok
        }
        Request::FileDecline { id } => {
            engine.decline_file(&parse_id(&id).ok_or(EngineError::UnknownMessage)?, now, rng)?;
            Response::Ok
        }
        Request::TransferCancel { id } => {
            engine.cancel_file(&parse_id(&id).ok_or(EngineError::UnknownMessage)?, now, rng)?;
            Response::Ok
        }
        Request::Transfers { name } => {
            Response::Transfers { list: engine.files(name.as_deref())?.iter().map(file_out).collect() }
        }
    })
}

fn invitation(inv: &Invitation) -> Response {
    Response::Invitation {
        link: inv.to_link(),
        qr: inv.qr_code().unwrap_or_default(),
        expires_at_ms: inv.expires_at().as_millis(),
    }
}

fn message_out(engine: &Engine, thread: &str, id: &LocalMessageId, e: HistoryEntry) -> MessageOut {
    MessageOut {
        file: e.file.as_ref().and_then(|_| engine.file_info(id)).map(|f| file_out(&f)),
        id: id.to_string(),
        thread: thread.into(),
        state: e.outgoing.then(|| state_name(e.delivery()).to_owned()),
        delivered: e.outgoing.then_some([e.delivered, e.recipients]),
        sender: e.sender,
        text: e.text,
        sent_at_ms: e.sent_at_ms,
        at_ms: e.at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: &T, json: &str) {
        assert_eq!(serde_json::to_string(v).unwrap(), json);
        assert_eq!(&serde_json::from_str::<T>(json).unwrap(), v);
    }

    #[test]
    fn safety_code_requests_and_answers_round_trip() {
        round_trip(
            &Request::SafetyCode { name: "bob".into(), member: None },
            r#"{"cmd":"safety_code","name":"bob","member":null}"#,
        );
        round_trip(
            &Request::SetVerified {
                name: "team".into(),
                member: Some("carol".into()),
                code: "12345 67890".into(),
                verified: true,
            },
            r#"{"cmd":"set_verified","name":"team","member":"carol","code":"12345 67890","verified":true}"#,
        );
        round_trip(
            &Response::SafetyCode { code: "0".repeat(60), verified: false, changed: true },
            &format!(
                r#"{{"kind":"safety_code","code":"{}","verified":false,"changed":true}}"#,
                "0".repeat(60)
            ),
        );
        // Written before `changed` existed.
        let old = format!(r#"{{"kind":"safety_code","code":"{}","verified":true}}"#, "0".repeat(60));
        assert_eq!(
            serde_json::from_str::<Response>(&old).unwrap(),
            Response::SafetyCode { code: "0".repeat(60), verified: true, changed: false }
        );
        // `member` may be left out (a contact).
        let r: Request = serde_json::from_str(r#"{"cmd":"safety_code","name":"bob"}"#).unwrap();
        assert_eq!(r, Request::SafetyCode { name: "bob".into(), member: None });
        let r: Request =
            serde_json::from_str(r#"{"cmd":"set_verified","name":"bob","code":"1","verified":false}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::SetVerified { name: "bob".into(), member: None, code: "1".into(), verified: false }
        );
    }

    #[test]
    fn threads_as_written_before_verification_still_parse() {
        let old = r#"{"kind":"threads","list":[{"name":"bob","group":false,"state":"active","members":["bob"],"unread":2}]}"#;
        let Response::Threads { list } = serde_json::from_str(old).unwrap() else { panic!("not threads") };
        assert_eq!(
            list,
            [ThreadOut {
                name: "bob".into(),
                group: false,
                state: "active".into(),
                members: vec!["bob".into()],
                unread: 2,
                verified: false,
                last: None,
                activity_ms: 0,
                expires_at_ms: None,
            }]
        );
        round_trip(
            &Response::Threads { list: vec![ThreadOut { verified: true, ..list[0].clone() }] },
            r#"{"kind":"threads","list":[{"name":"bob","group":false,"state":"active","members":["bob"],"unread":2,"last":null,"activity_ms":0,"expires_at_ms":null,"verified":true}]}"#,
        );
        // Requests of before still parse as they did.
        for (json, req) in [
            (r#"{"cmd":"contacts"}"#, Request::Contacts),
            (r#"{"cmd":"members","name":"team"}"#, Request::Members { name: "team".into() }),
            (
                r#"{"cmd":"send","to":"bob","text":"hi"}"#,
                Request::Send { to: "bob".into(), text: "hi".into() },
            ),
        ] {
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), req);
        }
    }
}
