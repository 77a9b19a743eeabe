//! Mix nodes and gateways on the simulated network, with simulated time, loss and key rotation.
//!
//! Three layers of two mixes and two gateways, no clients: packets are made here and handed to
//! the gateways as clients would. The network plays the links (latency, loss, and the last
//! mix's link-level retransmission of packets a gateway has not acknowledged, through the real
//! `Resends` table) and the mailbox stores (which can be made to fail like a full disk).

use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_mixnet::{
    Destination, Dropped, EpochWindow, Hop, MailboxItem, Mix, MixConfig, Received, ResendConfig, UnixMicros,
    path_hops,
};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};
use qanat_sim::{Config, Epochs, Links, Network};

const SCHEME: Scheme = Scheme::X25519Kem;
const EPOCH: Duration = Duration::from_secs(20);
const LINK: Duration = Duration::from_millis(2);
const DELAY: Duration = Duration::from_millis(50);

/// The network: epochs 0, 1 and 2 installed (20 s each, accepted with 2 s of grace each side),
/// links losing `loss` of the frames between nodes, packets to gateways sent again every 200 ms
/// until acknowledged.
fn network(seed: u64, loop_rate: f64, loss: f64) -> Network {
    let params = qanat_pki::Parameters::default_for(SCHEME);
    let mut c = Config::from_parameters(&params, 0, seed);
    c.layers = 3;
    c.mixes_per_layer = 2;
    c.gateways = 2;
    c.mean_delay = DELAY;
    c.mix_loop_rate = loop_rate;
    c.scheme = SCHEME;
    c.link_latency = LINK;
    c.epochs = Some(Epochs { period: EPOCH, grace: Duration::from_secs(2) });
    c.links = Links {
        loss,
        resend: Some(ResendConfig::new(Duration::from_millis(200), Duration::from_secs(60))),
        ..Links::default()
    };
    let mut net = Network::new(c).unwrap();
    net.install_epoch(1).unwrap();
    net.install_epoch(2).unwrap();
    net
}

fn at(ms: u64) -> UnixMicros {
    UnixMicros::ZERO + Duration::from_millis(ms)
}

/// A client packet through ingress gateway, the three layers and the egress gateway: opaque,
/// as clients make them (a SURB-reply command on the last hop, `payload` at the start of the
/// body).
fn client_packet(net: &mut Network, epoch: u64, recipient: MailboxId, payload: &[u8]) -> (NodeId, Vec<u8>) {
    client_packet_to(net, epoch, Destination::SurbReply(recipient, qanat_packet::SurbId([7; 16])), payload)
}

fn client_packet_to(
    net: &mut Network,
    epoch: u64,
    destination: Destination,
    payload: &[u8],
) -> (NodeId, Vec<u8>) {
    let topo = net.topology(epoch).unwrap().clone();
    let sphinx = Sphinx::new(net.sphinx().geometry().clone());
    let gws = net.gateway_ids().to_vec();
    let rng = net.rng();
    let gin = topo.gateways[0].clone();
    let gout = topo.gateways[1].clone();
    let mut hops = vec![&gin];
    let l: Vec<Hop> = (0..3).map(|i| topo.random_mix(i, rng).unwrap().clone()).collect();
    hops.extend(l.iter());
    hops.push(&gout);
    let path = path_hops(&hops, |n| gws.contains(n), DELAY, destination, rng);
    let g = sphinx.geometry();
    if let Destination::Recipient(_) = destination {
        let mut p = vec![0u8; g.forward_payload_len()];
        p[..payload.len()].copy_from_slice(payload);
        return (gin.id, sphinx.new_packet(rng, &path, &p).unwrap());
    }
    let mut p = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
    p[..payload.len()].copy_from_slice(payload);
    (gin.id, sphinx.new_opaque_packet(rng, &path, &p).unwrap())
}

/// Payloads stored for `r`, decoded.
fn mailbox(net: &Network, r: MailboxId) -> Vec<MailboxItem> {
    net.mailbox_items(&r).iter().map(|i| MailboxItem::decode(i).unwrap()).collect()
}

fn numbers(items: &[MailboxItem]) -> Vec<u32> {
    items.iter().map(|i| u32::from_be_bytes(i.body[..4].try_into().unwrap())).collect()
}

/// `n` packets to `r`, one every 10 ms.
fn send_numbered(net: &mut Network, r: MailboxId, n: u32) {
    for i in 0..n {
        net.run_until(at(u64::from(i) * 10)).unwrap();
        let (gin, pkt) = client_packet(net, 0, r, &i.to_be_bytes());
        net.hand_to_gateway(&gin, pkt).unwrap();
    }
}

#[test]
fn packets_cross_three_layers_and_land_in_the_mailbox_exactly_once() {
    let mut net = network(1, 0.0, 0.0);
    let r = MailboxId([0xee; 32]);
    net.register_mailbox(r);
    send_numbered(&mut net, r, 300);
    net.run_until(at(15_000)).unwrap();
    let arrival = numbers(&mailbox(&net, r));
    let mut got = arrival.clone();
    got.sort_unstable();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    // Mixing reorders packets.
    assert_ne!(arrival, got);
    assert_eq!(net.unacked(), 0, "every packet to the gateway was acknowledged");
    for m in net.mixes() {
        assert_eq!(m.metrics().dropped_malformed + m.metrics().dropped_replay, 0);
    }
}

#[test]
fn replays_and_garbage_are_dropped_and_counted() {
    let mut net = network(2, 0.0, 0.0);
    let (_, pkt) = client_packet(&mut net, 0, MailboxId([1; 32]), b"x");
    // Unwrap at the ingress gateway by hand to get what layer 1 receives.
    let g = net.gateway_ids()[0];
    let mut p = pkt.clone();
    let out = net.sphinx().unwrap(net.secret_key(&g, 0).unwrap(), &mut p).unwrap();
    let l1 = out.commands.next_hop.unwrap().id;
    let m = net.mix_mut(&l1).unwrap();
    let now = at(1000);
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
    net.run_until(now).unwrap();
    assert!(net.hand_to_gateway(&g, pkt.clone()).is_ok());
    assert_eq!(net.hand_to_gateway(&g, pkt), Err(Dropped::Replay));
    assert!(matches!(net.hand_to_gateway(&g, vec![1u8; 3000]), Err(Dropped::Malformed(_))));
}

/// A layer-1 packet and its mix, as the ingress gateway would send it.
fn layer1_packet(net: &mut Network, n: u8) -> (NodeId, Vec<u8>) {
    let (_, pkt) = client_packet(net, 0, MailboxId([n; 32]), b"x");
    let key = net.secret_key(&net.gateway_ids()[0], 0).unwrap();
    let mut p = pkt;
    let out = net.sphinx().unwrap(key, &mut p).unwrap();
    (out.commands.next_hop.unwrap().id, p)
}

/// What `handle_packets` must match: the same packets through `handle_packet` one by one.
#[test]
fn a_batch_is_handled_like_its_packets_one_by_one() {
    let now = at(1000);
    let run = |batched: bool| {
        let mut net = network(5, 0.0, 0.0);
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
        let m = net.mix_mut(&target).unwrap();
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
    let mut net = network(3, 0.0, 0.0);
    let r = MailboxId([7; 32]);
    net.register_mailbox(r);
    // Send through epochs 0, 1, 2 (20 s each), including packets made just before a boundary
    // with the old epoch's keys, which arrive after it (within the grace period).
    for i in 0..120u64 {
        let epoch = (i * 500) / 20_000;
        net.run_until(at(i * 500)).unwrap();
        let (gin, pkt) = client_packet(&mut net, epoch, r, &(i as u32).to_be_bytes());
        net.hand_to_gateway(&gin, pkt).unwrap();
        if i % 40 == 39 {
            net.install_epoch(epoch + 3).unwrap();
        }
    }
    net.run_until(at(70_000)).unwrap();
    assert_eq!(mailbox(&net, r).len(), 120, "lost packets across epoch boundaries");
    // Keys of epochs 0 and 1 are gone (after their grace), with their replay filters.
    let later = at(70_000);
    for id in net.mix_ids().to_vec() {
        let m = net.mix_mut(&id).unwrap();
        m.handle_timeout(later, &mut ChaCha20Rng::seed_from_u64(0));
        assert!(!m.key_epochs().contains(&0) && !m.key_epochs().contains(&1));
    }
    // A packet made for epoch 0 is now refused at the gateway.
    let (gin, pkt) = client_packet(&mut net, 0, r, b"late");
    assert!(matches!(net.hand_to_gateway(&gin, pkt), Err(Dropped::Malformed(_))));
}

#[test]
fn loop_cover_traffic_keeps_every_mix_busy() {
    let mut net = network(4, 40.0, 0.0);
    net.run_until(at(20_000)).unwrap();
    for (i, m) in net.mixes().iter().enumerate() {
        let x = m.metrics();
        assert!(x.loops_sent > 600, "mix {i} sent {} loops", x.loops_sent);
        // Loops come back unless still in flight at the end.
        assert!(x.loops_returned + 20 >= x.loops_sent, "mix {i}: {x:?}");
        let pool = x.pool_packet_seconds / 20.0;
        assert!(pool >= 2.0, "mix {i}: mean pool {pool} < 2 (λ/μ)");
        assert_eq!(x.dropped_malformed + x.dropped_replay + x.dropped_terminal, 0, "{x:?}");
    }
    // Loops pass through the gateways, which forward them.
    assert!(net.gateways().iter().all(|g| g.metrics().forwarded > 100));
}

#[test]
fn lossy_links_lose_packets_but_never_corrupt_or_duplicate() {
    let mut net = network(5, 0.0, 0.1);
    let r = MailboxId([9; 32]);
    net.register_mailbox(r);
    send_numbered(&mut net, r, 200);
    net.run_until(at(15_000)).unwrap();
    let mut got = numbers(&mailbox(&net, r));
    let n = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), n, "duplicates delivered");
    // Three lossy mix links at 10% (the last one is retransmitted until acknowledged): ~73%.
    assert!((120..180).contains(&n), "{n} delivered");
}

#[test]
fn a_gateway_that_cannot_store_acknowledges_nothing_and_loses_nothing() {
    let mut net = network(6, 0.0, 0.0);
    let r = MailboxId([3; 32]);
    net.register_mailbox(r);
    net.set_store_failing(true);
    send_numbered(&mut net, r, 100);
    net.run_until(at(5000)).unwrap();
    assert!(mailbox(&net, r).is_empty());
    assert_eq!(net.unacked(), 100, "nothing acknowledged while the store fails");
    let failed: u64 = net.gateways().iter().map(|g| g.metrics().store_failed).sum();
    assert!(failed >= 100);
    // The disk is freed: the retransmissions are stored, each exactly once.
    net.set_store_failing(false);
    net.run_until(at(8000)).unwrap();
    let mut got = numbers(&mailbox(&net, r));
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(net.unacked(), 0);
}

#[test]
fn clients_cannot_skip_the_first_layer() {
    let mut net = network(7, 0.0, 0.0);
    let topo = net.topology(0).unwrap().clone();
    let gin = topo.gateways[0].clone();
    let l2 = topo.layers[1][0].clone();
    let gout = topo.gateways[1].clone();
    let gws = net.gateway_ids().to_vec();
    let sphinx = Sphinx::new(net.sphinx().geometry().clone());
    let rng = net.rng();
    let path = path_hops(
        &[&gin, &l2, &gout],
        |n| gws.contains(n),
        Duration::from_millis(10),
        Destination::Recipient(MailboxId([1; 32])),
        rng,
    );
    let payload = vec![0u8; sphinx.geometry().forward_payload_len()];
    let pkt = sphinx.new_packet(rng, &path, &payload).unwrap();
    assert_eq!(net.hand_to_gateway(&gin.id, pkt), Err(Dropped::Terminal));
    assert_eq!(net.gateways()[0].metrics().dropped_misrouted, 1);
}

#[test]
fn surb_replies_are_stored_with_their_surb_id_for_the_owner() {
    let mut net = network(8, 0.0, 0.0);
    let topo = net.topology(0).unwrap().clone();
    let owner = MailboxId([0x0a; 32]);
    net.register_mailbox(owner);
    let hops: Vec<Hop> = vec![
        topo.gateways[1].clone(),
        topo.layers[0][0].clone(),
        topo.layers[1][1].clone(),
        topo.layers[2][0].clone(),
        topo.gateways[0].clone(),
    ];
    let refs: Vec<&Hop> = hops.iter().collect();
    let gws = net.gateway_ids().to_vec();
    let sphinx = Sphinx::new(net.sphinx().geometry().clone());
    let surb_id = qanat_packet::SurbId([0x5b; 16]);
    let rng = net.rng();
    let path = path_hops(
        &refs,
        |n| gws.contains(n),
        Duration::from_millis(10),
        Destination::SurbReply(owner, surb_id),
        rng,
    );
    let (surb, keys) = sphinx.new_surb(rng, &path).unwrap();
    let mut reply = vec![0u8; sphinx.geometry().forward_payload_len()];
    reply[..5].copy_from_slice(b"ack 7");
    let (pkt, first) = sphinx.new_packet_from_surb(&surb, &reply).unwrap();
    net.hand_to_gateway(&first, pkt).unwrap();
    net.run_until(at(5000)).unwrap();
    let items = mailbox(&net, owner);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, surb_id);
    let plain = sphinx.decrypt_surb_payload(&items[0].body, &keys).unwrap();
    assert_eq!(&plain[..5], b"ack 7");
}

#[test]
fn every_stored_item_has_one_length_and_a_readable_last_hop_is_refused() {
    let mut net = network(9, 0.0, 0.0);
    let r = MailboxId([0x1c; 32]);
    net.register_mailbox(r);
    // An opaque packet and a SURB reply are stored in one form, of one length.
    let (gin, p) = client_packet(&mut net, 0, r, b"opaque");
    net.hand_to_gateway(&gin, p).unwrap();
    // A forward packet whose last hop would read the payload is dropped, and counted.
    let (gin, p) = client_packet_to(&mut net, 0, Destination::Recipient(r), b"readable");
    net.hand_to_gateway(&gin, p).unwrap();
    net.run_until(at(5000)).unwrap();
    let items = mailbox(&net, r);
    assert_eq!(items.len(), 1);
    assert_eq!(&items[0].body[..6], b"opaque");
    let g = net.sphinx().geometry().clone();
    for s in (0..2).filter_map(|i| net.store(i)) {
        for (_, raw) in s.all_items() {
            assert_eq!(raw.len(), MailboxItem::encoded_len(&g));
        }
    }
    // Acknowledged at once, so the last mix does not send it again.
    let dropped: u64 = net.gateways().iter().map(|g| g.metrics().dropped_unsealed).sum();
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
