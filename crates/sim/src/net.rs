//! The simulated network: `layers × mixes_per_layer` real [`Mix`]es, `gateways` real
//! [`Gateway`]s with an in-memory store, and `clients` simulated clients made of the real
//! sending layer, all driven by one event queue in simulated time from one seeded RNG.
//!
//! What is simulated rather than real: links (a fixed latency, no loss, no link-level
//! acknowledgement frames, no retransmission: the store never fails), the mailbox store (always
//! durable at once), mailbox fetches (a client sees what lands in its mailbox at once, and the
//! gateway-to-client fetch traffic is not recorded), and MLS (a message is one DATA packet of a
//! few bytes). One epoch key per node covers the whole run.
//!
//! Each client owns a home mailbox at its gateway (the acknowledgements of what it sends come back
//! to it) and one thread mailbox per contact who writes to it (made the first time that contact
//! writes, as an invitation would); as in the engine, half its loops go home and half to one of
//! its thread mailboxes. Clients `0..active` queue messages as a
//! Poisson process of rate `message_rate` to a uniformly random other client, into the thread
//! mailbox the recipient keeps for the sender; the recipient answers each DATA packet with the
//! acknowledgement through its SURB in its next payload slot, as the real engine does. Each
//! gateway's view of the mailboxes packets land in is recorded apart ([`Run::stores`]).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_mixnet::sending::seal::{self, SealKey};
use qanat_mixnet::sending::{
    MessageId, NetworkView, Outbox, Payload, Rates, ResendPolicy, Route, Schedule, Slot, ack_packet,
    cover_packet,
};
use qanat_mixnet::{
    AckToken, EpochWindow, Gateway, GatewayConfig, Hop, MailboxItem, Mix, MixConfig, MixMetrics, StoreResult,
    Topology, UnixMicros, exponential,
};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};

use crate::{Endpoint, Knowledge, MailboxSeen, Observation, Stored};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Clients online (every one sends cover traffic).
    pub clients: u32,
    /// How many of them (the first ones) send messages.
    pub active: u32,
    /// Messages per second queued by each active client (Poisson).
    pub message_rate: f64,
    /// Mean per-hop delay 1/μ (zero: mixes forward at once).
    pub mean_delay: Duration,
    /// The clients' λ_P, λ_L, λ_D.
    pub rates: Rates,
    /// Whether clients send cover: drops in empty payload slots, loops and drops. Without it a
    /// client sends only real packets (messages and acknowledgements), in payload slots.
    pub client_cover: bool,
    /// Each mix's loop rate λ_M (0: none).
    pub mix_loop_rate: f64,
    /// Mix layers.
    pub layers: usize,
    /// Mixes in each layer.
    pub mixes_per_layer: usize,
    /// The mean of an exponential delay a recipient waits before queueing the acknowledgement of
    /// a DATA packet (zero: it goes in the next payload slot, as the engine does today).
    pub ack_delay: Duration,
    /// Gateways (clients are spread over them round-robin).
    pub gateways: usize,
    /// Time before the first message (cover traffic only), so that mixes are in steady state.
    pub warmup: Duration,
    /// Time during which messages are queued.
    pub duration: Duration,
    /// Time after the last message is queued, for it to arrive.
    pub tail: Duration,
    /// One-way latency of every link.
    pub link_latency: Duration,
    /// The packet scheme (the timing does not depend on it; X25519 is the cheapest to simulate).
    pub scheme: Scheme,
    /// The seed of the run's only RNG.
    pub seed: u64,
}

impl Config {
    /// The directory's parameters (mean delay, λ_P, λ_L, λ_D, λ_M, layers) with `clients`
    /// clients, all active at 1 message per 20 s, 2 mixes per layer, 2 gateways, 20 ms links,
    /// 60 s of warm-up, 600 s of messages and a tail of 60 s.
    pub fn from_parameters(params: &qanat_pki::Parameters, clients: u32, seed: u64) -> Self {
        Self {
            clients,
            active: clients,
            message_rate: 0.05,
            mean_delay: Duration::from_millis(u64::from(params.mean_delay_ms())),
            rates: Rates {
                payload: params.lambda_p().per_second(),
                loops: params.lambda_l().per_second(),
                drops: params.lambda_d().per_second(),
            },
            client_cover: true,
            mix_loop_rate: params.lambda_m().per_second(),
            layers: params.mix_layers(),
            mixes_per_layer: 2,
            ack_delay: Duration::ZERO,
            gateways: 2,
            warmup: Duration::from_secs(60),
            duration: Duration::from_secs(600),
            tail: Duration::from_secs(60),
            link_latency: Duration::from_millis(20),
            scheme: Scheme::X25519Nike,
            seed,
        }
    }

    /// What the adversary is told: everything public about this network.
    pub fn knowledge(&self) -> Knowledge {
        Knowledge {
            clients: self.clients,
            gateways: self.gateways as u16,
            mix_layers: (0..self.layers * self.mixes_per_layer)
                .map(|i| i / self.mixes_per_layer.max(1))
                .collect(),
            mean_delay: self.mean_delay,
            mix_loop_rate: self.mix_loop_rate,
            link_latency: self.link_latency,
            payload_rate: self.rates.payload,
            ack_delay: self.ack_delay,
        }
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration cannot be simulated.
    #[error("invalid simulation: {0}")]
    Config(&'static str),
    /// Building a packet failed (a bug in the setup).
    #[error("building a packet: {0}")]
    Packet(String),
}

/// When a message reached its recipient's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// When the gateway stored it.
    pub time: UnixMicros,
    /// The index of the observation of its packet on the last link (last mix → gateway).
    pub observation: usize,
}

/// Ground truth about one message (for scoring; never shown to the adversary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRecord {
    /// The sending client.
    pub sender: u32,
    /// The receiving client.
    pub recipient: u32,
    /// When the sender queued it.
    pub queued: UnixMicros,
    /// Its first arrival in the recipient's mailbox.
    pub delivered: Option<Delivered>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the adversary sees, in time order.
    pub observations: Vec<Observation>,
    /// Ground truth: every message queued.
    pub messages: Vec<MessageRecord>,
    /// Each mix's own counters (its pool integral gives λ/μ as the mix measured it).
    pub mix_metrics: Vec<MixMetrics>,
    /// Simulated time at the end.
    pub end: UnixMicros,
    /// Packets each client sent.
    pub client_packets: Vec<u64>,
    /// What every gateway learned of each packet it took from the last mix layer (an adversary
    /// running some gateways is given only theirs).
    pub stores: Vec<Stored>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    Gateway(usize),
    Mix(usize),
}

impl Node {
    fn endpoint(self) -> Endpoint {
        match self {
            Self::Gateway(i) => Endpoint::Gateway(i as u16),
            Self::Mix(i) => Endpoint::Mix(i as u16),
        }
    }
}

enum Event {
    Arrive { from: Endpoint, to: Node, observation: usize, packet: Vec<u8> },
    ClientWake(u32),
    MixWake(usize),
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

/// A simulated client: the real sending layer, plus the acknowledgements it owes.
pub(crate) struct Client {
    pub(crate) view: NetworkView,
    pub(crate) gateway: usize,
    pub(crate) mailbox: MailboxId,
    /// The thread mailboxes this client keeps (one per contact who wrote to it).
    pub(crate) threads: Vec<MailboxId>,
    pub(crate) schedule: Schedule,
    pub(crate) outbox: Outbox,
    /// Acknowledgements owed, each with the time from which it may be sent.
    pub(crate) acks: VecDeque<(UnixMicros, Vec<u8>)>,
    pub(crate) next_message: Option<UnixMicros>,
    wake: Option<UnixMicros>,
    pub(crate) sent: u64,
}

/// What one payload, loop or drop slot puts on the wire (`None`: nothing, without cover).
pub(crate) fn slot_packet(
    c: &mut Client,
    slot: Slot,
    cover: bool,
    now: UnixMicros,
    sphinx: &Sphinx,
    rng: &mut ChaCha20Rng,
) -> Result<Option<Vec<u8>>, SimError> {
    let err = |e: qanat_mixnet::sending::RouteError| SimError::Packet(e.to_string());
    Ok(match slot {
        Slot::Payload => {
            if let Some(a) = c.acks.iter().position(|(at, _)| *at <= now).and_then(|i| c.acks.remove(i)) {
                Some(a.1)
            } else if let Some(p) = c.outbox.next_packet(now, sphinx, &c.view, rng) {
                Some(p.packet)
            } else if cover {
                Some(cover_packet(sphinx, &c.view, None, rng).map_err(err)?.packet)
            } else {
                None
            }
        }
        Slot::Loop if cover => {
            // As the engine does: half the loops home, half to one of the thread mailboxes.
            let to = if c.threads.is_empty() || rng.next_u64() & 1 == 0 {
                c.mailbox
            } else {
                c.threads[(rng.next_u64() % c.threads.len() as u64) as usize]
            };
            Some(cover_packet(sphinx, &c.view, Some((to, seal_key(to))), rng).map_err(err)?.packet)
        }
        Slot::Drop if cover => Some(cover_packet(sphinx, &c.view, None, rng).map_err(err)?.packet),
        Slot::Loop | Slot::Drop => None,
    })
}

/// The nodes, keys and clients of a configuration, before anything runs.
pub(crate) struct Setup {
    pub(crate) rng: ChaCha20Rng,
    pub(crate) sphinx: Sphinx,
    pub(crate) mixes: Vec<Mix>,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) clients: Vec<Client>,
    pub(crate) ids: HashMap<NodeId, Node>,
    /// Every registered mailbox: its owner and how its gateway sees it.
    pub(crate) mailboxes: HashMap<MailboxId, (u32, MailboxSeen)>,
    /// The thread mailbox `(recipient, sender)`: the one the recipient keeps for the sender.
    pub(crate) threads: HashMap<(u32, u32), MailboxId>,
}

fn node_id(kind: u8, i: usize) -> NodeId {
    let mut id = [0u8; 32];
    id[0] = kind;
    id[1..9].copy_from_slice(&(i as u64).to_be_bytes());
    NodeId(id)
}

/// The resend policy the engine uses (a slot and the hops each way, a fetch at each end,
/// doubled), with fetches as often as payload slots (and room for any acknowledgement delay).
fn resend_policy(config: &Config) -> ResendPolicy {
    let slot = Duration::from_secs_f64(1.0 / config.rates.payload.max(1e-6));
    let hops = config.mean_delay * (2 * config.layers as u32);
    // A deliberate delay before acknowledging lengthens the round trip by its mean; three times
    // that covers its tail.
    let first = (slot * 4 + hops + config.ack_delay * 3) * 2;
    ResendPolicy {
        first: first.max(Duration::from_secs(1)),
        max: (first * 16).min(Duration::from_secs(1800)),
    }
}

impl Setup {
    pub(crate) fn new(config: &Config) -> Result<Self, SimError> {
        if config.clients == 0 || config.layers == 0 || config.mixes_per_layer == 0 || config.gateways == 0 {
            return Err(SimError::Config("clients, layers, mixes per layer and gateways must be positive"));
        }
        if config.layers + 2 > Geometry::default_for(config.scheme).nr_hops() {
            return Err(SimError::Config("too many layers for the packet geometry"));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let geometry = Geometry::default_for(config.scheme);
        let sphinx = Sphinx::new(geometry.clone());
        let end =
            UnixMicros::ZERO + config.warmup + config.duration + config.tail + Duration::from_secs(3600);
        let window = EpochWindow { start: UnixMicros::ZERO, end, grace: Duration::ZERO };
        let n_mix = config.layers * config.mixes_per_layer;
        // Replay filters sized for every packet a node could see in the run, twice over.
        let secs = (end.0 / 1_000_000) as f64;
        let per_sec = f64::from(config.clients)
            * (config.rates.payload + config.rates.loops + config.rates.drops)
            + n_mix as f64 * config.mix_loop_rate;
        let capacity = ((per_sec * secs * 2.0) as u64).clamp(10_000, 20_000_000);
        let mut ids = HashMap::new();
        let mut mix_hops = Vec::new();
        let mut mixes = Vec::new();
        for i in 0..n_mix {
            let id = node_id(1, i);
            let mut loop_id = [0u8; 32];
            rng.fill_bytes(&mut loop_id);
            let mut cfg = MixConfig::new(id, MailboxId(loop_id));
            cfg.replay_capacity = capacity;
            let mut mix = Mix::new(cfg, geometry.clone());
            mix.set_cover(config.mean_delay, config.mix_loop_rate);
            let key = SecretKey::generate(config.scheme, &mut rng);
            mix_hops.push(Hop { id, key: key.public_key() });
            mix.add_epoch_key(0, key, window);
            mixes.push(mix);
            ids.insert(id, Node::Mix(i));
        }
        let mut gw_hops = Vec::new();
        let mut gateways = Vec::new();
        for i in 0..config.gateways {
            let id = node_id(2, i);
            let mut cfg = GatewayConfig::new(id);
            cfg.replay_capacity = capacity;
            let mut gw = Gateway::new(cfg, geometry.clone());
            let key = SecretKey::generate(config.scheme, &mut rng);
            gw_hops.push(Hop { id, key: key.public_key() });
            gw.add_epoch_key(0, key, window);
            gateways.push(gw);
            ids.insert(id, Node::Gateway(i));
        }
        let topology = Topology {
            epoch: 0,
            layers: mix_hops.chunks(config.mixes_per_layer).map(<[Hop]>::to_vec).collect(),
            gateways: gw_hops.clone(),
        };
        for m in &mut mixes {
            m.add_topology(topology.clone());
        }
        for g in &mut gateways {
            g.add_topology(topology.clone());
        }
        let mut clients = Vec::new();
        let mut mailboxes = HashMap::new();
        for c in 0..config.clients {
            let gateway = c as usize % config.gateways;
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            let mailbox = MailboxId(m);
            mailboxes.insert(mailbox, (c, MailboxSeen::Home { owner: c }));
            let rates = if config.client_cover {
                config.rates
            } else {
                Rates { loops: 0.0, drops: 0.0, ..config.rates }
            };
            clients.push(Client {
                view: NetworkView {
                    topology: topology.clone(),
                    mean_delay: config.mean_delay,
                    gateway: gw_hops[gateway].id,
                },
                gateway,
                mailbox,
                schedule: Schedule::new(rates),
                outbox: Outbox::new(resend_policy(config)),
                threads: Vec::new(),
                acks: VecDeque::new(),
                next_message: None,
                wake: None,
                sent: 0,
            });
        }
        Ok(Self { rng, sphinx, mixes, gateways, clients, ids, mailboxes, threads: HashMap::new() })
    }

    /// The thread mailbox `recipient` keeps for `sender`, made on first use.
    pub(crate) fn thread(&mut self, recipient: u32, sender: u32) -> MailboxId {
        if let Some(m) = self.threads.get(&(recipient, sender)) {
            return *m;
        }
        let mut m = [0u8; 32];
        self.rng.fill_bytes(&mut m);
        let m = MailboxId(m);
        let serial = self.threads.len() as u64;
        self.threads.insert((recipient, sender), m);
        if let Some(c) = self.clients.get_mut(recipient as usize) {
            c.threads.push(m);
        }
        self.mailboxes.insert(m, (recipient, MailboxSeen::Thread { owner: recipient, mailbox: serial }));
        m
    }
}

struct Sim<'a> {
    config: &'a Config,
    s: Setup,
    events: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    mix_wake: Vec<Option<UnixMicros>>,
    observations: Vec<Observation>,
    messages: Vec<MessageRecord>,
    by_id: HashMap<MessageId, usize>,
    stores: Vec<Stored>,
}

/// Runs the network of `config` to the end and returns what the adversary saw and the truth.
pub fn run(config: &Config) -> Result<Run, SimError> {
    let s = Setup::new(config)?;
    let n_mix = s.mixes.len();
    let mut sim = Sim {
        config,
        s,
        events: BinaryHeap::new(),
        seq: 0,
        mix_wake: vec![None; n_mix],
        observations: Vec::new(),
        messages: Vec::new(),
        by_id: HashMap::new(),
        stores: Vec::new(),
    };
    let start_msgs = UnixMicros::ZERO + config.warmup;
    let stop_msgs = start_msgs + config.duration;
    let end = stop_msgs + config.tail;
    for c in 0..config.clients {
        if c < config.active && config.message_rate > 0.0 {
            let gap = exponential(&mut sim.s.rng, Duration::from_secs_f64(1.0 / config.message_rate));
            sim.s.clients[c as usize].next_message = Some(start_msgs + gap);
        }
        sim.client_wake(c, UnixMicros::ZERO, stop_msgs)?;
    }
    for m in 0..n_mix {
        sim.reschedule_mix(m, UnixMicros::ZERO);
    }
    while let Some(Reverse(Queued(t, _, event))) = sim.events.pop() {
        if t > end {
            break;
        }
        match event {
            Event::Arrive { to: Node::Mix(m), packet, .. } => {
                let _ = sim.s.mixes[m].handle_packet(t, packet);
                sim.drain_mix(m, t);
            }
            Event::Arrive { from: Endpoint::Client(_), to: Node::Gateway(g), packet, .. } => {
                let _ = sim.s.gateways[g].handle_client_packet(t, packet);
                sim.drain_gateway(g, t);
            }
            Event::Arrive { from, to: Node::Gateway(g), observation, packet } => {
                let from_id = match from {
                    Endpoint::Mix(m) => node_id(1, usize::from(m)),
                    _ => node_id(2, 0),
                };
                let _ = sim.s.gateways[g].handle_mix_packet(t, from_id, AckToken(0), packet);
                sim.store(g, t, observation)?;
                sim.drain_gateway(g, t);
            }
            Event::ClientWake(c) => {
                if sim.s.clients[c as usize].wake == Some(t) {
                    sim.client_wake(c, t, stop_msgs)?;
                }
            }
            Event::MixWake(m) => {
                if sim.mix_wake[m] == Some(t) {
                    sim.mix_wake[m] = None;
                    let Sim { s, .. } = &mut sim;
                    s.mixes[m].handle_timeout(t, &mut s.rng);
                    sim.drain_mix(m, t);
                }
            }
        }
    }
    let mix_metrics = sim.s.mixes.iter().map(Mix::metrics).collect();
    let client_packets = sim.s.clients.iter().map(|c| c.sent).collect();
    Ok(Run {
        observations: sim.observations,
        messages: sim.messages,
        mix_metrics,
        end,
        client_packets,
        stores: sim.stores,
    })
}

impl Sim<'_> {
    fn push(&mut self, t: UnixMicros, e: Event) {
        self.seq += 1;
        self.events.push(Reverse(Queued(t, self.seq, e)));
    }

    /// Puts a packet on the link `from → to` at `t`: recorded, and delivered a latency later.
    fn transmit(&mut self, t: UnixMicros, from: Endpoint, to: Node, packet: Vec<u8>) {
        let observation = self.observations.len();
        self.observations.push(Observation { time: t, from, to: to.endpoint() });
        self.push(t + self.config.link_latency, Event::Arrive { from, to, observation, packet });
    }

    fn client_wake(&mut self, c: u32, t: UnixMicros, stop_msgs: UnixMicros) -> Result<(), SimError> {
        let ci = c as usize;
        let config = self.config;
        // Messages that fell due.
        while let Some(at) = self.s.clients[ci].next_message.filter(|at| *at <= t) {
            let to = if config.clients == 1 {
                0
            } else {
                let k = (self.s.rng.next_u64() % u64::from(config.clients - 1)) as u32;
                if k >= c { k + 1 } else { k }
            };
            let mailbox = self.s.thread(to, c);
            let route =
                Route { gateway: self.s.clients[to as usize].view.gateway, mailbox, seal: seal_key(mailbox) };
            let Setup { rng, sphinx, clients, .. } = &mut self.s;
            let client = &mut clients[ci];
            let text = (self.messages.len() as u64).to_be_bytes();
            let id = client
                .outbox
                .queue(sphinx.geometry(), route, client.mailbox, &text, rng)
                .map_err(|e| SimError::Packet(e.to_string()))?;
            self.by_id.insert(id, self.messages.len());
            self.messages.push(MessageRecord { sender: c, recipient: to, queued: at, delivered: None });
            let gap = exponential(rng, Duration::from_secs_f64(1.0 / config.message_rate));
            client.next_message = Some(at + gap).filter(|n| *n < stop_msgs);
        }
        let Setup { rng, sphinx, clients, .. } = &mut self.s;
        let client = &mut clients[ci];
        client.outbox.handle_timeout(t);
        let mut out = Vec::new();
        for slot in client.schedule.poll(t, rng) {
            if let Some(p) = slot_packet(client, slot, config.client_cover, t, sphinx, rng)? {
                out.push(p);
            }
        }
        while client.outbox.poll_event().is_some() {}
        client.sent += out.len() as u64;
        let gateway = client.gateway;
        let wake = [client.schedule.poll_timeout(), client.next_message].into_iter().flatten().min();
        client.wake = wake;
        for p in out {
            self.transmit(t, Endpoint::Client(c), Node::Gateway(gateway), p);
        }
        if let Some(w) = wake {
            self.push(w, Event::ClientWake(c));
        }
        Ok(())
    }

    fn drain_mix(&mut self, m: usize, t: UnixMicros) {
        while let Some(tx) = self.s.mixes[m].poll_transmit(t) {
            if let Some(to) = self.s.ids.get(&tx.to).copied() {
                self.transmit(t, Endpoint::Mix(m as u16), to, tx.packet);
            }
        }
        self.reschedule_mix(m, t);
    }

    fn reschedule_mix(&mut self, m: usize, t: UnixMicros) {
        if let Some(next) = self.s.mixes[m].poll_timeout() {
            let next = next.max(t);
            if self.mix_wake[m].is_none_or(|w| next < w || w < t) {
                self.mix_wake[m] = Some(next);
                self.push(next, Event::MixWake(m));
            }
        }
    }

    fn drain_gateway(&mut self, g: usize, t: UnixMicros) {
        while self.s.gateways[g].poll_ack().is_some() {}
        while let Some(tx) = self.s.gateways[g].poll_transmit(t) {
            if let Some(to) = self.s.ids.get(&tx.to).copied() {
                self.transmit(t, Endpoint::Gateway(g as u16), to, tx.packet);
            }
        }
    }

    /// The gateway's store writes: always durable. A DATA packet is a delivered message (its
    /// recipient owes an acknowledgement); a SURB reply is an acknowledgement for its owner.
    fn store(&mut self, g: usize, t: UnixMicros, observation: usize) -> Result<(), SimError> {
        while let Some(req) = self.s.gateways[g].poll_store() {
            self.s.gateways[g].handle_store_result(req.token, StoreResult::Durable);
            let seen = self.s.mailboxes.get(&req.mailbox).map_or(MailboxSeen::Unregistered, |m| m.1);
            self.stores.push(Stored { observation, gateway: g as u16, mailbox: seen });
            let Some(&(owner, _)) = self.s.mailboxes.get(&req.mailbox) else { continue };
            let Ok(item) = MailboxItem::decode(&req.item) else { continue };
            let Setup { rng, sphinx, clients, .. } = &mut self.s;
            let client = &mut clients[owner as usize];
            if client.outbox.handle_reply(sphinx, item.id, &item.body) {
                continue;
            }
            let Ok(plain) = seal::open(&seal_key(req.mailbox), &item.id.0, &item.body) else {
                continue;
            };
            if let Ok(Payload::Data { surb, message_id, index, .. }) =
                Payload::decode(sphinx.geometry(), &plain)
            {
                if let Some(&k) = self.by_id.get(&message_id)
                    && self.messages[k].delivered.is_none()
                {
                    self.messages[k].delivered = Some(Delivered { time: t, observation });
                }
                let ack = ack_packet(sphinx, &surb, message_id, index, rng)
                    .map_err(|e| SimError::Packet(e.to_string()))?;
                let at = if self.config.ack_delay.is_zero() {
                    t
                } else {
                    t + exponential(rng, self.config.ack_delay)
                };
                client.acks.push_back((at, ack.packet));
            }
        }
        Ok(())
    }
}

/// A mailbox's seal key in the simulation: derived from the mailbox id (the seal's secrecy plays
/// no part in what the simulation measures; its cost and the items' form do).
pub(crate) fn seal_key(mailbox: MailboxId) -> SealKey {
    SealKey(mailbox.0)
}
