//! Mix nodes on a deterministic simulated network with simulated time and loss.
//!
//! Three layers of two mixes; the two gateways are played by the test harness (they unwrap with
//! the packet crate and either forward, for mixes' loops that pass through them, or deliver).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_mixnet::{
    Destination, Dropped, EpochWindow, Hop, Mix, MixConfig, Received, Time, Topology, path_hops,
};
use qanat_packet::{Geometry, NodeId, RecipientId, Scheme, SecretKey, Sphinx};

const SCHEME: Scheme = Scheme::X25519Kem;
const EPOCH: Duration = Duration::from_secs(20);
const LINK: Duration = Duration::from_millis(2);

/// A packet in flight: (arrival time, sequence, destination, bytes).
type InFlight = Reverse<(Time, u64, NodeId, Vec<u8>)>;

struct Net {
    rng: ChaCha20Rng,
    sphinx: Sphinx,
    mixes: BTreeMap<NodeId, Mix>,
    gateways: BTreeMap<NodeId, Vec<(u64, SecretKey)>>,
    mix_keys: BTreeMap<NodeId, Vec<(u64, SecretKey)>>,
    layers: Vec<Vec<NodeId>>,
    gateway_ids: Vec<NodeId>,
    /// (arrival time, seq) -> (node, packet)
    events: BinaryHeap<InFlight>,
    seq: u64,
    loss: f64,
    delivered: Vec<(Time, RecipientId, Vec<u8>)>,
    now: Time,
}

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

impl Net {
    fn new(seed: u64, loop_rate: f64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let geometry = Geometry::default_for(SCHEME);
        let layers: Vec<Vec<NodeId>> = (0..3).map(|l| (0..2).map(|i| id(10 + l * 2 + i)).collect()).collect();
        let gateway_ids = vec![id(1), id(2)];
        let mut mixes = BTreeMap::new();
        for m in layers.iter().flatten() {
            let mut loop_id = [0u8; 32];
            rng.fill_bytes(&mut loop_id);
            let mut cfg = MixConfig::new(*m, RecipientId(loop_id));
            cfg.loop_rate = loop_rate;
            cfg.replay_capacity = 100_000;
            mixes.insert(*m, Mix::new(cfg, geometry.clone()));
        }
        let mut net = Self {
            rng,
            sphinx: Sphinx::new(geometry),
            mixes,
            gateways: BTreeMap::new(),
            mix_keys: BTreeMap::new(),
            layers,
            gateway_ids,
            events: BinaryHeap::new(),
            seq: 0,
            loss: 0.0,
            delivered: Vec::new(),
            now: Time::ZERO,
        };
        for e in 0..3 {
            net.install_epoch(e);
        }
        net
    }

    fn epoch_start(e: u64) -> Time {
        Time::ZERO + EPOCH * e as u32
    }

    /// Every node makes and installs its key for epoch `e` (accepted with 2 s of grace each side).
    fn install_epoch(&mut self, e: u64) {
        let window = EpochWindow {
            start: Self::epoch_start(e),
            end: Self::epoch_start(e + 1),
            grace: Duration::from_secs(2),
        };
        for (mid, mix) in self.mixes.iter_mut() {
            let k = SecretKey::generate(SCHEME, &mut self.rng);
            let k2 = SecretKey::from_bytes(SCHEME, &k.to_bytes()[..]).unwrap();
            mix.add_epoch_key(e, k, window);
            self.mix_keys.entry(*mid).or_default().push((e, k2));
        }
        for g in &self.gateway_ids {
            let k = SecretKey::generate(SCHEME, &mut self.rng);
            self.gateways.entry(*g).or_default().push((e, k));
        }
        let topo = self.topology(e);
        for mix in self.mixes.values_mut() {
            mix.add_topology(topo.clone());
        }
    }

    fn topology(&self, e: u64) -> Topology {
        let hop = |n: &NodeId, keys: &BTreeMap<NodeId, Vec<(u64, SecretKey)>>| Hop {
            id: *n,
            key: keys[n].iter().find(|(ep, _)| *ep == e).unwrap().1.public_key(),
        };
        Topology {
            epoch: e,
            layers: self.layers.iter().map(|l| l.iter().map(|n| hop(n, &self.mix_keys)).collect()).collect(),
            gateways: self.gateway_ids.iter().map(|n| hop(n, &self.gateways)).collect(),
        }
    }

    fn send(&mut self, at: Time, to: NodeId, packet: Vec<u8>) {
        if self.loss > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.loss {
            return;
        }
        self.seq += 1;
        self.events.push(Reverse((at + LINK, self.seq, to, packet)));
    }

    /// A client packet through ingress gateway, the three layers and the egress gateway.
    fn client_packet(&mut self, epoch: u64, recipient: RecipientId, payload: &[u8]) -> (NodeId, Vec<u8>) {
        let topo = self.topology(epoch);
        let gin = topo.gateways[0].clone();
        let gout = topo.gateways[1].clone();
        let mut hops = vec![&gin];
        let l: Vec<Hop> = (0..3).map(|i| topo.random_mix(i, &mut self.rng).unwrap().clone()).collect();
        hops.extend(l.iter());
        hops.push(&gout);
        let gws = self.gateway_ids.clone();
        let path = path_hops(
            &hops,
            |n| gws.contains(n),
            Duration::from_millis(50),
            Destination::Recipient(recipient),
            &mut self.rng,
        );
        let mut p = vec![0u8; self.sphinx.geometry().forward_payload_len()];
        p[..payload.len()].copy_from_slice(payload);
        (gin.id, self.sphinx.new_packet(&mut self.rng, &path, &p).unwrap())
    }

    fn gateway_handle(&mut self, g: NodeId, mut packet: Vec<u8>) {
        let now = self.now;
        for (_, key) in &self.gateways[&g] {
            let mut p = packet.clone();
            if let Ok(out) = self.sphinx.unwrap(key, &mut p) {
                if let Some(next) = out.commands.next_hop {
                    self.send(now, next.id, p);
                } else if let Some(r) = out.commands.recipient {
                    let payload = out.payload(&p).unwrap().to_vec();
                    self.delivered.push((now, r, payload));
                }
                return;
            }
        }
        packet.clear();
    }

    /// Runs the network until `end`.
    fn run_until(&mut self, end: Time) {
        loop {
            let next_event = self.events.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self.mixes.values().filter_map(|m| m.poll_timeout()).min();
            let t = match (next_event, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if t > end {
                break;
            }
            self.now = t;
            if next_event == Some(t) {
                let Reverse((_, _, to, packet)) = self.events.pop().unwrap();
                if let Some(m) = self.mixes.get_mut(&to) {
                    let _ = m.handle_packet(t, packet);
                } else {
                    self.gateway_handle(to, packet);
                }
            }
            let ids: Vec<NodeId> = self.mixes.keys().copied().collect();
            for mid in ids {
                let mut out = Vec::new();
                {
                    let m = self.mixes.get_mut(&mid).unwrap();
                    if m.poll_timeout().is_some_and(|x| x <= t) {
                        m.handle_timeout(t, &mut self.rng);
                    }
                    while let Some(tx) = m.poll_transmit(t) {
                        out.push(tx);
                    }
                }
                for tx in out {
                    self.send(t, tx.to, tx.packet);
                }
            }
        }
        self.now = end;
    }
}

#[test]
fn packets_cross_three_layers_exactly_once() {
    let mut net = Net::new(1, 0.0);
    let r = RecipientId([0xee; 32]);
    let mut sent = Vec::new();
    for i in 0..300u32 {
        let at = Time::ZERO + Duration::from_millis(u64::from(i) * 10);
        let (gin, pkt) = net.client_packet(0, r, &i.to_be_bytes());
        net.run_until(at);
        net.gateway_handle(gin, pkt);
        sent.push(at);
    }
    net.run_until(Time::ZERO + Duration::from_secs(15));
    assert_eq!(net.delivered.len(), 300);
    let mut got: Vec<u32> =
        net.delivered.iter().map(|(_, _, p)| u32::from_be_bytes(p[..4].try_into().unwrap())).collect();
    got.sort_unstable();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    // Mixing reorders packets: the arrival order differs from the sending order.
    let arrival: Vec<u32> =
        net.delivered.iter().map(|(_, _, p)| u32::from_be_bytes(p[..4].try_into().unwrap())).collect();
    assert_ne!(arrival, got);
    let dropped: u64 =
        net.mixes.values().map(|m| m.metrics().dropped_malformed + m.metrics().dropped_replay).sum();
    assert_eq!(dropped, 0);
}

#[test]
fn replays_and_garbage_are_dropped_and_counted() {
    let mut net = Net::new(2, 0.0);
    let (_, pkt) = net.client_packet(0, RecipientId([1; 32]), b"x");
    // Unwrap at the ingress gateway by hand to get what layer 1 receives.
    let g = net.gateway_ids[0];
    let key = &net.gateways[&g][0].1;
    let mut p = pkt.clone();
    let out = net.sphinx.unwrap(key, &mut p).unwrap();
    let l1 = out.commands.next_hop.unwrap().id;
    let m = net.mixes.get_mut(&l1).unwrap();
    let now = Time::ZERO + Duration::from_secs(1);
    assert!(matches!(m.handle_packet(now, p.clone()), Ok(Received::Queued { .. })));
    assert_eq!(m.handle_packet(now, p.clone()), Err(Dropped::Replay));
    assert!(matches!(m.handle_packet(now, vec![0u8; 17]), Err(Dropped::Malformed(_))));
    // A bit flipped in the routing information keeps the replay tag: dropped as a replay.
    let mut flipped = p.clone();
    flipped[40] ^= 1;
    assert_eq!(m.handle_packet(now, flipped), Err(Dropped::Replay));
    // A bit flipped in the KEM ciphertext changes the tag and fails the MAC.
    let mut garbage = p.clone();
    garbage[10] ^= 1;
    assert!(matches!(m.handle_packet(now, garbage), Err(Dropped::Malformed(_))));
    assert_eq!(m.metrics().dropped_replay, 2);
    assert_eq!(m.metrics().dropped_malformed, 2);
    assert_eq!(m.queued(), 1);
}

#[test]
fn traffic_survives_epoch_boundaries_and_old_keys_expire() {
    let mut net = Net::new(3, 0.0);
    let r = RecipientId([7; 32]);
    let mut total = 0;
    // Send through epochs 0, 1, 2 (20 s each), including packets made just before a boundary
    // with the old epoch's keys, which arrive after it (within the grace period).
    for i in 0..120u64 {
        let at = Time::ZERO + Duration::from_millis(i * 500);
        let epoch = (i * 500) / 20_000;
        net.run_until(at);
        let (gin, pkt) = net.client_packet(epoch, r, &i.to_be_bytes());
        net.gateway_handle(gin, pkt);
        total += 1;
        if i % 40 == 39 {
            net.install_epoch(epoch + 3);
        }
    }
    net.run_until(Time::ZERO + Duration::from_secs(70));
    assert_eq!(net.delivered.len(), total, "lost packets across epoch boundaries");
    // Keys of epochs 0 and 1 are gone (after their grace), with their replay filters.
    for m in net.mixes.values_mut() {
        m.handle_timeout(Time::ZERO + Duration::from_secs(70), &mut ChaCha20Rng::seed_from_u64(0));
        assert!(!m.key_epochs().contains(&0) && !m.key_epochs().contains(&1));
    }
    // A packet made for epoch 0 is now refused.
    let (_, pkt) = net.client_packet(0, r, b"late");
    let g = net.gateway_ids[0];
    let mut p = pkt;
    let out = net.sphinx.unwrap(&net.gateways[&g][0].1, &mut p).unwrap();
    let l1 = out.commands.next_hop.unwrap().id;
    let now = net.now;
    assert!(net.mixes.get_mut(&l1).unwrap().handle_packet(now, p).is_err());
}

#[test]
fn loop_cover_traffic_keeps_every_mix_busy() {
    let mut net = Net::new(4, 40.0);
    let end = Time::ZERO + Duration::from_secs(20);
    net.run_until(end);
    for (i, m) in net.mixes.values().enumerate() {
        let x = m.metrics();
        assert!(x.loops_sent > 600, "mix {i} sent {} loops", x.loops_sent);
        // Loops come back unless still in flight at the end.
        assert!(x.loops_returned + 20 >= x.loops_sent, "mix {i}: {x:?}");
        let pool = x.pool_packet_seconds / 20.0;
        assert!(pool >= 2.0, "mix {i}: mean pool {pool} < 2 (λ/μ)");
        assert_eq!(x.dropped_malformed + x.dropped_replay + x.dropped_terminal, 0, "{x:?}");
    }
}

#[test]
fn lossy_links_lose_packets_but_never_corrupt_or_duplicate() {
    let mut net = Net::new(5, 0.0);
    net.loss = 0.1;
    let r = RecipientId([9; 32]);
    for i in 0..200u32 {
        let at = Time::ZERO + Duration::from_millis(u64::from(i) * 10);
        net.run_until(at);
        let (gin, pkt) = net.client_packet(0, r, &i.to_be_bytes());
        net.gateway_handle(gin, pkt);
    }
    net.run_until(Time::ZERO + Duration::from_secs(15));
    let mut got: Vec<u32> =
        net.delivered.iter().map(|(_, _, p)| u32::from_be_bytes(p[..4].try_into().unwrap())).collect();
    let n = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), n, "duplicates delivered");
    // 4 lossy links at 10%: about 66% arrive.
    assert!((100..170).contains(&n), "{n} delivered");
}
