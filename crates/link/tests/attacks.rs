//! The listener's budgets under attack, over real sockets on loopback: a handshake flood and
//! slowloris dialers from eight addresses (127.0.0.2 to 127.0.0.9, so that per-address
//! accounting is exercised; Linux routes all of 127.0.0.0/8 to loopback), and a peer holding too
//! many connections. In each, an honest peer dialling from 127.0.0.1 completes its handshake
//! within its own handshake timeout (the stated bound, 5 s) while the attack runs, the counters
//! show the attack, and the handshakes in flight never exceed the table's bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use qanat_link::{
    AcceptAnyKey, Frame, FrameSize, LinkConfig, LinkMetrics, LinkSecretKey, Listener, PacketId, connect,
};
use rand::SeedableRng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

// ---- helpers -------------------------------------------------------------------------------

const PACKET_LEN: usize = 2_204;
/// How long an honest handshake may take while an attack runs: the dialer's handshake timeout.
const HONEST_BOUND: Duration = Duration::from_secs(5);

fn config() -> LinkConfig {
    let mut c = LinkConfig::new(FrameSize::for_packet_len(PACKET_LEN).unwrap());
    c.network = b"attacks".to_vec();
    c.handshake_timeout = HONEST_BOUND;
    c
}

fn key(seed: u64) -> Arc<LinkSecretKey> {
    Arc::new(LinkSecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed)))
}

async fn listener(server: &Arc<LinkSecretKey>, config: LinkConfig) -> (Listener<()>, Arc<LinkMetrics>) {
    let m = Arc::new(LinkMetrics::default());
    let l = Listener::bind("127.0.0.1:0".parse().unwrap(), server.clone(), config, AcceptAnyKey, m.clone())
        .await
        .unwrap();
    (l, m)
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A TCP connection to `to` from 127.0.0.`last`.
async fn tcp_from(last: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from(([127, 0, 0, last], 0)))?;
    s.connect(to).await
}

/// Whether this machine lets a socket bind 127.0.0.2 (Linux does).
async fn other_loopback_addresses_work() -> bool {
    let Ok(l) = tokio::net::TcpListener::bind("127.0.0.1:0").await else { return false };
    tcp_from(2, l.local_addr().unwrap()).await.is_ok()
}

/// What an attack does with each connection it opens.
#[derive(Clone, Copy)]
enum Style {
    /// Opens it and holds it for 500 ms, sending nothing.
    Flood,
    /// Sends a plausible first handshake message one byte every 200 ms.
    Slowloris,
}

/// Attackers from 127.0.0.2..=127.0.0.9, each keeping up to `per_address` connections open
/// (re-opening those the listener closes) until `stop`.
fn attack(to: SocketAddr, style: Style, per_address: usize, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (2u8..=9)
        .flat_map(|last| (0..per_address).map(move |_| last))
        .map(|last| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = tcp_from(last, to).await else {
                        sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    match style {
                        Style::Flood => {
                            // Hold it a while (the listener may close it first), then again.
                            sleep(Duration::from_millis(500)).await;
                        }
                        Style::Slowloris => {
                            // u16 length 2,320 (a real first message's), then the message
                            // crawling in; a closed connection ends the write.
                            let mut msg = vec![0x09, 0x10];
                            msg.resize(2 + 2_320, 0x5a);
                            for b in msg {
                                if stop.load(Ordering::Relaxed) || s.write_all(&[b]).await.is_err() {
                                    break;
                                }
                                sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                    drop(s);
                }
            })
        })
        .collect()
}

/// Samples `metrics.handshakes_in_flight` until `stop`; returns the largest value seen.
fn watch_in_flight(metrics: Arc<LinkMetrics>, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            most = most.max(metrics.handshakes_in_flight.load(Ordering::Relaxed));
            sleep(Duration::from_millis(5)).await;
        }
        most
    })
}

/// Five honest dialers in turn from 127.0.0.1, each of which must complete its handshake within
/// [`HONEST_BOUND`], be accepted, and carry a frame.
async fn honest_peers_get_through(l: &mut Listener<()>, server: &Arc<LinkSecretKey>) {
    for i in 0..5u64 {
        let client = key(100 + i);
        let conn = timeout(
            HONEST_BOUND,
            connect(l.local_addr(), &client, server.public_key(), config(), Arc::new(LinkMetrics::default())),
        )
        .await
        .unwrap_or_else(|_| panic!("honest handshake {i} took longer than {HONEST_BOUND:?}"))
        .unwrap_or_else(|e| panic!("honest handshake {i} failed: {e}"));
        let mut accepted = timeout(HONEST_BOUND, l.accept()).await.expect("accepted in time").unwrap();
        conn.send(Frame::Packet { id: PacketId(i), packet: vec![7; PACKET_LEN] }).await.unwrap();
        let got = timeout(HONEST_BOUND, accepted.recv()).await.expect("frame in time");
        assert!(matches!(got, Some(Frame::Packet { id, .. }) if id == PacketId(i)));
    }
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_from_eight_addresses_does_not_lock_out_an_honest_peer() {
    if !other_loopback_addresses_work().await {
        eprintln!("skipped: cannot bind 127.0.0.2 on this machine");
        return;
    }
    let server = key(1);
    let mut cfg = config();
    // Eight addresses at their bound of 6 hold 48 > 32 places: the table stays full and every
    // newcomer must take an attacker's place. The handshake timeout (30 s) outlives the test, so
    // only evictions free places.
    cfg.max_pending_handshakes = 32;
    cfg.max_pending_handshakes_per_ip = 6;
    cfg.handshake_timeout = Duration::from_secs(30);
    let (mut l, m) = listener(&server, cfg).await;
    let stop = Arc::new(AtomicBool::new(false));
    let most = watch_in_flight(m.clone(), stop.clone());
    let attackers = attack(l.local_addr(), Style::Flood, 24, stop.clone());

    eventually("the flood to fill the table and be refused per address", || {
        let s = m.snapshot();
        s.handshake_evictions > 0 && s.refused_handshakes_per_ip > 0 && s.handshakes_in_flight == 32
    })
    .await;
    honest_peers_get_through(&mut l, &server).await;

    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    let most = most.await.unwrap();
    let s = m.snapshot();
    assert!(most <= 32, "{most} handshakes in flight, bound 32");
    assert_eq!(s.handshakes, 5, "{s:?}");
    assert!(s.handshake_evictions >= 5, "{s:?}");
    eprintln!(
        "flood: {} refused per address, {} evicted, most in flight {most}",
        s.refused_handshakes_per_ip, s.handshake_evictions
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_dialers_from_eight_addresses_time_out_and_do_not_lock_out_an_honest_peer() {
    if !other_loopback_addresses_work().await {
        eprintln!("skipped: cannot bind 127.0.0.2 on this machine");
        return;
    }
    let server = key(1);
    let mut cfg = config();
    // 8 addresses × 4 = the whole table: each honest dialer takes a crawling attacker's place.
    cfg.max_pending_handshakes = 32;
    cfg.max_pending_handshakes_per_ip = 4;
    cfg.handshake_timeout = Duration::from_secs(2);
    let (mut l, m) = listener(&server, cfg).await;
    let stop = Arc::new(AtomicBool::new(false));
    let most = watch_in_flight(m.clone(), stop.clone());
    let attackers = attack(l.local_addr(), Style::Slowloris, 5, stop.clone());

    eventually("the crawling dialers to fill the table", || {
        let s = m.snapshot();
        s.handshakes_in_flight == 32 && s.refused_handshakes_per_ip > 0
    })
    .await;
    honest_peers_get_through(&mut l, &server).await;
    eventually("crawling handshakes to time out", || m.snapshot().handshake_timeouts > 0).await;

    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    let most = most.await.unwrap();
    let s = m.snapshot();
    assert!(most <= 32, "{most} handshakes in flight, bound 32");
    assert_eq!(s.handshakes, 5, "{s:?}");
    assert!(s.handshake_evictions >= 1, "{s:?}");
    eprintln!(
        "slowloris: {} timed out, {} evicted, {} refused per address, most in flight {most}",
        s.handshake_timeouts, s.handshake_evictions, s.refused_handshakes_per_ip
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_bounds_are_refused_and_a_freed_place_is_reused() {
    let server = key(1);
    let dial = |server: Arc<LinkSecretKey>, addr: SocketAddr, seed: u64| async move {
        timeout(
            HONEST_BOUND,
            connect(addr, &key(seed), server.public_key(), config(), Arc::new(LinkMetrics::default())),
        )
        .await
        .expect("an answer in time")
    };

    // Per address: three connections from 127.0.0.1, then the fourth is refused.
    let mut cfg = config();
    cfg.max_connections_per_ip = 3;
    let (mut l, m) = listener(&server, cfg).await;
    let (mut held, mut accepted) = (Vec::new(), Vec::new());
    for seed in 10..13 {
        held.push(dial(server.clone(), l.local_addr(), seed).await.unwrap());
        accepted.push(l.accept().await.unwrap());
    }
    assert!(dial(server.clone(), l.local_addr(), 13).await.is_err());
    assert_eq!(m.snapshot().refused_connections_per_ip, 1);
    // One closes: its place is free again once the listener's side has ended.
    held.pop().unwrap().close().await;
    eventually("the closed connection to end", || m.snapshot().connections_open == 2).await;
    held.push(dial(server.clone(), l.local_addr(), 14).await.unwrap());
    accepted.push(l.accept().await.unwrap());

    // In all: two connections, then the third is refused.
    let mut cfg = config();
    cfg.max_connections = 2;
    let (mut l, m) = listener(&server, cfg).await;
    for seed in 20..22 {
        held.push(dial(server.clone(), l.local_addr(), seed).await.unwrap());
        accepted.push(l.accept().await.unwrap());
    }
    assert!(dial(server.clone(), l.local_addr(), 22).await.is_err());
    let s = m.snapshot();
    assert_eq!((s.refused_connections, s.connections_open), (1, 2), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_disconnected_after_the_write_timeout() {
    let (server, client) = (key(1), key(2));
    let mut cfg = config();
    cfg.write_timeout = Duration::from_millis(500);
    cfg.send_queue = 64;
    let (mut l, m) = listener(&server, cfg.clone()).await;
    // The dialer reads into a queue of 8 frames that nobody empties: then it stops reading its
    // socket, and the socket buffers fill. It still sends keepalives, so only the listener's
    // writes show that it is stuck.
    let mut dial_cfg = cfg.clone();
    dial_cfg.recv_queue = 8;
    let _stuck =
        connect(l.local_addr(), &client, server.public_key(), dial_cfg, Arc::new(LinkMetrics::default()))
            .await
            .unwrap();
    let conn = l.accept().await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let (sender, counted) = (conn.sender(), sent.clone());
    let writer = tokio::spawn(async move {
        let mut i = 0;
        // `send` waits while the queue (64 frames) is full, and fails once the connection ended.
        while sender.send(Frame::Packet { id: PacketId(i), packet: vec![1; PACKET_LEN] }).await.is_ok() {
            i += 1;
            counted.store(i, Ordering::Relaxed);
        }
    });
    eventually("the write timeout to close the connection", || m.snapshot().timeouts == 1).await;
    timeout(Duration::from_secs(10), writer).await.expect("sending fails once closed").unwrap();
    eventually("the connection to be gone", || m.snapshot().connections_open == 0).await;
    // What was buffered is bounded by the queues and the socket buffers, whatever the writer
    // tried to send.
    eprintln!(
        "slow reader: {} frames queued before the write timeout closed it",
        sent.load(Ordering::Relaxed)
    );
}
