//! Files and voice notes (docs/ATTACHMENTS.md): the description in the conversation, the
//! chunks beside it.
//!
//! Sending: the file is kept in the profile by block (`engine.blob`, the user's own copy), a
//! FILE offer goes to every other member inside the conversation (MLS), and each recipient's
//! transfer ([`TransferSend`], one per file with a peer per recipient) is held until that
//! recipient answers FILE_STATUS "accepted". Chunks then leave in payload slots after our texts
//! (a file never delays a text), block answers come back to the home mailbox through the
//! transfer's SURBs, and the file counts as delivered to a recipient only when its FILE_STATUS
//! "complete" arrives, inside MLS (a bitmap alone could be forged by a member working with the
//! recipient's gateway). When every recipient is done the file key and the transfer's signing
//! key are wiped.
//!
//! Receiving: a FILE offer is checked (limits, the network's shard length, a name that is a
//! name) and shown; up to the auto-accept size it is accepted at once, otherwise it waits for
//! the user's yes. Accepted, each signed shard is kept (`engine.shard`) in the same transaction
//! as the pull that brought it, before any answer leaves; a decoded block's plaintext goes to
//! `engine.blob` and its shards go. The whole file is checked against its keyed digest before it
//! is shown as received.
//!
//! # What a hostile peer can make us do
//! Offers: at most [`MAX_OFFERS_PER_THREAD`] waiting or in progress per conversation, and
//! [`MAX_RECEIVING`] receiving in all; an offer waits [`OFFER_TTL`], a transfer is given up
//! [`RECEIVE_TTL`] after its offer. Shards: only for transfers we accepted, signed by the
//! transfer's key, within the plan, for at most `RecvConfig::max_open` undecoded blocks each.
//! Everything refused is counted ([`EngineStats`](super::EngineStats)) and neither kept nor
//! answered. As senders, a recipient who answers but never completes costs the transfer's
//! budget, then fails; one who never answers costs one probe at a time, backing off to one per
//! 2 h, and is given up [`OFFER_TTL`] after the offer if it never said yes, [`RECEIVE_TTL`]
//! after if it did (and told). A recipient whose client starts with one of our files incomplete
//! says "accepted" again, and we probe it at once (at most once per first resend wait).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use ed25519_dalek::{SigningKey, VerifyingKey};
use qanat_mixnet::UnixMicros;
use qanat_mixnet::sending::transfer::{
    BLOCK_DATA, BlockSource, ChunkOutcome, ParityPolicy, PeerState, Plan, RecvConfig, SendConfig, SendEvent,
    TransferRecv, TransferSend,
};
use qanat_mixnet::sending::{self, Delivery, ResendPolicy, TransferId, shard_capacity};
use qanat_packet::{MailboxId, SurbId};
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::mls::MemberId;
use crate::store::Profile;

use super::network::Network;
use super::persist::Write;
use super::rows::{
    BlobPart, InFile, NS_BLOB, NS_HISTORY, NS_SHARD, NS_XFER_IN, NS_XFER_OUT, NS_XFER_STATE, PeerFile,
    ShardData, ThreadState, XferIn, XferOut, XferPeer, XferState, decode,
};
use super::types::FileRef;
use super::wire::{Content, FileKind, FileOffer, FileStatus, MAX_CAPTION, Outer, file_name_ok};
use super::{Engine, EngineError, EngineEvent, EngineStats, HistoryEntry, LocalMessageId, hex};

/// How many times the profile's payload rate a fast file is sent at (at most; the directory
/// may allow less).
pub const FAST_FACTOR: u8 = 2;

/// The largest file, until the directory says otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 20;
/// Files up to this size are accepted without asking (a tenth on the metered profile).
pub const AUTO_ACCEPT_BYTES: u64 = 1 << 20;
/// Offers waiting or in progress per conversation.
pub const MAX_OFFERS_PER_THREAD: usize = 16;
/// Files being received at once, in all.
pub const MAX_RECEIVING: usize = 32;
/// How long an offer waits for the user.
pub const OFFER_TTL: Duration = Duration::from_secs(14 * 86_400);
/// How long after its offer a file may take to arrive.
pub const RECEIVE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// What the user says of a file they send.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Its name.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// What it is.
    pub kind: FileKind,
    /// A voice note's length (ms).
    pub duration_ms: u32,
    /// Words with it.
    pub caption: String,
}

/// A file as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its history entry.
    pub message: LocalMessageId,
    /// The conversation.
    pub thread: String,
    /// Ours.
    pub outgoing: bool,
    /// What it is.
    pub kind: FileKind,
    /// Its name.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Its size.
    pub size: u64,
    /// A voice note's length (ms).
    pub duration_ms: u32,
    /// `offered`, `receiving`, `received`, `sending`, `sent`, `declined`, `cancelled`, `failed`.
    pub state: &'static str,
    /// Bytes there (the least of the recipients', for ours).
    pub done_bytes: u64,
    /// Recipients that have it whole, of how many (ours).
    pub recipients: [u32; 2],
    /// Bytes a second (measured over its progress, else expected at the profile's rates).
    pub rate_bps: u64,
    /// Seconds left, while in progress.
    pub eta_secs: Option<u64>,
    /// Ours, sent at the raised rate.
    pub fast: bool,
}

impl FileInfo {
    fn with_speed(mut self, e: &Engine) -> Self {
        let (rate, eta) = e.file_speed(&self);
        self.rate_bps = rate.round() as u64;
        self.eta_secs = eta;
        self
    }
}

/// The sending and receiving transfers of an engine.
#[derive(Default)]
pub(super) struct Files {
    out: BTreeMap<[u8; 16], OutFile>,
    inn: BTreeMap<[u8; 32], InXfer>,
    /// Outgoing transfers whose core state changed since it was saved.
    dirty: BTreeSet<[u8; 16]>,
    send_config: Option<SendConfig>,
    recv_config: Option<RecvConfig>,
    /// Last progress event per transfer (at most one a second).
    last_event: BTreeMap<Vec<u8>, UnixMicros>,
    /// Per file: bytes and time of the last sample, and the speed (bytes a second, averaged).
    speed: BTreeMap<Vec<u8>, (u64, UnixMicros, f64)>,
    /// An upload in parts (the app's).
    upload: Option<Upload>,
    /// Tell the senders of the files we are receiving that we are back (set at open).
    say_back: bool,
}

impl Files {
    /// Whether a file's packet waits for a payload slot.
    pub(super) fn have_queued(&self) -> bool {
        self.out.values().any(|f| f.core.has_queued())
    }

    /// The next packet of a file of ours for a payload slot.
    pub(super) fn next_packet<R: CryptoRng>(
        &mut self,
        net: &Network,
        stats: &mut EngineStats,
        now: SystemTime,
        rng: &mut R,
    ) -> Option<Vec<u8>> {
        let at = UnixMicros::from_system_time(now);
        for (id, f) in &mut self.out {
            if let Some(p) = f.core.next_packet(at, &net.sphinx, &net.view, rng) {
                if f.core.stats().chunks >= f.chunks_saved + 64 {
                    self.dirty.insert(*id);
                }
                stats.sent_file += 1;
                return Some(p.packet);
            }
        }
        None
    }

    /// The next answer of a block of a file sent to us, for the acknowledgements' turn.
    pub(super) fn next_answer<R: CryptoRng>(
        &mut self,
        net: &Network,
        stats: &mut EngineStats,
        now: SystemTime,
        rng: &mut R,
    ) -> Option<Vec<u8>> {
        let at = UnixMicros::from_system_time(now);
        for x in self.inn.values_mut() {
            let Some(core) = &mut x.core else { continue };
            while let Some((surb, entry)) = core.poll_reply(at) {
                if let Ok(p) = sending::acks_packet(&net.sphinx, &surb, vec![entry], rng) {
                    stats.sent_file_answers += 1;
                    return Some(p.packet);
                }
            }
        }
        None
    }
}

struct OutFile {
    rec: XferOut,
    core: TransferSend,
    chunks_saved: u64,
}

struct InXfer {
    rec: XferIn,
    core: Option<TransferRecv>,
    stored: BTreeSet<(u16, u16)>,
}

fn in_key(thread: &[u8; 16], transfer: &[u8; 16]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(thread);
    k[16..].copy_from_slice(transfer);
    k
}

fn shard_key(k: &[u8; 32], block: u16, index: u16) -> Vec<u8> {
    let mut v = k.to_vec();
    v.extend_from_slice(&block.to_be_bytes());
    v.extend_from_slice(&index.to_be_bytes());
    v
}

/// The blob row of block `b`: ours under zeros ‖ transfer, an incoming one under thread ‖ transfer.
fn blob_key(owner: &[u8; 32], block: u16) -> Vec<u8> {
    let mut v = owner.to_vec();
    v.extend_from_slice(&block.to_be_bytes());
    v
}

fn out_owner(transfer: &[u8; 16]) -> [u8; 32] {
    in_key(&[0; 16], transfer)
}

/// `SHA-256("qanat-file v1" ‖ file key ‖ file)`.
fn keyed_digest(key: &[u8; 32]) -> Sha256 {
    let mut h = Sha256::new();
    h.update(b"qanat-file v1");
    h.update(key);
    h
}

/// Reads a file's blocks from the profile for the sender core.
struct BlobSource<'a> {
    profile: &'a Profile,
    owner: [u8; 32],
}

impl BlockSource for BlobSource<'_> {
    type Error = EngineError;
    fn read_block(&mut self, block: u16, buf: &mut [u8]) -> Result<(), EngineError> {
        let v = self
            .profile
            .get(NS_BLOB, &blob_key(&self.owner, block))?
            .ok_or(EngineError::Corrupt("file block"))?;
        let BlobPart(plain) = decode(&v)?;
        let src = plain.get(..buf.len()).ok_or(EngineError::Corrupt("file block"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn peer_state_name(s: PeerFile) -> &'static str {
    match s {
        PeerFile::Offered => "offered",
        PeerFile::Sending => "sending",
        PeerFile::Complete => "complete",
        PeerFile::Declined => "declined",
        PeerFile::Cancelled => "cancelled",
        PeerFile::Failed => "failed",
    }
}

fn in_state_name(s: InFile) -> &'static str {
    match s {
        InFile::Offered => "offered",
        InFile::Receiving => "receiving",
        InFile::Complete => "received",
        InFile::Declined => "declined",
        InFile::Cancelled => "cancelled",
        InFile::Failed => "failed",
    }
}

impl Engine {
    /// The factor a fast file raises the payload rate by here: 2 (a recipient drains twice the
    /// standard rate), or less if the directory allows less; 1 when the directory allows none.
    pub(super) fn fast_limit(params: &qanat_pki::Parameters) -> f64 {
        f64::from(params.file_limits().fast_factor_max.min(FAST_FACTOR))
    }

    /// The factor the payload rate runs at now: [`Self::fast_limit`] while a fast file of ours is
    /// offered or being sent, else 1.
    pub(super) fn fast_factor(&self, params: &qanat_pki::Parameters) -> f64 {
        let active = self.files.out.values().any(|f| {
            f.rec.fast && f.rec.peers.iter().any(|p| matches!(p.state, PeerFile::Offered | PeerFile::Sending))
        });
        if active { Self::fast_limit(params) } else { 1.0 }
    }

    /// Applies the rates again when a fast file starts or ends.
    fn refresh_rates(&mut self) {
        if let Some(n) = &self.network {
            let (params, view) = (n.params.clone(), n.view.clone());
            self.apply_traffic(&params, &view);
        }
    }

    /// The largest file that may be sent or accepted here: the directory's limit (1 MiB under a
    /// document of version 1, which sets none; [`DEFAULT_MAX_FILE_BYTES`] before any document).
    pub fn max_file_bytes(&self) -> u64 {
        let network = self.file_limits().map_or(DEFAULT_MAX_FILE_BYTES, |l| u64::from(l.max_file_bytes));
        self.settings.max_file_bytes.map_or(network, |m| m.min(network))
    }

    /// The size up to which offered files are accepted without asking: the user's setting, else
    /// 1 MiB (256 KiB on the metered profile); never above [`Self::max_file_bytes`].
    pub fn auto_accept_bytes(&self) -> u64 {
        let default =
            if self.traffic.name() == "metered" { AUTO_ACCEPT_BYTES / 4 } else { AUTO_ACCEPT_BYTES };
        self.settings.auto_accept_bytes.unwrap_or(default).min(self.max_file_bytes())
    }

    /// The shard length of the network in use.
    fn shard_len(&self) -> Result<usize, EngineError> {
        let net = self.network()?;
        Ok(shard_capacity(net.sphinx.geometry())?)
    }

    /// The transfers' settings from the network's rates: a block is answered a grace after its
    /// SURBS (room for shards still in the mixes and a fetch at each end), after a random delay
    /// of a payload slot on average; the sender waits for that, and the outbox's round trip,
    /// before it probes.
    pub(super) fn apply_file_timing(&mut self, first: Duration, slot: Duration, hops: Duration) {
        let grace = hops + self.config.fetch_interval * 2 + slot;
        let reply_delay = slot;
        let wait = first + grace + reply_delay * 3;
        let send = SendConfig {
            resend: ResendPolicy { first: wait, max: (wait * 16).min(Duration::from_secs(1800)).max(wait) },
            parity: ParityPolicy::Adaptive,
            ..SendConfig::default()
        };
        let recv = RecvConfig { grace, reply_delay, ..RecvConfig::default() };
        for f in self.files.out.values_mut() {
            f.core.set_config(send);
        }
        for x in self.files.inn.values_mut() {
            if let Some(c) = &mut x.core {
                c.set_config(recv);
            }
        }
        self.files.send_config = Some(send);
        self.files.recv_config = Some(recv);
    }

    /// Sends a file to the contact or group `name`: keeps it in the profile, offers it to every
    /// other member, and sends its chunks to each as it accepts. Returns its history entry's id.
    /// `fast`: at a raised payload rate for the file's duration, which shows on the user's link
    /// (the interfaces warn first); refused where the directory allows no fast mode.
    pub fn send_file<R: CryptoRng>(
        &mut self,
        name: &str,
        spec: FileSpec,
        bytes: &[u8],
        fast: bool,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<LocalMessageId, EngineError> {
        if fast && self.network().map(|n| Self::fast_limit(&n.params)).unwrap_or(1.0) < 2.0 {
            return Err(EngineError::FileNotReady("faster sending is not offered on this network"));
        }
        let t = self.thread_by_name(name)?;
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        if th.state != ThreadState::Active {
            return Err(EngineError::NotReady(name.into(), "its conversation is not set up yet"));
        }
        let size = bytes.len() as u64;
        let limit = self.max_file_bytes();
        if size > limit {
            return Err(EngineError::FileTooLarge { size, limit });
        }
        if !file_name_ok(&spec.name) || spec.caption.len() > MAX_CAPTION {
            return Err(EngineError::InvalidName(spec.name));
        }
        let s = self.shard_len()?;
        let plan = Plan::new(size, s).map_err(|_| EngineError::FileTooLarge { size, limit })?;
        let mut transfer = [0u8; 16];
        rng.fill_bytes(&mut transfer);
        let mut file_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(file_key.as_mut());
        let mut signing_seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(signing_seed.as_mut());
        let signing = SigningKey::from_bytes(&signing_seed);
        let mut h = keyed_digest(&file_key);
        h.update(bytes);
        let digest: [u8; 32] = h.finalize().into();
        let now_ms = UnixMillis::from_system_time(now).as_millis();
        let offer = FileOffer {
            sent_at_ms: now_ms,
            transfer,
            kind: spec.kind,
            name: spec.name.clone(),
            mime: spec.mime.clone(),
            size,
            duration_ms: spec.duration_ms,
            shard: u16::try_from(s).map_err(|_| EngineError::Geometry("shard length"))?,
            file_key: *file_key,
            transfer_key: signing.verifying_key().to_bytes(),
            digest,
            caption: spec.caption.clone(),
        };
        let plaintext = Content::File(Box::new(offer)).encode()?;
        // Our copy, by block, each padded to a whole block of shards.
        let owner = out_owner(&transfer);
        let row_len = usize::from(BLOCK_DATA) * s;
        for (b, shape) in plan.blocks().iter().enumerate() {
            let (start, len) = plan.block_range(shape);
            let start = start as usize;
            let mut part = vec![0u8; row_len];
            let end = (start + len).min(bytes.len());
            if start < end {
                part[..end - start].copy_from_slice(&bytes[start..end]);
            }
            // Bounded: the plan has fewer than 2^16 blocks.
            self.writes.push(Write::put(blob_key(&owner, b as u16), &BlobPart(part)));
        }
        let conv = self.convs.get_mut(&t).ok_or(EngineError::Corrupt("conversation"))?;
        let out = conv.send(&plaintext)?;
        self.dirty_convs.push(t);
        for m in &out.to {
            self.queue_mls(t, m, Outer::Mls(out.bytes.clone()).encode(), None, false, rng);
        }
        let hkey = self.history_key(t);
        let peers: Vec<XferPeer> =
            out.to.iter().map(|m| XferPeer { member: *m.as_bytes(), state: PeerFile::Offered }).collect();
        let rec = XferOut {
            thread: t,
            history: hkey.clone(),
            kind: spec.kind,
            name: spec.name.clone(),
            mime: spec.mime.clone(),
            size,
            duration_ms: spec.duration_ms,
            shard: s as u16,
            file_key: *file_key,
            signing: *signing_seed,
            digest,
            created_ms: now_ms,
            peers,
            fast,
        };
        let core = self.out_core(transfer, &rec, &plan);
        self.writes.push(Write::put(transfer, &rec));
        self.writes.push(Write::put(transfer, &XferState(core.save())));
        let entry = HistoryEntry {
            outgoing: true,
            sender: "me".into(),
            text: spec.caption,
            sent_at_ms: now_ms,
            at_ms: now_ms,
            recipients: out.to.len() as u32,
            delivered: 0,
            sent: false,
            read: true,
            file: Some(FileRef {
                key: transfer.to_vec(),
                kind: spec.kind,
                name: spec.name,
                mime: spec.mime,
                size,
                duration_ms: spec.duration_ms,
            }),
        };
        self.writes.push(Write::put(hkey.clone(), &entry));
        self.files.out.insert(transfer, OutFile { rec, core, chunks_saved: 0 });
        self.save_thread(t);
        self.flush()?;
        if fast {
            self.refresh_rates();
        }
        Ok(LocalMessageId(hkey))
    }

    /// The sender core of transfer `id` (`rec`), every recipient held until it accepts.
    fn out_core(&self, id: [u8; 16], rec: &XferOut, plan: &Plan) -> TransferSend {
        let reply = MailboxId(self.settings.home_mailbox);
        let routes: Vec<(sending::Route, MailboxId)> =
            rec.peers.iter().map(|p| (self.member_route(rec.thread, &p.member), reply)).collect();
        let mut core = TransferSend::new(
            TransferId(id),
            plan.clone(),
            Zeroizing::new(rec.file_key),
            SigningKey::from_bytes(&rec.signing),
            &routes,
            self.files.send_config.unwrap_or_default(),
        );
        for n in 0..routes.len() {
            core.hold(n);
        }
        core
    }

    /// Where member `m` of thread `t` receives; a placeholder while it is not known (a member
    /// whose route is unknown cannot have accepted a file yet; the route is looked up again when
    /// it does).
    fn member_route(&self, t: [u8; 16], m: &[u8; 32]) -> sending::Route {
        self.threads.get(&t).and_then(|th| th.roster.get(&hex(m)).copied()).map_or(
            sending::Route {
                gateway: qanat_packet::NodeId([0; 32]),
                mailbox: MailboxId([0; 32]),
                seal: sending::seal::SealKey([0; 32]),
            },
            |r| r.route(),
        )
    }
}

/// Receiving: offers, statuses, shards, SURBS.
impl Engine {
    /// Encrypts `content` in thread `t` and queues it for member `to` alone (a FILE_STATUS: no
    /// other member needs it; MLS takes the generation the others never see).
    fn send_to_member<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        content: &Content,
        to: &[u8; 32],
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let plaintext = content.encode()?;
        let conv = self.convs.get_mut(&t).ok_or(EngineError::Corrupt("conversation"))?;
        let out = conv.send(&plaintext)?;
        self.dirty_convs.push(t);
        if let Some(m) = out.to.iter().find(|m| m.as_bytes() == to) {
            self.queue_mls(t, m, Outer::Mls(out.bytes.clone()).encode(), None, false, rng);
        }
        Ok(())
    }

    /// A FILE offer from member `sender` of thread `t`.
    pub(super) fn on_file_offer<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        sender: MemberId,
        offer: FileOffer,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let key = in_key(&t, &offer.transfer);
        if self.files.inn.contains_key(&key) {
            return Ok(());
        }
        let own = self.convs.get(&t).map(|c| c.own_id());
        if own == Some(sender) {
            return Ok(());
        }
        let in_thread = self
            .files
            .inn
            .values()
            .filter(|x| x.rec.thread == t && matches!(x.rec.state, InFile::Offered | InFile::Receiving))
            .count();
        let ok_shard = self.shard_len().ok() == Some(usize::from(offer.shard));
        let ok_plan = Plan::new(offer.size, usize::from(offer.shard)).is_ok();
        let ok_key = VerifyingKey::from_bytes(&offer.transfer_key).is_ok();
        if offer.size > self.max_file_bytes()
            || !ok_shard
            || !ok_plan
            || !ok_key
            || in_thread >= MAX_OFFERS_PER_THREAD
        {
            // Declined at once: its sender stops waiting (and learns nothing but the refusal).
            self.stats.offers_refused += 1;
            let status = Content::FileStatus { transfer: offer.transfer, status: FileStatus::Declined };
            return self.send_to_member(t, &status, sender.as_bytes(), rng);
        }
        let label = self.label(t, &sender);
        let thread_name = self.threads.get(&t).map(|th| th.name.clone()).unwrap_or_default();
        let now_ms = UnixMillis::from_system_time(now).as_millis();
        let hkey = self.history_key(t);
        let entry = HistoryEntry {
            outgoing: false,
            sender: label.clone(),
            text: offer.caption.clone(),
            sent_at_ms: offer.sent_at_ms,
            at_ms: now_ms,
            recipients: 0,
            delivered: 0,
            sent: false,
            read: false,
            file: Some(FileRef {
                key: key.to_vec(),
                kind: offer.kind,
                name: offer.name.clone(),
                mime: offer.mime.clone(),
                size: offer.size,
                duration_ms: offer.duration_ms,
            }),
        };
        self.writes.push(Write::put(hkey.clone(), &entry));
        let rec = XferIn {
            thread: t,
            transfer: offer.transfer,
            sender: *sender.as_bytes(),
            history: hkey.clone(),
            kind: offer.kind,
            name: offer.name.clone(),
            mime: offer.mime.clone(),
            size: offer.size,
            duration_ms: offer.duration_ms,
            shard: offer.shard,
            file_key: offer.file_key,
            transfer_key: offer.transfer_key,
            digest: offer.digest,
            offered_ms: now_ms,
            state: InFile::Offered,
            decoded: Vec::new(),
        };
        self.writes.push(Write::put(key, &rec));
        self.files.inn.insert(key, InXfer { rec, core: None, stored: BTreeSet::new() });
        self.save_thread(t);
        let receiving = self.files.inn.values().filter(|x| x.rec.state == InFile::Receiving).count();
        if offer.size <= self.auto_accept_bytes() && receiving < MAX_RECEIVING {
            self.accept_in(key, rng)?;
        }
        self.events.push_back(EngineEvent::Message {
            id: LocalMessageId(hkey.clone()),
            thread: thread_name,
            sender: label,
            text: offer.caption.clone(),
            sent_at: UnixMillis::from_millis(offer.sent_at_ms).to_system_time(),
            received_at: now,
            file: self.file_info_of(&hkey).map(Box::new),
        });
        Ok(())
    }

    /// Starts receiving the offered file `key`: its core, and "accepted" to its sender.
    fn accept_in<R: CryptoRng>(&mut self, key: [u8; 32], rng: &mut R) -> Result<(), EngineError> {
        let recv_config = self.files.recv_config.unwrap_or_default();
        let Some(x) = self.files.inn.get_mut(&key) else { return Err(EngineError::NoSuchFile) };
        if x.rec.state != InFile::Offered {
            return Err(EngineError::FileNotReady("it was not waiting for an answer"));
        }
        let plan =
            Plan::new(x.rec.size, usize::from(x.rec.shard)).map_err(|_| EngineError::Corrupt("file plan"))?;
        let verify =
            VerifyingKey::from_bytes(&x.rec.transfer_key).map_err(|_| EngineError::Corrupt("file key"))?;
        x.core = Some(TransferRecv::new(
            TransferId(x.rec.transfer),
            plan,
            Zeroizing::new(x.rec.file_key),
            verify,
            recv_config,
        ));
        x.rec.state = InFile::Receiving;
        let (t, transfer, sender, hkey) = (x.rec.thread, x.rec.transfer, x.rec.sender, x.rec.history.clone());
        self.writes.push(Write::put(key, &x.rec));
        self.send_to_member(
            t,
            &Content::FileStatus { transfer, status: FileStatus::Accepted },
            &sender,
            rng,
        )?;
        self.files.last_event.remove(&hkey);
        Ok(())
    }

    /// A FILE_STATUS from member `sender` of thread `t`: a recipient's answer to a file of ours,
    /// or a sender's cancel of a file to us. Anyone else's is ignored.
    pub(super) fn on_file_status(
        &mut self,
        t: [u8; 16],
        sender: MemberId,
        transfer: [u8; 16],
        status: FileStatus,
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let ikey = in_key(&t, &transfer);
        if status == FileStatus::Cancelled {
            let Some(x) = self.files.inn.get_mut(&ikey) else { return Ok(()) };
            if x.rec.sender != *sender.as_bytes()
                || !matches!(x.rec.state, InFile::Offered | InFile::Receiving)
            {
                return Ok(());
            }
            self.give_up_in(ikey, InFile::Cancelled, now);
            return Ok(());
        }
        let route = self.member_route(t, sender.as_bytes());
        let Some(f) = self.files.out.get_mut(&transfer) else { return Ok(()) };
        if f.rec.thread != t {
            return Ok(());
        }
        let Some(n) = f.rec.peers.iter().position(|p| p.member == *sender.as_bytes()) else { return Ok(()) };
        let before = f.rec.peers[n].state;
        let after = match (before, status) {
            (PeerFile::Offered, FileStatus::Accepted) => {
                f.core.reroute(n, route);
                f.core.start(n);
                PeerFile::Sending
            }
            (PeerFile::Sending, FileStatus::Accepted) => {
                // "Accepted" again: its client restarted with our file incomplete.
                f.core.resume(n, UnixMicros::from_system_time(now));
                return Ok(());
            }
            (PeerFile::Offered | PeerFile::Sending, FileStatus::Declined) => {
                f.core.cancel(n);
                PeerFile::Declined
            }
            (PeerFile::Offered | PeerFile::Sending | PeerFile::Failed, FileStatus::Complete) => {
                f.core.cancel(n);
                PeerFile::Complete
            }
            _ => return Ok(()),
        };
        f.rec.peers[n].state = after;
        self.files.dirty.insert(transfer);
        let hkey = f.rec.history.clone();
        if after == PeerFile::Complete {
            self.count_delivered(&hkey, false)?;
        } else if after == PeerFile::Declined {
            self.count_delivered(&hkey, true)?;
        }
        self.settle_out(transfer);
        self.transfer_event(&hkey, now, true);
        Ok(())
    }

    /// One more recipient of our history entry `hkey` has the file (or, `dropped`, never will:
    /// it counts no longer).
    fn count_delivered(&mut self, hkey: &[u8], dropped: bool) -> Result<(), EngineError> {
        let Some(v) = self.pending_or_saved(NS_HISTORY, hkey)? else { return Ok(()) };
        let mut e: HistoryEntry = decode(&v)?;
        let before = e.delivery();
        if dropped {
            e.recipients = e.recipients.saturating_sub(1);
        } else {
            e.delivered = (e.delivered + 1).min(e.recipients);
        }
        e.sent = true;
        self.writes.push(Write::put(hkey.to_vec(), &e));
        let after = e.delivery();
        if after != before {
            self.events
                .push_back(EngineEvent::Delivery { message: LocalMessageId(hkey.to_vec()), state: after });
        }
        Ok(())
    }

    /// A row as this transaction will leave it, else as saved.
    fn pending_or_saved(&self, ns: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let pending = self.writes.iter().rev().find_map(|w| match w {
            Write::Put(n, k, v) if *n == ns && k.as_slice() == key => Some(Some(v.clone())),
            Write::Del(n, k) if *n == ns && k.as_slice() == key => Some(None),
            _ => None,
        });
        match pending {
            Some(v) => Ok(v),
            None => Ok(self.profile.get(ns, key)?.map(|v| v.to_vec())),
        }
    }

    /// Member `m` left thread `t`: our files to it stop (its mailbox goes), and files from it
    /// that have not arrived whole are given up.
    pub(super) fn files_member_left(
        &mut self,
        t: [u8; 16],
        m: &[u8; 32],
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let mut ours = Vec::new();
        for (id, f) in self.files.out.iter_mut().filter(|(_, f)| f.rec.thread == t) {
            for (n, p) in f.rec.peers.iter_mut().enumerate() {
                if p.member == *m && matches!(p.state, PeerFile::Offered | PeerFile::Sending) {
                    p.state = PeerFile::Cancelled;
                    f.core.cancel(n);
                    ours.push((*id, f.rec.history.clone()));
                }
            }
        }
        for (id, hkey) in ours {
            self.files.dirty.insert(id);
            self.count_delivered(&hkey, true)?;
            self.settle_out(id);
            self.transfer_event(&hkey, now, true);
        }
        let theirs: Vec<[u8; 32]> = self
            .files
            .inn
            .iter()
            .filter(|(_, x)| {
                x.rec.thread == t
                    && x.rec.sender == *m
                    && matches!(x.rec.state, InFile::Offered | InFile::Receiving)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in theirs {
            self.give_up_in(k, InFile::Cancelled, now);
        }
        Ok(())
    }

    /// Once no recipient of file `transfer` is waiting or receiving, its keys go.
    fn settle_out(&mut self, transfer: [u8; 16]) {
        let Some(f) = self.files.out.get_mut(&transfer) else { return };
        if f.rec.peers.iter().any(|p| matches!(p.state, PeerFile::Offered | PeerFile::Sending)) {
            return;
        }
        f.rec.file_key = [0; 32];
        f.rec.signing = [0; 32];
        let fast = f.rec.fast;
        self.writes.push(Write::put(transfer, &f.rec));
        self.writes.push(Write::Del(NS_XFER_STATE, transfer.to_vec()));
        self.files.dirty.remove(&transfer);
        if fast {
            self.refresh_rates();
        }
    }

    /// Gives up the incoming file `key` (`state`): its shards and partial blocks go, its key is
    /// wiped.
    fn give_up_in(&mut self, key: [u8; 32], state: InFile, now: SystemTime) {
        let Some(x) = self.files.inn.get_mut(&key) else { return };
        x.rec.state = state;
        x.rec.file_key = [0; 32];
        x.core = None;
        for (b, i) in std::mem::take(&mut x.stored) {
            self.writes.push(Write::Del(NS_SHARD, shard_key(&key, b, i)));
        }
        for b in std::mem::take(&mut x.rec.decoded) {
            self.writes.push(Write::Del(NS_BLOB, blob_key(&key, b)));
        }
        let hkey = x.rec.history.clone();
        self.writes.push(Write::put(key, &x.rec));
        self.transfer_event(&hkey, now, true);
    }

    /// Gives up the incoming file `key` (`state`) and tells its sender, who then stops.
    fn refuse_in<R: CryptoRng>(
        &mut self,
        key: [u8; 32],
        state: InFile,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(x) = self.files.inn.get(&key) else { return Ok(()) };
        let (t, transfer, sender) = (x.rec.thread, x.rec.transfer, x.rec.sender);
        self.give_up_in(key, state, now);
        self.send_to_member(t, &Content::FileStatus { transfer, status: FileStatus::Declined }, &sender, rng)
    }

    /// A CHUNK that arrived in thread `t`'s mailbox.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_chunk<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        transfer: TransferId,
        block: u16,
        index: u16,
        signature: &[u8; 64],
        shard: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let key = in_key(&t, &transfer.0);
        let at = UnixMicros::from_system_time(now);
        let Some(x) = self.files.inn.get_mut(&key) else {
            self.stats.shards_refused += 1;
            return Ok(());
        };
        let Some(core) = x.core.as_mut().filter(|_| x.rec.state == InFile::Receiving) else {
            self.stats.shards_refused += 1;
            return Ok(());
        };
        match core.handle_chunk(block, index, signature, shard, at, rng) {
            Ok(ChunkOutcome::Stored) => {
                x.stored.insert((block, index));
                self.writes.push(Write::put(shard_key(&key, block, index), &ShardData(shard.to_vec())));
                self.stats.shards_stored += 1;
            }
            Ok(ChunkOutcome::Duplicate) => self.stats.shards_duplicate += 1,
            Ok(ChunkOutcome::Decoded { block, plain }) => {
                let complete = core.is_complete();
                let mut part = plain.to_vec();
                part.resize(usize::from(BLOCK_DATA) * usize::from(x.rec.shard), 0);
                self.writes.push(Write::put(blob_key(&key, block), &BlobPart(part)));
                let gone: Vec<(u16, u16)> = x.stored.iter().filter(|(b, _)| *b == block).copied().collect();
                for (b, i) in gone {
                    x.stored.remove(&(b, i));
                    self.writes.push(Write::Del(NS_SHARD, shard_key(&key, b, i)));
                }
                x.rec.decoded.push(block);
                self.writes.push(Write::put(key, &x.rec));
                self.stats.shards_stored += 1;
                if complete {
                    self.complete_in(key, now, rng)?;
                }
            }
            Err(_) => self.stats.shards_refused += 1,
        }
        if let Some(x) = self.files.inn.get(&key) {
            let hkey = x.rec.history.clone();
            self.transfer_event(&hkey, now, false);
        }
        Ok(())
    }

    /// Every block of incoming file `key` decoded: its bytes are checked against the digest,
    /// and its sender told.
    fn complete_in<R: CryptoRng>(
        &mut self,
        key: [u8; 32],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(x) = self.files.inn.get(&key) else { return Ok(()) };
        let plan =
            Plan::new(x.rec.size, usize::from(x.rec.shard)).map_err(|_| EngineError::Corrupt("file plan"))?;
        let mut h = keyed_digest(&x.rec.file_key);
        for (b, shape) in plan.blocks().iter().enumerate() {
            let v = self
                .pending_or_saved(NS_BLOB, &blob_key(&key, b as u16))?
                .ok_or(EngineError::Corrupt("file block"))?;
            let BlobPart(plain) = decode(&v)?;
            let n = plan.block_file_bytes(shape) as usize;
            h.update(plain.get(..n).ok_or(EngineError::Corrupt("file block"))?);
        }
        let ok = bool::from(subtle::ConstantTimeEq::ct_eq(&h.finalize()[..], &x.rec.digest[..]));
        let (t, transfer, sender) = (x.rec.thread, x.rec.transfer, x.rec.sender);
        if !ok {
            self.stats.files_corrupt += 1;
            return self.refuse_in(key, InFile::Failed, now, rng);
        }
        let Some(x) = self.files.inn.get_mut(&key) else { return Ok(()) };
        x.rec.state = InFile::Complete;
        x.rec.file_key = [0; 32];
        let hkey = x.rec.history.clone();
        self.writes.push(Write::put(key, &x.rec));
        self.stats.files_received += 1;
        self.transfer_event(&hkey, now, true);
        self.send_to_member(t, &Content::FileStatus { transfer, status: FileStatus::Complete }, &sender, rng)
    }

    /// A SURBS that arrived in our mailbox `mailbox` of thread `t`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_surbs<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        mailbox: [u8; 32],
        transfer: TransferId,
        block: u16,
        round: u8,
        signature: &[u8; 64],
        surb: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) {
        let key = in_key(&t, &transfer.0);
        let at = UnixMicros::from_system_time(now);
        let taken = self.files.inn.get_mut(&key).and_then(|x| x.core.as_mut()).is_some_and(|c| {
            c.handle_surbs(&MailboxId(mailbox), block, round, signature, surb, at, rng).is_ok()
        });
        if !taken {
            self.stats.shards_refused += 1;
        }
    }

    /// A reply through one of our transfers' SURBs: its block's bitmap. Returns whether it was
    /// one of theirs.
    pub(super) fn on_file_reply(&mut self, surb_id: SurbId, payload: &[u8], now: SystemTime) -> bool {
        let Some(net) = &self.network else { return false };
        let Some((id, f)) = self.files.out.iter_mut().find(|(_, f)| f.core.owns_surb(&surb_id)) else {
            return false;
        };
        if !f.core.handle_reply(&net.sphinx, surb_id, payload) {
            return false;
        }
        let id = *id;
        self.files.dirty.insert(id);
        self.out_events(id, now);
        true
    }

    /// What the sender core of `id` reports: failures, progress.
    fn out_events(&mut self, id: [u8; 16], now: SystemTime) {
        let Some(f) = self.files.out.get_mut(&id) else { return };
        let mut changed = false;
        let mut progress = false;
        while let Some(e) = f.core.poll_event() {
            match e {
                SendEvent::PeerFailed(n) => {
                    if let Some(p) = f.rec.peers.get_mut(n)
                        && p.state == PeerFile::Sending
                    {
                        p.state = PeerFile::Failed;
                        changed = true;
                    }
                }
                SendEvent::Progress(_) | SendEvent::PeerDone(_) => progress = true,
            }
        }
        let hkey = f.rec.history.clone();
        if changed {
            self.writes.push(Write::put(id, &f.rec));
            self.settle_out(id);
        }
        if changed || progress {
            self.transfer_event(&hkey, now, changed);
        }
    }

    /// A progress event for the file of history entry `hkey`: at most one a second, unless
    /// `always` (its state changed).
    fn transfer_event(&mut self, hkey: &[u8], now: SystemTime, always: bool) {
        let at = UnixMicros::from_system_time(now);
        if !always
            && self
                .files
                .last_event
                .get(hkey)
                .is_some_and(|t| at.saturating_since(*t) < Duration::from_secs(1))
        {
            return;
        }
        self.files.last_event.insert(hkey.to_vec(), at);
        if self.files.last_event.len() > 4096 {
            self.files.last_event.clear();
        }
        if let Some(info) = self.file_info_of(hkey) {
            // The speed: bytes gained since the last sample over the time, averaged.
            let sample = self.files.speed.get(hkey).copied();
            let speed = match sample {
                Some((bytes, t, rate)) if info.done_bytes > bytes => {
                    let secs = at.saturating_since(t).as_secs_f64().max(0.5);
                    let now_rate = (info.done_bytes - bytes) as f64 / secs;
                    (info.done_bytes, at, if rate > 0.0 { 0.7 * rate + 0.3 * now_rate } else { now_rate })
                }
                Some(s) => s,
                None => (info.done_bytes, at, 0.0),
            };
            if self.files.speed.len() > 4096 {
                self.files.speed.clear();
            }
            self.files.speed.insert(hkey.to_vec(), speed);
            self.events.push_back(EngineEvent::Transfer(Box::new(info)));
        }
    }
}

/// Slots, time, saving, opening.
impl Engine {
    /// Reads and encodes the blocks our transfers will send next (off the slot path: after the
    /// slot's packets are built).
    pub(super) fn prepare_files(&mut self) -> Result<(), EngineError> {
        for (id, f) in &mut self.files.out {
            if f.core.needs_prepare() {
                let mut src = BlobSource { profile: &self.profile, owner: out_owner(id) };
                f.core.prepare(&mut src).map_err(|e| match e {
                    sending::transfer::PrepareError::Source(e) => e,
                    sending::transfer::PrepareError::Code(_) => EngineError::Corrupt("file block"),
                })?;
            }
        }
        Ok(())
    }

    /// Probes overdue blocks, gives up offers and transfers past their time, and (once after a
    /// restart) tells the senders of files we are receiving that we are back.
    pub(super) fn files_timeout<R: CryptoRng>(
        &mut self,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        self.expire_upload(now);
        let at = UnixMicros::from_system_time(now);
        let now_ms = UnixMillis::from_system_time(now).as_millis();
        let mut given_up = Vec::new();
        for (id, f) in &mut self.files.out {
            f.core.handle_timeout(at);
            // A recipient who never said yes, or never got the whole file, in the time its own
            // client would have waited: given up (the sender's probes are bounded by time, not by
            // the budget, see `TransferSend`). Not one whose blocks are all acknowledged: its
            // "complete" is on its way.
            let age = now_ms.saturating_sub(f.rec.created_ms);
            let mut told = Vec::new();
            for (n, p) in f.rec.peers.iter_mut().enumerate() {
                let late = match p.state {
                    PeerFile::Offered => age > OFFER_TTL.as_millis() as u64,
                    PeerFile::Sending => {
                        age > RECEIVE_TTL.as_millis() as u64
                            && f.core.progress(n).is_some_and(|x| x.state != PeerState::Done)
                    }
                    _ => false,
                };
                if late {
                    f.core.cancel(n);
                    p.state = PeerFile::Failed;
                    told.push(p.member);
                }
            }
            if !told.is_empty() {
                given_up.push((*id, f.rec.thread, told));
            }
        }
        for (id, t, told) in given_up {
            let Some(f) = self.files.out.get(&id) else { continue };
            let hkey = f.rec.history.clone();
            self.writes.push(Write::put(id, &f.rec));
            self.files.dirty.insert(id);
            // Its client, if it ever comes back, stops waiting (its own clock may be behind ours:
            // an offer it got late, a yes after we gave up).
            for m in &told {
                let status = Content::FileStatus { transfer: id, status: FileStatus::Cancelled };
                let r = self.send_to_member(t, &status, m, rng);
                self.go_on("telling a member a file was given up", r)?;
            }
            self.settle_out(id);
            self.transfer_event(&hkey, now, true);
        }
        // Back after a restart: the senders of the files we are receiving probe at once.
        if std::mem::take(&mut self.files.say_back) {
            let back: Vec<([u8; 16], [u8; 16], [u8; 32])> = self
                .files
                .inn
                .values()
                .filter(|x| x.rec.state == InFile::Receiving)
                .map(|x| (x.rec.thread, x.rec.transfer, x.rec.sender))
                .collect();
            for (t, transfer, sender) in back {
                let status = Content::FileStatus { transfer, status: FileStatus::Accepted };
                let r = self.send_to_member(t, &status, &sender, rng);
                self.go_on("telling a sender we are back", r)?;
            }
        }
        let expired: Vec<([u8; 32], InFile)> = self
            .files
            .inn
            .iter()
            .filter_map(|(k, x)| match x.rec.state {
                InFile::Offered if now_ms.saturating_sub(x.rec.offered_ms) > OFFER_TTL.as_millis() as u64 => {
                    Some((*k, InFile::Cancelled))
                }
                InFile::Receiving
                    if now_ms.saturating_sub(x.rec.offered_ms) > RECEIVE_TTL.as_millis() as u64 =>
                {
                    Some((*k, InFile::Failed))
                }
                _ => None,
            })
            .collect();
        for (k, s) in expired {
            self.give_up_in(k, s, now);
        }
        // A complete file answers its sender's SURBS (a lost last answer) for as long as a
        // transfer may take, then no longer needs its core.
        for x in self.files.inn.values_mut() {
            if x.rec.state == InFile::Complete
                && x.core.is_some()
                && now_ms.saturating_sub(x.rec.offered_ms) > RECEIVE_TTL.as_millis() as u64
            {
                x.core = None;
            }
        }
        Ok(())
    }

    /// When the transfers next have work.
    pub(super) fn files_poll_timeout(&self) -> Option<UnixMicros> {
        let out = self.files.out.values().filter_map(|f| f.core.poll_timeout());
        let inn =
            self.files.inn.values().filter_map(|x| x.core.as_ref().and_then(TransferRecv::poll_timeout));
        out.chain(inn).min()
    }

    /// The sender cores' states that changed, staged for the next transaction.
    pub(super) fn stage_file_writes(&mut self) {
        for id in std::mem::take(&mut self.files.dirty) {
            let Some(f) = self.files.out.get_mut(&id) else { continue };
            f.chunks_saved = f.core.stats().chunks;
            self.writes.push(Write::put(id, &XferState(f.core.save())));
            self.writes.push(Write::put(id, &f.rec));
        }
    }

    /// Loads the transfers at open.
    pub(super) fn load_files(&mut self, opened: SystemTime) -> Result<(), EngineError> {
        let now = UnixMicros::ZERO;
        self.files.say_back = true;
        for (k, v) in self.profile.scan(NS_XFER_OUT)? {
            let id: [u8; 16] =
                k.as_slice().try_into().map_err(|_| EngineError::Corrupt("outgoing file key"))?;
            let rec: XferOut = decode(&v)?;
            let plan =
                Plan::new(rec.size, usize::from(rec.shard)).map_err(|_| EngineError::Corrupt("file plan"))?;
            let mut core = self.out_core(id, &rec, &plan);
            if let Some(st) = self.profile.get(NS_XFER_STATE, &id)? {
                let XferState(bytes) = decode(&st)?;
                // A state that no longer reads (never expected) restarts the transfer's
                // bookkeeping: the recipient's answers say what it holds.
                if core.restore(&bytes, now).is_err() {
                    self.stats.failed += 1;
                }
            } else {
                // Settled: nothing more to send.
                for n in 0..rec.peers.len() {
                    core.cancel(n);
                }
            }
            for (n, p) in rec.peers.iter().enumerate() {
                match p.state {
                    PeerFile::Sending => {
                        let route = self.member_route(rec.thread, &p.member);
                        core.reroute(n, route);
                        core.start(n);
                    }
                    PeerFile::Offered => {}
                    _ => core.cancel(n),
                }
            }
            self.files.out.insert(id, OutFile { rec, core, chunks_saved: 0 });
        }
        let mut shards: BTreeMap<[u8; 32], Vec<(u16, u16)>> = BTreeMap::new();
        for k in self.profile.keys(NS_SHARD) {
            let Ok(arr) = <[u8; 36]>::try_from(k.as_slice()) else { continue };
            let mut owner = [0u8; 32];
            owner.copy_from_slice(&arr[..32]);
            let b = u16::from_be_bytes([arr[32], arr[33]]);
            let i = u16::from_be_bytes([arr[34], arr[35]]);
            shards.entry(owner).or_default().push((b, i));
        }
        let recv_config = self.files.recv_config.unwrap_or_default();
        for (k, v) in self.profile.scan(NS_XFER_IN)? {
            let key: [u8; 32] =
                k.as_slice().try_into().map_err(|_| EngineError::Corrupt("incoming file key"))?;
            let rec: XferIn = decode(&v)?;
            let mut x = InXfer { rec, core: None, stored: BTreeSet::new() };
            if matches!(x.rec.state, InFile::Receiving | InFile::Complete) {
                let plan = Plan::new(x.rec.size, usize::from(x.rec.shard))
                    .map_err(|_| EngineError::Corrupt("file plan"))?;
                let verify = VerifyingKey::from_bytes(&x.rec.transfer_key)
                    .map_err(|_| EngineError::Corrupt("file key"))?;
                let mut core = TransferRecv::new(
                    TransferId(x.rec.transfer),
                    plan.clone(),
                    Zeroizing::new(x.rec.file_key),
                    verify,
                    recv_config,
                );
                let stale = x.rec.state == InFile::Complete
                    && UnixMillis::from_system_time(opened).as_millis().saturating_sub(x.rec.offered_ms)
                        > RECEIVE_TTL.as_millis() as u64;
                if stale {
                    self.files.inn.insert(key, x);
                    continue;
                }
                if x.rec.state == InFile::Complete {
                    for b in 0..plan.block_count() {
                        core.restore_decoded(b);
                    }
                } else {
                    for b in &x.rec.decoded {
                        core.restore_decoded(*b);
                    }
                    for (b, i) in shards.remove(&key).unwrap_or_default() {
                        if let Some(v) = self.profile.get(NS_SHARD, &shard_key(&key, b, i))? {
                            let ShardData(s) = decode(&v)?;
                            core.restore_shard(b, i, s);
                            x.stored.insert((b, i));
                        }
                    }
                }
                x.core = Some(core);
            }
            self.files.inn.insert(key, x);
        }
        Ok(())
    }
}

/// What the user does with files, and reads of them.
impl Engine {
    fn file_key_of(&self, id: &LocalMessageId) -> Result<Vec<u8>, EngineError> {
        let v = self.profile.get(NS_HISTORY, &id.0)?.ok_or(EngineError::UnknownMessage)?;
        let e: HistoryEntry = decode(&v)?;
        e.file.map(|f| f.key).ok_or(EngineError::NoSuchFile)
    }

    /// Accepts a file offered to us.
    pub fn accept_file<R: CryptoRng>(
        &mut self,
        id: &LocalMessageId,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let key: [u8; 32] =
            self.file_key_of(id)?.try_into().map_err(|_| EngineError::FileNotReady("it is ours"))?;
        let receiving = self.files.inn.values().filter(|x| x.rec.state == InFile::Receiving).count();
        if receiving >= MAX_RECEIVING {
            return Err(EngineError::FileNotReady("too many files are arriving at once; try again later"));
        }
        self.accept_in(key, rng)?;
        self.transfer_event(&id.0, now, true);
        self.flush()
    }

    /// Declines a file offered to us (its sender is told).
    pub fn decline_file<R: CryptoRng>(
        &mut self,
        id: &LocalMessageId,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let key: [u8; 32] =
            self.file_key_of(id)?.try_into().map_err(|_| EngineError::FileNotReady("it is ours"))?;
        let x = self.files.inn.get(&key).ok_or(EngineError::NoSuchFile)?;
        if x.rec.state != InFile::Offered {
            return Err(EngineError::FileNotReady("it was not waiting for an answer"));
        }
        self.refuse_in(key, InFile::Declined, now, rng)?;
        self.flush()
    }

    /// Stops a file in progress, ours (every recipient not done is told) or one arriving (its
    /// sender is told).
    pub fn cancel_file<R: CryptoRng>(
        &mut self,
        id: &LocalMessageId,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let key = self.file_key_of(id)?;
        if let Ok(k) = <[u8; 16]>::try_from(key.as_slice()) {
            let f = self.files.out.get_mut(&k).ok_or(EngineError::NoSuchFile)?;
            let mut told = Vec::new();
            for (n, p) in f.rec.peers.iter_mut().enumerate() {
                if matches!(p.state, PeerFile::Offered | PeerFile::Sending) {
                    p.state = PeerFile::Cancelled;
                    f.core.cancel(n);
                    told.push(p.member);
                }
            }
            if told.is_empty() {
                return Err(EngineError::FileNotReady("it is not in progress"));
            }
            let t = f.rec.thread;
            self.files.dirty.insert(k);
            for m in &told {
                self.count_delivered(&id.0, true)?;
                self.send_to_member(
                    t,
                    &Content::FileStatus { transfer: k, status: FileStatus::Cancelled },
                    m,
                    rng,
                )?;
            }
            self.settle_out(k);
        } else {
            let k: [u8; 32] = key.try_into().map_err(|_| EngineError::NoSuchFile)?;
            let x = self.files.inn.get(&k).ok_or(EngineError::NoSuchFile)?;
            if !matches!(x.rec.state, InFile::Offered | InFile::Receiving) {
                return Err(EngineError::FileNotReady("it is not in progress"));
            }
            self.refuse_in(k, InFile::Cancelled, now, rng)?;
        }
        self.transfer_event(&id.0, now, true);
        self.flush()
    }

    /// `len` bytes of a file (ours, or one received whole) from `offset`, and its size.
    pub fn file_bytes(
        &self,
        id: &LocalMessageId,
        offset: u64,
        len: usize,
    ) -> Result<(Vec<u8>, u64), EngineError> {
        let key = self.file_key_of(id)?;
        let (owner, size, shard, ready) = if let Ok(k) = <[u8; 16]>::try_from(key.as_slice()) {
            let f = self.files.out.get(&k).ok_or(EngineError::NoSuchFile)?;
            (out_owner(&k), f.rec.size, f.rec.shard, true)
        } else {
            let k: [u8; 32] = key.try_into().map_err(|_| EngineError::NoSuchFile)?;
            let x = self.files.inn.get(&k).ok_or(EngineError::NoSuchFile)?;
            (k, x.rec.size, x.rec.shard, x.rec.state == InFile::Complete)
        };
        if !ready {
            return Err(EngineError::FileNotReady("it has not arrived whole yet"));
        }
        let plan = Plan::new(size, usize::from(shard)).map_err(|_| EngineError::Corrupt("file plan"))?;
        let end = offset.saturating_add(len as u64).min(size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        for (b, shape) in plan.blocks().iter().enumerate() {
            let (start, blen) = plan.block_range(shape);
            let stop = start + blen as u64;
            if stop <= offset || start >= end {
                continue;
            }
            let v = self.profile.get(NS_BLOB, &blob_key(&owner, b as u16))?.ok_or(EngineError::NoSuchFile)?;
            let BlobPart(plain) = decode(&v)?;
            let from = offset.max(start) - start;
            let to = end.min(stop) - start;
            out.extend_from_slice(
                plain.get(from as usize..to as usize).ok_or(EngineError::Corrupt("file block"))?,
            );
        }
        Ok((out, size))
    }

    /// The file of history entry `id`, as the user sees it.
    pub fn file_info(&self, id: &LocalMessageId) -> Option<FileInfo> {
        self.file_info_of(&id.0)
    }

    fn file_info_of(&self, hkey: &[u8]) -> Option<FileInfo> {
        let t: [u8; 16] = hkey.get(..16)?.try_into().ok()?;
        let thread = self.threads.get(&t)?.name.clone();
        if let Some((_, f)) = self.files.out.iter().find(|(_, f)| f.rec.history == hkey) {
            let total = f.rec.peers.len() as u32;
            let complete = f.rec.peers.iter().filter(|p| p.state == PeerFile::Complete).count() as u32;
            let active = f.rec.peers.iter().any(|p| matches!(p.state, PeerFile::Offered | PeerFile::Sending));
            let done_bytes = (0..f.rec.peers.len())
                .filter(|n| f.rec.peers[*n].state == PeerFile::Sending)
                .filter_map(|n| f.core.progress(n).map(|p| p.done_bytes))
                .min()
                .unwrap_or(if complete > 0 { f.rec.size } else { 0 });
            let state = if active {
                if f.rec.peers.iter().any(|p| p.state == PeerFile::Sending) { "sending" } else { "offered" }
            } else if complete > 0 {
                "sent"
            } else if f.rec.peers.iter().any(|p| p.state == PeerFile::Failed) {
                "failed"
            } else if f.rec.peers.iter().all(|p| p.state == PeerFile::Declined) && total > 0 {
                "declined"
            } else {
                peer_state_name(PeerFile::Cancelled)
            };
            return Some(
                FileInfo {
                    message: LocalMessageId(hkey.to_vec()),
                    thread,
                    outgoing: true,
                    kind: f.rec.kind,
                    name: f.rec.name.clone(),
                    mime: f.rec.mime.clone(),
                    size: f.rec.size,
                    duration_ms: f.rec.duration_ms,
                    state,
                    done_bytes,
                    recipients: [complete, total],
                    rate_bps: 0,
                    eta_secs: None,
                    fast: f.rec.fast,
                }
                .with_speed(self),
            );
        }
        let x = self.files.inn.values().find(|x| x.rec.history == hkey)?;
        let done_bytes = match (&x.core, x.rec.state) {
            (_, InFile::Complete) => x.rec.size,
            (Some(c), _) => c.done_bytes(),
            _ => 0,
        };
        Some(
            FileInfo {
                message: LocalMessageId(hkey.to_vec()),
                thread,
                outgoing: false,
                kind: x.rec.kind,
                name: x.rec.name.clone(),
                mime: x.rec.mime.clone(),
                size: x.rec.size,
                duration_ms: x.rec.duration_ms,
                state: in_state_name(x.rec.state),
                done_bytes,
                recipients: [0, 0],
                rate_bps: 0,
                eta_secs: None,
                fast: false,
            }
            .with_speed(self),
        )
    }

    /// Every file of `name` (all conversations when `None`), newest first.
    pub fn files(&self, name: Option<&str>) -> Result<Vec<FileInfo>, EngineError> {
        let t = name.map(|n| self.thread_by_name(n)).transpose()?;
        let mut keys: Vec<&Vec<u8>> = self
            .files
            .out
            .values()
            .map(|f| &f.rec.history)
            .chain(self.files.inn.values().map(|x| &x.rec.history))
            .filter(|h| t.is_none_or(|t| h.starts_with(&t)))
            .collect();
        keys.sort();
        keys.reverse();
        Ok(keys.into_iter().filter_map(|h| self.file_info_of(h)).collect())
    }

    /// Our file's delivery, for a caller that tracks it as a message's.
    pub fn file_delivery(&self, id: &LocalMessageId) -> Option<Delivery> {
        let v = self.profile.get(NS_HISTORY, &id.0).ok()??;
        let e: HistoryEntry = decode(&v).ok()?;
        e.file.as_ref()?;
        Some(e.delivery())
    }
}

/// A file the app uploads in parts before it is sent (memory only; one at a time).
pub(super) struct Upload {
    id: [u8; 16],
    to: String,
    spec: FileSpec,
    size: u64,
    bytes: Zeroizing<Vec<u8>>,
    touched: SystemTime,
}

/// How long an upload may sit without a part before it is dropped.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(600);

/// What sending a file would take, before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEstimate {
    /// The size bucket it is sent as.
    pub bucket: u64,
    /// Packets of its first round, per recipient.
    pub packets: u64,
    /// Recipients.
    pub recipients: u32,
    /// Whether it may be sent here.
    pub allowed: bool,
    /// The largest file that may be.
    pub limit: u64,
    /// Seconds, if every recipient is online and the loss low.
    pub secs_low: u64,
    /// Seconds, with loss and texts sharing the slots.
    pub secs_high: u64,
    /// Sent fast, where the network allows it: (seconds low, high, extra bytes up).
    pub fast: Option<(u64, u64, u64)>,
}

/// Uploads and estimates, for interfaces that hand the file over in parts.
impl Engine {
    /// Begins an upload of `size` bytes to `to`; returns its id.
    pub fn attach_begin<R: CryptoRng>(
        &mut self,
        to: &str,
        spec: FileSpec,
        size: u64,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<[u8; 16], EngineError> {
        self.thread_by_name(to)?;
        let limit = self.max_file_bytes();
        if size > limit {
            return Err(EngineError::FileTooLarge { size, limit });
        }
        if !file_name_ok(&spec.name) || spec.caption.len() > MAX_CAPTION {
            return Err(EngineError::InvalidName(spec.name));
        }
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        // One upload at a time: a new one replaces what an interface left unfinished.
        self.files.upload = Some(Upload {
            id,
            to: to.into(),
            spec,
            size,
            bytes: Zeroizing::new(Vec::with_capacity(size as usize)),
            touched: now,
        });
        Ok(id)
    }

    /// The next part of upload `id`, at `offset` (parts come in order).
    pub fn attach_part(
        &mut self,
        id: &[u8; 16],
        offset: u64,
        data: &[u8],
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let u = self
            .files
            .upload
            .as_mut()
            .filter(|u| u.id == *id)
            .ok_or(EngineError::FileNotReady("no such upload"))?;
        if offset != u.bytes.len() as u64 {
            return Err(EngineError::FileNotReady("parts must come in order"));
        }
        if offset + data.len() as u64 > u.size {
            return Err(EngineError::FileNotReady("more bytes than announced"));
        }
        u.bytes.extend_from_slice(data);
        u.touched = now;
        Ok(())
    }

    /// Sends upload `id`, whole; returns the file's history entry.
    pub fn attach_commit<R: CryptoRng>(
        &mut self,
        id: &[u8; 16],
        fast: bool,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<LocalMessageId, EngineError> {
        let u = self
            .files
            .upload
            .as_ref()
            .filter(|u| u.id == *id)
            .ok_or(EngineError::FileNotReady("no such upload"))?;
        if u.bytes.len() as u64 != u.size {
            return Err(EngineError::FileNotReady("the upload is not complete"));
        }
        let Some(u) = self.files.upload.take() else {
            return Err(EngineError::FileNotReady("no such upload"));
        };
        self.send_file(&u.to, u.spec.clone(), &u.bytes, fast, now, rng)
    }

    /// Drops upload `id`.
    pub fn attach_abort(&mut self, id: &[u8; 16]) {
        if self.files.upload.as_ref().is_some_and(|u| u.id == *id) {
            self.files.upload = None;
        }
    }

    /// Drops an upload left idle for [`UPLOAD_IDLE`].
    pub(super) fn expire_upload(&mut self, now: SystemTime) {
        if self
            .files
            .upload
            .as_ref()
            .is_some_and(|u| now.duration_since(u.touched).is_ok_and(|d| d > UPLOAD_IDLE))
        {
            self.files.upload = None;
        }
    }

    /// What sending `size` bytes to `to` would take at this profile's rates: the bucket's
    /// packets to each recipient in our payload slots (shared between recipients), a round trip
    /// for the offer's answer and one for the last block's; with loss and texts, half as long
    /// again. Sending hidden costs no data beyond what the profile already spends.
    pub fn estimate_file(&self, to: &str, size: u64) -> Result<FileEstimate, EngineError> {
        let t = self.thread_by_name(to)?;
        let recipients =
            self.convs.get(&t).map(|c| c.members().len().saturating_sub(1) as u32).unwrap_or(0).max(1);
        let limit = self.max_file_bytes();
        let s = self.shard_len().unwrap_or(1450);
        let plan = Plan::new(size.min(limit), s).map_err(|_| EngineError::FileTooLarge { size, limit })?;
        let packets = plan.first_round_packets(1.0 / 8.0);
        let (slot, rtt) = self.file_rates();
        let sending = slot.as_secs_f64() * packets as f64 * f64::from(recipients);
        let low = sending + 2.0 * rtt.as_secs_f64();
        // Fast: the payload slots come `f` times as often while it runs (if no fast file is
        // running already), and every extra slot is a packet more on the link.
        let fast = self.network.as_ref().and_then(|n| {
            let f = Self::fast_limit(&n.params);
            if f < 2.0 {
                return None;
            }
            let already = self.fast_factor(&n.params);
            let secs = sending * already / f + 2.0 * rtt.as_secs_f64();
            let frame = qanat_link::FrameSize::for_packet_len(n.params.geometry().packet_len())
                .map_or(2229, |s| s.wire_len() as u64);
            let base = already / slot.as_secs_f64();
            let extra = ((f - 1.0) * base / already * secs) as u64 * frame;
            Some((secs.ceil() as u64, (secs * 1.5).ceil() as u64, extra))
        });
        Ok(FileEstimate {
            bucket: plan.bucket(),
            packets,
            recipients,
            allowed: size <= limit,
            limit,
            secs_low: low.ceil() as u64,
            secs_high: (low * 1.5).ceil() as u64,
            fast,
        })
    }

    /// The mean time between our payload slots, and a round trip.
    fn file_rates(&self) -> (Duration, Duration) {
        let slot = self
            .schedule
            .as_ref()
            .map(|s| Duration::from_secs_f64(1.0 / s.rates().payload.max(1e-6)))
            .unwrap_or(Duration::from_secs(5));
        let rtt = self.files.send_config.map_or(Duration::from_secs(60), |c| c.resend.first);
        (slot, rtt)
    }

    /// The speed a file of ours or to us goes at (bytes a second, measured over its progress
    /// events, else from the rates) and the time left.
    pub(super) fn file_speed(&self, info: &FileInfo) -> (f64, Option<u64>) {
        let measured = self.files.speed.get(&info.message.0).map(|(_, _, r)| *r).filter(|r| *r > 0.0);
        let (slot, rtt) = self.file_rates();
        let share = if info.outgoing { f64::from(info.recipients[1].max(1)) } else { 1.0 };
        let model = self.shard_len().unwrap_or(1450) as f64 / slot.as_secs_f64() / share / 1.2;
        let rate = measured.unwrap_or(model);
        let left = info.size.saturating_sub(info.done_bytes);
        let active = matches!(info.state, "sending" | "receiving");
        let eta = active.then(|| (left as f64 / rate.max(1.0) + rtt.as_secs_f64()).ceil() as u64);
        (rate, eta)
    }
}
