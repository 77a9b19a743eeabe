//! Mix runtimes over real sockets on 127.0.0.1: packets cross three layers over hybrid Noise
//! links to an egress gateway that acknowledges them; a gateway that is down and comes back still
//! gets every packet (the last mix resends until acknowledged); a gateway acknowledging ids it
//! was not sent clears nothing kept for another gateway.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_link::{
    Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener, PacketId,
};
use qanat_mixnet::{Destination, EpochWindow, Hop, Mix, MixConfig, UnixMicros, path_hops};
use qanat_node::runtime::{MixRuntimeConfig, Peer, spawn_mix};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};
use tokio::sync::mpsc;

const SCHEME: Scheme = Scheme::X25519Kem;

struct NodeKeys {
    id: NodeId,
    link: Arc<LinkSecretKey>,
    packet: SecretKey,
}

fn node(n: u8, rng: &mut ChaCha20Rng) -> NodeKeys {
    NodeKeys {
        id: NodeId([n; 32]),
        link: Arc::new(LinkSecretKey::generate(rng)),
        packet: SecretKey::generate(SCHEME, rng),
    }
}

fn link_config() -> LinkConfig {
    LinkConfig::new(FrameSize::for_packet_len(Geometry::default_for(SCHEME).packet_len()).unwrap())
}

/// The egress gateway played by the test: unwraps the last layer, records the payload, and
/// acknowledges (when `ack` is on).
async fn sink(
    addr: SocketAddr,
    keys: &NodeKeys,
    allowed: LinkPublicKey,
    ack: bool,
) -> (SocketAddr, mpsc::Receiver<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let auth = move |k: &LinkPublicKey| (*k == allowed).then_some(());
    let mut listener =
        Listener::bind(addr, keys.link.clone(), link_config(), auth, Arc::new(LinkMetrics::default()))
            .await
            .unwrap();
    let local = listener.local_addr();
    let key = SecretKey::from_bytes(SCHEME, &keys.packet.to_bytes()[..]).unwrap();
    let (tx, rx) = mpsc::channel(10_000);
    let task = tokio::spawn(async move {
        let key = Arc::new(key);
        while let Some(mut conn) = listener.accept().await {
            let (tx, key) = (tx.clone(), key.clone());
            tokio::spawn(async move {
                let sphinx = Sphinx::new(Geometry::default_for(SCHEME));
                while let Some(f) = conn.recv().await {
                    if let Frame::Packet { id, mut packet } = f {
                        let out = sphinx.unwrap(&key, &mut packet).unwrap();
                        let _ = tx.send(out.payload(&packet).unwrap().to_vec()).await;
                        if ack {
                            let _ = conn.send(Frame::Ack(vec![id])).await;
                        }
                    }
                }
            });
        }
    });
    (local, rx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_three_mix_runtimes_over_real_links_and_survive_a_gateway_outage() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let geometry = Geometry::default_for(SCHEME);
    let client = node(1, &mut rng);
    let gout = node(2, &mut rng);
    let mixes: Vec<NodeKeys> = (0..3).map(|i| node(10 + i, &mut rng)).collect();

    // The egress gateway is down at first: the last mix must keep and resend.
    let (sink_addr, _, first_sink) =
        sink("127.0.0.1:0".parse().unwrap(), &gout, mixes[2].link.public_key().clone(), false).await;
    first_sink.abort();

    // Start the mixes from the last layer back, so each knows the next one's address.
    let mut next: (NodeId, SocketAddr, LinkPublicKey, bool) =
        (gout.id, sink_addr, gout.link.public_key().clone(), true);
    let mut handles = Vec::new();
    for (i, m) in mixes.iter().enumerate().rev() {
        let prev_link =
            if i == 0 { client.link.public_key().clone() } else { mixes[i - 1].link.public_key().clone() };
        let prev_id = if i == 0 { client.id } else { mixes[i - 1].id };
        let mut peers = HashMap::new();
        peers.insert(next.0, Peer { addr: next.1, link_key: next.2.clone(), gateway: next.3 });
        peers.insert(
            prev_id,
            Peer { addr: "127.0.0.1:9".parse().unwrap(), link_key: prev_link, gateway: false },
        );
        let mut cfg = MixConfig::new(m.id, MailboxId([0x70 + i as u8; 32]));
        cfg.loop_rate = 0.0;
        cfg.replay_capacity = 100_000;
        let mut core = Mix::new(cfg, geometry.clone());
        let key = SecretKey::from_bytes(SCHEME, &m.packet.to_bytes()[..]).unwrap();
        core.add_epoch_key(
            0,
            key,
            EpochWindow {
                start: UnixMicros::ZERO,
                end: UnixMicros(u64::MAX / 4),
                grace: Duration::from_secs(1),
            },
        );
        let rt = MixRuntimeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            link_key: m.link.clone(),
            link: link_config(),
            peers,
            resend: qanat_mixnet::ResendConfig::new(Duration::from_millis(300), Duration::from_secs(300)),
            clock: qanat_mixnet::UnixMicros::ZERO,
            hostile: Default::default(),
        };
        let h = spawn_mix(core, rt, ChaCha20Rng::seed_from_u64(100 + i as u64)).await.unwrap();
        next = (m.id, h.local_addr(), m.link.public_key().clone(), false);
        handles.push(h);
    }
    handles.reverse();

    // The client (standing in for the ingress gateway) sends 200 packets into layer 1.
    let hops: Vec<Hop> = mixes
        .iter()
        .map(|m| Hop { id: m.id, key: m.packet.public_key() })
        .chain([Hop { id: gout.id, key: gout.packet.public_key() }])
        .collect();
    let refs: Vec<&Hop> = hops.iter().collect();
    let sphinx = Sphinx::new(geometry.clone());
    let conn = qanat_link::connect(
        handles[0].local_addr(),
        &client.link,
        mixes[0].link.public_key(),
        link_config(),
        Arc::new(LinkMetrics::default()),
    )
    .await
    .unwrap();
    for i in 0..200u32 {
        let path = path_hops(
            &refs,
            |n| *n == gout.id,
            Duration::from_millis(5),
            Destination::Recipient(MailboxId([9; 32])),
            &mut rng,
        );
        let mut payload = vec![0u8; geometry.forward_payload_len()];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        rng.fill_bytes(&mut payload[4..8]);
        let packet = sphinx.new_packet(&mut rng, &path, &payload).unwrap();
        conn.send(Frame::Packet { id: PacketId(u64::from(i)), packet }).await.unwrap();
    }

    // Let the packets reach the last mix while the gateway is down, then bring it up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, mut rx, sink_task) = sink(sink_addr, &gout, mixes[2].link.public_key().clone(), true).await;
    let mut got = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 200 {
        let p = tokio::time::timeout_at(deadline, rx.recv()).await.expect("all packets within 30 s").unwrap();
        got.insert(u32::from_be_bytes(p[..4].try_into().unwrap()));
    }
    assert_eq!(got.len(), 200);
    // Every packet was acknowledged in the end, after resending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = &handles[2];
    assert_eq!(last.metrics.acked.load(std::sync::atomic::Ordering::Relaxed), 200);
    assert!(last.metrics.resent.load(std::sync::atomic::Ordering::Relaxed) > 0);
    for h in &handles {
        let m = h.core_metrics();
        assert_eq!(m.received, 200, "{m:?}");
        assert_eq!(m.dropped_malformed + m.dropped_replay, 0, "{m:?}");
    }
    for h in handles {
        h.shutdown().await;
    }
    sink_task.abort();
}

/// A gateway played by the test that lies: for every packet it gets, it acknowledges the ids
/// around that packet's (which, from a counter, are the ids of packets sent to other gateways).
async fn liar(keys: &NodeKeys, allowed: LinkPublicKey) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let auth = move |k: &LinkPublicKey| (*k == allowed).then_some(());
    let mut listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        keys.link.clone(),
        link_config(),
        auth,
        Arc::new(LinkMetrics::default()),
    )
    .await
    .unwrap();
    let local = listener.local_addr();
    let task = tokio::spawn(async move {
        while let Some(mut conn) = listener.accept().await {
            tokio::spawn(async move {
                while let Some(f) = conn.recv().await {
                    if let Frame::Packet { id, .. } = f {
                        let ids = (id.0.wrapping_sub(40)..id.0.wrapping_add(40)).map(PacketId).collect();
                        let _ = conn.send(Frame::Ack(ids)).await;
                    }
                }
            });
        }
    });
    (local, task)
}

// Finding: an acknowledgement from any gateway cleared any id, so one gateway could make a mix
// forget what it kept for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cannot_acknowledge_what_was_sent_to_another() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let geometry = Geometry::default_for(SCHEME);
    let client = node(1, &mut rng);
    let (honest, lying) = (node(2, &mut rng), node(3, &mut rng));
    let mix = node(10, &mut rng);
    // The honest gateway is down at first; the lying one is up.
    let (honest_addr, _, first) =
        sink("127.0.0.1:0".parse().unwrap(), &honest, mix.link.public_key().clone(), false).await;
    first.abort();
    let (lying_addr, liar_task) = liar(&lying, mix.link.public_key().clone()).await;
    let peers = HashMap::from([
        (honest.id, Peer { addr: honest_addr, link_key: honest.link.public_key().clone(), gateway: true }),
        (lying.id, Peer { addr: lying_addr, link_key: lying.link.public_key().clone(), gateway: true }),
        (
            client.id,
            Peer {
                addr: "127.0.0.1:9".parse().unwrap(),
                link_key: client.link.public_key().clone(),
                gateway: false,
            },
        ),
    ]);
    let mut cfg = MixConfig::new(mix.id, MailboxId([0x70; 32]));
    cfg.loop_rate = 0.0;
    cfg.replay_capacity = 100_000;
    let mut core = Mix::new(cfg, geometry.clone());
    let key = SecretKey::from_bytes(SCHEME, &mix.packet.to_bytes()[..]).unwrap();
    core.add_epoch_key(
        0,
        key,
        EpochWindow { start: UnixMicros::ZERO, end: UnixMicros(u64::MAX / 4), grace: Duration::from_secs(1) },
    );
    let rt = MixRuntimeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        link_key: mix.link.clone(),
        link: link_config(),
        peers,
        resend: qanat_mixnet::ResendConfig::new(Duration::from_millis(300), Duration::from_secs(300)),
        clock: UnixMicros::ZERO,
        hostile: Default::default(),
    };
    let h = spawn_mix(core, rt, ChaCha20Rng::seed_from_u64(99)).await.unwrap();
    let conn = qanat_link::connect(
        h.local_addr(),
        &client.link,
        mix.link.public_key(),
        link_config(),
        Arc::new(LinkMetrics::default()),
    )
    .await
    .unwrap();
    let sphinx = Sphinx::new(geometry.clone());
    // Interleaved: 20 packets to the honest gateway, 40 to the liar.
    for i in 0..60u32 {
        let to = if i % 3 == 0 { &honest } else { &lying };
        let hops = [
            Hop { id: mix.id, key: mix.packet.public_key() },
            Hop { id: to.id, key: to.packet.public_key() },
        ];
        let refs: Vec<&Hop> = hops.iter().collect();
        let path = path_hops(
            &refs,
            |n| *n == to.id,
            Duration::from_millis(5),
            Destination::Recipient(MailboxId([9; 32])),
            &mut rng,
        );
        let mut payload = vec![0u8; geometry.forward_payload_len()];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        let packet = sphinx.new_packet(&mut rng, &path, &payload).unwrap();
        conn.send(Frame::Packet { id: PacketId(u64::from(i)), packet }).await.unwrap();
    }
    // The liar's acknowledgements come back (naming the honest gateway's ids too); what is kept
    // for the honest gateway stays kept.
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while load(&h.metrics.acked) < 40 || load(&h.metrics.unacked) > 20 {
        assert!(tokio::time::Instant::now() < deadline, "liar's packets not acknowledged: {:?}", h.metrics);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(load(&h.metrics.acked), 40, "an ack from the liar cleared another gateway's packet");
    assert_eq!(load(&h.metrics.unacked), 20);
    assert!(load(&h.metrics.stray_acks) > 0);
    // The honest gateway comes up and gets all 20 by resending.
    let (_, mut rx, sink_task) = sink(honest_addr, &honest, mix.link.public_key().clone(), true).await;
    let mut got = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 20 {
        let p = tokio::time::timeout_at(deadline, rx.recv()).await.expect("all 20 within 30 s").unwrap();
        got.insert(u32::from_be_bytes(p[..4].try_into().unwrap()));
    }
    assert!(got.iter().all(|i| i % 3 == 0));
    h.shutdown().await;
    sink_task.abort();
    liar_task.abort();
}
