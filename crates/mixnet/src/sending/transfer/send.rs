//! The sender's side of a transfer: blocks in rounds, a SURB per round, top-ups from the
//! recipient's bitmap, probes when nothing comes back.
//!
//! For each recipient at most `window` blocks are open at once. A block's first round sends
//! its data shards and its parity share ([`first_round`]), then two SURBS packets;
//! the recipient answers through that SURB with the bitmap of the shards it holds, once the
//! block decodes or a grace period after the SURBS arrived. A bitmap that is short by `need`
//! shards brings a top-up of fresh parity (enough that `need` arrive with 95% probability at
//! the loss measured so far) and a new SURBS. When no answer comes within the resend wait, only
//! a new SURBS goes (a probe): the shards may be waiting in the mailbox of a recipient who is
//! offline, and are never resent blindly. While a recipient is silent (a probe went and nothing
//! came back since) only one of its blocks is probed at a time, the others wait for its first
//! answer, and the probes back off to `SILENT_MAX` (2 h); so a recipient away for days costs
//! a dozen SURBS a day, not one per block per resend wait, and probes do not count against
//! the budget: it is the caller who gives up on a recipient silent for too long (the engine,
//! after 30 days). A recipient who comes back says so ([`TransferSend::resume`]: the engine's
//! FILE_STATUS "accepted" again, sent when its client starts), and the blocks are probed at once. A recipient who answers but keeps answering "nothing" costs at most the budget
//! (`budget_factor` × the first round) in shards and rounds, then the transfer to it fails.
//!
//! The engine reads the file's blocks when [`TransferSend::prepare`] asks (off the slot path:
//! encoding and reading never delay a slot), and packets leave only in payload slots
//! ([`TransferSend::next_packet`]).
//!
//! # What others learn
//!
//! The same as from any packet of ours (see [`crate::sending::packets`]): a chunk, a SURBS and a
//! probe are sealed payloads of the one size, in payload slots. The recipient's gateway sees a
//! run of items into one mailbox; the recipient learns the transfer's rounds and parity.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use qanat_codec::{Reader, Writer};
use qanat_packet::{MailboxId, Sphinx, SurbId, SurbKeys};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::code::{self, sign_chunk, sign_surbs};
use super::plan::{BlockShape, PARITY, Plan, block_id, first_round, shards_for};
use super::{Bits, TransferError};
use crate::UnixMicros;
use crate::sending::outbox::{ResendPolicy, SURB_LIFETIME};
use crate::sending::packets::{NetworkView, OutPacket, Route, reply_surb, sealed_packet};
use crate::sending::payload::{Payload, TransferId};

/// How much parity a sender adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParityPolicy {
    /// From the loss measured on this transfer's acknowledgements (starting at 5%): enough for a
    /// round to complete with 95% probability, between 1/16 and 1 of the block.
    Adaptive,
    /// A fixed ratio of each block, and of each top-up.
    Fixed(f64),
    /// No erasure code: the data shards only, and the missing ones sent again (for comparison).
    Off,
}

/// A sender's settings.
#[derive(Debug, Clone, Copy)]
pub struct SendConfig {
    /// Blocks open at once per recipient.
    pub window: usize,
    /// The parity.
    pub parity: ParityPolicy,
    /// A recipient may cost at most this many times the first round's packets.
    pub budget_factor: u64,
    /// The wait for a block's answer before a probe (and its backoff).
    pub resend: ResendPolicy,
}

impl Default for SendConfig {
    fn default() -> Self {
        Self {
            window: 3,
            parity: ParityPolicy::Adaptive,
            budget_factor: 3,
            resend: ResendPolicy { first: Duration::from_secs(60), max: Duration::from_secs(1800) },
        }
    }
}

/// SURBS packets at the end of a round: one lost must not cost a whole resend wait.
const SURBS_PER_ROUND: usize = 2;

/// The longest wait between probes of a silent recipient.
const SILENT_MAX: Duration = Duration::from_secs(2 * 3600);

/// The loss a new transfer assumes before it has measured any.
const INITIAL_LOSS: f64 = 0.05;
/// The probability a round should complete with.
const SUCCESS: f64 = 0.95;
/// Weight of the newest sample in the loss estimate.
const LOSS_WEIGHT: f64 = 0.3;

/// Where a transfer to one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Offered: nothing is sent until it accepts ([`TransferSend::start`]).
    Offered,
    /// Sending.
    Active,
    /// Every block acknowledged.
    Done,
    /// The budget ran out.
    Failed,
    /// Stopped by either side.
    Cancelled,
}

/// What the sender reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendEvent {
    /// Recipient `n` (in the order given) has the whole file.
    PeerDone(usize),
    /// Recipient `n` cost its whole budget without completing.
    PeerFailed(usize),
    /// Recipient `n` acknowledged more of the file.
    Progress(usize),
}

/// A transfer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// CHUNK packets sent.
    pub chunks: u64,
    /// SURBS packets sent (probes included).
    pub surbs: u64,
    /// Of those, probes (no shard before them).
    pub probes: u64,
    /// Block answers read.
    pub replies: u64,
    /// Packets that could not be built (a gateway missing from the directory).
    pub unroutable: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Shard(u16, u16),
    /// A round's SURBS.
    Surbs(u16),
    /// A probe: a SURBS after an answer did not come.
    Probe(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Sending,
    Waiting {
        until: UnixMicros,
    },
    /// Overdue while its recipient is silent: probed once another block's probe is answered.
    Deferred,
    Done,
}

#[derive(Debug, Clone)]
struct BlockSend {
    phase: Phase,
    round: u8,
    attempt: u32,
    sent: Bits,
    held: Bits,
}

/// One recipient of a transfer.
#[derive(Debug)]
struct Peer {
    route: Route,
    reply_to: MailboxId,
    blocks: Vec<BlockSend>,
    queue: VecDeque<Item>,
    loss: f64,
    /// Packets counted against the budget: shards and the rounds' SURBS.
    sent: u64,
    budget: u64,
    state: PeerState,
    /// Probes sent to it (since the start of this process).
    probes: u64,
    /// Probes sent since its last answer: while above zero, one block is probed at a time.
    silent: u32,
    /// When it last said it is back ([`TransferSend::resume`]).
    resumed: Option<UnixMicros>,
}

struct SurbRecord {
    peer: usize,
    block: u16,
    round: u8,
    keys: SurbKeys,
    made: UnixMicros,
}

/// A transfer's progress to one recipient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerProgress {
    /// Where it stands.
    pub state: PeerState,
    /// The file's bytes the recipient holds (blocks decoded, and their share of partial ones).
    pub done_bytes: u64,
    /// The file's size.
    pub total_bytes: u64,
    /// Packets sent to it (probes included).
    pub packets: u64,
    /// The loss measured.
    pub loss: f64,
}

/// Reads the file's blocks for [`TransferSend::prepare`].
pub trait BlockSource {
    /// Why a block could not be read.
    type Error;
    /// Fills `buf` (`data · S` bytes) with block `block`'s plaintext, zeros past the file's end.
    fn read_block(&mut self, block: u16, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// The sender's side of one file to one or more recipients.
pub struct TransferSend {
    id: TransferId,
    plan: Plan,
    key: Zeroizing<[u8; 32]>,
    signing: SigningKey,
    config: SendConfig,
    peers: Vec<Peer>,
    cache: BTreeMap<u16, Vec<Vec<u8>>>,
    surbs: HashMap<SurbId, SurbRecord>,
    rr: usize,
    events: VecDeque<SendEvent>,
    stats: SendStats,
}

impl std::fmt::Debug for TransferSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferSend")
            .field("blocks", &self.plan.block_count())
            .field("peers", &self.peers.len())
            .finish()
    }
}

/// The format of [`TransferSend::save`].
const SAVE_VERSION: u8 = 1;

impl TransferSend {
    /// A transfer of the file planned by `plan`, encrypted under `key` and signed by `signing`, to
    /// each recipient at `(route, reply_to)`: its mailbox, and ours where its answers come back.
    pub fn new(
        id: TransferId,
        plan: Plan,
        key: Zeroizing<[u8; 32]>,
        signing: SigningKey,
        recipients: &[(Route, MailboxId)],
        config: SendConfig,
    ) -> Self {
        let budget = config.budget_factor.max(1) * plan.first_round_packets(1.0 / 8.0)
            + 8 * u64::from(plan.block_count());
        let peers = recipients
            .iter()
            .map(|(route, reply_to)| Peer {
                route: *route,
                reply_to: *reply_to,
                blocks: vec![
                    BlockSend {
                        phase: Phase::Pending,
                        round: 0,
                        attempt: 0,
                        sent: Bits::default(),
                        held: Bits::default()
                    };
                    plan.blocks().len()
                ],
                queue: VecDeque::new(),
                loss: INITIAL_LOSS,
                sent: 0,
                budget,
                state: PeerState::Active,
                probes: 0,
                silent: 0,
                resumed: None,
            })
            .collect();
        let key = code::stream_key(&key, &id);
        let mut t = Self {
            id,
            plan,
            key,
            signing,
            config,
            peers,
            cache: BTreeMap::new(),
            surbs: HashMap::new(),
            rr: 0,
            events: VecDeque::new(),
            stats: SendStats::default(),
        };
        for p in 0..t.peers.len() {
            t.fill(p);
        }
        t
    }

    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The counters.
    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Changes the settings (the resend wait follows the network's rates).
    pub fn set_config(&mut self, config: SendConfig) {
        self.config = config;
    }

    /// Recipient `n`'s route now is `route` (it moved its mailbox): what follows goes there.
    pub fn reroute(&mut self, n: usize, route: Route) {
        if let Some(p) = self.peers.get_mut(n) {
            p.route = route;
        }
    }

    /// Holds recipient `n` back until [`Self::start`] (its user has not accepted the file yet).
    pub fn hold(&mut self, n: usize) {
        if let Some(p) = self.peers.get_mut(n)
            && p.state == PeerState::Active
            && p.sent == 0
        {
            p.state = PeerState::Offered;
            p.queue.clear();
            for b in &mut p.blocks {
                b.phase = Phase::Pending;
            }
        }
    }

    /// Recipient `n` accepted: sending to it starts.
    pub fn start(&mut self, n: usize) {
        if let Some(p) = self.peers.get_mut(n)
            && p.state == PeerState::Offered
        {
            p.state = PeerState::Active;
            self.fill(n);
        }
    }

    /// Stops sending to recipient `n`.
    pub fn cancel(&mut self, n: usize) {
        if let Some(p) = self.peers.get_mut(n)
            && matches!(p.state, PeerState::Active | PeerState::Offered)
        {
            p.state = PeerState::Cancelled;
            p.queue.clear();
        }
    }

    /// Whether nothing is left to send to anyone (every recipient done, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.peers.iter().all(|p| !matches!(p.state, PeerState::Active | PeerState::Offered))
    }

    /// Recipient `n`'s progress.
    pub fn progress(&self, n: usize) -> Option<PeerProgress> {
        let p = self.peers.get(n)?;
        let done_bytes = self
            .plan
            .blocks()
            .iter()
            .zip(&p.blocks)
            .map(|(shape, b)| {
                let bytes = self.plan.block_file_bytes(shape);
                if b.phase == Phase::Done {
                    bytes
                } else {
                    let held = u64::from(b.held.count().min(shape.data));
                    bytes * held / u64::from(shape.data)
                }
            })
            .sum();
        Some(PeerProgress {
            state: p.state,
            done_bytes,
            total_bytes: self.plan.size(),
            packets: p.sent + p.probes,
            loss: p.loss,
        })
    }

    /// How many recipients.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether a packet is waiting for a payload slot (and its block is ready).
    pub fn has_queued(&self) -> bool {
        self.peers.iter().any(|p| match p.queue.front() {
            Some(Item::Shard(b, _)) => self.cache.contains_key(b),
            Some(Item::Surbs(_) | Item::Probe(_)) => true,
            None => false,
        })
    }

    /// Whether [`Self::prepare`] has blocks to read.
    pub fn needs_prepare(&self) -> bool {
        self.wanted().iter().any(|b| !self.cache.contains_key(b))
    }

    fn wanted(&self) -> BTreeSet<u16> {
        self.peers
            .iter()
            .flat_map(|p| p.queue.iter())
            .filter_map(|i| match i {
                Item::Shard(b, _) => Some(*b),
                Item::Surbs(_) | Item::Probe(_) => None,
            })
            .collect()
    }

    /// Reads and encodes the blocks the queued packets need, and forgets those none needs.
    /// Returns how many blocks it encoded.
    pub fn prepare<S: BlockSource>(&mut self, src: &mut S) -> Result<usize, PrepareError<S::Error>> {
        let wanted = self.wanted();
        self.cache.retain(|b, _| wanted.contains(b));
        let mut n = 0;
        for b in wanted {
            if self.cache.contains_key(&b) {
                continue;
            }
            let Some(shape) = self.plan.block(b).copied() else { continue };
            let (_, len) = self.plan.block_range(&shape);
            let mut plain = Zeroizing::new(vec![0u8; len]);
            src.read_block(b, &mut plain).map_err(PrepareError::Source)?;
            let shards = code::encode_block(&self.plan, &self.key, &shape, &plain)
                .map_err(|e| PrepareError::Code(e.into()))?;
            self.cache.insert(b, shards);
            n += 1;
        }
        Ok(n)
    }

    /// Opens blocks for recipient `p` up to the window.
    fn fill(&mut self, p: usize) {
        let Some(peer) = self.peers.get_mut(p) else { return };
        if peer.state != PeerState::Active {
            return;
        }
        let open = peer
            .blocks
            .iter()
            .filter(|b| matches!(b.phase, Phase::Sending | Phase::Waiting { .. } | Phase::Deferred))
            .count();
        let mut room = self.config.window.max(1).saturating_sub(open);
        for (i, shape) in self.plan.blocks().iter().enumerate() {
            if room == 0 {
                break;
            }
            let b = &mut peer.blocks[i];
            if b.phase != Phase::Pending {
                continue;
            }
            let n = match self.config.parity {
                ParityPolicy::Adaptive => {
                    let total = shards_for(shape.target, peer.loss, SUCCESS, 2 * shape.target);
                    let rho =
                        (f64::from(total - shape.target) / f64::from(shape.target)).clamp(1.0 / 16.0, 1.0);
                    first_round(shape, rho)
                }
                ParityPolicy::Fixed(rho) => first_round(shape, rho),
                ParityPolicy::Off => shape.data,
            };
            // Bounded: i < plan.block_count() ≤ u16::MAX.
            let block = i as u16;
            peer.queue.extend((0..n).map(|j| Item::Shard(block, j)));
            peer.queue.extend([Item::Surbs(block); SURBS_PER_ROUND]);
            b.phase = Phase::Sending;
            b.round = 0;
            room -= 1;
        }
        if peer.blocks.iter().all(|b| b.phase == Phase::Done) {
            peer.state = PeerState::Done;
            self.events.push_back(SendEvent::PeerDone(p));
        }
    }

    /// Builds the next packet for a payload slot at `now`, taking recipients in turn, or `None`
    /// (nothing ready: the slot goes to something else).
    pub fn next_packet<R: CryptoRng + ?Sized>(
        &mut self,
        now: UnixMicros,
        sphinx: &Sphinx,
        view: &NetworkView,
        rng: &mut R,
    ) -> Option<OutPacket> {
        let n = self.peers.len();
        for step in 0..n {
            let p = (self.rr + step) % n;
            loop {
                let peer = &mut self.peers[p];
                if peer.state != PeerState::Active {
                    break;
                }
                let Some(item) = peer.queue.front().copied() else { break };
                let block = match item {
                    Item::Shard(b, _) | Item::Surbs(b) | Item::Probe(b) => b,
                };
                let Some(b) = peer.blocks.get(usize::from(block)) else {
                    peer.queue.pop_front();
                    continue;
                };
                if b.phase == Phase::Done {
                    peer.queue.pop_front();
                    continue;
                }
                if let Item::Shard(_, i) = item {
                    if b.held.get(i) {
                        peer.queue.pop_front();
                        continue;
                    }
                    if !self.cache.contains_key(&block) {
                        break;
                    }
                }
                peer.queue.pop_front();
                let built = match item {
                    Item::Shard(block, index) => self.chunk_packet(p, block, index, sphinx, view, rng),
                    Item::Surbs(block) | Item::Probe(block) => {
                        self.surbs_packet(p, block, now, sphinx, view, rng)
                    }
                };
                let peer = &mut self.peers[p];
                if let Item::Probe(_) = item {
                    // Bounded by time, not by the budget: see the module's notes.
                    peer.probes += 1;
                    peer.silent = peer.silent.saturating_add(1);
                    self.stats.probes += 1;
                } else {
                    peer.sent += 1;
                }
                if peer.sent > peer.budget {
                    peer.state = PeerState::Failed;
                    peer.queue.clear();
                    self.events.push_back(SendEvent::PeerFailed(p));
                }
                match built {
                    Some(packet) => {
                        self.rr = p + 1;
                        return Some(packet);
                    }
                    None => {
                        self.stats.unroutable += 1;
                        continue;
                    }
                }
            }
        }
        None
    }

    fn chunk_packet<R: CryptoRng + ?Sized>(
        &mut self,
        p: usize,
        block: u16,
        index: u16,
        sphinx: &Sphinx,
        view: &NetworkView,
        rng: &mut R,
    ) -> Option<OutPacket> {
        let shard = self.cache.get(&block)?.get(usize::from(index))?.clone();
        let peer = &mut self.peers[p];
        peer.blocks[usize::from(block)].sent.set(index);
        let signature = sign_chunk(&self.signing, &self.id, block, index, &shard);
        let payload = Payload::Chunk { transfer: self.id, block, index, signature, shard }
            .encode(sphinx.geometry(), rng)
            .ok()?;
        let packet = sealed_packet(sphinx, view, &peer.route, &payload, rng).ok()?;
        self.stats.chunks += 1;
        Some(OutPacket { packet })
    }

    fn surbs_packet<R: CryptoRng + ?Sized>(
        &mut self,
        p: usize,
        block: u16,
        now: UnixMicros,
        sphinx: &Sphinx,
        view: &NetworkView,
        rng: &mut R,
    ) -> Option<OutPacket> {
        let peer = &mut self.peers[p];
        // Probing a silent recipient backs off further than the answers' wait: a recipient gone
        // for good costs a few SURBS a day, and one who comes back says so ([`Self::resume`]).
        let policy = if peer.silent > 0 {
            ResendPolicy { max: self.config.resend.max.max(SILENT_MAX), ..self.config.resend }
        } else {
            self.config.resend
        };
        let b = &mut peer.blocks[usize::from(block)];
        // Whatever happens, the block now waits for its answer (or a probe after the wait).
        b.phase = Phase::Waiting { until: now + policy.wait(b.attempt, rng) };
        let round = b.round;
        let (surb, surb_id, keys) = reply_surb(sphinx, view, &peer.route.gateway, peer.reply_to, rng).ok()?;
        let signature = sign_surbs(&self.signing, &self.id, &peer.route.mailbox, block, round, &surb);
        let payload = Payload::Surbs { transfer: self.id, block, round, signature, surb }
            .encode(sphinx.geometry(), rng)
            .ok()?;
        let packet = sealed_packet(sphinx, view, &peer.route, &payload, rng).ok()?;
        self.surbs.retain(|_, r| r.made + SURB_LIFETIME > now);
        self.surbs.insert(surb_id, SurbRecord { peer: p, block, round, keys, made: now });
        self.stats.surbs += 1;
        Some(OutPacket { packet })
    }

    /// Whether `surb_id` is one of this transfer's SURBs.
    pub fn owns_surb(&self, surb_id: &SurbId) -> bool {
        self.surbs.contains_key(surb_id)
    }

    /// A SURB reply to one of this transfer's SURBS: reads the recipient's bitmap, completes
    /// the block or queues its top-up. Returns whether the SURB was ours and the reply read (a
    /// SURB is read once).
    pub fn handle_reply(&mut self, sphinx: &Sphinx, surb_id: SurbId, payload: &[u8]) -> bool {
        let Some(rec) = self.surbs.get(&surb_id) else { return false };
        let Ok(plain) = sphinx.decrypt_surb_payload(payload, &rec.keys) else { return false };
        let Ok(Payload::Ack(entries)) = Payload::decode(sphinx.geometry(), &plain) else { return false };
        let (p, block, round) = (rec.peer, rec.block, rec.round);
        self.surbs.remove(&surb_id);
        self.stats.replies += 1;
        let want = block_id(&self.id, block);
        for e in entries.iter().filter(|e| e.message_id == want) {
            self.on_reply(p, block, round, &e.indices);
        }
        true
    }

    fn on_reply(&mut self, p: usize, block: u16, round: u8, indices: &[u16]) {
        let Some(shape) = self.plan.block(block).copied() else { return };
        let peer = &mut self.peers[p];
        if peer.state != PeerState::Active {
            return;
        }
        // It answers the round we wait for: the blocks that waited for that are probed now. (Not
        // on an answer to an older round: a recipient holding our SURBs could otherwise wake
        // every block at will.)
        if round == peer.blocks[usize::from(block)].round {
            peer.silent = 0;
            for b in &mut peer.blocks {
                if b.phase == Phase::Deferred {
                    b.phase = Phase::Waiting { until: UnixMicros::ZERO };
                }
            }
        }
        let b = &mut peer.blocks[usize::from(block)];
        if b.phase == Phase::Done {
            return;
        }
        let mut held = Bits::default();
        for i in indices.iter().filter(|i| **i < shape.data + PARITY) {
            held.set(*i);
        }
        let current = round == b.round;
        if current {
            let sent = b.sent.count();
            if sent > 0 {
                let got = held.and(&b.sent).count();
                let sample = 1.0 - f64::from(got) / f64::from(sent);
                peer.loss = (1.0 - LOSS_WEIGHT) * peer.loss + LOSS_WEIGHT * sample.clamp(0.0, 1.0);
            }
        }
        let before = b.held.count();
        b.held.or(&held);
        if b.held.count() > before {
            self.events.push_back(SendEvent::Progress(p));
        }
        if b.held.count() >= shape.data {
            b.phase = Phase::Done;
            self.fill(p);
            return;
        }
        if !current || !matches!(b.phase, Phase::Waiting { .. }) {
            return;
        }
        // A top-up: fresh parity first, then the data and parity the recipient still lacks.
        let need = shape.data - b.held.count();
        let (candidates, n): (Vec<u16>, u16) = match self.config.parity {
            ParityPolicy::Off => ((0..shape.data).filter(|i| !b.held.get(*i)).collect(), need),
            policy => {
                // Never what the recipient holds: after a restart `sent` may lag behind what it
                // reported, and a top-up of shards it holds would send nothing but SURBS.
                let fresh = (shape.data..shape.data + PARITY).filter(|i| !b.sent.get(*i) && !b.held.get(*i));
                let data = (0..shape.data).filter(|i| !b.held.get(*i));
                let stale = (shape.data..shape.data + PARITY).filter(|i| b.sent.get(*i) && !b.held.get(*i));
                let c: Vec<u16> = fresh.chain(data).chain(stale).collect();
                let cap = u16::try_from(c.len()).unwrap_or(u16::MAX);
                let n = match policy {
                    ParityPolicy::Fixed(rho) => need + (f64::from(need) * rho).ceil() as u16,
                    _ => shards_for(need, peer.loss, SUCCESS, cap),
                };
                (c, n.min(cap).max(need.min(cap)))
            }
        };
        peer.queue.extend(candidates.into_iter().take(usize::from(n)).map(|i| Item::Shard(block, i)));
        peer.queue.extend([Item::Surbs(block); SURBS_PER_ROUND]);
        b.round = b.round.wrapping_add(1);
        b.attempt = 0;
        b.phase = Phase::Sending;
    }

    /// Recipient `n` says it is back (its client started with our file incomplete): if it was
    /// silent, every block in flight is probed at once, the backoff starting again. At most once
    /// per first resend wait, and only while silent, so it costs at most a window of SURBS per
    /// such wait whatever the recipient sends.
    pub fn resume(&mut self, n: usize, now: UnixMicros) {
        let first = self.config.resend.first;
        let Some(peer) = self.peers.get_mut(n) else { return };
        if peer.state != PeerState::Active
            || peer.silent == 0
            || peer.resumed.is_some_and(|at| now < at + first)
        {
            return;
        }
        peer.resumed = Some(now);
        peer.silent = 0;
        for b in &mut peer.blocks {
            if matches!(b.phase, Phase::Waiting { .. } | Phase::Deferred) {
                b.phase = Phase::Waiting { until: now };
                b.attempt = 0;
            }
        }
    }

    /// Probes every block whose answer is overdue at `now`: one SURBS each, nothing else; of a
    /// silent recipient's, only one (a probe of it is out), the others wait for its answer.
    pub fn handle_timeout(&mut self, now: UnixMicros) {
        for peer in &mut self.peers {
            if peer.state != PeerState::Active {
                continue;
            }
            // Something of it is out that an answer may follow: a probe queued, a round being
            // sent, or one not yet overdue.
            let mut probing = peer.queue.iter().any(|i| matches!(i, Item::Probe(_)))
                || peer.blocks.iter().any(|b| match b.phase {
                    Phase::Sending => true,
                    Phase::Waiting { until } => until > now,
                    _ => false,
                });
            for (i, b) in peer.blocks.iter_mut().enumerate() {
                if let Phase::Waiting { until } = b.phase
                    && until <= now
                {
                    if peer.silent > 0 && probing {
                        b.phase = Phase::Deferred;
                        continue;
                    }
                    b.phase = Phase::Sending;
                    b.round = b.round.wrapping_add(1);
                    b.attempt = b.attempt.saturating_add(1);
                    // Bounded by the plan's block count.
                    peer.queue.push_back(Item::Probe(i as u16));
                    probing = true;
                }
            }
        }
    }

    /// When [`Self::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        self.peers
            .iter()
            .filter(|p| p.state == PeerState::Active)
            .flat_map(|p| p.blocks.iter())
            .filter_map(|b| match b.phase {
                Phase::Waiting { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SendEvent> {
        self.events.pop_front()
    }

    /// The state to keep across a restart (not the routes, keys or file: the caller keeps
    /// those): per recipient its state, loss and count, per block its phase, round and bitmaps.
    pub fn save(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(16 + self.peers.len() * (20 + self.plan.blocks().len() * 66));
        w.u8(SAVE_VERSION);
        w.u16(self.peers.len() as u16);
        for p in &self.peers {
            w.u8(match p.state {
                PeerState::Active => 0,
                PeerState::Done => 1,
                PeerState::Failed => 2,
                PeerState::Cancelled => 3,
                PeerState::Offered => 4,
            });
            w.u64(p.loss.to_bits());
            w.u64(p.sent);
            w.u16(p.blocks.len() as u16);
            for b in &p.blocks {
                w.u8(match b.phase {
                    Phase::Pending => 0,
                    Phase::Sending | Phase::Waiting { .. } | Phase::Deferred => 1,
                    Phase::Done => 2,
                });
                w.u8(b.round);
                b.sent.write(&mut w);
                b.held.write(&mut w);
            }
        }
        w.finish().unwrap_or_default()
    }

    /// Restores [`Self::save`]'s state at `now`: every block that was in flight is probed first
    /// (its answer then says what to top up); what was queued and not sent is not sent blindly.
    pub fn restore(&mut self, bytes: &[u8], now: UnixMicros) -> Result<(), TransferError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != SAVE_VERSION {
            return Err(TransferError::Format);
        }
        if usize::from(r.u16()?) != self.peers.len() {
            return Err(TransferError::Format);
        }
        let mut peers = Vec::with_capacity(self.peers.len());
        for _ in 0..self.peers.len() {
            let state = match r.u8()? {
                0 => PeerState::Active,
                1 => PeerState::Done,
                2 => PeerState::Failed,
                3 => PeerState::Cancelled,
                4 => PeerState::Offered,
                _ => return Err(TransferError::Format),
            };
            let loss = f64::from_bits(r.u64()?);
            let sent = r.u64()?;
            if usize::from(r.u16()?) != self.plan.blocks().len() || !(0.0..=1.0).contains(&loss) {
                return Err(TransferError::Format);
            }
            let mut blocks = Vec::with_capacity(self.plan.blocks().len());
            for _ in 0..self.plan.blocks().len() {
                let phase = match r.u8()? {
                    0 => Phase::Pending,
                    1 => Phase::Waiting { until: now },
                    2 => Phase::Done,
                    _ => return Err(TransferError::Format),
                };
                let round = r.u8()?;
                let mut sent = Bits::read(&mut r)?;
                let held = Bits::read(&mut r)?;
                // What the recipient holds was sent, whatever was saved of the sending.
                sent.or(&held);
                blocks.push(BlockSend { phase, round, attempt: 0, sent, held });
            }
            peers.push((state, loss, sent, blocks));
        }
        r.finish()?;
        for (p, (state, loss, sent, blocks)) in self.peers.iter_mut().zip(peers) {
            p.state = state;
            p.loss = loss;
            p.sent = sent;
            p.blocks = blocks;
            p.queue.clear();
        }
        self.surbs.clear();
        for p in 0..self.peers.len() {
            self.fill(p);
        }
        Ok(())
    }
}

/// Why [`TransferSend::prepare`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError<E> {
    /// The file's block could not be read.
    #[error("a block of the file could not be read")]
    Source(E),
    /// The block could not be encoded.
    #[error(transparent)]
    Code(TransferError),
}

/// Block `shape`'s shards of transfer `id` under file key `key` (for tests and tools).
pub fn block_shards(
    plan: &Plan,
    key: &[u8; 32],
    id: &TransferId,
    shape: &BlockShape,
    plain: &[u8],
) -> Result<Vec<Vec<u8>>, TransferError> {
    Ok(code::encode_block(plan, &code::stream_key(key, id), shape, plain)?)
}
