//! Mix nodes on a deterministic simulated network with simulated time and loss.
//!
//! Three layers of two mixes and two gateways. The harness plays the links (latency, loss, and the
//! link-level retransmission of packets a gateway has not acknowledged) and the mailbox store
//! (a map keyed by mailbox and message id, which can be made to fail like a full disk).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_mixnet::{
    AckToken, Destination, Dropped, EpochWindow, Gateway, GatewayConfig, Hop, MailboxItem, Mix, MixConfig,
    Received, StoreResult, Topology, UnixMicros, path_hops,
};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};

const SCHEME: Scheme = Scheme::X25519Kem;
const EPOCH: Duration = Duration::from_secs(20);
const LINK: Duration = Duration::from_millis(2);

/// A packet in flight: (arrival time, sequence, destination, bytes).
type InFlight = Reverse<(UnixMicros, u64, NodeId, Vec<u8>)>;

struct Net {
    rng: ChaCha20Rng,
    sphinx: Sphinx,
    mixes: BTreeMap<NodeId, Mix>,
    gateways: BTreeMap<NodeId, Vec<(u64, SecretKey)>>,
    gateway_nodes: BTreeMap<NodeId, Gateway>,
    /// Packets a mix sent to a gateway and not yet acknowledged: token -> (from, to, packet, resend at).
    unacked: BTreeMap<u64, (NodeId, NodeId, Vec<u8>, UnixMicros)>,
    /// The mailbox store: (mailbox, message id) -> item, in arrival order.
    store: Vec<(MailboxId, [u8; 32], Vec<u8>)>,
    store_fails: bool,
    mix_keys: BTreeMap<NodeId, Vec<(u64, SecretKey)>>,
    layers: Vec<Vec<NodeId>>,
    gateway_ids: Vec<NodeId>,
    /// (arrival time, seq) -> (node, packet)
    events: BinaryHeap<InFlight>,
    seq: u64,
    loss: f64,
    now: UnixMicros,
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
            let mut cfg = MixConfig::new(*m, MailboxId(loop_id));
            cfg.loop_rate = loop_rate;
            cfg.replay_capacity = 100_000;
            mixes.insert(*m, Mix::new(cfg, geometry.clone()));
        }
        let mut net = Self {
            rng,
            sphinx: Sphinx::new(geometry.clone()),
            mixes,
            gateways: BTreeMap::new(),
            gateway_nodes: gateway_ids
                .iter()
                .map(|g| (*g, Gateway::new(GatewayConfig::new(*g), geometry.clone())))
                .collect(),
            unacked: BTreeMap::new(),
            store: Vec::new(),
            store_fails: false,
            mix_keys: BTreeMap::new(),
            layers,
            gateway_ids,
            events: BinaryHeap::new(),
            seq: 0,
            loss: 0.0,
            now: UnixMicros::ZERO,
        };
        for e in 0..3 {
            net.install_epoch(e);
        }
        net
    }

    fn epoch_start(e: u64) -> UnixMicros {
        UnixMicros::ZERO + EPOCH * e as u32
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
            let k2 = SecretKey::from_bytes(SCHEME, &k.to_bytes()[..]).unwrap();
            self.gateway_nodes.get_mut(g).unwrap().add_epoch_key(e, k, window);
            self.gateways.entry(*g).or_default().push((e, k2));
        }
        let topo = self.topology(e);
        for mix in self.mixes.values_mut() {
            mix.add_topology(topo.clone());
        }
        for gw in self.gateway_nodes.values_mut() {
            gw.add_topology(topo.clone());
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

    fn send(&mut self, at: UnixMicros, from: NodeId, to: NodeId, packet: Vec<u8>) {
        self.seq += 1;
        if self.gateway_ids.contains(&to) && self.mixes.contains_key(&from) {
            // The link keeps this packet until the gateway acknowledges it.
            self.unacked.insert(self.seq, (from, to, packet.clone(), at + Duration::from_millis(200)));
        }
        if self.loss > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.loss {
            return;
        }
        self.events.push(Reverse((at + LINK, self.seq, to, packet)));
    }

    /// A client packet through ingress gateway, the three layers and the egress gateway: opaque,
    /// as clients make them (a SURB-reply command on the last hop, `payload` at the start of the
    /// body).
    fn client_packet(&mut self, epoch: u64, recipient: MailboxId, payload: &[u8]) -> (NodeId, Vec<u8>) {
        self.client_packet_to(
            epoch,
            Destination::SurbReply(recipient, qanat_packet::SurbId([7; 16])),
            payload,
        )
    }

    fn client_packet_to(
        &mut self,
        epoch: u64,
        destination: Destination,
        payload: &[u8],
    ) -> (NodeId, Vec<u8>) {
        let topo = self.topology(epoch);
        let gin = topo.gateways[0].clone();
        let gout = topo.gateways[1].clone();
        let mut hops = vec![&gin];
        let l: Vec<Hop> = (0..3).map(|i| topo.random_mix(i, &mut self.rng).unwrap().clone()).collect();
        hops.extend(l.iter());
        hops.push(&gout);
        let gws = self.gateway_ids.clone();
        let path =
            path_hops(&hops, |n| gws.contains(n), Duration::from_millis(50), destination, &mut self.rng);
        let g = self.sphinx.geometry();
        if let Destination::Recipient(_) = destination {
            let mut p = vec![0u8; g.forward_payload_len()];
            p[..payload.len()].copy_from_slice(payload);
            return (gin.id, self.sphinx.new_packet(&mut self.rng, &path, &p).unwrap());
        }
        let mut p = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
        p[..payload.len()].copy_from_slice(payload);
        (gin.id, self.sphinx.new_opaque_packet(&mut self.rng, &path, &p).unwrap())
    }

    /// A client hands a packet to its gateway.
    fn client_send(&mut self, gin: NodeId, packet: Vec<u8>) -> Result<UnixMicros, Dropped> {
        let now = self.now;
        self.gateway_nodes.get_mut(&gin).unwrap().handle_client_packet(now, packet)
    }

    /// A packet from mix `from` arrives at gateway `g` under link token `token`.
    fn gateway_from_mix(&mut self, g: NodeId, from: NodeId, token: u64, packet: Vec<u8>) {
        let now = self.now;
        let gw = self.gateway_nodes.get_mut(&g).unwrap();
        let _ = gw.handle_mix_packet(now, from, AckToken(token), packet);
        while let Some(req) = gw.poll_store() {
            let result = if self.store_fails {
                StoreResult::Failed
            } else {
                if !self.store.iter().any(|(m, id, _)| *m == req.mailbox && *id == req.item_id) {
                    self.store.push((req.mailbox, req.item_id, req.item));
                }
                StoreResult::Durable
            };
            gw.handle_store_result(req.token, result);
        }
        while let Some(ack) = gw.poll_ack() {
            self.unacked.remove(&ack.token.0);
        }
    }

    /// Payloads stored for `r`, decoded.
    fn mailbox(&self, r: MailboxId) -> Vec<MailboxItem> {
        self.store.iter().filter(|(m, ..)| *m == r).map(|(_, _, i)| MailboxItem::decode(i).unwrap()).collect()
    }

    /// Runs the network until `end`.
    fn run_until(&mut self, end: UnixMicros) {
        loop {
            let next_event = self.events.peek().map(|Reverse((t, ..))| *t);
            let next_timer = self
                .mixes
                .values()
                .filter_map(|m| m.poll_timeout())
                .chain(self.gateway_nodes.values().filter_map(|g| g.poll_timeout()))
                .chain(self.unacked.values().map(|u| u.3))
                .min();
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
                let Reverse((_, seq, to, packet)) = self.events.pop().unwrap();
                if let Some(m) = self.mixes.get_mut(&to) {
                    let _ = m.handle_packet(t, packet);
                } else if let Some(&(from, ..)) = self.unacked.get(&seq) {
                    self.gateway_from_mix(to, from, seq, packet);
                } else {
                    // A gateway-to-gateway hop does not occur; drop.
                }
            }
            // Link-level retransmission of unacknowledged mix-to-gateway packets.
            let due: Vec<u64> = self.unacked.iter().filter(|(_, u)| u.3 <= t).map(|(k, _)| *k).collect();
            for k in due {
                if let Some(u) = self.unacked.get_mut(&k) {
                    u.3 = t + Duration::from_millis(200);
                    let (to, packet) = (u.1, u.2.clone());
                    self.events.push(Reverse((t + LINK, k, to, packet)));
                }
            }
            let gids: Vec<NodeId> = self.gateway_nodes.keys().copied().collect();
            for g in gids {
                let mut out = Vec::new();
                let gw = self.gateway_nodes.get_mut(&g).unwrap();
                gw.handle_timeout(t);
                while let Some(tx) = gw.poll_transmit(t) {
                    out.push(tx);
                }
                for tx in out {
                    self.send(t, g, tx.to, tx.packet);
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
                    self.send(t, mid, tx.to, tx.packet);
                }
            }
        }
        self.now = end;
    }
}

fn numbers(items: &[MailboxItem]) -> Vec<u32> {
    items.iter().map(|i| u32::from_be_bytes(i.body[..4].try_into().unwrap())).collect()
}

#[test]
fn packets_cross_three_layers_and_land_in_the_mailbox_exactly_once() {
    let mut net = Net::new(1, 0.0);
    let r = MailboxId([0xee; 32]);
    for i in 0..300u32 {
        net.run_until(UnixMicros::ZERO + Duration::from_millis(u64::from(i) * 10));
        let (gin, pkt) = net.client_packet(0, r, &i.to_be_bytes());
        net.client_send(gin, pkt).unwrap();
    }
    net.run_until(UnixMicros::ZERO + Duration::from_secs(15));
    let arrival = numbers(&net.mailbox(r));
    let mut got = arrival.clone();
    got.sort_unstable();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    // Mixing reorders packets.
    assert_ne!(arrival, got);
    assert!(net.unacked.is_empty(), "every packet to the gateway was acknowledged");
    for m in net.mixes.values() {
        assert_eq!(m.metrics().dropped_malformed + m.metrics().dropped_replay, 0);
    }
}

#[test]
fn replays_and_garbage_are_dropped_and_counted() {
    let mut net = Net::new(2, 0.0);
    let (_, pkt) = net.client_packet(0, MailboxId([1; 32]), b"x");
    // Unwrap at the ingress gateway by hand to get what layer 1 receives.
    let g = net.gateway_ids[0];
    let key = &net.gateways[&g][0].1;
    let mut p = pkt.clone();
    let out = net.sphinx.unwrap(key, &mut p).unwrap();
    let l1 = out.commands.next_hop.unwrap().id;
    let m = net.mixes.get_mut(&l1).unwrap();
    let now = UnixMicros::ZERO + Duration::from_secs(1);
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
    // The same at the gateway: a client's replay and garbage are dropped.
    net.now = now;
    assert!(net.client_send(g, pkt.clone()).is_ok());
    assert_eq!(net.client_send(g, pkt), Err(Dropped::Replay));
    assert!(matches!(net.client_send(g, vec![1u8; 3000]), Err(Dropped::Malformed(_))));
}

/// A layer-1 packet and its mix, as the ingress gateway would send it.
fn layer1_packet(net: &mut Net, n: u8) -> (NodeId, Vec<u8>) {
    let (_, pkt) = net.client_packet(0, MailboxId([n; 32]), b"x");
    let key = &net.gateways[&net.gateway_ids[0]][0].1;
    let mut p = pkt;
    let out = net.sphinx.unwrap(key, &mut p).unwrap();
    (out.commands.next_hop.unwrap().id, p)
}

/// What `handle_packets` must match: the same packets through `handle_packet` one by one.
#[test]
fn a_batch_is_handled_like_its_packets_one_by_one() {
    let now = UnixMicros::ZERO + Duration::from_secs(1);
    let run = |batched: bool| {
        let mut net = Net::new(5, 0.0);
        let (target, first) = layer1_packet(&mut net, 0);
        let mut same_mix = vec![first];
        for n in 1..40 {
            let (to, p) = layer1_packet(&mut net, n);
            if to == target {
                same_mix.push(p);
            }
            if same_mix.len() == 3 {
                break;
            }
        }
        let [p1, p2, p3] = <[Vec<u8>; 3]>::try_from(same_mix).unwrap();
        let mut flipped = p1.clone();
        flipped[40] ^= 1;
        let mut garbage = p2.clone();
        garbage[10] ^= 1;
        let packets = vec![p1.clone(), p1.clone(), vec![0u8; 17], p2, flipped, garbage, p3, p1];
        let m = net.mixes.get_mut(&target).unwrap();
        if batched {
            m.handle_packets(now, packets);
        } else {
            for p in packets {
                let _ = m.handle_packet(now, p);
            }
        }
        let out: Vec<_> = std::iter::from_fn(|| m.poll_transmit(now + Duration::from_secs(100))).collect();
        (m.metrics(), out)
    };
    let (one_by_one, batch) = (run(false), run(true));
    assert_eq!(one_by_one.0.received, 8);
    assert_eq!(one_by_one.0.dropped_replay, 3, "{:?}", one_by_one.0);
    assert_eq!(one_by_one.0.dropped_malformed, 2);
    assert_eq!(one_by_one.1.len(), 3);
    assert_eq!(batch.0, one_by_one.0);
    assert!(batch.1 == one_by_one.1, "the same packets leave");
}

#[test]
fn traffic_survives_epoch_boundaries_and_old_keys_expire() {
    let mut net = Net::new(3, 0.0);
    let r = MailboxId([7; 32]);
    // Send through epochs 0, 1, 2 (20 s each), including packets made just before a boundary
    // with the old epoch's keys, which arrive after it (within the grace period).
    for i in 0..120u64 {
        let epoch = (i * 500) / 20_000;
        net.run_until(UnixMicros::ZERO + Duration::from_millis(i * 500));
        let (gin, pkt) = net.client_packet(epoch, r, &(i as u32).to_be_bytes());
        net.client_send(gin, pkt).unwrap();
        if i % 40 == 39 {
            net.install_epoch(epoch + 3);
        }
    }
    net.run_until(UnixMicros::ZERO + Duration::from_secs(70));
    assert_eq!(net.mailbox(r).len(), 120, "lost packets across epoch boundaries");
    // Keys of epochs 0 and 1 are gone (after their grace), with their replay filters.
    let later = UnixMicros::ZERO + Duration::from_secs(70);
    for m in net.mixes.values_mut() {
        m.handle_timeout(later, &mut ChaCha20Rng::seed_from_u64(0));
        assert!(!m.key_epochs().contains(&0) && !m.key_epochs().contains(&1));
    }
    // A packet made for epoch 0 is now refused at the gateway.
    let (gin, pkt) = net.client_packet(0, r, b"late");
    assert!(matches!(net.client_send(gin, pkt), Err(Dropped::Malformed(_))));
}

#[test]
fn loop_cover_traffic_keeps_every_mix_busy() {
    let mut net = Net::new(4, 40.0);
    net.run_until(UnixMicros::ZERO + Duration::from_secs(20));
    for (i, m) in net.mixes.values().enumerate() {
        let x = m.metrics();
        assert!(x.loops_sent > 600, "mix {i} sent {} loops", x.loops_sent);
        // Loops come back unless still in flight at the end.
        assert!(x.loops_returned + 20 >= x.loops_sent, "mix {i}: {x:?}");
        let pool = x.pool_packet_seconds / 20.0;
        assert!(pool >= 2.0, "mix {i}: mean pool {pool} < 2 (λ/μ)");
        assert_eq!(x.dropped_malformed + x.dropped_replay + x.dropped_terminal, 0, "{x:?}");
    }
    // Loops pass through the gateways, which forward them.
    assert!(net.gateway_nodes.values().all(|g| g.metrics().forwarded > 100));
}

#[test]
fn lossy_links_lose_packets_but_never_corrupt_or_duplicate() {
    let mut net = Net::new(5, 0.0);
    net.loss = 0.1;
    let r = MailboxId([9; 32]);
    for i in 0..200u32 {
        net.run_until(UnixMicros::ZERO + Duration::from_millis(u64::from(i) * 10));
        let (gin, pkt) = net.client_packet(0, r, &i.to_be_bytes());
        net.client_send(gin, pkt).unwrap();
    }
    net.run_until(UnixMicros::ZERO + Duration::from_secs(15));
    let mut got = numbers(&net.mailbox(r));
    let n = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), n, "duplicates delivered");
    // Three lossy mix links at 10% (the last one is retransmitted until acknowledged): ~73%.
    assert!((120..180).contains(&n), "{n} delivered");
}

#[test]
fn a_gateway_that_cannot_store_acknowledges_nothing_and_loses_nothing() {
    let mut net = Net::new(6, 0.0);
    let r = MailboxId([3; 32]);
    net.store_fails = true;
    for i in 0..100u32 {
        net.run_until(UnixMicros::ZERO + Duration::from_millis(u64::from(i) * 10));
        let (gin, pkt) = net.client_packet(0, r, &i.to_be_bytes());
        net.client_send(gin, pkt).unwrap();
    }
    net.run_until(UnixMicros::ZERO + Duration::from_secs(5));
    assert!(net.mailbox(r).is_empty());
    assert_eq!(net.unacked.len(), 100, "nothing acknowledged while the store fails");
    let failed: u64 = net.gateway_nodes.values().map(|g| g.metrics().store_failed).sum();
    assert!(failed >= 100);
    // The disk is freed: the retransmissions are stored, each exactly once.
    net.store_fails = false;
    net.run_until(UnixMicros::ZERO + Duration::from_secs(8));
    let mut got = numbers(&net.mailbox(r));
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(net.unacked.is_empty());
}

#[test]
fn clients_cannot_skip_the_first_layer() {
    let mut net = Net::new(7, 0.0);
    let topo = net.topology(0);
    let gin = topo.gateways[0].clone();
    let l2 = topo.layers[1][0].clone();
    let gout = topo.gateways[1].clone();
    let gws = net.gateway_ids.clone();
    let path = path_hops(
        &[&gin, &l2, &gout],
        |n| gws.contains(n),
        Duration::from_millis(10),
        Destination::Recipient(MailboxId([1; 32])),
        &mut net.rng,
    );
    let payload = vec![0u8; net.sphinx.geometry().forward_payload_len()];
    let pkt = net.sphinx.new_packet(&mut net.rng, &path, &payload).unwrap();
    assert_eq!(net.client_send(gin.id, pkt), Err(Dropped::Terminal));
    assert_eq!(net.gateway_nodes[&gin.id].metrics().dropped_misrouted, 1);
}

#[test]
fn surb_replies_are_stored_with_their_surb_id_for_the_owner() {
    let mut net = Net::new(8, 0.0);
    let topo = net.topology(0);
    let owner = MailboxId([0x0a; 32]);
    let hops: Vec<Hop> = vec![
        topo.gateways[1].clone(),
        topo.layers[0][0].clone(),
        topo.layers[1][1].clone(),
        topo.layers[2][0].clone(),
        topo.gateways[0].clone(),
    ];
    let refs: Vec<&Hop> = hops.iter().collect();
    let gws = net.gateway_ids.clone();
    let surb_id = qanat_packet::SurbId([0x5b; 16]);
    let path = path_hops(
        &refs,
        |n| gws.contains(n),
        Duration::from_millis(10),
        Destination::SurbReply(owner, surb_id),
        &mut net.rng,
    );
    let (surb, keys) = net.sphinx.new_surb(&mut net.rng, &path).unwrap();
    let mut reply = vec![0u8; net.sphinx.geometry().forward_payload_len()];
    reply[..5].copy_from_slice(b"ack 7");
    let (pkt, first) = net.sphinx.new_packet_from_surb(&surb, &reply).unwrap();
    net.client_send(first, pkt).unwrap();
    net.run_until(UnixMicros::ZERO + Duration::from_secs(5));
    let items = net.mailbox(owner);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, surb_id);
    let plain = net.sphinx.decrypt_surb_payload(&items[0].body, &keys).unwrap();
    assert_eq!(&plain[..5], b"ack 7");
}

#[test]
fn every_stored_item_has_one_length_and_a_readable_last_hop_is_refused() {
    let mut net = Net::new(9, 0.0);
    let r = MailboxId([0x1c; 32]);
    // An opaque packet and a SURB reply are stored in one form, of one length.
    let (gin, p) = net.client_packet(0, r, b"opaque");
    net.client_send(gin, p).unwrap();
    // A forward packet whose last hop would read the payload is dropped, and counted.
    let (gin, p) = net.client_packet_to(0, Destination::Recipient(r), b"readable");
    net.client_send(gin, p).unwrap();
    net.run_until(UnixMicros::ZERO + Duration::from_secs(5));
    let items = net.mailbox(r);
    assert_eq!(items.len(), 1);
    assert_eq!(&items[0].body[..6], b"opaque");
    let g = net.sphinx.geometry().clone();
    for (_, _, raw) in &net.store {
        assert_eq!(raw.len(), MailboxItem::encoded_len(&g));
    }
    // Acknowledged at once, so the last mix does not send it again.
    let dropped: u64 = net.gateway_nodes.values().map(|g| g.metrics().dropped_unsealed).sum();
    assert_eq!(dropped, 1);
}

// Finding: as the gateway's, a mix's expired keys were erased only because its loops woke it;
// without loop cover (λ_M = 0) they stayed forever.
#[test]
fn a_mix_without_loops_wakes_up_to_erase_an_expired_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut config = MixConfig::new(NodeId([9; 32]), MailboxId([8; 32]));
    config.loop_rate = 0.0;
    let mut m = Mix::new(config, Geometry::default_for(Scheme::X25519Nike));
    let w = EpochWindow {
        start: UnixMicros(10_000_000),
        end: UnixMicros(30_000_000),
        grace: Duration::from_secs(5),
    };
    m.add_epoch_key(3, SecretKey::generate(Scheme::X25519Nike, &mut rng), w);
    assert_eq!(m.poll_timeout(), Some(UnixMicros(35_000_000)), "the key's expiry is a timer");
    m.handle_timeout(UnixMicros(35_000_000), &mut rng);
    assert!(m.key_epochs().is_empty());
    assert_eq!(m.poll_timeout(), None);
}
