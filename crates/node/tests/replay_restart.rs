//! A mix's replay protection survives SIGKILL: a mix in its own process (this test binary run
//! again as a child, `QANAT_REPLAY_CHILD` naming its data directory) forwards packets over real
//! links to a sink, is killed with SIGKILL by PID in the middle of its epoch, and is started again
//! on the same data directory; replays of the packets it forwarded before are then dropped
//! (counted by its Prometheus counter), while a fresh packet still goes through.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_link::http::{self, MetricsServer, RenderMetrics};
use qanat_link::{
    Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener, PacketId,
};
use qanat_mixnet::{EpochWindow, Mix, MixConfig, UnixMicros};
use qanat_node::ReplayLog;
use qanat_node::runtime::{MixRuntimeConfig, Peer, spawn_mix_with_replay_log};
use qanat_node::service::metrics::{self, Exposition};
use qanat_packet::{
    Geometry, MailboxId, NodeDelay, NodeId, PathHop, RoutingCommand, Scheme, SecretKey, Sphinx,
};

const SCHEME: Scheme = Scheme::X25519Nike;
const CHILD_ENV: &str = "QANAT_REPLAY_CHILD";
const SINK_ENV: &str = "QANAT_REPLAY_SINK";
const READY: &str = "QANAT-REPLAY-READY";
const MIX: NodeId = NodeId([1; 32]);
const SINK: NodeId = NodeId([2; 32]);
const SENDER: NodeId = NodeId([3; 32]);

/// Every key of the test, the same in the parent and the child.
struct Keys {
    mix_packet: SecretKey,
    sink_packet: SecretKey,
    mix_link: Arc<LinkSecretKey>,
    sink_link: Arc<LinkSecretKey>,
    sender_link: Arc<LinkSecretKey>,
}

fn keys() -> Keys {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    Keys {
        mix_packet: SecretKey::generate(SCHEME, &mut rng),
        sink_packet: SecretKey::generate(SCHEME, &mut rng),
        mix_link: Arc::new(LinkSecretKey::generate(&mut rng)),
        sink_link: Arc::new(LinkSecretKey::generate(&mut rng)),
        sender_link: Arc::new(LinkSecretKey::generate(&mut rng)),
    }
}

fn link_config() -> LinkConfig {
    LinkConfig::new(FrameSize::for_packet_len(Geometry::default_for(SCHEME).packet_len()).unwrap())
}

/// The child: one mix with its replay log in `QANAT_REPLAY_CHILD`, serving metrics, until killed.
/// Run as a plain test (no variable set) it does nothing.
#[test]
fn child_mix() {
    let Ok(data_dir) = std::env::var(CHILD_ENV) else { return };
    let sink: SocketAddr = std::env::var(SINK_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async move {
        let k = keys();
        let mut cfg = MixConfig::new(MIX, MailboxId([9; 32]));
        cfg.loop_rate = 0.0;
        cfg.replay_capacity = 100_000;
        let mut core = Mix::new(cfg, Geometry::default_for(SCHEME));
        // One epoch key, live for the whole test: the restart is in the middle of its epoch.
        let window = EpochWindow {
            start: UnixMicros::ZERO,
            end: UnixMicros(u64::MAX / 4),
            grace: Duration::from_secs(1),
        };
        core.add_epoch_key(5, k.mix_packet, window);
        let log = ReplayLog::open(Path::new(&data_dir), |e| e == 5).unwrap();
        let peers = HashMap::from([
            (SINK, Peer { addr: sink, link_key: k.sink_link.public_key().clone(), gateway: false }),
            (
                SENDER,
                Peer {
                    addr: "127.0.0.1:9".parse().unwrap(),
                    link_key: k.sender_link.public_key().clone(),
                    gateway: false,
                },
            ),
        ]);
        let rc = MixRuntimeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            link_key: k.mix_link.clone(),
            link: link_config(),
            peers,
            resend: qanat_mixnet::ResendConfig::new(Duration::from_secs(2), Duration::from_secs(300)),
            clock: UnixMicros::ZERO,
            hostile: Default::default(),
        };
        let h = spawn_mix_with_replay_log(core, rc, ChaCha20Rng::seed_from_u64(1), log).await.unwrap();
        let probe = h.probe();
        let render: RenderMetrics = Arc::new(move || {
            let mut e = Exposition::default();
            metrics::mix(&mut e, &probe, 1.0);
            e.finish()
        });
        let m = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), render).await.unwrap();
        println!("{READY} {} {}", h.local_addr(), m.local_addr());
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
}

/// A running child mix; killed with SIGKILL when dropped.
struct MixProcess {
    child: Child,
    link: SocketAddr,
    metrics: SocketAddr,
}

impl MixProcess {
    fn start(data_dir: &Path, sink: SocketAddr) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_mix", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, data_dir)
            .env(SINK_ENV, sink.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // The READY line comes once the mix listens (or the child dies and the lines end); the
        // test harness may print its own words before it on the same line.
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.split_once(READY).map(|(_, addrs)| addrs.to_owned()))
            .expect("the child mix did not start");
        let mut parts = ready.split_whitespace().map(|a| a.parse::<SocketAddr>().unwrap());
        let (link, metrics) = (parts.next().unwrap(), parts.next().unwrap());
        // Keep draining the child's output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, link, metrics }
    }

    /// SIGKILL, by PID (what `Child::kill` sends on Unix), and reap it.
    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the child was killed, not finished: {status:?}");
    }

    async fn metric(&self, name: &str) -> f64 {
        let Ok((_, body)) = http::get(self.metrics, "/metrics", Duration::from_secs(5)).await else {
            return -1.0;
        };
        body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok()).unwrap_or(-1.0)
    }

    /// Waits up to `within` until every metric has its value; fails with the last values.
    async fn wait_for(&self, want: &[(&str, f64)], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let mut got = Vec::new();
            for (name, _) in want {
                got.push(self.metric(name).await);
            }
            if want.iter().zip(&got).all(|((_, w), g)| w == g) {
                return;
            }
            assert!(Instant::now() < deadline, "waited {within:?} for {want:?}, last read {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MixProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next hop of the mix: counts the packets it receives.
async fn sink(k: &Keys) -> (SocketAddr, Arc<AtomicU64>) {
    let allowed = k.mix_link.public_key().clone();
    let auth = move |key: &LinkPublicKey| (*key == allowed).then_some(());
    let mut l = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        k.sink_link.clone(),
        link_config(),
        auth,
        Arc::new(LinkMetrics::default()),
    )
    .await
    .unwrap();
    let addr = l.local_addr();
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    tokio::spawn(async move {
        while let Some(mut c) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                while let Some(f) = c.recv().await {
                    if let Frame::Packet { .. } = f {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Sends `packets` to the mix on a new link.
async fn send(k: &Keys, mix: &MixProcess, packets: &[Vec<u8>]) {
    let conn = qanat_link::connect(
        mix.link,
        &k.sender_link,
        k.mix_link.public_key(),
        link_config(),
        Arc::new(LinkMetrics::default()),
    )
    .await
    .unwrap();
    for (i, p) in packets.iter().enumerate() {
        conn.send(Frame::Packet { id: PacketId(i as u64), packet: p.clone() }).await.unwrap();
    }
    conn.close().await;
}

async fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_killed_mid_epoch_drops_replays_of_what_it_forwarded_before() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let k = keys();
    let data = tempfile::tempdir().unwrap();
    let (sink_addr, received) = sink(&k).await;
    let sphinx = Sphinx::new(Geometry::default_for(SCHEME));
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let path = vec![
        PathHop {
            id: MIX,
            public_key: k.mix_packet.public_key(),
            commands: vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 0 })],
        },
        PathHop {
            id: SINK,
            public_key: k.sink_packet.public_key(),
            commands: vec![RoutingCommand::Recipient(MailboxId([4; 32]))],
        },
    ];
    let payload = vec![0u8; sphinx.geometry().forward_payload_len()];
    let mut packet = || sphinx.new_packet(&mut rng, &path, &payload).unwrap();
    let forwarded: Vec<Vec<u8>> = (0..30).map(|_| packet()).collect();
    let within = Duration::from_secs(20);

    // 1. The mix forwards 30 packets; a replay of one is dropped while it runs.
    let mut mix = MixProcess::start(data.path(), sink_addr);
    send(&k, &mix, &forwarded).await;
    wait_until("30 packets at the sink", within, || received.load(Ordering::Relaxed) == 30).await;
    send(&k, &mix, &forwarded[..1]).await;
    mix.wait_for(&[("qanat_mix_dropped_replay_total", 1.0)], within).await;

    // 2. SIGKILL: no shutdown, nothing flushed but what was already durable.
    mix.sigkill();
    let log = data.path().join("replay").join("epoch-5.tags");
    assert!(log.exists(), "no replay log at {}", log.display());

    // 3. Restarted on the same data directory: the 30 tags are read back, every replay of a
    // forwarded packet is dropped, and a fresh packet goes through.
    let mix = MixProcess::start(data.path(), sink_addr);
    mix.wait_for(&[("qanat_replay_tags_restored_total", 30.0)], within).await;
    let mut replays = forwarded.clone();
    replays.push(packet());
    send(&k, &mix, &replays).await;
    mix.wait_for(
        &[
            ("qanat_mix_packets_received_total", 31.0),
            ("qanat_mix_dropped_replay_total", 30.0),
            ("qanat_mix_packets_forwarded_total", 1.0),
        ],
        within,
    )
    .await;
    wait_until("the fresh packet at the sink", within, || received.load(Ordering::Relaxed) == 31).await;
    // The fresh packet's tag is logged too (so a second crash would keep it).
    mix.wait_for(&[("qanat_replay_log_tags_total", 1.0)], within).await;
    assert_eq!(received.load(Ordering::Relaxed), 31, "a replay reached the next hop");
}
