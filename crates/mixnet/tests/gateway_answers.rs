//! What a gateway answers the last mix, deterministically (issue "Hostile peers", acknowledgements
//! that cannot lie): every packet it can never store is acknowledged so that the mix forgets it,
//! and a packet resent any number of times costs one store write.

use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_mixnet::{
    Ack, AckToken, Destination, Dropped, Egress, EpochWindow, Gateway, GatewayConfig, Hop, Refusal,
    StoreResult, Topology, UnixMicros, path_hops,
};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx, SurbId};

const SCHEME: Scheme = Scheme::X25519Nike;
const GW: NodeId = NodeId([1; 32]);
const LAYER1: NodeId = NodeId([2; 32]);
const MIX: NodeId = NodeId([3; 32]);
const OTHER_MIX: NodeId = NodeId([4; 32]);

fn window() -> EpochWindow {
    EpochWindow { start: UnixMicros::ZERO, end: UnixMicros(u64::MAX / 4), grace: Duration::from_secs(1) }
}

struct Setup {
    rng: ChaCha20Rng,
    sphinx: Sphinx,
    gw_key: SecretKey,
    layer1_key: SecretKey,
}

impl Setup {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let gw_key = SecretKey::generate(SCHEME, &mut rng);
        let layer1_key = SecretKey::generate(SCHEME, &mut rng);
        Self { rng, sphinx: Sphinx::new(Geometry::default_for(SCHEME)), gw_key, layer1_key }
    }

    fn gateway(&self, config: GatewayConfig) -> Gateway {
        let mut gw = Gateway::new(config, Geometry::default_for(SCHEME));
        gw.add_epoch_key(7, copy(&self.gw_key), window());
        gw.add_topology(Topology {
            epoch: 7,
            layers: vec![vec![Hop { id: LAYER1, key: self.layer1_key.public_key() }]],
            gateways: vec![Hop { id: GW, key: self.gw_key.public_key() }],
        });
        gw
    }

    /// A last hop at the gateway for a mailbox, sealed (opaque) as clients make them.
    fn mailbox_packet(&mut self) -> Vec<u8> {
        let hop = Hop { id: GW, key: self.gw_key.public_key() };
        let dest = Destination::SurbReply(MailboxId([9; 32]), SurbId([5; 16]));
        let path = path_hops(&[&hop], |_| true, Duration::ZERO, dest, &mut self.rng);
        let g = self.sphinx.geometry();
        let body = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
        self.sphinx.new_opaque_packet(&mut self.rng, &path, &body).unwrap()
    }

    /// A packet through the gateway to `next` (a loop passing through, or a misrouted one).
    fn through_to(&mut self, next: Hop) -> Vec<u8> {
        let hops = [Hop { id: GW, key: self.gw_key.public_key() }, next];
        let refs: Vec<&Hop> = hops.iter().collect();
        let path = path_hops(
            &refs,
            |id| *id == GW,
            Duration::from_millis(1),
            Destination::Recipient(MailboxId([3; 32])),
            &mut self.rng,
        );
        let payload = vec![0u8; self.sphinx.geometry().forward_payload_len()];
        self.sphinx.new_packet(&mut self.rng, &path, &payload).unwrap()
    }

    /// A last hop encrypted to a key the gateway does not hold (a hostile client's packet).
    fn packet_to_a_random_key(&mut self) -> Vec<u8> {
        let stranger = SecretKey::generate(SCHEME, &mut self.rng);
        let hop = Hop { id: GW, key: stranger.public_key() };
        let dest = Destination::SurbReply(MailboxId([9; 32]), SurbId([5; 16]));
        let path = path_hops(&[&hop], |_| true, Duration::ZERO, dest, &mut self.rng);
        let g = self.sphinx.geometry();
        let body = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
        self.sphinx.new_opaque_packet(&mut self.rng, &path, &body).unwrap()
    }
}

fn copy(k: &SecretKey) -> SecretKey {
    SecretKey::from_bytes(SCHEME, k.to_bytes().as_ref()).unwrap()
}

fn acks(gw: &mut Gateway) -> Vec<Ack> {
    std::iter::from_fn(|| gw.poll_ack()).collect()
}

fn ack(to: NodeId, token: u64) -> Ack {
    Ack { to, token: AckToken(token) }
}

// Finding: a packet whose last hop is encrypted to a random key was never acknowledged, so the
// last mix resent it forever.
#[test]
fn undecryptable_packets_are_acknowledged_and_counted() {
    let mut s = Setup::new();
    let mut gw = s.gateway(GatewayConfig::new(GW));
    let p = s.packet_to_a_random_key();
    assert_eq!(
        gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p),
        Ok(Egress::Refused(Refusal::Malformed))
    );
    assert_eq!(acks(&mut gw), vec![ack(MIX, 1)]);
    assert_eq!(gw.metrics().refused_malformed, 1);
    assert!(gw.poll_store().is_none());
}

// Finding: a misrouted packet was never acknowledged.
#[test]
fn misrouted_packets_are_acknowledged_and_counted() {
    let mut s = Setup::new();
    let mut gw = s.gateway(GatewayConfig::new(GW));
    // Through the gateway to a node outside layer 1.
    let stranger = SecretKey::generate(SCHEME, &mut s.rng);
    let p = s.through_to(Hop { id: NodeId([8; 32]), key: stranger.public_key() });
    assert_eq!(
        gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p),
        Ok(Egress::Refused(Refusal::Misrouted))
    );
    assert_eq!(acks(&mut gw), vec![ack(MIX, 1)]);
    assert_eq!(gw.metrics().refused_misrouted, 1);
    assert!(gw.poll_transmit(UnixMicros(u64::MAX / 8)).is_none());
}

#[test]
fn no_live_key_is_not_answered() {
    // The gateway may be behind on keys: the mix keeps the packet and tries again.
    let mut s = Setup::new();
    let mut gw = Gateway::new(GatewayConfig::new(GW), Geometry::default_for(SCHEME));
    let p = s.mailbox_packet();
    assert_eq!(gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p), Err(Dropped::NoKey));
    assert!(acks(&mut gw).is_empty());
}

// Finding: every resend of a packet started another store write.
#[test]
fn one_store_write_per_packet_however_often_it_is_resent() {
    let mut s = Setup::new();
    let mut gw = s.gateway(GatewayConfig::new(GW));
    let p = s.mailbox_packet();
    let Ok(Egress::Storing(st)) = gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p.clone()) else {
        panic!("not stored")
    };
    // Resent while the write is in flight, by the same mix (same id) and another one.
    assert_eq!(gw.handle_mix_packet(UnixMicros(1), MIX, AckToken(1), p.clone()), Ok(Egress::Storing(st)));
    assert_eq!(
        gw.handle_mix_packet(UnixMicros(2), OTHER_MIX, AckToken(9), p.clone()),
        Ok(Egress::Storing(st))
    );
    let req = gw.poll_store().unwrap();
    assert!(gw.poll_store().is_none(), "one write");
    assert!(acks(&mut gw).is_empty(), "nothing acknowledged before the write is durable");
    assert!(gw.handle_store_result(req.token, StoreResult::Durable).is_empty());
    assert_eq!(acks(&mut gw), vec![ack(MIX, 1), ack(OTHER_MIX, 9)]);
    // Resent after it is durable (the acknowledgement was lost): acknowledged, not written.
    assert_eq!(gw.handle_mix_packet(UnixMicros(3), MIX, AckToken(1), p), Ok(Egress::AlreadyStored));
    assert!(gw.poll_store().is_none());
    assert_eq!(acks(&mut gw), vec![ack(MIX, 1)]);
    assert_eq!(gw.metrics().duplicate_stores, 3);
    assert_eq!(gw.metrics().stored, 1);
}

#[test]
fn a_failed_write_is_written_again_on_the_next_resend() {
    let mut s = Setup::new();
    let mut gw = s.gateway(GatewayConfig::new(GW));
    let p = s.mailbox_packet();
    gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p.clone()).unwrap();
    gw.handle_mix_packet(UnixMicros(1), OTHER_MIX, AckToken(2), p.clone()).unwrap();
    let req = gw.poll_store().unwrap();
    // Neither sender is acknowledged; the runtime learns whom it will not answer.
    assert_eq!(gw.handle_store_result(req.token, StoreResult::Failed), vec![ack(MIX, 1), ack(OTHER_MIX, 2)]);
    assert!(acks(&mut gw).is_empty());
    assert!(matches!(gw.handle_mix_packet(UnixMicros(2), MIX, AckToken(1), p), Ok(Egress::Storing(_))));
    assert!(gw.poll_store().is_some());
}

#[test]
fn a_rejected_write_is_acknowledged_and_not_written_again() {
    // Unknown mailbox or quota: the store says never.
    let mut s = Setup::new();
    let mut gw = s.gateway(GatewayConfig::new(GW));
    let p = s.mailbox_packet();
    gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p.clone()).unwrap();
    let req = gw.poll_store().unwrap();
    assert!(gw.handle_store_result(req.token, StoreResult::Rejected).is_empty());
    assert_eq!(acks(&mut gw), vec![ack(MIX, 1)]);
    assert_eq!(gw.handle_mix_packet(UnixMicros(1), MIX, AckToken(1), p), Ok(Egress::AlreadyStored));
    assert!(gw.poll_store().is_none());
    assert_eq!(gw.metrics().store_rejected, 1);
}

#[test]
fn the_memory_of_settled_writes_is_bounded() {
    // Beyond it a resend is written again (the store de-duplicates by message id).
    let mut s = Setup::new();
    let mut config = GatewayConfig::new(GW);
    config.remembered_stores = 2;
    let mut gw = s.gateway(config);
    let packets: Vec<Vec<u8>> = (0..3).map(|_| s.mailbox_packet()).collect();
    for (i, p) in packets.iter().enumerate() {
        gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(i as u64), p.clone()).unwrap();
        let req = gw.poll_store().unwrap();
        gw.handle_store_result(req.token, StoreResult::Durable);
    }
    assert!(matches!(
        gw.handle_mix_packet(UnixMicros(1), MIX, AckToken(0), packets[0].clone()),
        Ok(Egress::Storing(_))
    ));
    assert_eq!(
        gw.handle_mix_packet(UnixMicros(1), MIX, AckToken(2), packets[2].clone()),
        Ok(Egress::AlreadyStored)
    );
}

// Finding: the gateway forwarded replayed loop packets. (Fixed with the replay log; kept here
// with the other answers: a replay is dropped, and acknowledged so that the mix forgets it,
// also after a restart that rebuilt the filters from the log.)
#[test]
fn a_replayed_loop_is_not_forwarded_even_after_a_restart() {
    let mut s = Setup::new();
    let next = Hop { id: LAYER1, key: s.layer1_key.public_key() };
    let p = s.through_to(next);
    let mut gw = s.gateway(GatewayConfig::new(GW));
    gw.enable_replay_log();
    assert_eq!(gw.handle_mix_packet(UnixMicros::ZERO, MIX, AckToken(1), p.clone()), Ok(Egress::Forwarded));
    let batch = gw.poll_replay_log().unwrap();
    gw.handle_replay_logged(batch.id);
    assert_eq!(gw.poll_transmit(UnixMicros(u64::MAX / 8)).map(|t| t.to), Some(LAYER1));
    assert_eq!(gw.handle_mix_packet(UnixMicros(1), OTHER_MIX, AckToken(2), p.clone()), Ok(Egress::Replayed));
    assert!(gw.poll_transmit(UnixMicros(u64::MAX / 8)).is_none());
    // A restarted gateway, its filter rebuilt from the logged tags.
    let mut again = s.gateway(GatewayConfig::new(GW));
    again.enable_replay_log();
    let tags: Vec<_> = batch.tags.iter().map(|(_, t)| *t).collect();
    again.restore_replay_tags(7, &tags);
    assert_eq!(again.handle_mix_packet(UnixMicros(2), MIX, AckToken(3), p), Ok(Egress::Replayed));
    assert!(again.poll_transmit(UnixMicros(u64::MAX / 8)).is_none());
    assert_eq!(acks(&mut again), vec![ack(MIX, 3)]);
}

// Finding (devnet with 20-second epochs): a gateway's key ring never lost a key. Its runtime
// calls `handle_timeout` only when `poll_timeout` asks, which was only for queued packets, and a
// gateway forwards at once: so expired keys (a replay filter of 19.5 MB each at the defaults)
// and their topologies piled up, one per epoch, and their replay logs stayed on disk.
#[test]
fn an_idle_gateway_wakes_up_to_erase_an_expired_key() {
    let s = Setup::new();
    let mut gw = Gateway::new(GatewayConfig::new(GW), Geometry::default_for(SCHEME));
    let w = EpochWindow {
        start: UnixMicros(10_000_000),
        end: UnixMicros(30_000_000),
        grace: Duration::from_secs(5),
    };
    gw.add_epoch_key(7, copy(&s.gw_key), w);
    assert_eq!(gw.poll_timeout(), Some(UnixMicros(35_000_000)), "the key's expiry is a timer");
    gw.handle_timeout(UnixMicros(34_999_999));
    assert_eq!(gw.key_epochs(), vec![7]);
    gw.handle_timeout(UnixMicros(35_000_000));
    assert!(gw.key_epochs().is_empty());
    assert_eq!(gw.poll_timeout(), None);
}
