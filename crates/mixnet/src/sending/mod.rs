//! The IO-free Loopix sender and receiver of a client: what goes into each packet, when packets
//! leave, and what makes delivery reliable.
//!
//! # Packets
//!
//! Every packet a client sends has the network's one size. Its payload (the Sphinx forward
//! payload, [`Geometry::forward_payload_len`] bytes) is one of:
//!
//! ```text
//! DATA  = 0x01 ‖ SURB (surb_len) ‖ message id (16) ‖ index u16 ‖ count u16 ‖ length u16 ‖ data ‖ zeros
//! COVER = 0x02 ‖ random bytes                         (loops and drops)
//! ```
//!
//! and the reply a recipient sends back through the SURB of a DATA packet is
//!
//! ```text
//! ACKS  = 0x04 ‖ n u8 ‖ n × (message id (16) ‖ bits u16 ‖ bitmap (⌈bits/8⌉)) ‖ zeros
//! ```
//!
//! One reply acknowledges every fragment the recipient has waiting for that sender: a bitmap of
//! fragment indices per message (bit `i` of byte `i/8`, `bits` = the highest index + 1), as many
//! messages as fit. The sender takes an entry only for a message it sent to the same mailbox as
//! the message the SURB came with, so whoever holds a SURB can acknowledge only what was sent to
//! the mailbox it reads. (`0x03 ‖ message id ‖ index u16 ‖ zeros`, one fragment, is the format
//! before; it is still read.)
//!
//! Every packet to a mailbox is sealed end to end to the mailbox's owner (see [`seal`]):
//! a DATA or loop payload is sealed under the mailbox's [`SealKey`] and sent with
//! [`Sphinx::new_opaque_packet`]; an ACK travels in a SURB reply, which only the SURB's creator
//! can decrypt; a drop is random bytes to a random mailbox. So the last gateway stores random
//! bytes of one length for every kind.
//!
//! A message is split into `count` fragments of at most [`fragment_capacity`] bytes, each sent in
//! its own DATA packet with its own SURB. The recipient acknowledges every DATA packet it
//! receives (again if it is a duplicate: the first acknowledgement may have been lost) and
//! delivers a message once, when its last fragment arrives ([`Inbox`]). The sender resends a
//! fragment whose acknowledgement has not come back after a randomized, growing backoff
//! ([`Outbox`]); a message is *delivered* when every fragment is acknowledged.
//!
//! # When packets leave
//!
//! [`Schedule`] draws three independent Poisson processes: payload slots at rate λ_P (a slot
//! carries the next queued real packet, or a drop cover packet when nothing is queued), loops at
//! rate λ_L and drops at rate λ_D. A wire observer sees the same packet stream whether the user
//! is typing or asleep (P3).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::{Destination, Hop, Time, Topology, exponential, path_hops};
use qanat_packet::{
    CreateError, Geometry, NodeId, PathHop, RecipientId, Sphinx, SurbError, SurbId, SurbKeys,
};
use rand_core::CryptoRng;

pub mod acks;
pub mod seal;

use seal::SealKey;

const KIND_DATA: u8 = 1;
const KIND_COVER: u8 = 2;
const KIND_ACK: u8 = 3;
const KIND_ACKS: u8 = 4;
const DATA_HEADER: usize = 1 + 16 + 2 + 2 + 2;

/// Longest message, in fragments.
pub const MAX_FRAGMENTS: usize = 4096;

/// A message's identifier: 16 random bytes chosen by its sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageId(..)")
    }
}

/// Why a payload could not be read or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the payload length of the network.
    #[error("wrong payload length")]
    Length,
    /// Unknown kind byte.
    #[error("unknown payload kind")]
    Kind,
    /// A field is out of range (fragment index, count or length).
    #[error("malformed payload")]
    Malformed,
    /// A SURB does not fit in this network's payload.
    #[error("this network's payload cannot carry a SURB and data (raise forward_payload_len)")]
    NoRoom,
    /// The message is longer than [`MAX_FRAGMENTS`] fragments.
    #[error("message too long")]
    TooLong,
}

/// A decoded payload.
#[derive(Clone, PartialEq, Eq)]
pub enum Payload {
    /// A fragment of a message, with the SURB to acknowledge it.
    Data {
        /// The SURB.
        surb: Vec<u8>,
        /// The message.
        message_id: MessageId,
        /// Which fragment.
        index: u16,
        /// Of how many.
        count: u16,
        /// The fragment's bytes.
        data: Vec<u8>,
    },
    /// Cover traffic (a loop or a drop).
    Cover,
    /// Acknowledgements (decrypted from a SURB reply): at least one entry.
    Ack(Vec<AckEntry>),
}

/// The fragments of one message an acknowledgement covers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AckEntry {
    /// The message.
    pub message_id: MessageId,
    /// Its fragments: sorted, unique, each below [`MAX_FRAGMENTS`], at least one.
    pub indices: Vec<u16>,
}

impl AckEntry {
    /// The bytes of the entry in an ACKS payload.
    pub fn encoded_len(&self) -> usize {
        let bits = self.indices.last().map_or(0, |i| usize::from(*i) + 1);
        16 + 2 + bits.div_ceil(8)
    }
}

/// The bytes an ACKS payload has for its entries in `g`.
pub fn ack_capacity(g: &Geometry) -> usize {
    g.forward_payload_len().saturating_sub(2)
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data { index, count, data, .. } => {
                write!(f, "Data {{ index: {index}, count: {count}, {} bytes }}", data.len())
            }
            Self::Cover => f.write_str("Cover"),
            Self::Ack(entries) => write!(f, "Ack {{ {} entries }}", entries.len()),
        }
    }
}

/// Data bytes per DATA packet in `g`.
pub fn fragment_capacity(g: &Geometry) -> Result<usize, PayloadError> {
    g.forward_payload_len()
        .checked_sub(DATA_HEADER + g.surb_len())
        .filter(|n| *n > 0)
        .ok_or(PayloadError::NoRoom)
}

impl Payload {
    /// The payload's bytes in `g` (cover payloads take random bytes from `rng`).
    pub fn encode<R: CryptoRng + ?Sized>(&self, g: &Geometry, rng: &mut R) -> Result<Vec<u8>, PayloadError> {
        let mut out = vec![0u8; g.forward_payload_len()];
        match self {
            Self::Data { surb, message_id, index, count, data } => {
                let cap = fragment_capacity(g)?;
                if surb.len() != g.surb_len() || data.len() > cap || index >= count {
                    return Err(PayloadError::Malformed);
                }
                let len = u16::try_from(data.len()).map_err(|_| PayloadError::Malformed)?;
                let mut w = Writer(&mut out, 0);
                w.put(&[KIND_DATA]);
                w.put(surb);
                w.put(&message_id.0);
                w.put(&index.to_be_bytes());
                w.put(&count.to_be_bytes());
                w.put(&len.to_be_bytes());
                w.put(data);
            }
            Self::Cover => {
                rng.fill_bytes(&mut out);
                if let Some(b) = out.first_mut() {
                    *b = KIND_COVER;
                }
            }
            Self::Ack(entries) => {
                let n = u8::try_from(entries.len()).map_err(|_| PayloadError::Malformed)?;
                let total: usize = entries.iter().map(AckEntry::encoded_len).sum();
                if n == 0 || total > ack_capacity(g) {
                    return Err(PayloadError::Malformed);
                }
                let mut w = Writer(&mut out, 0);
                w.put(&[KIND_ACKS, n]);
                for e in entries {
                    let ordered = e.indices.windows(2).all(|p| p[0] < p[1]);
                    let Some(&last) = e.indices.last() else { return Err(PayloadError::Malformed) };
                    if !ordered || usize::from(last) >= MAX_FRAGMENTS {
                        return Err(PayloadError::Malformed);
                    }
                    let bits = last + 1;
                    let mut bitmap = vec![0u8; usize::from(bits).div_ceil(8)];
                    for i in &e.indices {
                        bitmap[usize::from(*i / 8)] |= 1 << (i % 8);
                    }
                    w.put(&e.message_id.0);
                    w.put(&bits.to_be_bytes());
                    w.put(&bitmap);
                }
            }
        }
        Ok(out)
    }

    /// Strictly decodes a payload of `g` (padding must be zeros).
    pub fn decode(g: &Geometry, b: &[u8]) -> Result<Self, PayloadError> {
        if b.len() != g.forward_payload_len() {
            return Err(PayloadError::Length);
        }
        let (&kind, rest) = b.split_first().ok_or(PayloadError::Length)?;
        let zeros = |tail: &[u8]| tail.iter().all(|x| *x == 0);
        let id = |b: &[u8]| -> Result<MessageId, PayloadError> {
            b.get(..16).and_then(|s| s.try_into().ok()).map(MessageId).ok_or(PayloadError::Malformed)
        };
        let u16_at = |b: &[u8], i: usize| -> Result<u16, PayloadError> {
            b.get(i..i + 2).map(|s| u16::from_be_bytes([s[0], s[1]])).ok_or(PayloadError::Malformed)
        };
        match kind {
            KIND_DATA => {
                let cap = fragment_capacity(g)?;
                let (surb, rest) = rest.split_at_checked(g.surb_len()).ok_or(PayloadError::Malformed)?;
                let message_id = id(rest)?;
                let (index, count, len) =
                    (u16_at(rest, 16)?, u16_at(rest, 18)?, usize::from(u16_at(rest, 20)?));
                let data = rest.get(22..22 + len).ok_or(PayloadError::Malformed)?;
                if index >= count
                    || usize::from(count) > MAX_FRAGMENTS
                    || len > cap
                    || !zeros(&rest[22 + len..])
                {
                    return Err(PayloadError::Malformed);
                }
                Ok(Self::Data { surb: surb.to_vec(), message_id, index, count, data: data.to_vec() })
            }
            KIND_COVER => Ok(Self::Cover),
            KIND_ACK => {
                let message_id = id(rest)?;
                let index = u16_at(rest, 16)?;
                if !zeros(rest.get(18..).unwrap_or_default()) || usize::from(index) >= MAX_FRAGMENTS {
                    return Err(PayloadError::Malformed);
                }
                Ok(Self::Ack(vec![AckEntry { message_id, indices: vec![index] }]))
            }
            KIND_ACKS => {
                let (&n, mut rest) = rest.split_first().ok_or(PayloadError::Malformed)?;
                if n == 0 {
                    return Err(PayloadError::Malformed);
                }
                let mut entries = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    let message_id = id(rest)?;
                    let bits = usize::from(u16_at(rest, 16)?);
                    if bits == 0 || bits > MAX_FRAGMENTS {
                        return Err(PayloadError::Malformed);
                    }
                    let bitmap = rest.get(18..18 + bits.div_ceil(8)).ok_or(PayloadError::Malformed)?;
                    let set = |i: usize| bitmap[i / 8] & (1 << (i % 8)) != 0;
                    // Canonical: the highest bit is set and none beyond it.
                    if !set(bits - 1) || (bits..bitmap.len() * 8).any(set) {
                        return Err(PayloadError::Malformed);
                    }
                    // Bounded by MAX_FRAGMENTS above.
                    let indices = (0..bits).filter(|i| set(*i)).map(|i| i as u16).collect();
                    entries.push(AckEntry { message_id, indices });
                    rest = &rest[18 + bitmap.len()..];
                }
                if !zeros(rest) {
                    return Err(PayloadError::Malformed);
                }
                Ok(Self::Ack(entries))
            }
            _ => Err(PayloadError::Kind),
        }
    }
}

struct Writer<'a>(&'a mut [u8], usize);

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) {
        if let Some(dst) = self.0.get_mut(self.1..self.1 + b.len()) {
            dst.copy_from_slice(b);
        }
        self.1 += b.len();
    }
}

/// Where packets for a contact go: their gateway, the mailbox they made for us there, and the
/// key that seals what we write into it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The gateway.
    pub gateway: NodeId,
    /// The mailbox.
    pub mailbox: RecipientId,
    /// The mailbox's seal key.
    pub seal: SealKey,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route(..)")
    }
}

/// Why a packet could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A gateway is not in the epoch's topology.
    #[error("the gateway is not in the current directory")]
    UnknownGateway,
    /// A layer has no mix.
    #[error("a mix layer is empty in the current directory")]
    EmptyLayer,
    /// The packet layer refused the path or payload.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// The SURB could not be used.
    #[error(transparent)]
    Surb(#[from] SurbError),
    /// The payload could not be built.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// The hops from gateway `from` through one random mix per layer to gateway `to`.
pub fn route_hops<R: CryptoRng + ?Sized>(
    topology: &Topology,
    from: &NodeId,
    to: &NodeId,
    rng: &mut R,
) -> Result<Vec<Hop>, RouteError> {
    let gw = |id: &NodeId| {
        topology.gateways.iter().find(|h| h.id == *id).cloned().ok_or(RouteError::UnknownGateway)
    };
    let mut hops = vec![gw(from)?];
    for l in 0..topology.layers.len() {
        hops.push(topology.random_mix(l, rng).cloned().ok_or(RouteError::EmptyLayer)?);
    }
    hops.push(gw(to)?);
    Ok(hops)
}

fn sphinx_path<R: CryptoRng + ?Sized>(
    topology: &Topology,
    hops: &[Hop],
    mean_delay: Duration,
    destination: Destination,
    rng: &mut R,
) -> Vec<PathHop> {
    let refs: Vec<&Hop> = hops.iter().collect();
    let is_gw = |id: &NodeId| topology.gateways.iter().any(|g| g.id == *id);
    path_hops(&refs, is_gw, mean_delay, destination, rng)
}

/// What a client knows of the network for the current epoch, to build packets.
#[derive(Debug, Clone)]
pub struct NetworkView {
    /// The epoch's topology.
    pub topology: Topology,
    /// The mean per-hop delay.
    pub mean_delay: Duration,
    /// This client's gateway.
    pub gateway: NodeId,
}

/// The delivery state of a message, as its sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Waiting for sending slots.
    Queued,
    /// Every fragment has left at least once; not all are acknowledged.
    Sent,
    /// Every fragment is acknowledged.
    Delivered,
}

/// How the outbox resends.
#[derive(Debug, Clone, Copy)]
pub struct ResendPolicy {
    /// The first wait for an acknowledgement (about the expected round trip).
    pub first: Duration,
    /// The longest wait (the backoff doubles up to it).
    pub max: Duration,
}

impl ResendPolicy {
    /// The wait after the `attempt`-th send (0-based): `first · 2^attempt`, at most `max`, times
    /// a uniform factor in [1, 2) so that resends do not line up.
    fn wait<R: CryptoRng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.first.saturating_mul(1u32 << attempt.min(16)).min(self.max);
        let jitter = 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(jitter)
    }
}

#[derive(Debug)]
enum FragmentState {
    Queued,
    InFlight { until: Time, attempt: u32 },
    Acked,
}

struct OutMessage {
    route: Route,
    reply_to: RecipientId,
    fragments: Vec<(Vec<u8>, FragmentState)>,
    sent_once: bool,
}

/// A SURB the outbox is waiting to see come back.
struct PendingSurb {
    /// Where the message it went with was sent: the acknowledgements it may carry are for
    /// messages sent there.
    route: Route,
    keys: SurbKeys,
}

/// How long the outbox keeps a SURB's keys: longer than any SURB can work (its hops' packet keys
/// are those of the epoch it was made in, accepted for a grace period after it), so a reply
/// that carries acknowledgements for other messages is still read after its own message was
/// delivered.
pub const SURB_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// What the outbox reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEvent {
    /// A message's state changed.
    State(MessageId, Delivery),
}

/// The sender's side of reliable delivery.
pub struct Outbox {
    policy: ResendPolicy,
    messages: BTreeMap<MessageId, OutMessage>,
    queue: VecDeque<(MessageId, u16)>,
    surbs: HashMap<SurbId, PendingSurb>,
    /// The SURBs in the order they were made, to forget them after [`SURB_LIFETIME`].
    surb_order: VecDeque<(Time, SurbId)>,
    events: VecDeque<OutboxEvent>,
    unroutable: u64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("messages", &self.messages.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// A packet ready to leave: hand it to the client's gateway.
#[derive(Clone)]
pub struct OutPacket {
    /// The packet.
    pub packet: Vec<u8>,
}

impl std::fmt::Debug for OutPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutPacket({} bytes)", self.packet.len())
    }
}

impl Outbox {
    /// An empty outbox.
    pub fn new(policy: ResendPolicy) -> Self {
        Self {
            policy,
            messages: BTreeMap::new(),
            queue: VecDeque::new(),
            surbs: HashMap::new(),
            surb_order: VecDeque::new(),
            unroutable: 0,
            events: VecDeque::new(),
        }
    }

    /// Queues `bytes` for the contact at `route`, whose acknowledgements come back to our
    /// mailbox `reply_to`. Returns the message's id.
    pub fn queue<R: CryptoRng + ?Sized>(
        &mut self,
        g: &Geometry,
        route: Route,
        reply_to: RecipientId,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<MessageId, PayloadError> {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let id = MessageId(id);
        self.queue_as(id, g, route, reply_to, bytes)?;
        Ok(id)
    }

    /// Queues `bytes` under the id `id` chosen by the caller (a message saved before a restart
    /// keeps its id, so that its recipient can drop the copies). An id already queued is left
    /// as it is.
    pub fn queue_as(
        &mut self,
        id: MessageId,
        g: &Geometry,
        route: Route,
        reply_to: RecipientId,
        bytes: &[u8],
    ) -> Result<(), PayloadError> {
        if self.messages.contains_key(&id) {
            return Ok(());
        }
        let cap = fragment_capacity(g)?;
        let chunks: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(cap).collect() };
        if chunks.len() > MAX_FRAGMENTS {
            return Err(PayloadError::TooLong);
        }
        let fragments = chunks.iter().map(|c| (c.to_vec(), FragmentState::Queued)).collect::<Vec<_>>();
        for i in 0..fragments.len() {
            // Bounded by MAX_FRAGMENTS above.
            self.queue.push_back((id, i as u16));
        }
        self.messages.insert(id, OutMessage { route, reply_to, fragments, sent_once: false });
        self.events.push_back(OutboxEvent::State(id, Delivery::Queued));
        Ok(())
    }

    /// Changes the resend policy (for waits started from now on).
    pub fn set_policy(&mut self, policy: ResendPolicy) {
        self.policy = policy;
    }

    /// How many messages are not yet delivered.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether every message is delivered.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Whether a real packet is waiting for a slot.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The state of message `id`, if the outbox still knows it.
    pub fn state(&self, id: &MessageId) -> Option<Delivery> {
        let m = self.messages.get(id)?;
        Some(if m.fragments.iter().all(|(_, s)| matches!(s, FragmentState::Acked)) {
            Delivery::Delivered
        } else if m.sent_once {
            Delivery::Sent
        } else {
            Delivery::Queued
        })
    }

    /// Builds the next queued fragment's packet for a payload slot at `now` (or `None` when
    /// nothing is queued: the slot then carries a drop). A fragment whose packet cannot be built
    /// now (its recipient's gateway is missing from this epoch's directory) never fails the
    /// slot: it waits as if lost and is tried again ([`Outbox::unroutable`] counts it).
    pub fn next_packet<R: CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        sphinx: &Sphinx,
        view: &NetworkView,
        rng: &mut R,
    ) -> Option<OutPacket> {
        loop {
            // Skip entries made stale by an acknowledgement since they were queued.
            let (id, index) = self.queue.pop_front()?;
            let Some(m) = self.messages.get_mut(&id) else { continue };
            let Some((_, state)) = m.fragments.get(usize::from(index)) else { continue };
            if matches!(state, FragmentState::Acked) {
                continue;
            }
            let attempt = match state {
                FragmentState::InFlight { attempt, .. } => *attempt + 1,
                _ => 0,
            };
            match build_fragment(m, id, index, sphinx, view, rng) {
                Ok((packet, surb_id, keys)) => {
                    let Some(m) = self.messages.get_mut(&id) else { continue };
                    if let Some((_, state)) = m.fragments.get_mut(usize::from(index)) {
                        *state =
                            FragmentState::InFlight { until: now + self.policy.wait(attempt, rng), attempt };
                    }
                    while self.surb_order.front().is_some_and(|(t, _)| *t + SURB_LIFETIME <= now) {
                        if let Some((_, old)) = self.surb_order.pop_front() {
                            self.surbs.remove(&old);
                        }
                    }
                    self.surbs.insert(surb_id, PendingSurb { route: m.route, keys });
                    self.surb_order.push_back((now, surb_id));
                    if !m.sent_once && m.fragments.iter().all(|(_, s)| !matches!(s, FragmentState::Queued)) {
                        m.sent_once = true;
                        self.events.push_back(OutboxEvent::State(id, Delivery::Sent));
                    }
                    return Some(OutPacket { packet });
                }
                Err(_) => {
                    // No packet can be built for this message now (its recipient's gateway is
                    // not in this epoch's directory, say): it waits as if sent and lost, and is
                    // tried again after the same backoff; the slot goes to what comes next.
                    self.unroutable += 1;
                    let Some(m) = self.messages.get_mut(&id) else { continue };
                    if let Some((_, state)) = m.fragments.get_mut(usize::from(index)) {
                        *state =
                            FragmentState::InFlight { until: now + self.policy.wait(attempt, rng), attempt };
                    }
                }
            }
        }
    }

    /// Fragments that could not be sent in their slot because no packet could be built for them
    /// (their recipient's gateway missing from the directory): each waits and is tried again.
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// A SURB reply arrived in our mailbox: decrypts it with the SURB's keys and records the
    /// acknowledgements it carries for messages sent to the mailbox the SURB went to (others are
    /// ignored). Unknown SURBs and bad payloads are ignored (returns `false`); a SURB is read
    /// once.
    pub fn handle_reply(&mut self, sphinx: &Sphinx, surb_id: SurbId, payload: &[u8]) -> bool {
        let Some(p) = self.surbs.get(&surb_id) else { return false };
        let Ok(plain) = sphinx.decrypt_surb_payload(payload, &p.keys) else { return false };
        let Ok(Payload::Ack(entries)) = Payload::decode(sphinx.geometry(), &plain) else {
            return false;
        };
        let route = p.route;
        self.surbs.remove(&surb_id);
        for e in entries {
            if self.messages.get(&e.message_id).is_some_and(|m| m.route == route) {
                for i in e.indices {
                    self.ack(e.message_id, i);
                }
            }
        }
        true
    }

    fn ack(&mut self, id: MessageId, index: u16) {
        let Some(m) = self.messages.get_mut(&id) else { return };
        if let Some((_, s)) = m.fragments.get_mut(usize::from(index)) {
            *s = FragmentState::Acked;
        }
        if m.fragments.iter().all(|(_, s)| matches!(s, FragmentState::Acked)) {
            self.events.push_back(OutboxEvent::State(id, Delivery::Delivered));
            // Its other SURBs (from resends) are kept: they may bring acknowledgements of other
            // messages to the same mailbox.
            self.messages.remove(&id);
        }
    }

    /// Queues again every fragment whose acknowledgement is overdue at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        for (id, m) in &self.messages {
            for (i, (_, s)) in m.fragments.iter().enumerate() {
                if let FragmentState::InFlight { until, .. } = s
                    && *until <= now
                    && !self.queue.contains(&(*id, i as u16))
                {
                    self.queue.push_back((*id, i as u16));
                }
            }
        }
    }

    /// When [`Outbox::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.messages
            .values()
            .flat_map(|m| m.fragments.iter())
            .filter_map(|(_, s)| match s {
                FragmentState::InFlight { until, .. } => Some(*until),
                _ => None,
            })
            .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<OutboxEvent> {
        self.events.pop_front()
    }
}

/// A SURB for a packet to a mailbox at gateway `from`: back from there through one mix per layer
/// to our gateway and our mailbox `reply_to`. Returns its bytes, its id (the SURB-reply id the
/// reply will carry) and the keys that decrypt the reply.
pub fn reply_surb<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    from: &NodeId,
    reply_to: RecipientId,
    rng: &mut R,
) -> Result<(Vec<u8>, SurbId, SurbKeys), RouteError> {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let back = route_hops(&view.topology, from, &view.gateway, rng)?;
    let back = sphinx_path(
        &view.topology,
        &back,
        view.mean_delay,
        Destination::SurbReply(reply_to, SurbId(id)),
        rng,
    );
    let (surb, keys) = sphinx.new_surb(rng, &back)?;
    Ok((surb, SurbId(id), keys))
}

/// A packet from our gateway to `route`'s mailbox carrying `payload` (one forward payload of the
/// geometry) sealed under the route's key, with a fresh SURB-reply identifier.
pub fn sealed_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    route: &Route,
    payload: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, RouteError> {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let body = seal::seal(&route.seal, &id, payload, rng).map_err(|_| PayloadError::Malformed)?;
    opaque_packet(sphinx, view, route.gateway, route.mailbox, id, &body, rng)
}

fn opaque_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    gateway: NodeId,
    mailbox: RecipientId,
    id: [u8; 16],
    body: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, RouteError> {
    let hops = route_hops(&view.topology, &view.gateway, &gateway, rng)?;
    let path =
        sphinx_path(&view.topology, &hops, view.mean_delay, Destination::SurbReply(mailbox, SurbId(id)), rng);
    Ok(sphinx.new_opaque_packet(rng, &path, body)?)
}

/// Builds a cover packet: a loop to our own mailbox (`loop_to`, sealed under its key, so that it
/// is an item like any other there), or a drop: random bytes to a random mailbox at a random
/// gateway.
pub fn cover_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    loop_to: Option<(RecipientId, SealKey)>,
    rng: &mut R,
) -> Result<OutPacket, RouteError> {
    let g = sphinx.geometry();
    match loop_to {
        Some((mailbox, key)) => {
            let payload = Payload::Cover.encode(g, rng)?;
            let route = Route { gateway: view.gateway, mailbox, seal: key };
            Ok(OutPacket { packet: sealed_packet(sphinx, view, &route, &payload, rng)? })
        }
        None => {
            let to = view.topology.random_gateway(rng).ok_or(RouteError::UnknownGateway)?.id;
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            let mut id = [0u8; 16];
            rng.fill_bytes(&mut id);
            let mut body = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
            rng.fill_bytes(&mut body);
            Ok(OutPacket { packet: opaque_packet(sphinx, view, to, RecipientId(m), id, &body, rng)? })
        }
    }
}

/// The acknowledgement of a received DATA packet, sent back through its SURB (hand it to our
/// gateway like any packet).
pub fn ack_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    surb: &[u8],
    message_id: MessageId,
    index: u16,
    rng: &mut R,
) -> Result<OutPacket, RouteError> {
    acks_packet(sphinx, surb, vec![AckEntry { message_id, indices: vec![index] }], rng)
}

/// Acknowledgements of several fragments (see [`AckEntry`]; they must fit [`ack_capacity`]),
/// sent back through one SURB.
pub fn acks_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    surb: &[u8],
    entries: Vec<AckEntry>,
    rng: &mut R,
) -> Result<OutPacket, RouteError> {
    let payload = Payload::Ack(entries).encode(sphinx.geometry(), rng)?;
    let (packet, _first_hop) = sphinx.new_packet_from_surb(surb, &payload)?;
    Ok(OutPacket { packet })
}

/// The packet for fragment `index` of message `id`, with its SURB's id and keys.
fn build_fragment<R: CryptoRng + ?Sized>(
    m: &OutMessage,
    id: MessageId,
    index: u16,
    sphinx: &Sphinx,
    view: &NetworkView,
    rng: &mut R,
) -> Result<(Vec<u8>, SurbId, SurbKeys), RouteError> {
    let count = u16::try_from(m.fragments.len()).map_err(|_| PayloadError::TooLong)?;
    let (data, _) = m.fragments.get(usize::from(index)).ok_or(PayloadError::TooLong)?;
    let g = sphinx.geometry();
    let (surb, surb_id, keys) = reply_surb(sphinx, view, &m.route.gateway, m.reply_to, rng)?;
    let payload = Payload::Data { surb, message_id: id, index, count, data: data.clone() }.encode(g, rng)?;
    let packet = sealed_packet(sphinx, view, &m.route, &payload, rng)?;
    Ok((packet, surb_id, keys))
}

/// What the inbox did with a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A message is complete. The caller takes it and then calls [`Inbox::commit`] (it is
    /// delivered: acknowledge the fragment) or [`Inbox::refuse`] (it cannot be taken now: do not
    /// acknowledge the fragment, its sender will send it again).
    Message(MessageId, Vec<u8>),
    /// A fragment was stored; the message is not complete yet.
    Partial,
    /// A fragment of a message already delivered (acknowledge it again, deliver nothing).
    Duplicate,
    /// Not stored: the partial messages are at their bound, or the fragment contradicts the
    /// ones before (do not acknowledge it).
    Refused,
}

struct PartialMessage {
    since: Time,
    /// Where it came from: the conversation whose mailbox it arrived in.
    source: Source,
    count: u16,
    fragments: BTreeMap<u16, Vec<u8>>,
}

/// Where a fragment came from, for the inbox's bounds per source: the conversation (contact or
/// group) whose mailbox it arrived in. Only those who know that mailbox and its seal key can put
/// anything there.
pub type Source = [u8; 16];

/// At most this many messages are partly received at once.
pub const MAX_PARTIAL_MESSAGES: usize = 10_000;

/// At most this many bytes of partly received messages are held.
pub const MAX_PARTIAL_BYTES: usize = 64 << 20;

/// At most this many messages from one source are partly received at once.
pub const MAX_PARTIAL_MESSAGES_PER_SOURCE: usize = 1_000;

/// At most this many bytes of partly received messages from one source are held (room for the
/// largest message, [`MAX_FRAGMENTS`] fragments).
pub const MAX_PARTIAL_BYTES_PER_SOURCE: usize = 8 << 20;

/// The receiver's side: reassembly and de-duplication by message id. What others can make it
/// hold is bounded, per source ([`MAX_PARTIAL_MESSAGES_PER_SOURCE`],
/// [`MAX_PARTIAL_BYTES_PER_SOURCE`]: one contact filling its share does not stop the others) and
/// in all ([`MAX_PARTIAL_MESSAGES`], [`MAX_PARTIAL_BYTES`]); a fragment beyond them is refused,
/// not acknowledged, and so sent again later; a fragment that completes its message is never
/// held, so it is always taken. Partial messages expire ([`REMEMBER_DELIVERED`]). A message's
/// claimed fragment count costs nothing until its fragments arrive.
#[derive(Default)]
pub struct Inbox {
    partial: HashMap<MessageId, PartialMessage>,
    partial_bytes: usize,
    /// Messages and bytes held per source.
    per_source: HashMap<Source, (usize, usize)>,
    delivered: BTreeMap<MessageId, Time>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("partial", &self.partial.len())
            .field("partial_bytes", &self.partial_bytes)
            .field("delivered", &self.delivered.len())
            .finish()
    }
}

/// How long a delivered message's id is remembered (its fragments may be resent until then):
/// the mailbox retention. A partly received message is kept as long.
pub const REMEMBER_DELIVERED: Duration = Duration::from_secs(30 * 86_400);

impl Inbox {
    /// Takes fragment `index` of `count` of message `id` from `source` at `now` (for a fragment
    /// read back from storage, `now` is when the message's first fragment arrived).
    pub fn handle(
        &mut self,
        now: Time,
        source: Source,
        id: MessageId,
        index: u16,
        count: u16,
        data: Vec<u8>,
    ) -> Received {
        self.take(now, source, id, index, count, data, true)
    }

    /// Puts back a fragment read from storage, as [`Inbox::handle`] but whatever the bounds: it
    /// was taken (and acknowledged) within them, perhaps smaller ones.
    pub fn restore(
        &mut self,
        since: Time,
        source: Source,
        id: MessageId,
        index: u16,
        count: u16,
        data: Vec<u8>,
    ) {
        let _ = self.take(since, source, id, index, count, data, false);
    }

    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        now: Time,
        source: Source,
        id: MessageId,
        index: u16,
        count: u16,
        data: Vec<u8>,
        bounded: bool,
    ) -> Received {
        if self.delivered.contains_key(&id) {
            return Received::Duplicate;
        }
        if index >= count || usize::from(count) > MAX_FRAGMENTS {
            return Received::Refused;
        }
        let held = match self.partial.get(&id) {
            // A sender that changes its fragment count, or whose message moves to another
            // conversation, is broken or hostile.
            Some(m) if m.count != count || m.source != source => return Received::Refused,
            Some(m) if m.fragments.contains_key(&index) => {
                return if m.fragments.len() == usize::from(count) {
                    Received::Message(id, Self::join(m))
                } else {
                    Received::Partial
                };
            }
            Some(m) => m.fragments.len(),
            None => 0,
        };
        // What completes its message is not held: it is taken whatever the bounds.
        let completes = held + 1 == usize::from(count);
        if bounded && !completes {
            let (n, bytes) = self.per_source.get(&source).copied().unwrap_or_default();
            let new = held == 0;
            if new && (self.partial.len() >= MAX_PARTIAL_MESSAGES || n >= MAX_PARTIAL_MESSAGES_PER_SOURCE) {
                return Received::Refused;
            }
            if self.partial_bytes + data.len() > MAX_PARTIAL_BYTES
                || bytes + data.len() > MAX_PARTIAL_BYTES_PER_SOURCE
            {
                return Received::Refused;
            }
        }
        self.partial_bytes += data.len();
        let share = self.per_source.entry(source).or_default();
        share.1 += data.len();
        if held == 0 {
            share.0 += 1;
        }
        let m = self.partial.entry(id).or_insert_with(|| PartialMessage {
            since: now,
            source,
            count,
            fragments: BTreeMap::new(),
        });
        m.fragments.insert(index, data);
        if m.fragments.len() == usize::from(count) {
            return Received::Message(id, Self::join(m));
        }
        Received::Partial
    }

    /// Takes `bytes` (and the message itself, if `whole`) off `source`'s share.
    fn release(&mut self, source: Source, bytes: usize, whole: bool) {
        self.partial_bytes -= bytes;
        if let Some(share) = self.per_source.get_mut(&source) {
            share.1 -= bytes;
            if whole {
                share.0 -= 1;
            }
            if share.0 == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    fn join(m: &PartialMessage) -> Vec<u8> {
        m.fragments.values().flatten().copied().collect()
    }

    /// Message `id` (complete) was taken: it is delivered, its fragments are dropped, and its
    /// id is remembered so that copies are only acknowledged.
    pub fn commit(&mut self, id: MessageId, now: Time) {
        if let Some(m) = self.partial.remove(&id) {
            self.release(m.source, m.fragments.values().map(Vec::len).sum::<usize>(), true);
        }
        self.delivered.insert(id, now);
    }

    /// Message `id` (complete) could not be taken: its fragment `index` is dropped again, so
    /// the message completes when that fragment is sent again.
    pub fn refuse(&mut self, id: MessageId, index: u16) {
        if let Some(m) = self.partial.get_mut(&id)
            && let Some(d) = m.fragments.remove(&index)
        {
            let (source, whole) = (m.source, m.fragments.is_empty());
            if whole {
                self.partial.remove(&id);
            }
            self.release(source, d.len(), whole);
        }
    }

    /// Forgets delivered ids older than [`REMEMBER_DELIVERED`] and partial messages started
    /// before that; returns those partial messages (id and fragment count), whose stored
    /// fragments the caller deletes.
    pub fn expire(&mut self, now: Time) -> Vec<(MessageId, u16)> {
        let cutoff = now - REMEMBER_DELIVERED;
        self.delivered.retain(|_, t| *t > cutoff);
        let old: Vec<(MessageId, u16)> =
            self.partial.iter().filter(|(_, m)| m.since <= cutoff).map(|(id, m)| (*id, m.count)).collect();
        for (id, _) in &old {
            if let Some(m) = self.partial.remove(id) {
                self.release(m.source, m.fragments.values().map(Vec::len).sum::<usize>(), true);
            }
        }
        old
    }

    /// When the first fragment of partly received message `id` arrived.
    pub fn partial_since(&self, id: &MessageId) -> Option<Time> {
        self.partial.get(id).map(|m| m.since)
    }

    /// How many messages are partly received, and their bytes.
    pub fn partial(&self) -> (usize, usize) {
        (self.partial.len(), self.partial_bytes)
    }
}

/// A sending slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A payload slot: the next real packet, or a drop if none is queued.
    Payload,
    /// A loop to ourselves.
    Loop,
    /// A drop.
    Drop,
}

/// Packets per second of each stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// λ_P.
    pub payload: f64,
    /// λ_L.
    pub loops: f64,
    /// λ_D.
    pub drops: f64,
}

impl Rates {
    /// Packets per day, all streams.
    pub fn packets_per_day(&self) -> f64 {
        (self.payload + self.loops + self.drops) * 86_400.0
    }
}

/// How much cover traffic a client sends: its rates, from the directory's parameters.
///
/// Clients of different profiles are told apart by their rates, so each profile is its own
/// anonymity set; the directory's rates are the standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficProfile {
    /// The directory's λ_P, λ_L, λ_D.
    Standard,
    /// A tenth of each: for metered or expensive links, at ten times the wait for a slot.
    Metered,
}

impl TrafficProfile {
    /// The profile's name, as the command line takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Metered => "metered",
        }
    }

    /// The profile named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Standard, Self::Metered].into_iter().find(|p| p.name() == name)
    }

    /// The rates of this profile under the directory's `params`.
    pub fn rates(self, params: &qanat_pki::Parameters) -> Rates {
        let k = match self {
            Self::Standard => 1.0,
            Self::Metered => 0.1,
        };
        Rates {
            payload: params.lambda_p().per_second() * k,
            loops: params.lambda_l().per_second() * k,
            drops: params.lambda_d().per_second() * k,
        }
    }

    /// Bytes per day on the client's link to its gateway (every frame is `wire_len` bytes),
    /// busy or idle alike: up, its packets plus one pull request per mean payload slot; down,
    /// `1 +` [`PULL_BATCH`] frames per pull (the answer's head and its slots).
    pub fn idle_bytes_per_day(self, params: &qanat_pki::Parameters, wire_len: usize) -> (f64, f64) {
        let r = self.rates(params);
        let pulls = r.payload * 86_400.0;
        let up = (r.packets_per_day() + pulls) * wire_len as f64;
        let down = pulls * f64::from(1 + PULL_BATCH) * wire_len as f64;
        (up, down)
    }
}

/// Frames in the answer to each routine pull from the gateway, whatever is waiting: the most
/// items a client receives per pull. Pulls come once per mean payload slot by default, so a
/// client takes in up to twice its own sending rate (its loops come back at a quarter of it);
/// a larger backlog drains over the following pulls.
pub const PULL_BATCH: u16 = 2;
/// Frames in the answer to the first pull of each gateway session (catching up after a time
/// offline).
pub const PULL_FIRST: u16 = 32;

/// The three Poisson processes of a client.
#[derive(Debug, Clone)]
pub struct Schedule {
    rates: Rates,
    next: [Option<Time>; 3],
}

impl Schedule {
    /// A schedule at `rates` (a rate of 0 disables its stream).
    pub fn new(rates: Rates) -> Self {
        Self { rates, next: [None; 3] }
    }

    /// The rates.
    pub fn rates(&self) -> Rates {
        self.rates
    }

    fn rate(&self, i: usize) -> f64 {
        match i {
            0 => self.rates.payload,
            1 => self.rates.loops,
            _ => self.rates.drops,
        }
    }

    /// The slots due at `now` (drawing the next time of each stream afresh).
    pub fn poll<R: CryptoRng + ?Sized>(&mut self, now: Time, rng: &mut R) -> Vec<Slot> {
        let mut out = Vec::new();
        for i in 0..3 {
            let rate = self.rate(i);
            if !(rate.is_finite() && rate > 0.0) {
                self.next[i] = None;
                continue;
            }
            let mean = Duration::from_secs_f64(1.0 / rate);
            let next = self.next[i].get_or_insert_with(|| now + exponential(rng, mean));
            // At most one slot per stream per poll: a client that slept does not burst.
            if *next <= now {
                out.push([Slot::Payload, Slot::Loop, Slot::Drop][i]);
                *next = now + exponential(rng, mean);
            }
        }
        out
    }

    /// When [`Schedule::poll`] next has a slot (once every stream has been drawn).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests;
