//! A gateway's client budgets under attack, over real sockets on loopback, with the gateway in
//! this process: a client flooding packets above its rate (the excess dropped before the core
//! and counted, the session still served, another client untouched, the rate taken from the
//! directory's update), a client flooding registrations (each refused one fails alone, in its
//! operation slot), and a handshake flood on the client port that blocks neither a node's link
//! nor an honest client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_link::{
    Connection, Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, PacketId,
};
use qanat_mailbox::Limits;
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mixnet::client_proto::{ErrorCode, Op, OpResult, PULL_OPS, Request, Response, Want};
use qanat_mixnet::{EpochWindow, Gateway, GatewayConfig, Topology, UnixMicros};
use qanat_node::runtime::{
    ClientBudgets, EpochUpdate, GatewayHandle, GatewayRuntimeConfig, Peer, spawn_gateway,
};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme};
use tokio::net::TcpSocket;
use tokio::time::{Instant, sleep, timeout};

// ---- helpers -------------------------------------------------------------------------------

const SCHEME: Scheme = Scheme::X25519Kem;
/// How long an honest handshake or request may take while an attack runs.
const BOUND: Duration = Duration::from_secs(5);

fn link_config() -> LinkConfig {
    let mut c =
        LinkConfig::new(FrameSize::for_packet_len(Geometry::default_for(SCHEME).packet_len()).unwrap());
    c.handshake_timeout = BOUND;
    c
}

fn key(seed: u64) -> Arc<LinkSecretKey> {
    Arc::new(LinkSecretKey::generate(&mut ChaCha20Rng::seed_from_u64(seed)))
}

struct Gw {
    handle: GatewayHandle,
    key: Arc<LinkSecretKey>,
    _dir: tempfile::TempDir,
}

/// A gateway with `budgets`, `link` settings and the node `peers` it accepts.
async fn gateway(budgets: ClientBudgets, link: LinkConfig, peers: HashMap<NodeId, Peer>) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("mailboxes.sqlite"),
            SqliteConfig { limits: Limits::default(), ..SqliteConfig::default() },
        )
        .unwrap(),
    );
    let key = key(1);
    let core = Gateway::new(GatewayConfig::new(NodeId([1; 32])), Geometry::default_for(SCHEME));
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = spawn_gateway(
        core,
        store,
        GatewayRuntimeConfig {
            listen: any,
            client_listen: any,
            link_key: key.clone(),
            link,
            peers,
            max_batch: 16,
            clock: UnixMicros::ZERO,
            fault_drop_rate: 0.0,
            documents: Default::default(),
            pull_answer_delay: Duration::from_millis(1),
            clients: budgets,
        },
    )
    .await
    .unwrap();
    Gw { handle, key, _dir: dir }
}

async fn client(gw: &Gw, seed: u64) -> Connection<LinkPublicKey> {
    timeout(
        BOUND,
        qanat_link::connect(
            gw.handle.client_addr(),
            &key(seed),
            gw.key.public_key(),
            link_config(),
            Arc::new(LinkMetrics::default()),
        ),
    )
    .await
    .expect("an honest handshake within the bound")
    .expect("an honest handshake succeeds")
}

/// What the directory says about epoch 1: nothing but the clients' rate.
fn update(client_rate: f64) -> EpochUpdate {
    EpochUpdate {
        epoch: 1,
        key: None,
        window: EpochWindow {
            start: UnixMicros::ZERO,
            end: UnixMicros(u64::MAX / 4),
            grace: Duration::from_secs(1),
        },
        topology: Topology { epoch: 1, layers: Vec::new(), gateways: Vec::new() },
        peers: HashMap::new(),
        mean_delay: Duration::from_millis(100),
        loop_rate: 0.0,
        client_rate,
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

fn packet(i: u64) -> Frame {
    Frame::Packet {
        id: PacketId(i),
        packet: vec![(i % 251) as u8; Geometry::default_for(SCHEME).packet_len()],
    }
}

/// A pull of one slot carrying `ops`; the results of its slots.
async fn pull(conn: &mut Connection<LinkPublicKey>, id: u32, ops: Vec<Op>) -> [OpResult; PULL_OPS] {
    let req = Request::Pull { id, limit: 1, want: Want::default(), ops };
    conn.send(Frame::Control(req.encode().unwrap())).await.unwrap();
    let mut head = None;
    // The head and one slot.
    for _ in 0..2 {
        let f = timeout(BOUND, conn.recv()).await.expect("an answer within the bound").unwrap();
        let Frame::Control(b) = f else { panic!("not a control frame") };
        if let Response::PullHead { id: i, results, .. } = Response::decode(&b).unwrap() {
            assert_eq!(i, id);
            head = Some(results);
        }
    }
    head.expect("a head")
}

fn register(i: u8) -> Op {
    Op::Register { mailbox: MailboxId([i; 32]), credential: [i ^ 0xff; 32] }
}

fn unregister(i: u8) -> Op {
    Op::Unregister { mailbox: MailboxId([i; 32]), credential: [i ^ 0xff; 32] }
}

const DONE: OpResult = OpResult::Done;
const LATER: OpResult = OpResult::Failed(ErrorCode::Unavailable);

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_packets_is_held_to_its_budget_and_others_are_not() {
    let mut budgets = ClientBudgets::default();
    budgets.packet_slack = 4.0;
    budgets.packet_burst = 8;
    let gw = gateway(budgets, link_config(), HashMap::new()).await;
    let m = gw.handle.metrics.clone();
    let over = || m.client_packets_over_budget.load(Ordering::Relaxed);
    let ingress = || gw.handle.core_metrics().ingress;

    // The directory's clients send λ_P + λ_L + λ_D = 0.25 packets a second: the budget is
    // 1 a second with a burst of 8. Sessions opened from now on see it (a fresh session of 20
    // packets finds them over budget).
    gw.handle.update(update(0.25)).await.unwrap();
    let mut probe_sent = 0;
    for attempt in 0.. {
        let probe = client(&gw, 100 + attempt).await;
        for i in 0..20 {
            probe.send(packet(i)).await.unwrap();
        }
        probe_sent += 20;
        eventually("the probe's packets", || ingress() + over() == probe_sent).await;
        if over() > 0 {
            break;
        }
        assert!(attempt < 100, "the directory's rate never applied");
    }
    let (over0, ingress0) = (over(), ingress());

    // The flooder: 300 packets as fast as the link takes them.
    let flooder = client(&gw, 2).await;
    let start = Instant::now();
    for i in 0..300 {
        flooder.send(packet(i)).await.unwrap();
    }
    eventually("the flood to be counted", || ingress() + over() == probe_sent + 300).await;
    let elapsed = start.elapsed().as_secs_f64();
    let admitted = ingress() - ingress0;
    // A token bucket admits at most its burst plus its rate times the time (plus one for the
    // measurement's rounding), however fast or slow this machine is.
    assert!(admitted as f64 <= 8.0 + elapsed * 1.0 + 1.0, "{admitted} admitted in {elapsed:.2} s");
    assert_eq!(over() - over0, 300 - admitted);

    // The flooder's session is still served (a pull is answered), and another client's
    // packets all go through.
    let mut flooder = flooder;
    assert_eq!(pull(&mut flooder, 1, vec![]).await, [DONE; PULL_OPS]);
    let honest = client(&gw, 3).await;
    let over1 = over();
    for i in 0..5 {
        honest.send(packet(i)).await.unwrap();
    }
    eventually("the honest client's packets", || ingress() == ingress0 + admitted + 5).await;
    assert_eq!(over(), over1, "an honest client lost packets");

    // A document with a (absurdly) higher rate raises every new session's budget: 50 packets
    // back to back then fit.
    gw.handle.update(update(1e9)).await.unwrap();
    for attempt in 0.. {
        let (before_over, before_in) = (over(), ingress());
        let c = client(&gw, 200 + attempt).await;
        for i in 0..50 {
            c.send(packet(i)).await.unwrap();
        }
        eventually("the packets", || ingress() + over() == before_in + before_over + 50).await;
        if over() == before_over {
            break;
        }
        assert!(attempt < 100, "the directory's new rate never applied");
    }
    eprintln!("packet flood: {admitted} of 300 admitted in {elapsed:.2} s at 1 packet/s with a burst of 8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_fails_only_the_refused_registrations() {
    // A burst of 8 registrations, then (practically) none; at most 6 mailboxes per session.
    let mut budgets = ClientBudgets::default();
    budgets.registrations_per_second = 0.001;
    budgets.registration_burst = 8;
    budgets.max_mailboxes = 6;
    let gw = gateway(budgets, link_config(), HashMap::new()).await;
    let m = gw.handle.metrics.clone();
    let mut flooder = client(&gw, 2).await;

    // Eight registrations: six fit the session, two are refused at its bound.
    let r = pull(&mut flooder, 1, (1..=8).map(register).collect()).await;
    assert_eq!(r, [DONE, DONE, DONE, DONE, DONE, DONE, LATER, LATER]);
    assert_eq!(m.registrations_refused.load(Ordering::Relaxed), 2);
    // Room for one after an unregistration; the rate has two left.
    let r = pull(&mut flooder, 2, vec![unregister(1), register(9), register(10)]).await;
    assert_eq!(r[..3], [DONE, DONE, LATER]);
    let r = pull(&mut flooder, 3, vec![unregister(2), register(11)]).await;
    assert_eq!(r[..2], [DONE, DONE]);
    // Now the rate is spent: the registration fails alone; the unregistration and a deletion in
    // the same pull are carried out, and the session goes on.
    let delete = Op::Delete { mailbox: MailboxId([3; 32]), credential: [3 ^ 0xff; 32], up_to: 1 };
    let r = pull(&mut flooder, 4, vec![unregister(4), register(12), delete]).await;
    assert_eq!(r[..3], [DONE, LATER, DONE]);
    assert_eq!(m.registrations_rate_limited.load(Ordering::Relaxed), 1);
    // The one-frame registration is held to the same budgets.
    let req = Request::Register { id: 9, mailbox: MailboxId([13; 32]), credential: [0; 32] };
    flooder.send(Frame::Control(req.encode().unwrap())).await.unwrap();
    let f = timeout(BOUND, flooder.recv()).await.unwrap().unwrap();
    let Frame::Control(b) = f else { panic!("not a control frame") };
    assert_eq!(Response::decode(&b).unwrap(), Response::Error { id: 9, code: ErrorCode::Unavailable });
    assert_eq!(m.registrations_rate_limited.load(Ordering::Relaxed), 2);

    // Another session is not affected.
    let mut honest = client(&gw, 3).await;
    assert_eq!(pull(&mut honest, 1, vec![register(50)]).await[0], DONE);
}

/// A TCP connection to `to` from 127.0.0.`last`.
async fn tcp_from(last: u8, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from(([127, 0, 0, last], 0)))?;
    s.connect(to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_on_the_client_port_blocks_neither_nodes_nor_honest_clients() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    if tcp_from(2, probe.local_addr().unwrap()).await.is_err() {
        eprintln!("skipped: cannot bind 127.0.0.2 on this machine");
        return;
    }
    let mix_key = key(7);
    let mix = NodeId([7; 32]);
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let peers =
        HashMap::from([(mix, Peer { addr: unused, link_key: mix_key.public_key().clone(), gateway: false })]);
    let mut link = link_config();
    link.max_pending_handshakes = 16;
    link.max_pending_handshakes_per_ip = 3;
    link.handshake_timeout = Duration::from_secs(30);
    let gw = gateway(ClientBudgets::default(), link, peers).await;
    let client_links = gw.handle.metrics.client_links.clone();

    // Holders of silent connections from 127.0.0.2 to 127.0.0.9, 6 each, re-opened every 300 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let to = gw.handle.client_addr();
    let mut attackers = Vec::new();
    for last in 2u8..=9 {
        for _ in 0..6 {
            let stop = stop.clone();
            attackers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let s = tcp_from(last, to).await;
                    sleep(Duration::from_millis(300)).await;
                    drop(s);
                }
            }));
        }
    }
    eventually("the flood to fill the client port's table", || {
        let s = client_links.snapshot();
        s.handshakes_in_flight == 16 && s.refused_handshakes_per_ip > 0 && s.handshake_evictions > 0
    })
    .await;

    // A mix dials the node port: a listener of its own, untouched by the flood.
    let node = timeout(
        BOUND,
        qanat_link::connect(
            gw.handle.local_addr(),
            &mix_key,
            gw.key.public_key(),
            link_config(),
            Arc::new(LinkMetrics::default()),
        ),
    )
    .await
    .expect("the node link within the bound");
    assert!(node.is_ok());
    // Honest clients (from 127.0.0.1) on the client port take the place of flooders'
    // handshakes.
    let mut honest = Vec::new();
    for seed in 0..3 {
        honest.push(client(&gw, 300 + seed).await);
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    let s = client_links.snapshot();
    assert_eq!(s.handshakes, 3, "{s:?}");
    assert_eq!(gw.handle.probe().links.snapshot().handshake_evictions, 0, "the node port saw no flood");
    eprintln!(
        "client port flood: {} refused per address, {} evicted; node link and 3 clients connected",
        s.refused_handshakes_per_ip, s.handshake_evictions
    );
}
