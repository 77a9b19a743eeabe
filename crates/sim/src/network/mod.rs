//! The one simulated network: the real [`Mix`] and [`Gateway`] cores, a [`Store`] per gateway,
//! and clients made of the real sending layer, all driven by one event queue in simulated
//! [`UnixMicros`] from one seeded RNG. [`crate::run`] runs a [`Config`] from start to end;
//! [`Network`] steps it ([`Network::run_until`]) for tests that act on it between steps.
//!
//! The parts, each in its own file:
//!
//! - `links.rs`: the links (a fixed latency; optional loss) and the nodes on them: what a mix or
//!   a gateway releases goes on a link and is recorded as an [`Observation`]; with link-level
//!   acknowledgements ([`Links::resend`](crate::Links::resend)) each mix keeps what it sends to
//!   a gateway in the real [`Resends`] table until the gateway acknowledges it, which it does
//!   only once its [`Store`] made the write durable; a failing store is never acknowledged.
//! - `clients.rs`: clients' slots (payload, loop, drop), their messages, and what a client does
//!   with an item taken from its mailbox (an acknowledgement for its `Outbox`, or a DATA
//!   fragment for its `Inbox`, answered through the fragment's SURB in a later payload slot).
//! - `pulls.rs`: with [`Pulls`](crate::Pulls), clients take items only through pulls to their
//!   gateway, on a fixed cadence, each answered by the gateway's pull core with `1 + limit`
//!   frames; the frames are recorded apart ([`Run::pull_frames`]). Without pulls a client takes
//!   each item the instant its gateway stores it, and nothing else crosses its link.
//!
//! The order in which the RNG is drawn is part of a seed's meaning: with loss, link
//! acknowledgements and pulls off, a seed gives the run it gave before they existed (pinned by
//! `tests/pinned.rs`).

mod clients;
mod links;
mod pulls;

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};

use chacha20::ChaCha20Rng;
use qanat_mixnet::pull::PullServer;
use qanat_mixnet::sending::MessageId;
use qanat_mixnet::{Dropped, Gateway, Mix, Resends, Topology, UnixMicros};
use qanat_packet::{MailboxId, NodeId, SecretKey, Sphinx};

use crate::client::credential;
use crate::config::{Config, SimError};
use crate::run::{LinkStats, MessageRecord, PullStats, Run};
use crate::setup::{Node, Setup};
use crate::store::Store;
use crate::{Endpoint, Observation, Stored};

/// Something that happens at an instant.
enum Event {
    /// A packet reaches `to` over the link from `from`; `token` is its link-level id (0 without
    /// link acknowledgements).
    Arrive {
        from: Endpoint,
        to: Node,
        observation: usize,
        packet: Vec<u8>,
        token: u64,
    },
    /// A gateway's acknowledgement of `token` reaches mix `mix`.
    LinkAck {
        mix: usize,
        gateway: usize,
        token: u64,
    },
    ClientWake(u32),
    MixWake(usize),
    GatewayWake(usize),
    /// A mix's resend table is due.
    ResendWake(usize),
    /// A client's pull is due (its fixed cadence).
    PullDue(u32),
    /// A client's pull request reaches its gateway.
    PullArrive {
        client: u32,
        request: Vec<u8>,
    },
    /// The answer to a pull leaves the gateway (its fixed delay after the request).
    AnswerLeave {
        client: u32,
        frames: Vec<Vec<u8>>,
    },
    /// The answer reaches the client.
    AnswerArrive {
        client: u32,
        frames: Vec<Vec<u8>>,
    },
    /// The client's pull `id` has had no answer for too long.
    PullTimeout {
        client: u32,
        id: u32,
    },
}

struct Queued(UnixMicros, u64, Event);

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

/// The simulated network, stepped in simulated time.
pub struct Network {
    config: Config,
    s: Setup,
    stores: Vec<Store>,
    /// Each gateway's client sessions: the mailboxes each client registered on it.
    sessions: Vec<HashMap<u32, PullServer>>,
    /// Each mix's packets to gateways not yet acknowledged (empty without link acknowledgements).
    resends: Vec<Resends>,
    events: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now: UnixMicros,
    mix_wake: Vec<Option<UnixMicros>>,
    gateway_wake: Vec<Option<UnixMicros>>,
    resend_wake: Vec<Option<UnixMicros>>,
    observations: Vec<Observation>,
    pull_frames: Vec<Observation>,
    messages: Vec<MessageRecord>,
    by_id: HashMap<MessageId, usize>,
    stored: Vec<Stored>,
    /// Ground truth for pulled items: the observation of the packet that brought `(mailbox, seq)`.
    truth: HashMap<(MailboxId, u64), usize>,
    /// Every `(mailbox, seq)` pulled, to count the items pulled again.
    pulled: HashSet<(MailboxId, u64)>,
    link_stats: LinkStats,
    pull_stats: PullStats,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("now", &self.now).field("events", &self.events.len()).finish()
    }
}

impl Network {
    /// The network of `config` at time zero, its clients' first slots and their first messages'
    /// times drawn.
    pub fn new(config: Config) -> Result<Self, SimError> {
        let s = Setup::new(&config)?;
        let (n_mix, n_gw) = (s.mixes.len(), s.gateways.len());
        let mut stores: Vec<Store> = (0..n_gw).map(|_| Store::default()).collect();
        for c in &s.clients {
            stores[c.gateway]
                .register(c.mailbox, credential(c.mailbox))
                .map_err(|_| SimError::Config("a fresh store refused a registration"))?;
        }
        let resends = match config.links.resend {
            Some(rc) => (0..n_mix).map(|m| Resends::with_id_base(rc, (m as u64) << 48)).collect(),
            None => Vec::new(),
        };
        let mut net = Self {
            s,
            stores,
            sessions: (0..n_gw).map(|_| HashMap::new()).collect(),
            resends,
            events: BinaryHeap::new(),
            seq: 0,
            now: UnixMicros::ZERO,
            mix_wake: vec![None; n_mix],
            gateway_wake: vec![None; n_gw],
            resend_wake: vec![None; n_mix],
            observations: Vec::new(),
            pull_frames: Vec::new(),
            messages: Vec::new(),
            by_id: HashMap::new(),
            stored: Vec::new(),
            truth: HashMap::new(),
            pulled: HashSet::new(),
            link_stats: LinkStats::default(),
            pull_stats: PullStats::default(),
            config,
        };
        let (start_msgs, _, _) = net.config.phases();
        for c in 0..net.config.clients {
            if c < net.config.active && net.config.message_rate > 0.0 {
                let mean = std::time::Duration::from_secs_f64(1.0 / net.config.message_rate);
                let gap = qanat_mixnet::exponential(&mut net.s.rng, mean);
                net.s.clients[c as usize].next_message = Some(start_msgs + gap);
            }
            net.client_wake(c, UnixMicros::ZERO)?;
        }
        for m in 0..n_mix {
            net.reschedule_mix(m, UnixMicros::ZERO);
        }
        for g in 0..n_gw {
            net.reschedule_gateway(g, UnixMicros::ZERO);
        }
        net.start_pulls();
        Ok(net)
    }

    fn push(&mut self, t: UnixMicros, e: Event) {
        self.seq += 1;
        self.events.push(Reverse(Queued(t, self.seq, e)));
    }

    /// Runs every event up to and including `until`; the network's time is then `until`.
    pub fn run_until(&mut self, until: UnixMicros) -> Result<(), SimError> {
        while let Some(Reverse(Queued(t, ..))) = self.events.peek() {
            let t = *t;
            if t > until {
                break;
            }
            let Some(Reverse(Queued(_, _, event))) = self.events.pop() else { break };
            self.now = t;
            self.handle(t, event)?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    fn handle(&mut self, t: UnixMicros, event: Event) -> Result<(), SimError> {
        match event {
            Event::Arrive { to: Node::Mix(m), packet, .. } => {
                let _ = self.s.mixes[m].handle_packet(t, packet);
                self.drain_mix(m, t);
            }
            Event::Arrive { from: Endpoint::Client(_), to: Node::Gateway(g), packet, .. } => {
                let _ = self.s.gateways[g].handle_client_packet(t, packet);
                self.drain_gateway(g, t);
            }
            Event::Arrive { from, to: Node::Gateway(g), observation, packet, token } => {
                self.packet_from_mix(g, t, from, observation, packet, token)?;
            }
            Event::LinkAck { mix, gateway, token } => {
                let from = self.s.gateway_ids[gateway];
                if let Some(r) = self.resends.get_mut(mix) {
                    r.handle_acks(from, [token]);
                }
            }
            Event::ClientWake(c) => {
                if self.s.clients[c as usize].wake == Some(t) {
                    self.client_wake(c, t)?;
                }
            }
            Event::MixWake(m) => {
                if self.mix_wake[m] == Some(t) {
                    self.mix_wake[m] = None;
                    let Setup { mixes, rng, .. } = &mut self.s;
                    mixes[m].handle_timeout(t, rng);
                    self.drain_mix(m, t);
                }
            }
            Event::GatewayWake(g) => {
                if self.gateway_wake[g] == Some(t) {
                    self.gateway_wake[g] = None;
                    self.s.gateways[g].handle_timeout(t);
                    self.drain_gateway(g, t);
                }
            }
            Event::ResendWake(m) => {
                if self.resend_wake[m] == Some(t) {
                    self.resend_wake[m] = None;
                    self.resend_due(m, t);
                }
            }
            Event::PullDue(c) => self.pull_due(c, t)?,
            Event::PullArrive { client, request } => self.pull_arrive(client, t, &request),
            Event::AnswerLeave { client, frames } => self.answer_leave(client, t, frames),
            Event::AnswerArrive { client, frames } => self.answer_arrive(client, t, frames)?,
            Event::PullTimeout { client, id } => self.pull_timeout(client, id),
        }
        Ok(())
    }

    /// The network's time.
    pub fn now(&self) -> UnixMicros {
        self.now
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every node makes and installs its key of epoch `e` (see [`crate::Epochs`]).
    pub fn install_epoch(&mut self, e: u64) -> Result<(), SimError> {
        self.s.install_epoch(&self.config, e)?;
        let t = self.now;
        for m in 0..self.s.mixes.len() {
            self.reschedule_mix(m, t);
        }
        for g in 0..self.s.gateways.len() {
            self.reschedule_gateway(g, t);
        }
        Ok(())
    }

    /// The topology of epoch `e`, if installed.
    pub fn topology(&self, e: u64) -> Option<&Topology> {
        self.s.topologies.get(&e)
    }

    /// The mixes' ids, by index (layer by layer).
    pub fn mix_ids(&self) -> &[NodeId] {
        &self.s.mix_ids
    }

    /// The gateways' ids, by index.
    pub fn gateway_ids(&self) -> &[NodeId] {
        &self.s.gateway_ids
    }

    /// The mixes, by index.
    pub fn mixes(&self) -> &[Mix] {
        &self.s.mixes
    }

    /// The mix `id`, to act on directly (the network does not see what is done to it).
    pub fn mix_mut(&mut self, id: &NodeId) -> Option<&mut Mix> {
        match self.s.ids.get(id) {
            Some(Node::Mix(m)) => self.s.mixes.get_mut(*m),
            _ => None,
        }
    }

    /// The gateways, by index.
    pub fn gateways(&self) -> &[Gateway] {
        &self.s.gateways
    }

    /// Node `id`'s secret key of epoch `e`.
    pub fn secret_key(&self, id: &NodeId, e: u64) -> Option<&SecretKey> {
        self.s.keys.get(&(*id, e))
    }

    /// The packet format of the network.
    pub fn sphinx(&self) -> &Sphinx {
        &self.s.sphinx
    }

    /// The run's RNG (for tests that make packets; drawing from it changes the rest of the run).
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.s.rng
    }

    /// Hands `packet` to gateway `id` as one of its clients would, now: the gateway's answer
    /// (`Dropped::Terminal` if `id` is no gateway's); what it forwards leaves on its links. The
    /// client's link is not observed.
    pub fn hand_to_gateway(&mut self, id: &NodeId, packet: Vec<u8>) -> Result<UnixMicros, Dropped> {
        let Some(&Node::Gateway(g)) = self.s.ids.get(id) else { return Err(Dropped::Terminal) };
        let t = self.now;
        let r = self.s.gateways[g].handle_client_packet(t, packet);
        self.drain_gateway(g, t);
        r
    }

    /// Gateway `g`'s store.
    pub fn store(&self, g: usize) -> Option<&Store> {
        self.stores.get(g)
    }

    /// Registers `mailbox` in the store of every gateway (for tests that address packets to a
    /// mailbox no client owns).
    pub fn register_mailbox(&mut self, mailbox: MailboxId) {
        for s in &mut self.stores {
            let _ = s.register(mailbox, credential(mailbox));
        }
    }

    /// Every item the stores hold for `mailbox`, in the order stored.
    pub fn mailbox_items(&self, mailbox: &MailboxId) -> Vec<Vec<u8>> {
        self.stores.iter().flat_map(|s| s.items(mailbox)).map(<[u8]>::to_vec).collect()
    }

    /// Makes every gateway's store fail (like a full disk) or work again.
    pub fn set_store_failing(&mut self, failing: bool) {
        self.stores.iter_mut().for_each(|s| s.set_failing(failing));
    }

    /// Packets the mixes keep for gateways, not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.resends.iter().map(Resends::len).sum()
    }

    /// Ends the run: what the adversary saw, and the truth.
    pub fn finish(self) -> Run {
        let mut links = self.link_stats;
        for r in &self.resends {
            let m = r.metrics();
            links.resent += m.resent;
            links.gave_up += m.gave_up;
        }
        Run {
            observations: self.observations,
            messages: self.messages,
            mix_metrics: self.s.mixes.iter().map(Mix::metrics).collect(),
            end: self.now,
            client_packets: self.s.clients.iter().map(|c| c.sent).collect(),
            stores: self.stored,
            pull_frames: self.pull_frames,
            gateway_metrics: self.s.gateways.iter().map(|g| g.metrics().clone()).collect(),
            links,
            pulls: self.pull_stats,
            left_in_stores: self.stores.iter().map(Store::len).sum(),
        }
    }
}
