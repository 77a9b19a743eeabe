//! The gateway: the node clients connect to. Ingress: a client's packet is unwrapped once and
//! passed into the first mix layer. Egress: a packet from the last layer is unwrapped, its payload
//! handed to the mailbox store, and the previous hop is acknowledged **only after the store
//! reports the write durable**. A gateway also forwards mixes' loop packets that pass through it.
//!
//! Driven like [`crate::Mix`]: `handle_*` for inputs, `poll_*` for outputs. The store is outside
//! the core: [`Gateway::poll_store`] yields write requests, the node writes them (grouping many
//! into one transaction) and reports each outcome with [`Gateway::handle_store_result`]; only
//! then does [`Gateway::poll_ack`] yield the acknowledgement for the link.
//!
//! What the gateway stores for a mailbox is a [`MailboxItem`]: the SURB-reply identifier of the
//! packet's last hop and the payload as it is after this hop, opaque. Every packet a client
//! sends to a mailbox is made that way (`Sphinx::new_opaque_packet`, its payload sealed end to
//! end to the mailbox's owner), as a reply made from a SURB is, so every item has one length and
//! is random bytes to the gateway: it learns the mailbox and the arrival time, not the kind of
//! packet. A last hop without a SURB-reply command (a packet whose payload the gateway would
//! read) is refused (acknowledged, never stored) and counted. The item id is the packet's
//! replay tag at this hop.
//!
//! # Acknowledgements that cannot lie, and answers for what can never be stored
//!
//! The last mix keeps a packet and sends it again until it is acknowledged (or gives up, see
//! [`crate::resend`]), so the gateway answers every packet it will *never* store, so that the mix
//! forgets it, and stays silent only about what may succeed later:
//!
//! - **acknowledged after the write is durable**: a packet for a mailbox;
//! - **acknowledged at once, nothing stored**: a packet no live key unwraps
//!   ([`Refusal::Malformed`]), a packet misrouted here (a next hop outside layer 1, or neither a
//!   next hop nor a mailbox: [`Refusal::Misrouted`]), a last hop whose payload would be readable
//!   ([`Refusal::Unsealed`]), a mix's loop seen before ([`Egress::Replayed`]), a packet whose
//!   write is already durable ([`Egress::AlreadyStored`]); a write the store rejects for good
//!   (unknown mailbox, quota) is acknowledged once the store says so;
//! - **not acknowledged**: no live key at all (the gateway may be behind on keys), the gateway's
//!   own backlog or queue full, a write that failed: the mix sends it again.
//!
//! **One store write per packet**, however often the mix resends it: a packet whose write is in
//! flight joins that write (it is acknowledged when the write is), and a packet whose write is
//! durable (or rejected) is acknowledged at once from memory of the last
//! [`GatewayConfig::remembered_stores`] such writes. Beyond that memory, or after a restart, a
//! resend is written again and the store de-duplicates it by item id.
//!
//! Replay protection across restarts works as in [`crate::Mix`] ([`Gateway::enable_replay_log`]):
//! packets forwarded into layer 1 (clients' packets, mixes' loops passing through) leave only
//! once their tags are durable in the node's replay log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use qanat_packet::{Geometry, MailboxId, NodeId, ReplayTag, SecretKey, Sphinx, SurbId};
use qanat_pki::Position;

use crate::keyring::{
    DelayQueue, EpochWindow, KeyRing, ReplayBatch, RingError, Transmit, earliest, requested_delay,
};
use crate::mix::Dropped;
use crate::time::UnixMicros;
use crate::topology::Topology;

/// A gateway's configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// This node.
    pub id: NodeId,
    /// Longest delay honoured on forwarded packets.
    pub max_delay: Duration,
    /// Most packets held for forwarding.
    pub max_queue: usize,
    /// Most store writes awaiting their result; beyond it egress packets are refused (not acked).
    pub max_pending_stores: usize,
    /// Tags each epoch key's replay filter is sized for.
    pub replay_capacity: u64,
    /// The replay filter's false-positive rate.
    pub replay_false_positive_rate: f64,
    /// How many settled writes (durable or rejected) are remembered by item id, so that a
    /// resend of one is acknowledged without another write.
    pub remembered_stores: usize,
}

impl GatewayConfig {
    /// Defaults for `id`.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            max_delay: Duration::from_secs(1),
            max_queue: 100_000,
            max_pending_stores: 50_000,
            replay_capacity: crate::replay::DEFAULT_CAPACITY,
            replay_false_positive_rate: crate::replay::DEFAULT_FALSE_POSITIVE_RATE,
            remembered_stores: 100_000,
        }
    }
}

/// Identifies a packet the link layer wants acknowledged; chosen by the node's link driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckToken(pub u64);

/// Identifies one store write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreToken(pub u64);

/// A write the node must make durable before the packet is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// Reported back with the outcome.
    pub token: StoreToken,
    /// The mailbox.
    pub mailbox: MailboxId,
    /// De-duplication id: the packet's replay tag at this gateway.
    pub item_id: [u8; 32],
    /// The encoded [`MailboxItem`].
    pub item: Vec<u8>,
}

/// The store's answer to a [`StoreRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreResult {
    /// Durable (new, or already stored under this item id).
    Durable,
    /// Will never be stored (unknown mailbox, quota, too large): acknowledged and dropped, so the
    /// previous hop does not retry forever; the sender's own retransmission covers it.
    Rejected,
    /// Could not be stored now (full disk, store unavailable): **not** acknowledged, so the
    /// previous hop keeps the packet and retries.
    Failed,
}

/// An acknowledgement to send on the link to a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The mix that sent the packet.
    pub to: NodeId,
    /// The link's token for the packet.
    pub token: AckToken,
}

/// What a gateway did with a packet from a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Passed to the store; acknowledged once durable.
    Storing(StoreToken),
    /// Forwarded (a loop passing through); acknowledged at once.
    Forwarded,
    /// A loop passing through that was forwarded before (a retransmission, or a replay):
    /// dropped, counted as a replay, and acknowledged at once so that the mix stops resending it.
    Replayed,
    /// Refused for good (never stored); acknowledged at once, so the last mix forgets it instead
    /// of sending it again.
    Refused(Refusal),
    /// A resend of a packet whose write is already durable (or rejected for good): acknowledged
    /// at once, not written again.
    AlreadyStored,
}

/// Why a packet from a mix was refused for good (and acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No live key unwraps it.
    Malformed,
    /// Misrouted here: a next hop outside the first layer, or neither a next hop nor a mailbox.
    Misrouted,
    /// A last hop without a SURB-reply command: its payload would not be opaque to the gateway.
    Unsealed,
}

/// What is stored in a mailbox for one packet: `id (16) ‖ body`, one length for every item of a
/// geometry ([`MailboxItem::encoded_len`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxItem {
    /// The SURB-reply identifier of the packet's last hop: the SURB's, for a reply made from
    /// one of the owner's SURBs; a random one chosen by the sender for any other packet.
    pub id: SurbId,
    /// The payload after the last hop: sealed to the mailbox's owner, or still encrypted under
    /// the SURB's keys. Opaque to the gateway.
    pub body: Vec<u8>,
}

/// A stored item could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed mailbox item")]
pub struct MalformedItem;

impl MailboxItem {
    /// The length of every item of geometry `g`.
    pub fn encoded_len(g: &Geometry) -> usize {
        16 + g.payload_tag_len() + g.forward_payload_len()
    }

    /// `id ‖ body`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.body.len());
        v.extend_from_slice(&self.id.0);
        v.extend_from_slice(&self.body);
        v
    }

    /// Parses [`MailboxItem::encode`] (the body's length is checked by whoever opens it).
    pub fn decode(b: &[u8]) -> Result<Self, MalformedItem> {
        let (id, body) = b.split_first_chunk::<16>().ok_or(MalformedItem)?;
        if body.is_empty() {
            return Err(MalformedItem);
        }
        Ok(Self { id: SurbId(*id), body: body.to_vec() })
    }
}

/// Counters a gateway exports as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayMetrics {
    /// Packets from clients.
    pub ingress: u64,
    /// Packets from mixes.
    pub egress: u64,
    /// Packets forwarded into the network.
    pub forwarded: u64,
    /// Stored durably (including duplicates).
    pub stored: u64,
    /// Rejected by the store (acknowledged and dropped).
    pub store_rejected: u64,
    /// Failed to store (not acknowledged).
    pub store_failed: u64,
    /// Refused because too many writes were pending (not acknowledged).
    pub refused_backlog: u64,
    /// Dropped: no valid unwrap.
    pub dropped_malformed: u64,
    /// Dropped: replay.
    pub dropped_replay: u64,
    /// Dropped: no live key.
    pub dropped_no_key: u64,
    /// Dropped: queue full.
    pub dropped_queue_full: u64,
    /// Dropped: a client packet that does not go into the first layer, or a mix packet with
    /// neither a next hop nor a recipient.
    pub dropped_misrouted: u64,
    /// Replay tags read back from the replay log into the filters (after a restart).
    pub replay_tags_restored: u64,
    /// Replay tags not logged because their key's log had reached the filter's capacity.
    pub replay_log_full: u64,
    /// Dropped: a last hop without a SURB-reply command (its payload would not be opaque).
    pub dropped_unsealed: u64,
    /// Packets from mixes refused (and acknowledged): no live key unwraps them.
    pub refused_malformed: u64,
    /// Packets from mixes refused (and acknowledged): misrouted.
    pub refused_misrouted: u64,
    /// Resends from mixes answered without a new write (joined to the write in flight, or
    /// acknowledged from memory of a settled one).
    pub duplicate_stores: u64,
}

/// A write in flight.
struct Pending {
    item_id: [u8; 32],
    /// Whom to acknowledge (the first send, and resends that came while the write was in flight).
    waiters: Vec<Ack>,
}

/// Most resends of one packet waiting on its write (beyond it a resend is not answered; the mix
/// sends it again later).
const MAX_WAITERS: usize = 8;

/// A gateway's state.
pub struct Gateway {
    config: GatewayConfig,
    sphinx: Sphinx,
    keys: KeyRing,
    topologies: Vec<Topology>,
    queue: DelayQueue,
    next_token: u64,
    /// Writes in flight: the item id and whom to acknowledge once durable.
    pending: HashMap<StoreToken, Pending>,
    /// The write in flight of each item id.
    in_flight: HashMap<[u8; 32], StoreToken>,
    /// Message ids of settled writes (durable or rejected), oldest first in `settled_order`.
    settled: HashSet<[u8; 32]>,
    settled_order: VecDeque<[u8; 32]>,
    stores: VecDeque<StoreRequest>,
    acks: VecDeque<Ack>,
    metrics: GatewayMetrics,
}

// A gateway is built as a mix is (`Mix::new`) and shares its keys, replay filters, replay log
// and delay queue through `KeyRing` and `DelayQueue` (keyring.rs), where that logic lives once.
// What stays written twice on purpose is thin: the constructor and the one-line methods that
// hand each core's own documented API to those types.
impl core::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gateway")
            .field("queued", &self.queue.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Gateway {
    /// A gateway for packets of `geometry`.
    pub fn new(config: GatewayConfig, geometry: Geometry) -> Self {
        Self {
            keys: KeyRing::new(config.replay_capacity, config.replay_false_positive_rate),
            config,
            sphinx: Sphinx::new(geometry),
            topologies: Vec::new(),
            queue: DelayQueue::default(),
            next_token: 0,
            pending: HashMap::new(),
            in_flight: HashMap::new(),
            settled: HashSet::new(),
            settled_order: VecDeque::new(),
            stores: VecDeque::new(),
            acks: VecDeque::new(),
            metrics: GatewayMetrics::default(),
        }
    }

    /// Counters.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// Installs the packet key of `epoch`.
    pub fn add_epoch_key(&mut self, epoch: u64, key: SecretKey, window: EpochWindow) {
        self.keys.add(epoch, key, window);
    }

    // These replay-log methods delegate as `Mix`'s do (see the note on `Gateway`'s `Debug`).

    /// Enables the replay log, as [`crate::Mix::enable_replay_log`]: a packet forwarded into the
    /// network leaves only once its tag's batch is durable.
    pub fn enable_replay_log(&mut self) {
        self.keys.enable_log();
    }

    /// As [`crate::Mix::restore_replay_tags`].
    pub fn restore_replay_tags(&mut self, epoch: u64, tags: &[ReplayTag]) -> usize {
        let n = self.keys.restore(epoch, tags);
        self.metrics.replay_tags_restored += n as u64;
        n
    }

    /// As [`crate::Mix::poll_replay_log`].
    pub fn poll_replay_log(&mut self) -> Option<ReplayBatch> {
        let batch = self.keys.poll_log();
        self.metrics.replay_log_full = self.keys.log_full();
        batch
    }

    /// As [`crate::Mix::handle_replay_logged`].
    pub fn handle_replay_logged(&mut self, id: u64) {
        self.queue.release(id);
    }

    /// Epochs whose keys are installed.
    pub fn key_epochs(&self) -> Vec<u64> {
        self.keys.epochs()
    }

    /// Adds the topology of an epoch (used to check that client packets enter the first layer).
    pub fn add_topology(&mut self, topology: Topology) {
        self.topologies.retain(|t| t.epoch != topology.epoch);
        self.topologies.push(topology);
    }

    fn is_first_layer(&self, id: &NodeId) -> bool {
        self.topologies.iter().any(|t| t.position(id) == Some(Position::Mix { layer: 0 }))
    }

    fn count(&mut self, e: RingError) -> Dropped {
        let m = &mut self.metrics;
        match e {
            RingError::NoKey => {
                m.dropped_no_key += 1;
                Dropped::NoKey
            }
            RingError::Replay => {
                m.dropped_replay += 1;
                Dropped::Replay
            }
            RingError::Malformed(x) => {
                m.dropped_malformed += 1;
                Dropped::Malformed(x)
            }
        }
    }

    /// A packet from a client: unwrapped once and queued for the first mix layer.
    pub fn handle_client_packet(&mut self, now: UnixMicros, packet: Vec<u8>) -> Result<UnixMicros, Dropped> {
        self.metrics.ingress += 1;
        if self.queue.len() >= self.config.max_queue {
            self.metrics.dropped_queue_full += 1;
            return Err(Dropped::QueueFull);
        }
        let (out, packet, _) =
            self.keys.unwrap(&self.sphinx, now, packet, true).map_err(|e| self.count(e))?;
        match out.commands.next_hop {
            Some(next) if self.is_first_layer(&next.id) => {
                let at = now + requested_delay(&out, self.config.max_delay);
                let hold = self.keys.hold();
                self.queue.push(now, at, next.id, packet, hold);
                Ok(at)
            }
            _ => {
                self.metrics.dropped_misrouted += 1;
                Err(Dropped::Terminal)
            }
        }
    }

    /// A packet from a mix, which wants it acknowledged with `token` once the gateway has taken
    /// responsibility for it (see the module docs for what is answered when). `Err` means no
    /// answer: the mix sends the packet again.
    pub fn handle_mix_packet(
        &mut self,
        now: UnixMicros,
        from: NodeId,
        token: AckToken,
        packet: Vec<u8>,
    ) -> Result<Egress, Dropped> {
        self.metrics.egress += 1;
        let ack = Ack { to: from, token };
        if self.pending.len() >= self.config.max_pending_stores {
            self.metrics.refused_backlog += 1;
            return Err(Dropped::QueueFull);
        }
        // Replays are not dropped up front here: a retransmission from the last layer must be
        // answered again. Replayed *forwarding* packets are still dropped below.
        let (out, packet, fresh) = match self.keys.unwrap(&self.sphinx, now, packet, false) {
            Ok(x) => x,
            Err(e @ RingError::Malformed(_)) => {
                self.count(e);
                return Ok(self.refuse(ack, Refusal::Malformed));
            }
            Err(e) => return Err(self.count(e)),
        };
        if let Some(next) = out.commands.next_hop {
            if !self.is_first_layer(&next.id) {
                self.metrics.dropped_misrouted += 1;
                return Ok(self.refuse(ack, Refusal::Misrouted));
            }
            if !fresh {
                // Seen before: forwarding it again would let its output be traced.
                self.metrics.dropped_replay += 1;
                self.acks.push_back(ack);
                return Ok(Egress::Replayed);
            }
            if self.queue.len() >= self.config.max_queue {
                self.metrics.dropped_queue_full += 1;
                return Err(Dropped::QueueFull);
            }
            let at = now + requested_delay(&out, self.config.max_delay);
            let hold = self.keys.hold();
            self.queue.push(now, at, next.id, packet, hold);
            self.acks.push_back(ack);
            return Ok(Egress::Forwarded);
        }
        let Some(mailbox) = out.commands.recipient else {
            self.metrics.dropped_misrouted += 1;
            return Ok(self.refuse(ack, Refusal::Misrouted));
        };
        let Some(id) = out.commands.surb_reply else {
            self.metrics.dropped_unsealed += 1;
            return Ok(self.refuse(ack, Refusal::Unsealed));
        };
        let item_id = out.replay_tag.0;
        if let Some(&st) = self.in_flight.get(&item_id) {
            self.metrics.duplicate_stores += 1;
            if let Some(p) = self.pending.get_mut(&st)
                && !p.waiters.contains(&ack)
            {
                if p.waiters.len() >= MAX_WAITERS {
                    return Err(Dropped::QueueFull);
                }
                p.waiters.push(ack);
            }
            return Ok(Egress::Storing(st));
        }
        if self.settled.contains(&item_id) {
            self.metrics.duplicate_stores += 1;
            self.acks.push_back(ack);
            return Ok(Egress::AlreadyStored);
        }
        let Some(body) = out.payload(&packet) else {
            self.metrics.dropped_malformed += 1;
            return Ok(self.refuse(ack, Refusal::Malformed));
        };
        let item = MailboxItem { id, body: body.to_vec() }.encode();
        self.next_token += 1;
        let st = StoreToken(self.next_token);
        self.pending.insert(st, Pending { item_id, waiters: vec![ack] });
        self.in_flight.insert(item_id, st);
        self.stores.push_back(StoreRequest { token: st, mailbox, item_id, item });
        Ok(Egress::Storing(st))
    }

    /// Acknowledges a packet refused for good.
    fn refuse(&mut self, ack: Ack, why: Refusal) -> Egress {
        match why {
            Refusal::Malformed => self.metrics.refused_malformed += 1,
            Refusal::Misrouted => self.metrics.refused_misrouted += 1,
            Refusal::Unsealed => {}
        }
        self.acks.push_back(ack);
        Egress::Refused(why)
    }

    /// Remembers that the write of `item_id` is settled (its resends are acknowledged at once).
    fn settle(&mut self, item_id: [u8; 32]) {
        if self.config.remembered_stores == 0 || !self.settled.insert(item_id) {
            return;
        }
        self.settled_order.push_back(item_id);
        while self.settled_order.len() > self.config.remembered_stores {
            if let Some(old) = self.settled_order.pop_front() {
                self.settled.remove(&old);
            }
        }
    }

    /// The next write to make durable.
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.stores.pop_front()
    }

    /// Reports the outcome of a write; a durable or rejected write is acknowledged (to every mix
    /// that sent the packet while it was in flight), a failed one is not (the mix retries). For a
    /// failed write, the acknowledgements that will never be sent are returned, so that the
    /// caller can forget where they would have gone.
    pub fn handle_store_result(&mut self, token: StoreToken, result: StoreResult) -> Vec<Ack> {
        let Some(p) = self.pending.remove(&token) else { return Vec::new() };
        self.in_flight.remove(&p.item_id);
        match result {
            StoreResult::Durable => {
                self.metrics.stored += 1;
                self.settle(p.item_id);
                self.acks.extend(p.waiters);
                Vec::new()
            }
            StoreResult::Rejected => {
                self.metrics.store_rejected += 1;
                self.settle(p.item_id);
                self.acks.extend(p.waiters);
                Vec::new()
            }
            StoreResult::Failed => {
                self.metrics.store_failed += 1;
                p.waiters
            }
        }
    }

    /// The next acknowledgement to send.
    pub fn poll_ack(&mut self) -> Option<Ack> {
        self.acks.pop_front()
    }

    /// The next packet due to leave.
    pub fn poll_transmit(&mut self, now: UnixMicros) -> Option<Transmit> {
        let t = self.queue.pop_due(now)?;
        self.metrics.forwarded += 1;
        Some(t)
    }

    /// When [`Gateway::poll_transmit`] or [`Gateway::handle_timeout`] next has work: a queued
    /// packet due, or a key to erase.
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        earliest(self.queue.next_due(), self.keys.next_expiry())
    }

    /// Erases expired keys and the topologies of their epochs.
    pub fn handle_timeout(&mut self, now: UnixMicros) {
        self.queue.account(now);
        self.keys.expire(now);
        let epochs = self.keys.epochs();
        self.topologies.retain(|t| epochs.contains(&t.epoch));
    }
}
