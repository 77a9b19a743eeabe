//! The nodes, keys and clients of a configuration, before anything runs: `layers ×
//! mixes_per_layer` real [`Mix`]es and `gateways` real [`Gateway`]s with their keys and
//! topology, and the clients with their home mailboxes. Everything random is drawn here from the
//! run's one RNG, in a fixed order (a seed must give the same network).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_mixnet::sending::{Inbox, NetworkView, Outbox, Rates, ResendPolicy, Schedule};
use qanat_mixnet::{EpochWindow, Gateway, GatewayConfig, Hop, Mix, MixConfig, Topology, UnixMicros};
use qanat_packet::{Geometry, MailboxId, NodeId, SecretKey, Sphinx};

use crate::MailboxSeen;
use crate::client::{Client, PullClient};
use crate::config::{Config, SimError};

/// A node of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    Gateway(usize),
    Mix(usize),
}

impl Node {
    pub(crate) fn endpoint(self) -> crate::Endpoint {
        match self {
            Self::Gateway(i) => crate::Endpoint::Gateway(i as u16),
            Self::Mix(i) => crate::Endpoint::Mix(i as u16),
        }
    }
}

/// The nodes, keys and clients of a configuration.
pub(crate) struct Setup {
    pub(crate) rng: ChaCha20Rng,
    pub(crate) sphinx: Sphinx,
    pub(crate) mixes: Vec<Mix>,
    pub(crate) gateways: Vec<Gateway>,
    pub(crate) clients: Vec<Client>,
    pub(crate) ids: HashMap<NodeId, Node>,
    /// Every mix's id, then every gateway's, by index.
    pub(crate) mix_ids: Vec<NodeId>,
    pub(crate) gateway_ids: Vec<NodeId>,
    /// Every registered mailbox: its owner and how its gateway sees it.
    pub(crate) mailboxes: HashMap<MailboxId, (u32, MailboxSeen)>,
    /// The thread mailbox `(recipient, sender)`: the one the recipient keeps for the sender.
    pub(crate) threads: HashMap<(u32, u32), MailboxId>,
    /// The topology of each installed epoch.
    pub(crate) topologies: BTreeMap<u64, Topology>,
    /// A copy of each node's secret key of each epoch (for tests that unwrap by hand).
    pub(crate) keys: HashMap<(NodeId, u64), SecretKey>,
}

pub(crate) fn node_id(kind: u8, i: usize) -> NodeId {
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

/// The window of epoch `e`'s keys: the whole run (and an hour) without epochs.
fn window(config: &Config, e: u64) -> EpochWindow {
    match config.epochs {
        Some(ep) => EpochWindow {
            start: UnixMicros::ZERO + ep.period.saturating_mul(e as u32),
            end: UnixMicros::ZERO + ep.period.saturating_mul(e as u32 + 1),
            grace: ep.grace,
        },
        None => {
            let end =
                UnixMicros::ZERO + config.warmup + config.duration + config.tail + Duration::from_secs(3600);
            EpochWindow { start: UnixMicros::ZERO, end, grace: Duration::ZERO }
        }
    }
}

/// A copy of `key` (keys are not `Clone`: a copy is made on purpose).
fn copy(key: &SecretKey, config: &Config) -> Result<SecretKey, SimError> {
    SecretKey::from_bytes(config.scheme, &key.to_bytes()[..]).map_err(|e| SimError::Packet(e.to_string()))
}

impl Setup {
    pub(crate) fn new(config: &Config) -> Result<Self, SimError> {
        if config.layers == 0 || config.mixes_per_layer == 0 || config.gateways == 0 {
            return Err(SimError::Config("layers, mixes per layer and gateways must be positive"));
        }
        if config.layers + 2 > Geometry::default_for(config.scheme).nr_hops() {
            return Err(SimError::Config("too many layers for the packet geometry"));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let geometry = Geometry::default_for(config.scheme);
        let sphinx = Sphinx::new(geometry.clone());
        let window0 = window(config, 0);
        let n_mix = config.layers * config.mixes_per_layer;
        // Replay filters sized for every packet a node could see under one key, twice over.
        let secs = match config.epochs {
            Some(ep) => (ep.period + ep.grace * 2).as_secs_f64(),
            None => (window0.end.0 / 1_000_000) as f64,
        };
        let per_sec = f64::from(config.clients)
            * (config.rates.payload + config.rates.loops + config.rates.drops)
            + n_mix as f64 * config.mix_loop_rate;
        let capacity = ((per_sec * secs * 2.0) as u64).clamp(10_000, 20_000_000);
        let mut ids = HashMap::new();
        let mut keys = HashMap::new();
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
            keys.insert((id, 0), copy(&key, config)?);
            mix.add_epoch_key(0, key, window0);
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
            keys.insert((id, 0), copy(&key, config)?);
            gw.add_epoch_key(0, key, window0);
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
                inbox: Inbox::default(),
                threads: Vec::new(),
                acks: VecDeque::new(),
                next_message: None,
                wake: None,
                sent: 0,
                // No document is ever wanted (`poll_pull`'s `want_epoch` is 0): no length allowed.
                pull: PullClient::new(0),
                pulled: false,
            });
        }
        Ok(Self {
            rng,
            sphinx,
            mixes,
            gateways,
            clients,
            ids,
            mix_ids: mix_hops.iter().map(|h| h.id).collect(),
            gateway_ids: gw_hops.iter().map(|h| h.id).collect(),
            mailboxes,
            threads: HashMap::new(),
            topologies: BTreeMap::from([(0, topology)]),
            keys,
        })
    }

    /// Every node makes its key of epoch `e` (mixes first, then gateways) and installs it with
    /// the epoch's topology.
    pub(crate) fn install_epoch(&mut self, config: &Config, e: u64) -> Result<(), SimError> {
        let w = window(config, e);
        let mut mix_hops = Vec::new();
        for (i, m) in self.mixes.iter_mut().enumerate() {
            let key = SecretKey::generate(config.scheme, &mut self.rng);
            let id = self.mix_ids[i];
            mix_hops.push(Hop { id, key: key.public_key() });
            self.keys.insert((id, e), copy(&key, config)?);
            m.add_epoch_key(e, key, w);
        }
        let mut gw_hops = Vec::new();
        for (i, g) in self.gateways.iter_mut().enumerate() {
            let key = SecretKey::generate(config.scheme, &mut self.rng);
            let id = self.gateway_ids[i];
            gw_hops.push(Hop { id, key: key.public_key() });
            self.keys.insert((id, e), copy(&key, config)?);
            g.add_epoch_key(e, key, w);
        }
        let topology = Topology {
            epoch: e,
            layers: mix_hops.chunks(config.mixes_per_layer.max(1)).map(<[Hop]>::to_vec).collect(),
            gateways: gw_hops,
        };
        for m in &mut self.mixes {
            m.add_topology(topology.clone());
        }
        for g in &mut self.gateways {
            g.add_topology(topology.clone());
        }
        self.topologies.insert(e, topology);
        Ok(())
    }

    /// The thread mailbox `recipient` keeps for `sender`, made on first use; `true` if new.
    pub(crate) fn thread(&mut self, recipient: u32, sender: u32) -> (MailboxId, bool) {
        if let Some(m) = self.threads.get(&(recipient, sender)) {
            return (*m, false);
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
        (m, true)
    }
}
