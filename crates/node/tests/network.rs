//! A small network over real sockets on 127.0.0.1, in one test process: an ingress gateway, three
//! mix layers and an egress gateway with its SQLite mailbox store. A client registers a mailbox on
//! the egress gateway, sends packets through the ingress gateway, and fetches them: every packet
//! lands in the mailbox exactly once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_link::{
    Connection, Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, PacketId,
};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mixnet::client_proto::{Request, Response};
use qanat_mixnet::{
    Destination, EpochWindow, Gateway, GatewayConfig, Hop, MailboxItem, Mix, MixConfig, Topology, UnixMicros,
    path_hops,
};
use qanat_node::runtime::{GatewayRuntimeConfig, MixRuntimeConfig, Peer, spawn_gateway, spawn_mix};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};

const SCHEME: Scheme = Scheme::X25519Kem;

struct Keys {
    id: NodeId,
    link: Arc<LinkSecretKey>,
    packet: SecretKey,
}

fn keys(n: u8, rng: &mut ChaCha20Rng) -> Keys {
    Keys {
        id: NodeId([n; 32]),
        link: Arc::new(LinkSecretKey::generate(rng)),
        packet: SecretKey::generate(SCHEME, rng),
    }
}

fn copy(k: &SecretKey) -> SecretKey {
    SecretKey::from_bytes(SCHEME, &k.to_bytes()[..]).unwrap()
}

fn link_config() -> LinkConfig {
    LinkConfig::new(FrameSize::for_packet_len(Geometry::default_for(SCHEME).packet_len()).unwrap())
}

fn window() -> EpochWindow {
    EpochWindow { start: UnixMicros::ZERO, end: UnixMicros(u64::MAX / 4), grace: Duration::from_secs(1) }
}

fn peer(addr: std::net::SocketAddr, k: &Keys, gateway: bool) -> Peer {
    Peer { addr, link_key: k.link.public_key().clone(), gateway }
}

async fn control(conn: &mut Connection<LinkPublicKey>, req: Request) -> Vec<Response> {
    conn.send(Frame::Control(req.encode().unwrap())).await.unwrap();
    let mut out = Vec::new();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), conn.recv()).await.unwrap().unwrap();
        let Frame::Control(b) = f else { continue };
        let r = Response::decode(&b).unwrap();
        let done = !matches!(r, Response::Message { .. });
        out.push(r);
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_go_from_a_client_through_three_layers_into_a_mailbox() {
    scenario(false).await;
}

/// A gateway whose disk is full refuses (never acknowledges) what it cannot store: the last mix
/// keeps every packet and sends it again, and nothing lands in the mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_a_full_disk_acknowledges_nothing() {
    scenario(true).await;
}

async fn scenario(full_disk: bool) {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let geometry = Geometry::default_for(SCHEME);
    let (gin, gout) = (keys(1, &mut rng), keys(2, &mut rng));
    let mixes: Vec<Keys> = (0..3).map(|i| keys(10 + i, &mut rng)).collect();
    let client_link = LinkSecretKey::generate(&mut rng);
    let hop = |k: &Keys| Hop { id: k.id, key: k.packet.public_key() };
    let topology = Topology {
        epoch: 0,
        layers: mixes.iter().map(|m| vec![hop(m)]).collect(),
        gateways: vec![hop(&gin), hop(&gout)],
    };
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let unused: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();

    // Egress gateway with its store.
    let dir = tempfile::tempdir().unwrap();
    // A full disk is a database capped at its size when opened (room for the mailbox's
    // registration, none for messages).
    let cap = full_disk.then_some(0);
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("mailboxes.sqlite"),
            SqliteConfig { max_database_bytes: cap, ..SqliteConfig::default() },
        )
        .unwrap(),
    );
    let mut core = Gateway::new(GatewayConfig::new(gout.id), geometry.clone());
    core.add_epoch_key(0, copy(&gout.packet), window());
    core.add_topology(topology.clone());
    let egress = spawn_gateway(
        core,
        store,
        GatewayRuntimeConfig {
            listen: any,
            client_listen: any,
            link_key: gout.link.clone(),
            link: link_config(),
            peers: HashMap::from([(mixes[2].id, peer(unused, &mixes[2], false))]),
            max_batch: 128,
            clock: qanat_mixnet::UnixMicros::ZERO,
            fault_drop_rate: 0.0,
            documents: Default::default(),
            pull_answer_delay: qanat_node::runtime::PULL_ANSWER_DELAY,
            clients: Default::default(),
        },
    )
    .await
    .unwrap();

    // Mixes, last layer first.
    let mut next = (gout.id, peer(egress.local_addr(), &gout, true));
    let mut mix_handles = Vec::new();
    for i in (0..3).rev() {
        let prev = if i == 0 { &gin } else { &mixes[i - 1] };
        let mut cfg = MixConfig::new(mixes[i].id, MailboxId([0x60 + i as u8; 32]));
        cfg.loop_rate = 0.0;
        cfg.replay_capacity = 100_000;
        let mut core = Mix::new(cfg, geometry.clone());
        core.add_epoch_key(0, copy(&mixes[i].packet), window());
        let h = spawn_mix(
            core,
            MixRuntimeConfig {
                listen: any,
                link_key: mixes[i].link.clone(),
                link: link_config(),
                peers: HashMap::from([next.clone(), (prev.id, peer(unused, prev, false))]),
                resend: qanat_mixnet::ResendConfig::new(Duration::from_millis(500), Duration::from_secs(300)),
                clock: qanat_mixnet::UnixMicros::ZERO,
                hostile: Default::default(),
            },
            ChaCha20Rng::seed_from_u64(40 + i as u64),
        )
        .await
        .unwrap();
        next = (mixes[i].id, peer(h.local_addr(), &mixes[i], false));
        mix_handles.push(h);
    }

    // Ingress gateway (its own store is unused here).
    let dir_in = tempfile::tempdir().unwrap();
    let store_in =
        Arc::new(SqliteStore::open(dir_in.path().join("m.sqlite"), SqliteConfig::default()).unwrap());
    let mut core = Gateway::new(GatewayConfig::new(gin.id), geometry.clone());
    core.add_epoch_key(0, copy(&gin.packet), window());
    core.add_topology(topology.clone());
    let ingress = spawn_gateway(
        core,
        store_in,
        GatewayRuntimeConfig {
            listen: any,
            client_listen: any,
            link_key: gin.link.clone(),
            link: link_config(),
            peers: HashMap::from([next.clone()]),
            max_batch: 128,
            clock: qanat_mixnet::UnixMicros::ZERO,
            fault_drop_rate: 0.0,
            documents: Default::default(),
            pull_answer_delay: qanat_node::runtime::PULL_ANSWER_DELAY,
            clients: Default::default(),
        },
    )
    .await
    .unwrap();

    // The recipient registers its mailbox on the egress gateway.
    let metrics = Arc::new(LinkMetrics::default());
    let mut at_egress = qanat_link::connect(
        egress.client_addr(),
        &client_link,
        gout.link.public_key(),
        link_config(),
        metrics.clone(),
    )
    .await
    .unwrap();
    let (mailbox, credential) = (MailboxId([0x4d; 32]), [0x5c; 32]);
    let r = control(&mut at_egress, Request::Register { id: 1, mailbox, credential }).await;
    assert_eq!(r, vec![Response::Ok { id: 1 }]);

    // The sender sends 100 packets through its (ingress) gateway.
    let at_ingress = qanat_link::connect(
        ingress.client_addr(),
        &client_link,
        gin.link.public_key(),
        link_config(),
        metrics,
    )
    .await
    .unwrap();
    let sphinx = Sphinx::new(geometry.clone());
    let hops: Vec<&Hop> = std::iter::once(&topology.gateways[0])
        .chain(topology.layers.iter().map(|l| &l[0]))
        .chain(std::iter::once(&topology.gateways[1]))
        .collect();
    for i in 0..100u32 {
        let path = path_hops(
            &hops,
            |n| *n == gin.id || *n == gout.id,
            Duration::from_millis(5),
            Destination::SurbReply(mailbox, qanat_packet::SurbId([3; 16])),
            &mut rng,
        );
        let mut payload = vec![0u8; geometry.payload_tag_len() + geometry.forward_payload_len()];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        rng.fill_bytes(&mut payload[4..]);
        let packet = sphinx.new_opaque_packet(&mut rng, &path, &payload).unwrap();
        at_ingress.send(Frame::Packet { id: PacketId(u64::from(i)), packet }).await.unwrap();
    }

    if full_disk {
        // What fit before the disk filled up is stored and acknowledged; the rest is neither.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = control(&mut at_egress, Request::Fetch { id: 2, mailbox, credential, after: 0, limit: 200 })
            .await;
        let in_mailbox = r.iter().filter(|r| matches!(r, Response::Message { .. })).count() as u64;
        let m = egress.core_metrics();
        assert_eq!(m.stored, in_mailbox, "{m:?}");
        assert!(m.stored < 20, "the cap let {} packets in", m.stored);
        assert!(m.store_failed >= 100 - m.stored, "{m:?}");
        assert!(egress.metrics.append_failures.load(std::sync::atomic::Ordering::Relaxed) > 0);
        // The last layer's mix (spawned first) got an acknowledgement for exactly what was
        // stored, and keeps sending the rest again.
        let last = &mix_handles[0].metrics;
        assert_eq!(last.acked.load(std::sync::atomic::Ordering::Relaxed), m.stored);
        assert!(last.resent.load(std::sync::atomic::Ordering::Relaxed) >= 100 - m.stored);
        for h in mix_handles {
            h.shutdown().await;
        }
        ingress.shutdown().await;
        egress.shutdown().await;
        return;
    }

    // Fetch until everything is there, then delete.
    let mut got = BTreeSet::new();
    let mut after = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 100 && tokio::time::Instant::now() < deadline {
        for r in
            control(&mut at_egress, Request::Fetch { id: 2, mailbox, credential, after, limit: 50 }).await
        {
            if let Response::Message { seq, item, .. } = r {
                let item = MailboxItem::decode(&item).unwrap();
                assert_eq!(item.id.0, [3; 16]);
                assert!(got.insert(u32::from_be_bytes(item.body[..4].try_into().unwrap())), "duplicate");
                after = seq;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, (0..100).collect::<BTreeSet<_>>());
    let r = control(&mut at_egress, Request::Delete { id: 3, mailbox, credential, up_to: after }).await;
    assert_eq!(r, vec![Response::Ok { id: 3 }]);
    let r = control(&mut at_egress, Request::Fetch { id: 4, mailbox, credential, after: 0, limit: 50 }).await;
    assert_eq!(r, vec![Response::FetchDone { id: 4, more: false }]);
    // A wrong credential is refused.
    let r =
        control(&mut at_egress, Request::Fetch { id: 5, mailbox, credential: [0; 32], after: 0, limit: 5 })
            .await;
    assert!(matches!(r[..], [Response::Error { id: 5, .. }]));

    let m = egress.core_metrics();
    assert_eq!(m.stored, 100, "{m:?}");
    for h in mix_handles {
        h.shutdown().await;
    }
    ingress.shutdown().await;
    egress.shutdown().await;
}
