//! The link over real sockets on 127.0.0.1 (ephemeral ports).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use qanat_link::{
    AcceptAnyKey, Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener,
    PacketId, PeerLink, TrySendError, connect,
};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

// ---- helpers -------------------------------------------------------------------------------

const PACKET_LEN: usize = 2_204;

fn size() -> FrameSize {
    FrameSize::for_packet_len(PACKET_LEN).unwrap()
}

fn config() -> LinkConfig {
    let mut c = LinkConfig::new(size());
    c.network = b"test".to_vec();
    c.handshake_timeout = Duration::from_secs(5);
    c.reconnect_initial = Duration::from_millis(20);
    c.reconnect_max = Duration::from_millis(200);
    c
}

fn key(seed: u64) -> Arc<LinkSecretKey> {
    Arc::new(LinkSecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed)))
}

fn packet(i: u64) -> Frame {
    let mut p = vec![0u8; PACKET_LEN];
    for (j, b) in p.iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    Frame::Packet { id: PacketId(i), packet: p }
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn any_listener(server: &Arc<LinkSecretKey>, config: LinkConfig) -> (Listener<()>, Arc<LinkMetrics>) {
    let m = Arc::new(LinkMetrics::default());
    let l = Listener::bind(localhost(), server.clone(), config, AcceptAnyKey, m.clone()).await.unwrap();
    (l, m)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn expect_packet<F: std::future::Future<Output = Option<Frame>>>(f: F, i: u64) {
    let got = timeout(Duration::from_secs(10), f).await.expect("frame in time");
    assert_eq!(got, Some(packet(i)), "frame {i}");
}

/// A TCP proxy that flips one bit of the next dialer→listener chunk when `flip` is set.
async fn bit_flipping_proxy(target: SocketAddr, flip: Arc<AtomicBool>) -> SocketAddr {
    let l = TcpListener::bind(localhost()).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = l.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else { continue };
            let (mut ir, mut iw) = inbound.into_split();
            let (mut or, mut ow) = outbound.into_split();
            let flip = flip.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = ir.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if flip.swap(false, Ordering::SeqCst) {
                        buf[n - 1] ^= 0x04;
                    }
                    if ow.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = ow.shutdown().await;
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut or, &mut iw).await;
                let _ = iw.shutdown().await;
            });
        }
    });
    addr
}

/// A TCP proxy that forwards dialer→listener bytes as soon as they arrive, but cut into pieces
/// of awkward sizes (one byte, less than a frame, a frame ± 1, several frames and a bit), each
/// written and flushed on its own.
async fn rechunking_proxy(target: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind(localhost()).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = l.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else { continue };
            inbound.set_nodelay(true).unwrap();
            outbound.set_nodelay(true).unwrap();
            let (mut ir, mut iw) = inbound.into_split();
            let (mut or, mut ow) = outbound.into_split();
            tokio::spawn(async move {
                let wire = size().wire_len();
                let pieces = [1, 700, wire - 1, wire + 1, 3 * wire + 5, 2];
                let mut chunk = vec![0u8; 64 * 1024];
                let mut k = 0;
                while let Ok(n) = ir.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let mut rest = &chunk[..n];
                    while !rest.is_empty() {
                        let (piece, tail) = rest.split_at(pieces[k % pieces.len()].min(rest.len()));
                        rest = tail;
                        k += 1;
                        if ow.write_all(piece).await.is_err() || ow.flush().await.is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                let _ = ow.shutdown().await;
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut or, &mut iw).await;
                let _ = iw.shutdown().await;
            });
        }
    });
    addr
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_and_joined_across_reads_arrive_whole_and_in_order() {
    let (server, client) = (key(1), key(2));
    let (mut l, lm) = any_listener(&server, config()).await;
    let proxy = rechunking_proxy(l.local_addr()).await;
    let link = PeerLink::spawn(proxy, server.public_key().clone(), client, config(), Arc::default());
    let sender = link.sender();
    let producer = tokio::spawn(async move {
        for i in 0..300 {
            sender.send(packet(i)).await.unwrap();
        }
    });
    let mut conn = timeout(Duration::from_secs(10), l.accept()).await.unwrap().unwrap();
    for i in 0..300 {
        expect_packet(conn.recv(), i).await;
    }
    producer.await.unwrap();
    assert_eq!(lm.snapshot().bad_frames, 0);
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_frames_arrive_in_order_and_acks_come_back() {
    let (server, client) = (key(1), key(2));
    let (mut l, lm) = any_listener(&server, config()).await;
    let cm = Arc::new(LinkMetrics::default());
    let mut link = PeerLink::spawn(l.local_addr(), server.public_key().clone(), client, config(), cm.clone());
    let sender = link.sender();
    let producer = tokio::spawn(async move {
        for i in 0..10_000 {
            sender.send(packet(i)).await.unwrap();
        }
    });
    let mut conn = l.accept().await.unwrap();
    for i in 0..10_000 {
        expect_packet(conn.recv(), i).await;
        if i % 100 == 99 {
            let ids = (i - 99..=i).map(PacketId).collect();
            conn.send(Frame::Ack(ids)).await.unwrap();
        }
    }
    producer.await.unwrap();
    for batch in 0..100u64 {
        let ack = timeout(Duration::from_secs(10), link.recv()).await.unwrap();
        assert_eq!(ack, Some(Frame::Ack((batch * 100..batch * 100 + 100).map(PacketId).collect())));
    }
    let (c, s) = (cm.snapshot(), lm.snapshot());
    assert!(c.frames_out >= 10_000 && s.frames_in >= 10_000, "{c:?} {s:?}");
    assert_eq!(c.reconnects + s.bad_frames + s.handshake_failures, 0);
    link.shutdown().await;
    assert_eq!(timeout(Duration::from_secs(5), conn.recv()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_static_key_is_rejected() {
    let (server, good, bad) = (key(1), key(2), key(3));
    let allowed = good.public_key().clone();
    let m = Arc::new(LinkMetrics::default());
    let mut l = Listener::bind(
        localhost(),
        server.clone(),
        config(),
        move |k: &LinkPublicKey| (*k == allowed).then_some("node-7"),
        m.clone(),
    )
    .await
    .unwrap();
    let cm = Arc::new(LinkMetrics::default());
    let r = connect(l.local_addr(), &bad, server.public_key(), config(), cm.clone()).await;
    assert!(r.is_err());
    eventually("a rejection", || m.snapshot().auth_rejections == 1).await;

    let c = connect(l.local_addr(), &good, server.public_key(), config(), cm).await.unwrap();
    let conn = l.accept().await.unwrap();
    assert_eq!(*conn.peer(), "node-7");
    c.send(packet(1)).await.unwrap();
    let (_, _, mut rx) = conn.split();
    expect_packet(rx.recv(), 1).await;
    assert_eq!(m.snapshot().auth_rejections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_a_listener_with_another_key_fails() {
    let (server, impostor, client) = (key(1), key(9), key(2));
    let (l, lm) = any_listener(&impostor, config()).await;
    let cm = Arc::new(LinkMetrics::default());
    let r = connect(l.local_addr(), &client, server.public_key(), config(), cm.clone()).await;
    assert!(r.is_err());
    assert_eq!(cm.snapshot().handshake_failures, 1);
    eventually("listener-side failure", || lm.snapshot().handshake_failures == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_handshakes_are_dropped_while_a_good_peer_works() {
    let (server, client) = (key(1), key(2));
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_millis(500);
    let (mut l, lm) = any_listener(&server, cfg.clone()).await;
    let addr = l.local_addr();
    let mut link =
        PeerLink::spawn(addr, server.public_key().clone(), client, cfg, Arc::new(LinkMetrics::default()));
    link.connected().await;
    let mut conn = l.accept().await.unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut bad = Vec::new();
    // Random bytes.
    for len in [1usize, 2, 100, 3_000, 20_000] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        let _ = s.write_all(&junk).await;
        bad.push(s);
    }
    // A plausible length prefix and a truncated message, then EOF.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x09, 0x10]).await.unwrap();
    s.write_all(&[7u8; 100]).await.unwrap();
    s.shutdown().await.unwrap();
    bad.push(s);
    // Silence: the handshake timeout.
    bad.push(TcpStream::connect(addr).await.unwrap());

    for i in 0..200 {
        link.send(packet(i)).await.unwrap();
    }
    for i in 0..200 {
        expect_packet(conn.recv(), i).await;
    }
    eventually("7 handshake failures", || lm.snapshot().handshake_failures == 7).await;
    // The good peer is untouched.
    link.send(packet(200)).await.unwrap();
    expect_packet(conn.recv(), 200).await;
    assert_eq!(lm.snapshot().bad_frames, 0);
    assert!(l.accept_timeout_none().await);
}

trait AcceptNone {
    async fn accept_timeout_none(&mut self) -> bool;
}
impl<P: Send + 'static> AcceptNone for Listener<P> {
    async fn accept_timeout_none(&mut self) -> bool {
        timeout(Duration::from_millis(200), self.accept()).await.is_err()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_kills_the_connection_and_the_dialer_reconnects() {
    let (server, client) = (key(1), key(2));
    let (mut l, lm) = any_listener(&server, config()).await;
    let flip = Arc::new(AtomicBool::new(false));
    let proxy = bit_flipping_proxy(l.local_addr(), flip.clone()).await;
    let cm = Arc::new(LinkMetrics::default());
    let link = PeerLink::spawn(proxy, server.public_key().clone(), client, config(), cm.clone());

    let mut first = l.accept().await.unwrap();
    link.send(packet(0)).await.unwrap();
    expect_packet(first.recv(), 0).await;

    flip.store(true, Ordering::SeqCst);
    link.send(packet(1)).await.unwrap();
    // The tampered frame is never delivered; the connection ends.
    assert_eq!(timeout(Duration::from_secs(10), first.recv()).await.unwrap(), None);
    eventually("a bad frame", || lm.snapshot().bad_frames == 1).await;

    let mut second = timeout(Duration::from_secs(10), l.accept()).await.unwrap().unwrap();
    link.send(packet(2)).await.unwrap();
    expect_packet(second.recv(), 2).await;
    assert!(cm.snapshot().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_restarts_on_the_same_port_and_the_dialer_continues() {
    let (server, client) = (key(1), key(2));
    let (mut l, _) = any_listener(&server, config()).await;
    let addr = l.local_addr();
    let cm = Arc::new(LinkMetrics::default());
    let mut link = PeerLink::spawn(addr, server.public_key().clone(), client, config(), cm.clone());
    let mut conn = l.accept().await.unwrap();
    for i in 0..10 {
        link.send(packet(i)).await.unwrap();
        expect_packet(conn.recv(), i).await;
    }

    l.shutdown().await;
    conn.close().await;
    eventually("disconnect", || !link.is_connected()).await;
    // Frames queued while the peer is down wait for the next connection.
    for i in 10..20 {
        link.send(packet(i)).await.unwrap();
    }
    sleep(Duration::from_millis(300)).await;

    let m = Arc::new(LinkMetrics::default());
    let mut l = Listener::bind(addr, server.clone(), config(), AcceptAnyKey, m).await.unwrap();
    let mut conn = timeout(Duration::from_secs(10), l.accept()).await.unwrap().unwrap();
    link.connected().await;
    for i in 10..20 {
        expect_packet(conn.recv(), i).await;
    }
    assert!(cm.snapshot().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_pushes_back_and_nothing_is_dropped() {
    let (server, client) = (key(1), key(2));
    let mut cfg = config();
    cfg.send_queue = 8;
    cfg.recv_queue = 8;
    cfg.write_timeout = Duration::from_secs(60);
    let (mut l, _) = any_listener(&server, cfg.clone()).await;
    let mut link = PeerLink::spawn(
        l.local_addr(),
        server.public_key().clone(),
        client,
        cfg,
        Arc::new(LinkMetrics::default()),
    );
    link.connected().await;
    let mut conn = l.accept().await.unwrap();

    // Nobody reads: queues and socket buffers fill, then try_send says Full.
    let mut accepted = 0u64;
    let mut full = 0;
    while full < 20 {
        match link.try_send(packet(accepted)) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(f)) => {
                assert_eq!(f, packet(accepted), "the frame is handed back");
                full += 1;
                sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 1_000_000, "never pushed back");
    }
    assert!(accepted > 8);
    // Now read: every accepted frame arrives, in order.
    for i in 0..accepted {
        expect_packet(conn.recv(), i).await;
    }
    assert!(timeout(Duration::from_millis(200), conn.recv()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_hold_an_idle_link_and_a_dead_peer_times_out() {
    let (server, client) = (key(1), key(2));
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(400);
    cfg.keepalive_interval = Duration::from_millis(100);
    let (mut l, lm) = any_listener(&server, cfg.clone()).await;

    // Alive: keepalives every 100 ms, nothing else, for well over the idle timeout.
    let alive =
        connect(l.local_addr(), &client, server.public_key(), cfg.clone(), Arc::new(LinkMetrics::default()))
            .await
            .unwrap();
    let mut conn = l.accept().await.unwrap();
    assert!(timeout(Duration::from_millis(1_200), conn.recv()).await.is_err(), "still open");
    alive.send(packet(1)).await.unwrap();
    expect_packet(conn.recv(), 1).await;
    assert_eq!(lm.snapshot().timeouts, 0);

    // Dead: a peer that never sends keepalives is closed after the idle timeout.
    let mut quiet = cfg.clone();
    quiet.keepalive_interval = Duration::from_secs(3_600);
    quiet.idle_timeout = Duration::from_secs(3_600);
    let _dead =
        connect(l.local_addr(), &client, server.public_key(), quiet, Arc::new(LinkMetrics::default()))
            .await
            .unwrap();
    let mut conn = l.accept().await.unwrap();
    assert_eq!(timeout(Duration::from_secs(5), conn.recv()).await.unwrap(), None);
    assert_eq!(lm.snapshot().timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_frames_are_refused_at_the_sender() {
    let (server, client) = (key(1), key(2));
    let (_l, _) = any_listener(&server, config()).await;
    let link = PeerLink::spawn(
        _l.local_addr(),
        server.public_key().clone(),
        client,
        config(),
        Arc::new(LinkMetrics::default()),
    );
    let short = Frame::Packet { id: PacketId(0), packet: vec![0; 10] };
    assert!(matches!(link.try_send(short), Err(TrySendError::Invalid(..))));
    assert!(matches!(link.try_send(Frame::Ack(vec![])), Err(TrySendError::Invalid(..))));
    let too_long = Frame::Control(vec![1; size().max_control_len() + 1]);
    assert!(link.send(too_long).await.is_err());
}

/// Regression: dropping a connection's sending half used to close the whole connection, so a
/// receive-only user lost frames and the dialer reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_only_connection_stays_open_after_its_sender_is_dropped() {
    let (server, client) = (key(1), key(2));
    let (mut l, _) = any_listener(&server, config()).await;
    let m = Arc::new(LinkMetrics::default());
    let link = PeerLink::spawn(l.local_addr(), server.public_key().clone(), client, config(), m.clone());
    let (_, sender, mut rx) = l.accept().await.unwrap().split();
    drop(sender);
    sleep(Duration::from_millis(100)).await;
    for i in 0..2_000 {
        link.send(packet(i)).await.unwrap();
    }
    for i in 0..2_000 {
        expect_packet(rx.recv(), i).await;
    }
    assert_eq!(m.snapshot().reconnects, 0);
    // Dropping the receiver too closes the connection; the dialer notices and dials again.
    drop(rx);
    eventually("a reconnection", || m.snapshot().reconnects >= 1).await;
    drop(link);
}

/// Regression: a dropped `Listener` kept its accept loop and port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_listener_releases_its_port() {
    let server = key(1);
    let (l, _) = any_listener(&server, config()).await;
    let addr = l.local_addr();
    drop(l);
    eventually("the port to close", || std::net::TcpStream::connect(addr).is_err()).await;
}

/// `Listener::bind_shared`: every connection's frames come out of one receiver, each
/// connection's in order; a full queue pushes back on the peers, and the connections take turns
/// (as on a mix's single-threaded runtime); the receiver ends once the listener and its
/// connections have.
#[tokio::test(flavor = "current_thread")]
async fn a_shared_queue_takes_every_connections_frames_in_turn_and_pushes_back() {
    let server = key(1);
    let mut cfg = config();
    cfg.recv_queue = 8;
    let (mut l, mut rx) =
        Listener::bind_shared(localhost(), server.clone(), cfg.clone(), AcceptAnyKey, Arc::default())
            .await
            .unwrap();
    let links: Vec<PeerLink> = [2, 3]
        .into_iter()
        .map(|k| {
            PeerLink::spawn(l.local_addr(), server.public_key().clone(), key(k), cfg.clone(), Arc::default())
        })
        .collect();
    // The connections themselves are not needed: dropped, they keep delivering.
    for _ in 0..2 {
        let mut c = timeout(Duration::from_secs(10), l.accept()).await.unwrap().unwrap();
        assert_eq!(c.recv().await, None, "a shared listener's connection has no receiver of its own");
    }
    let n = 300u64;
    for (j, link) in links.iter().enumerate() {
        for i in 0..n {
            link.send(packet(j as u64 * 1_000 + i)).await.unwrap();
        }
    }
    // Nobody reads yet: the queue is full and both connections' readers wait.
    sleep(Duration::from_millis(200)).await;
    let mut next = [0u64, 1_000];
    let mut first_hundred = [0usize; 2];
    let mut got = Vec::new();
    for k in 0..2 * n {
        if got.is_empty() {
            assert!(timeout(Duration::from_secs(10), rx.recv_many(&mut got, 16)).await.unwrap() > 0);
            got.reverse();
        }
        let frame = got.pop().unwrap();
        let Frame::Packet { id, .. } = frame else { panic!("not a packet") };
        assert_eq!(frame, packet(id.0));
        let from = usize::from(id.0 >= 1_000);
        assert_eq!(id.0, next[from], "each connection's frames in order");
        next[from] += 1;
        if k < 100 {
            first_hundred[from] += 1;
        }
    }
    assert!(first_hundred.iter().all(|&c| c >= 25), "both connections take turns: {first_hundred:?}");
    for link in links {
        link.shutdown().await;
    }
    l.shutdown().await;
    assert_eq!(timeout(Duration::from_secs(5), rx.recv()).await.unwrap(), None);
}
