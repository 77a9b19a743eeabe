//! Engines talking through an in-memory network (Sphinx unwrapped hop by hop, gateways as maps of
//! mailboxes), with simulated time and loss.

mod contacts;
mod delivery;
mod errors;
mod files;
mod groups;
mod interface;
mod network;
mod persist;
mod safety;

use std::collections::HashMap;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use qanat_mixnet::{Hop, MailboxItem, Topology};
use qanat_packet::{MailboxId, NodeId, Scheme, SecretKey, Sphinx};
use qanat_pki::{EpochPeriod, FileLimits, LinkAddress, Parameters, ParametersConfig, Rate, UnixMillis};
use rand_core::{Rng as _, SeedableRng as _};

use crate::gateway::Fetched;
use crate::invite::{self, InviteError};
use crate::mls::MlsError;
use crate::store::{KdfParams, Passphrase, danger};
use qanat_mixnet::sending::seal;
use qanat_mixnet::sending::{self, Delivery, PayloadError, RouteError};

use super::rows::{NS_FRAG, NS_PARTIAL, RouteRec, ThreadState};
use super::wire::{Content, Outer, RouteEntry};
use super::*;

const SCHEME: Scheme = Scheme::X25519Kem;

struct Net {
    sphinx: Sphinx,
    /// The nodes' packet keys by epoch: each unwraps only within its epoch widened by the key
    /// grace, as mixes and gateways do.
    keys: Vec<(u64, HashMap<NodeId, SecretKey>)>,
    /// The topology of the newest epoch.
    topology: Topology,
    params: Parameters,
    /// Packets no live key unwrapped at their first hop (built with retired keys).
    refused: u64,
    /// Mailboxes: (mailbox) → items with sequence numbers.
    mailboxes: HashMap<MailboxId, Vec<Fetched>>,
    registered: HashMap<MailboxId, [u8; 32]>,
    next_seq: u64,
    /// Fraction of packets lost (each packet, each direction).
    loss: f64,
    rng: ChaCha20Rng,
}

/// When the worlds' clocks start.
fn genesis() -> SystemTime {
    UnixMillis::from_secs(1_800_000_000).to_system_time()
}

impl Net {
    /// A network whose epochs last a day (longer than any test): the one current at
    /// [`genesis`] serves the whole test.
    fn new(seed: u64, loss: f64) -> Self {
        Self::with_period(seed, loss, EpochPeriod::MAX, genesis())
    }

    /// A network of epochs of `period`, in the epoch current at `now`.
    fn with_period(seed: u64, loss: f64, period: EpochPeriod, now: SystemTime) -> Self {
        let rng = ChaCha20Rng::seed_from_u64(seed);
        let params = Parameters::new(ParametersConfig {
            mean_delay_ms: 10,
            lambda_p: Rate::from_micro_per_sec(20_000_000),
            lambda_l: Rate::from_micro_per_sec(1_000_000),
            lambda_d: Rate::from_micro_per_sec(1_000_000),
            lambda_m: Rate::from_micro_per_sec(100_000_000),
            epoch_period: period,
            file_limits: Some(qanat_pki::FileLimits::DEFAULT),
            ..ParametersConfig::default_for(SCHEME)
        })
        .unwrap();
        let mut net = Self {
            sphinx: Sphinx::new(params.geometry().clone()),
            keys: Vec::new(),
            topology: Topology { epoch: 0, layers: Vec::new(), gateways: Vec::new() },
            params,
            refused: 0,
            mailboxes: HashMap::new(),
            registered: HashMap::new(),
            next_seq: 0,
            loss,
            rng,
        };
        net.new_epoch(qanat_pki::Epoch::at(UnixMillis::from_system_time(now), period).0);
        net
    }

    /// The authorities publish `epoch`: every node gets a fresh packet key for it.
    fn new_epoch(&mut self, epoch: u64) {
        let mut keys = HashMap::new();
        let rng = &mut self.rng;
        let mut hop = |n: u8| {
            let k = SecretKey::generate(SCHEME, rng);
            let h = Hop { id: NodeId([n; 32]), key: k.public_key() };
            keys.insert(h.id, k);
            h
        };
        let gateways = vec![hop(1), hop(2)];
        let layers = (0..3).map(|l| vec![hop(10 + 2 * l), hop(11 + 2 * l)]).collect();
        self.topology = Topology { epoch, layers, gateways };
        self.keys.push((epoch, keys));
    }

    /// The keys a node accepts at `now`: those of epochs whose window, widened by the key
    /// grace, holds `now`.
    fn live_keys(&self, node: NodeId, now: SystemTime) -> Vec<&SecretKey> {
        let period = self.params.epoch_period();
        let grace = period.key_grace();
        let now = UnixMillis::from_system_time(now);
        self.keys
            .iter()
            .filter(|(e, _)| {
                let e = qanat_pki::Epoch(*e);
                let from = e.start(period).as_millis().saturating_sub(grace.as_millis() as u64);
                let until = e.end(period).plus_millis(grace.as_millis() as u64);
                UnixMillis::from_millis(from) <= now && now < until
            })
            .filter_map(|(_, k)| k.get(&node))
            .collect()
    }

    fn gateway(&self, n: u8) -> invite::InviteGateway {
        invite::InviteGateway::new(NodeId([n; 32]), LinkAddress::parse("127.0.0.1:9").unwrap(), vec![1; 32])
            .unwrap()
    }

    /// Follows `packet`, sent at `now`, from gateway `first` to its mailbox (if registered).
    /// Each hop unwraps it with one of its keys live at `now` (the hops take no time here).
    fn deliver(&mut self, first: NodeId, mut packet: Vec<u8>, now: SystemTime) {
        if (self.rng.next_u64() as f64 / u64::MAX as f64) < self.loss {
            return;
        }
        let mut at = first;
        loop {
            let unwrapped = self.live_keys(at, now).into_iter().find_map(|k| {
                let mut p = packet.clone();
                self.sphinx.unwrap(k, &mut p).ok().map(|out| (out, p))
            });
            let Some((out, p)) = unwrapped else {
                if at == first {
                    self.refused += 1;
                }
                return;
            };
            packet = p;
            match out.commands.next_hop {
                Some(next) => at = next.id,
                None => {
                    let Some(r) = out.commands.recipient else { return };
                    if !self.registered.contains_key(&r) {
                        return;
                    }
                    // A gateway stores only opaque packets (a SURB-reply command on the last hop).
                    let Some(id) = out.commands.surb_reply else { return };
                    let body = out.payload(&packet).unwrap().to_vec();
                    self.next_seq += 1;
                    let item = MailboxItem { id, body };
                    self.mailboxes.entry(r).or_default().push(Fetched { seq: self.next_seq, item });
                    return;
                }
            }
        }
    }
}

struct Client {
    engine: Option<Engine>,
    /// The profile is in `dir/p`.
    dir: tempfile::TempDir,
    passphrase: &'static str,
    gw: u8,
    events: Vec<EngineEvent>,
    online: bool,
    /// Mailboxes not fetched for now.
    hold: Vec<[u8; 32]>,
    /// Whether group invitations are accepted as they come (as a user who says yes).
    auto_join: bool,
    /// Whether the documents of new epochs reach this client only when the test says so
    /// ([`World::document_to`]).
    late_documents: bool,
    /// Whether mailboxes the engine retired are unregistered as they come (else they stay in
    /// the profile, as when the gateway is not reached).
    unregister: bool,
}

fn weak() -> KdfParams {
    danger::weak_kdf_params(8, 1, 1).unwrap()
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.mls.decision_window = Duration::from_secs(2);
    c.fetch_interval = Duration::from_millis(20);
    c
}

impl Client {
    fn new(net: &Net, gw: u8, now: SystemTime, rng: &mut ChaCha20Rng) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut profile = Profile::create_with(dir.path().join("p"), &Passphrase::new("pw"), weak()).unwrap();
        Engine::init(&mut profile, NodeId([gw; 32]), TrafficProfile::Standard, rng).unwrap();
        let mut engine = Engine::open(profile, config(), now).unwrap();
        engine.set_network(net.topology.clone(), &net.params, net.gateway(gw)).unwrap();
        Self::with_engine(engine, dir, "pw", gw)
    }

    /// A client on the profile in `dir/p`, made elsewhere (of any format the engine opens),
    /// opened at `now`.
    fn open(net: &Net, gw: u8, dir: tempfile::TempDir, passphrase: &'static str, now: SystemTime) -> Self {
        let profile = Profile::open(dir.path().join("p"), &Passphrase::new(passphrase)).unwrap();
        let mut engine = Engine::open(profile, config(), now).unwrap();
        engine.set_network(net.topology.clone(), &net.params, net.gateway(gw)).unwrap();
        Self::with_engine(engine, dir, passphrase, gw)
    }

    fn with_engine(engine: Engine, dir: tempfile::TempDir, passphrase: &'static str, gw: u8) -> Self {
        Self {
            engine: Some(engine),
            dir,
            passphrase,
            gw,
            events: Vec::new(),
            online: true,
            hold: Vec::new(),
            auto_join: true,
            late_documents: false,
            unregister: true,
        }
    }

    fn e(&mut self) -> &mut Engine {
        self.engine.as_mut().unwrap()
    }

    fn restart(&mut self, net: &Net, now: SystemTime) {
        let profile = self.engine.take().unwrap().into_profile();
        drop(profile);
        let profile = Profile::open(self.dir.path().join("p"), &Passphrase::new(self.passphrase)).unwrap();
        let mut engine = Engine::open(profile, config(), now).unwrap();
        engine.set_network(net.topology.clone(), &net.params, net.gateway(self.gw)).unwrap();
        self.engine = Some(engine);
    }

    fn step(&mut self, net: &mut Net, now: SystemTime, rng: &mut ChaCha20Rng) {
        if !self.online {
            return;
        }
        let gw = NodeId([self.gw; 32]);
        let e = self.engine.as_mut().unwrap();
        for m in e.take_registrations() {
            // A mailbox someone else registered first is refused (as a gateway does).
            match net.registered.get(&m.mailbox) {
                Some(c) if *c != m.credential => e.registration_refused(m.mailbox, now, rng).unwrap(),
                _ => {
                    net.registered.insert(m.mailbox, m.credential);
                }
            }
        }
        for m in e.retired().into_iter().filter(|_| self.unregister) {
            if net.registered.get(&m.mailbox) == Some(&m.credential) {
                net.registered.remove(&m.mailbox);
                net.mailboxes.remove(&m.mailbox);
            }
            e.unregistered(m.mailbox).unwrap();
        }
        if self.auto_join {
            for i in e.group_invitations() {
                e.accept_group_invitation(&i.id, None, now, rng).unwrap();
            }
        }
        e.handle_timeout(now, rng).unwrap();
        for p in e.poll_transmit(now, rng).unwrap() {
            net.deliver(gw, p, now);
        }
        for (m, after) in e.mailboxes() {
            if self.hold.contains(&m.mailbox.0) {
                continue;
            }
            let items: Vec<Fetched> = net
                .mailboxes
                .get(&m.mailbox)
                .map(|v| v.iter().filter(|f| f.seq > after).cloned().collect())
                .unwrap_or_default();
            if items.is_empty() {
                continue;
            }
            let upto = e.handle_fetched(m.mailbox, items, now, rng).unwrap();
            if let Some(v) = net.mailboxes.get_mut(&m.mailbox) {
                v.retain(|f| f.seq > upto);
            }
        }
        while let Some(ev) = e.poll_event() {
            self.events.push(ev);
        }
    }

    fn texts(&self) -> Vec<(String, String, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Message { thread, sender, text, .. } => {
                    Some((thread.clone(), sender.clone(), text.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn thread(&self, name: &str) -> Thread {
        self.engine.as_ref().unwrap().threads.values().find(|t| t.name == name).unwrap().clone()
    }

    fn clients_members(&self, name: &str) -> usize {
        self.engine.as_ref().unwrap().members(name).unwrap().len()
    }
}

struct World {
    net: Net,
    clients: Vec<Client>,
    now: SystemTime,
    rng: ChaCha20Rng,
}

impl World {
    fn new(seed: u64, loss: f64, gws: &[u8]) -> Self {
        Self::with_net(Net::new(seed, loss), seed, gws, genesis())
    }

    /// A world of epochs of `period`, starting 100 ms into one.
    fn with_period(seed: u64, loss: f64, gws: &[u8], period: EpochPeriod) -> Self {
        let e = qanat_pki::Epoch::at(UnixMillis::from_system_time(genesis()), period);
        let now = e.start(period).plus_millis(100).to_system_time();
        Self::with_net(Net::with_period(seed, loss, period, now), seed, gws, now)
    }

    fn with_net(net: Net, seed: u64, gws: &[u8], now: SystemTime) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed + 1000);
        let clients = gws.iter().map(|g| Client::new(&net, *g, now, &mut rng)).collect();
        Self { net, clients, now, rng }
    }

    /// The next epoch's document reaches client `i` (its engine takes the newest topology).
    fn document_to(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let gw = self.net.gateway(c.gw);
        c.engine.as_mut().unwrap().set_network(self.net.topology.clone(), &self.net.params, gw).unwrap();
    }

    /// When the epoch of the newest topology ends.
    fn epoch_end(&self) -> SystemTime {
        let period = self.net.params.epoch_period();
        qanat_pki::Epoch(self.net.topology.epoch).end(period).to_system_time()
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            self.follow_epochs();
            for c in &mut self.clients {
                c.step(&mut self.net, self.now, &mut self.rng);
            }
        }
    }

    /// When the clock enters a new epoch the network moves to it, and its document reaches
    /// every client that gets documents in time (as the runtime applies the next epoch's
    /// document when the epoch begins).
    fn follow_epochs(&mut self) {
        let period = self.net.params.epoch_period();
        let e = qanat_pki::Epoch::at(UnixMillis::from_system_time(self.now), period).0;
        if e > self.net.topology.epoch {
            self.net.new_epoch(e);
            for i in 0..self.clients.len() {
                if !self.clients[i].late_documents {
                    self.document_to(i);
                }
            }
        }
    }

    #[track_caller]
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.now < end, "not done within {limit:?}");
            self.run_for(Duration::from_millis(100));
        }
    }

    /// Client `a` invites client `b`: `a` calls it `b_name`, `b` calls `a` `a_name`.
    fn connect(&mut self, a: usize, a_name: &str, b: usize, b_name: &str) {
        let now = self.now;
        let inv = self.clients[a].e().invite(b_name, now, &mut self.rng).unwrap();
        self.clients[b].e().accept(&inv.to_link(), a_name, now, &mut self.rng).unwrap();
        let (an, bn) = (b_name.to_owned(), a_name.to_owned());
        self.run_until(Duration::from_secs(60), |w| {
            w.clients[a].events.contains(&EngineEvent::ContactReady { name: an.clone() })
                && w.clients[b].events.contains(&EngineEvent::ContactReady { name: bn.clone() })
        });
    }
}
