//! The sender's side of reliable delivery: a message cut into fragments, each sent again until
//! its acknowledgement comes back.
//!
//! [`Outbox::queue`] cuts a message into fragments of [`fragment_capacity`] bytes (at most
//! [`MAX_FRAGMENTS`]) under a random [`MessageId`]. When a payload slot comes,
//! [`Outbox::next_packet`] builds the next queued fragment's packet: a DATA payload with a fresh
//! SURB, sealed to the contact's mailbox ([`super::packets`]). A fragment whose acknowledgement
//! has not come back after a randomized, growing backoff ([`ResendPolicy`]) is queued again
//! ([`Outbox::handle_timeout`]). A SURB reply that arrives in our mailbox is decrypted with its
//! SURB's keys ([`Outbox::handle_reply`]); its entries count only for messages sent to the
//! mailbox that SURB went to, so whoever holds a SURB can acknowledge only what was sent to the
//! mailbox it reads. A message is [`Delivery::Delivered`] once every fragment is acknowledged.
//!
//! # What others learn
//!
//! Nothing leaves the outbox but packets in payload slots ([`super::schedule`]), so neither an
//! observer of the link nor a gateway sees when a message was queued, how long it is, or that a
//! fragment was resent: each resend is a new packet (a fresh path, SURB and seal) that only the
//! recipient links to the first, by the message id inside. The recipient learns the message id,
//! the fragment count and each fragment's index.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use qanat_packet::{Geometry, MailboxId, Sphinx, SurbId, SurbKeys};
use rand_core::CryptoRng;

use super::packets::{NetworkView, OutPacket, Route, RouteError, reply_surb, sealed_packet};
use super::payload::{MAX_FRAGMENTS, MessageId, Payload, PayloadError, fragment_capacity};
use crate::UnixMicros;

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
    pub(crate) fn wait<R: CryptoRng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.first.saturating_mul(1u32 << attempt.min(16)).min(self.max);
        let jitter = 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(jitter)
    }
}

#[derive(Debug)]
enum FragmentState {
    Queued,
    InFlight { until: UnixMicros, attempt: u32 },
    Acked,
}

struct OutMessage {
    route: Route,
    reply_to: MailboxId,
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
    surb_order: VecDeque<(UnixMicros, SurbId)>,
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
        reply_to: MailboxId,
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
        reply_to: MailboxId,
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

    /// Message `id`'s recipient now receives at `to` (it told us so): the message goes there
    /// from now on, and each of its fragments already sent but not yet acknowledged is due again
    /// at `now`, since the old route may no longer be read. The backoff goes on growing where it
    /// was, so a recipient that keeps moving does not make us send faster than its resends
    /// would. Acknowledgements through SURBs sent with the old route no longer count (the copy
    /// sent again brings its own). Returns whether the outbox had the message.
    pub fn reroute(&mut self, id: &MessageId, to: Route, now: UnixMicros) -> bool {
        let Some(m) = self.messages.get_mut(id) else { return false };
        if m.route == to {
            return true;
        }
        m.route = to;
        for (_, s) in m.fragments.iter_mut() {
            if let FragmentState::InFlight { until, .. } = s {
                *until = (*until).min(now);
            }
        }
        true
    }

    /// Forgets message `id` (its recipient is gone): never sent again, never reported. Returns
    /// whether the outbox had it.
    pub fn cancel(&mut self, id: &MessageId) -> bool {
        // Its entries in the queue are skipped when they come up.
        self.messages.remove(id).is_some()
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
        now: UnixMicros,
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
                FragmentState::Queued | FragmentState::Acked => 0,
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
    pub fn handle_timeout(&mut self, now: UnixMicros) {
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
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        self.messages
            .values()
            .flat_map(|m| m.fragments.iter())
            .filter_map(|(_, s)| match s {
                FragmentState::InFlight { until, .. } => Some(*until),
                FragmentState::Queued | FragmentState::Acked => None,
            })
            .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<OutboxEvent> {
        self.events.pop_front()
    }
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
