//! The replay log's contract in the cores, deterministically: a packet leaves only once the batch
//! holding its tag is reported durable; a node rebuilt from the logged tags drops replays of what
//! it forwarded; the log of a key is bounded by the filter's capacity without the node ever
//! refusing fresh packets; a gateway drops (and acknowledges) a loop it already forwarded.

use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_mixnet::{
    AckToken, Destination, Dropped, Egress, EpochWindow, Gateway, GatewayConfig, Hop, Mix, MixConfig,
    ReplayBatch, Topology, UnixMicros, path_hops,
};
use qanat_packet::{Geometry, MailboxId, NodeId, ReplayTag, Scheme, SecretKey, Sphinx};

const SCHEME: Scheme = Scheme::X25519Nike;

fn window() -> EpochWindow {
    EpochWindow { start: UnixMicros::ZERO, end: UnixMicros(u64::MAX / 4), grace: Duration::from_secs(1) }
}

struct Setup {
    rng: ChaCha20Rng,
    sphinx: Sphinx,
    mix_key: SecretKey,
    next_key: SecretKey,
}

const MIX: NodeId = NodeId([1; 32]);
const NEXT: NodeId = NodeId([2; 32]);

impl Setup {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mix_key = SecretKey::generate(SCHEME, &mut rng);
        let next_key = SecretKey::generate(SCHEME, &mut rng);
        Self { rng, sphinx: Sphinx::new(Geometry::default_for(SCHEME)), mix_key, next_key }
    }

    /// A mix with the key of epoch 7 installed, its log enabled, with `capacity` tags per key.
    fn mix(&self, capacity: u64) -> Mix {
        let mut cfg = MixConfig::new(MIX, MailboxId([9; 32]));
        cfg.loop_rate = 0.0;
        cfg.replay_capacity = capacity;
        let mut m = Mix::new(cfg, Geometry::default_for(SCHEME));
        m.add_epoch_key(7, copy(&self.mix_key), window());
        m.enable_replay_log();
        m
    }

    /// A packet through the mix (with a short delay) to the next node.
    fn packet(&mut self) -> Vec<u8> {
        let hops = [
            Hop { id: MIX, key: self.mix_key.public_key() },
            Hop { id: NEXT, key: self.next_key.public_key() },
        ];
        let refs: Vec<&Hop> = hops.iter().collect();
        let path = path_hops(
            &refs,
            |_| false,
            Duration::from_millis(1),
            Destination::Recipient(MailboxId([3; 32])),
            &mut self.rng,
        );
        let payload = vec![0u8; self.sphinx.geometry().forward_payload_len()];
        self.sphinx.new_packet(&mut self.rng, &path, &payload).unwrap()
    }
}

fn copy(k: &SecretKey) -> SecretKey {
    SecretKey::from_bytes(SCHEME, k.to_bytes().as_ref()).unwrap()
}

const LATER: UnixMicros = UnixMicros(60_000_000);

fn drain(m: &mut Mix, now: UnixMicros) -> usize {
    std::iter::from_fn(|| m.poll_transmit(now)).count()
}

#[test]
fn a_packet_leaves_only_once_its_tag_is_durable() {
    let mut s = Setup::new();
    let mut mix = s.mix(1000);
    let packets: Vec<Vec<u8>> = (0..5).map(|_| s.packet()).collect();
    mix.handle_packets(UnixMicros::ZERO, packets[..3].to_vec());
    // Due, but the batch is not durable: nothing leaves, and no timer is asked for them (the
    // report is the next event): the only timer is the key's expiry.
    assert_eq!(drain(&mut mix, LATER), 0);
    let w = window();
    assert_eq!(mix.poll_timeout(), Some(w.end + w.grace));
    let b1 = mix.poll_replay_log().unwrap();
    assert_eq!(b1.id, 1);
    assert_eq!(b1.tags.len(), 3);
    assert!(b1.tags.iter().all(|(e, _)| *e == 7));
    // Packets of the next batch wait for it, not for the first.
    mix.handle_packet(UnixMicros::ZERO, packets[3].clone()).unwrap();
    mix.handle_replay_logged(b1.id);
    assert_eq!(drain(&mut mix, LATER), 3);
    assert_eq!(drain(&mut mix, LATER), 0);
    let b2 = mix.poll_replay_log().unwrap();
    assert_eq!((b2.id, b2.tags.len()), (2, 1));
    assert_eq!(mix.poll_replay_log(), None, "nothing new, no batch");
    mix.handle_replay_logged(b2.id);
    assert_eq!(drain(&mut mix, LATER), 1);
    // A replay adds no tag and queues nothing.
    mix.handle_packet(UnixMicros::ZERO, packets[0].clone()).unwrap_err();
    assert_eq!(mix.poll_replay_log(), None);
    assert_eq!(mix.metrics().dropped_replay, 1);
}

#[test]
fn a_mix_rebuilt_from_its_log_drops_replays_of_what_it_forwarded() {
    let mut s = Setup::new();
    let mut before = s.mix(1000);
    let forwarded: Vec<Vec<u8>> = (0..20).map(|_| s.packet()).collect();
    before.handle_packets(UnixMicros::ZERO, forwarded.clone());
    let mut log: Vec<ReplayTag> = Vec::new();
    while let Some(ReplayBatch { id, tags }) = before.poll_replay_log() {
        log.extend(tags.into_iter().map(|(_, t)| t));
        before.handle_replay_logged(id);
    }
    assert_eq!(drain(&mut before, LATER), 20);
    drop(before); // the crash

    let mut after = s.mix(1000);
    assert_eq!(after.restore_replay_tags(7, &log), 20);
    assert_eq!(after.restore_replay_tags(8, &log), 0, "no key of epoch 8");
    for p in &forwarded {
        assert_eq!(after.handle_packet(UnixMicros(1), p.clone()), Err(Dropped::Replay));
    }
    let fresh = s.packet();
    after.handle_packet(UnixMicros(1), fresh).unwrap();
    let b = after.poll_replay_log().unwrap();
    assert_eq!(b.tags.len(), 1, "restored tags are not logged again");
    after.handle_replay_logged(b.id);
    assert_eq!(drain(&mut after, LATER), 1);
    let m = after.metrics();
    assert_eq!((m.dropped_replay, m.replay_tags_restored), (20, 20));
}

#[test]
fn installing_a_key_again_keeps_its_filter() {
    let mut s = Setup::new();
    let mut mix = s.mix(1000);
    let p = s.packet();
    mix.handle_packet(UnixMicros::ZERO, p.clone()).unwrap();
    mix.add_epoch_key(7, copy(&s.mix_key), window());
    assert_eq!(mix.handle_packet(UnixMicros::ZERO, p), Err(Dropped::Replay));
}

#[test]
fn a_full_log_stops_logging_but_never_stops_forwarding() {
    let mut s = Setup::new();
    let mut mix = s.mix(4);
    mix.restore_replay_tags(7, &[ReplayTag([0xAB; 32])]);
    let packets: Vec<Vec<u8>> = (0..10).map(|_| s.packet()).collect();
    mix.handle_packets(UnixMicros::ZERO, packets.clone());
    let b = mix.poll_replay_log().unwrap();
    assert_eq!(b.tags.len(), 3, "restored tags count towards the bound");
    mix.handle_replay_logged(b.id);
    assert_eq!(drain(&mut mix, LATER), 10);
    assert_eq!(mix.metrics().replay_log_full, 7);
    // Replays are still dropped while the node runs.
    mix.handle_packets(UnixMicros(1), packets);
    assert_eq!(mix.metrics().dropped_replay, 10);
}

#[test]
fn without_the_log_nothing_is_held() {
    let mut s = Setup::new();
    let mut cfg = MixConfig::new(MIX, MailboxId([9; 32]));
    cfg.loop_rate = 0.0;
    cfg.replay_capacity = 1000;
    let mut mix = Mix::new(cfg, Geometry::default_for(SCHEME));
    mix.add_epoch_key(7, copy(&s.mix_key), window());
    mix.handle_packet(UnixMicros::ZERO, s.packet()).unwrap();
    assert_eq!(mix.poll_replay_log(), None);
    assert_eq!(drain(&mut mix, LATER), 1);
}

#[test]
fn a_gateway_drops_and_acknowledges_a_loop_it_already_forwarded() {
    let mut s = Setup::new();
    let gw_key = copy(&s.mix_key);
    let mut gw = Gateway::new(GatewayConfig::new(MIX), Geometry::default_for(SCHEME));
    gw.add_epoch_key(7, gw_key, window());
    gw.add_topology(Topology {
        epoch: 7,
        layers: vec![vec![Hop { id: NEXT, key: s.next_key.public_key() }]],
        gateways: vec![Hop { id: MIX, key: s.mix_key.public_key() }],
    });
    gw.enable_replay_log();
    let p = s.packet();
    let from = NodeId([4; 32]);
    assert_eq!(gw.handle_mix_packet(UnixMicros::ZERO, from, AckToken(1), p.clone()), Ok(Egress::Forwarded));
    assert_eq!(gw.handle_mix_packet(UnixMicros::ZERO, from, AckToken(2), p), Ok(Egress::Replayed));
    let acks: Vec<u64> = std::iter::from_fn(|| gw.poll_ack()).map(|a| a.token.0).collect();
    assert_eq!(acks, vec![1, 2]);
    assert_eq!(gw.metrics().dropped_replay, 1);
    assert!(gw.poll_transmit(LATER).is_none(), "held until its tag is durable");
    let b = gw.poll_replay_log().unwrap();
    assert_eq!(b.tags.len(), 1);
    gw.handle_replay_logged(b.id);
    assert_eq!(gw.poll_transmit(LATER).map(|t| t.to), Some(NEXT));
    assert!(gw.poll_transmit(LATER).is_none());
}
