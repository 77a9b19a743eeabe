//! One mix node over real loopback links: packets per second in and out on one core, against the
//! per-hop unwrap cost, and the latency the node adds at half that rate.
//!
//! `cargo bench -p qanat-node --bench mix_node` prints a table (recorded in docs/BENCHMARKS.md).
//! The mix runs alone on a single-threaded runtime on its own OS thread (one core); the sender and
//! the sink share the other core. Every packet asks for zero delay, so what is measured is the
//! node's own work: link decryption, unwrap, queueing, link encryption. `QANAT_BENCH_PACKETS`
//! packets (default 20,000) are measured, half at saturation and half paced, after
//! `QANAT_BENCH_WARMUP` unmeasured ones (default 4,000; see the warm-up below). With
//! `QANAT_BENCH_REPLAY_LOG=DIR` the mix keeps its replay log in `DIR` (as `qanat node run` does
//! in its data directory; use a directory on the disk to measure, not a tmpfs) and the table adds
//! the log's appends and `fdatasync`s.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_link::{
    Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener, PacketId,
};
use qanat_mixnet::{EpochWindow, Mix, MixConfig, UnixMicros};
use qanat_node::ReplayLog;
use qanat_node::runtime::{MixRuntimeConfig, Peer, spawn_mix, spawn_mix_with_replay_log};
use qanat_packet::{
    Geometry, MailboxId, NodeDelay, NodeId, PathHop, RoutingCommand, Scheme, SecretKey, Sphinx,
};

const SCHEME: Scheme = Scheme::X25519Kem;

fn link_config() -> LinkConfig {
    let mut c =
        LinkConfig::new(FrameSize::for_packet_len(Geometry::default_for(SCHEME).packet_len()).unwrap());
    c.send_queue = 4096;
    c.recv_queue = 4096;
    c
}

/// Nanoseconds the thread behind `schedstat` (a `/proc/.../schedstat` path) has run on a CPU.
fn cpu_ns(schedstat: &str) -> Option<u64> {
    std::fs::read_to_string(schedstat).ok()?.split_whitespace().next()?.parse().ok()
}

/// This thread's `schedstat` path, as seen from any thread of the process.
fn this_thread_schedstat() -> String {
    let task = std::fs::read_link("/proc/thread-self").map(|p| p.display().to_string()).unwrap_or_default();
    format!("/proc/{task}/schedstat")
}

struct Setup {
    mix_addr: std::net::SocketAddr,
    sender_key: Arc<LinkSecretKey>,
    mix_link_pub: LinkPublicKey,
    received: Arc<AtomicU64>,
    arrivals: Arc<std::sync::Mutex<Vec<(u64, Instant)>>>,
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let geometry = Geometry::default_for(SCHEME);
    let sphinx = Sphinx::new(geometry.clone());
    let mix_key = SecretKey::generate(SCHEME, &mut rng);
    let sink_key = SecretKey::generate(SCHEME, &mut rng);
    let (mix_id, sink_id) = (NodeId([1; 32]), NodeId([2; 32]));
    let mix_link = Arc::new(LinkSecretKey::generate(&mut rng));
    let sink_link = Arc::new(LinkSecretKey::generate(&mut rng));
    let sender_link = Arc::new(LinkSecretKey::generate(&mut rng));

    // Pre-build the packets: mix (delay 0) then the sink.
    let n: usize = std::env::var("QANAT_BENCH_PACKETS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    // Warm-up packets, sent first and not measured (see below).
    let warm: usize = std::env::var("QANAT_BENCH_WARMUP").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000);
    let path = vec![
        PathHop {
            id: mix_id,
            public_key: mix_key.public_key(),
            commands: vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 0 })],
        },
        PathHop {
            id: sink_id,
            public_key: sink_key.public_key(),
            commands: vec![RoutingCommand::Recipient(MailboxId([3; 32]))],
        },
    ];
    let payload = vec![0x42u8; geometry.forward_payload_len()];
    let t = Instant::now();
    let packets: Vec<Vec<u8>> =
        (0..n + warm).map(|_| sphinx.new_packet(&mut rng, &path, &payload).unwrap()).collect();
    eprintln!("built {} packets in {:.1} s", packets.len(), t.elapsed().as_secs_f64());

    // Bare unwrap cost on this machine, measured now (wall clock, and CPU time of this thread).
    let mut probe: Vec<Vec<u8>> = packets.iter().take(2000).cloned().collect();
    let here = this_thread_schedstat();
    let (t, cpu0) = (Instant::now(), cpu_ns(&here));
    for p in &mut probe {
        sphinx.unwrap(&mix_key, p).unwrap();
    }
    let unwrap_us = t.elapsed().as_secs_f64() * 1e6 / probe.len() as f64;
    let unwrap_cpu_us = cpu_ns(&here).zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e3 / probe.len() as f64);
    let bound = 1e6 / unwrap_us;

    // The mix: its own OS thread and single-threaded runtime.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let sink_addr_holder: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    // The sink and sender: another runtime.
    let io = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let arrivals: Arc<std::sync::Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let sink_addr = io.block_on(async {
        let allowed = mix_link.public_key().clone();
        let mut l = Listener::bind(
            "127.0.0.1:0".parse().unwrap(),
            sink_link.clone(),
            link_config(),
            move |k: &LinkPublicKey| (*k == allowed).then_some(()),
            Arc::new(LinkMetrics::default()),
        )
        .await
        .unwrap();
        let addr = l.local_addr();
        let (rcv, arr) = (received.clone(), arrivals.clone());
        tokio::spawn(async move {
            while let Some(mut c) = l.accept().await {
                let (rcv, arr) = (rcv.clone(), arr.clone());
                tokio::spawn(async move {
                    while let Some(f) = c.recv().await {
                        if let Frame::Packet { .. } = f {
                            let k = rcv.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut a) = arr.lock() {
                                a.push((k, Instant::now()));
                            }
                        }
                    }
                });
            }
        });
        addr
    });
    *sink_addr_holder.lock().unwrap() = Some(sink_addr);
    let (mix_pub, sender_pub, sink_pub) =
        (mix_link.public_key().clone(), sender_link.public_key().clone(), sink_link.public_key().clone());
    let mix_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut cfg = MixConfig::new(mix_id, MailboxId([9; 32]));
            cfg.loop_rate = 0.0;
            cfg.max_queue = 1_000_000;
            let mut core = Mix::new(cfg, geometry.clone());
            core.add_epoch_key(
                0,
                mix_key,
                EpochWindow {
                    start: UnixMicros::ZERO,
                    end: UnixMicros(u64::MAX / 4),
                    grace: Duration::from_secs(1),
                },
            );
            let peers = HashMap::from([
                (sink_id, Peer { addr: sink_addr, link_key: sink_pub, gateway: false }),
                (
                    NodeId([0; 32]),
                    Peer { addr: "127.0.0.1:9".parse().unwrap(), link_key: sender_pub, gateway: false },
                ),
            ]);
            let rc = MixRuntimeConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                link_key: mix_link,
                link: link_config(),
                peers,
                resend: qanat_mixnet::ResendConfig::new(Duration::from_secs(10), Duration::from_secs(300)),
                clock: qanat_mixnet::UnixMicros::ZERO,
                hostile: Default::default(),
            };
            let rng = ChaCha20Rng::seed_from_u64(1);
            let h = match std::env::var_os("QANAT_BENCH_REPLAY_LOG") {
                Some(dir) => {
                    let dir = std::path::PathBuf::from(dir).join(format!("mix-bench-{}", std::process::id()));
                    let log = ReplayLog::open(&dir, |_| true).unwrap();
                    spawn_mix_with_replay_log(core, rc, rng, log).await.unwrap()
                }
                None => spawn_mix(core, rc, rng).await.unwrap(),
            };
            addr_tx.send((h.local_addr(), this_thread_schedstat(), h.metrics.replay_log.clone())).unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
    });
    let (mix_addr, mix_schedstat, replay_log) = addr_rx.recv().unwrap();
    let s = Setup { mix_addr, sender_key: sender_link, mix_link_pub: mix_pub, received, arrivals };
    let (packets, warm_packets) = packets.split_at(n);

    // 0. Warm-up, not measured: the mix's outgoing link gets connected and the caches and
    // allocator settle, as in a mix that has been running for a while. (The replay filter,
    // 19.5 MB, is written when its epoch key is added, so its pages are mapped before any
    // packet; before the blocked filter they were mapped on first touch during the warm-up.)
    // docs/BENCHMARKS.md gives the figure without warm-up (QANAT_BENCH_WARMUP=0).
    io.block_on(async {
        let conn =
            qanat_link::connect(s.mix_addr, &s.sender_key, &s.mix_link_pub, link_config(), Arc::default())
                .await
                .unwrap();
        for (i, p) in warm_packets.iter().enumerate() {
            conn.send(Frame::Packet { id: PacketId(i as u64), packet: p.clone() }).await.unwrap();
        }
        while s.received.load(Ordering::Relaxed) < warm as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        conn.close().await;
    });

    // 1. Saturation: send everything as fast as the link accepts it.
    let half = n / 2;
    let log_at = |m: &qanat_node::replay_log::ReplayLogMetrics| {
        [&m.tags, &m.bytes, &m.fsyncs, &m.write_micros].map(|a| a.load(Ordering::Relaxed) as f64)
    };
    // The replay log's writer thread, to charge its CPU time to the packets too.
    let writer_cpu = || -> Option<u64> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        let task = tasks.flatten().find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "replay-log")
        })?;
        cpu_ns(&task.path().join("schedstat").display().to_string())
    };
    let writer_cpu0 = writer_cpu();
    let log_before = log_at(&replay_log);
    let (rate_in, rate_out, mix_cpu_us) = io.block_on(async {
        let conn =
            qanat_link::connect(s.mix_addr, &s.sender_key, &s.mix_link_pub, link_config(), Arc::default())
                .await
                .unwrap();
        let base = s.received.load(Ordering::Relaxed);
        let (start, cpu0) = (Instant::now(), cpu_ns(&mix_schedstat));
        for (i, p) in packets[..half].iter().enumerate() {
            conn.send(Frame::Packet { id: PacketId(i as u64), packet: p.clone() }).await.unwrap();
        }
        let sent = start.elapsed();
        while s.received.load(Ordering::Relaxed) < base + half as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let done = start.elapsed();
        let cpu = cpu_ns(&mix_schedstat).zip(cpu0).map(|(b, a)| (b - a) as f64 / 1e3 / half as f64);
        (half as f64 / sent.as_secs_f64(), half as f64 / done.as_secs_f64(), cpu)
    });

    let log_sat = log_at(&replay_log);
    // 2. Latency at half the measured rate (or `QANAT_BENCH_RATE`), against a paced schedule.
    let rate = std::env::var("QANAT_BENCH_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(rate_out / 2.0);
    let m = n - half;
    let latencies = io.block_on(async {
        s.arrivals.lock().unwrap().clear();
        let base = s.received.load(Ordering::Relaxed);
        let conn =
            qanat_link::connect(s.mix_addr, &s.sender_key, &s.mix_link_pub, link_config(), Arc::default())
                .await
                .unwrap();
        let start = Instant::now();
        let mut sent_at = Vec::with_capacity(m);
        for (i, p) in packets[half..].iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            sent_at.push(Instant::now());
            conn.send(Frame::Packet { id: PacketId(i as u64), packet: p.clone() }).await.unwrap();
        }
        while s.received.load(Ordering::Relaxed) < base + m as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Packets leave in order at zero delay, so the k-th arrival is the k-th packet sent.
        let arr = s.arrivals.lock().unwrap();
        let mut l: Vec<f64> = arr
            .iter()
            .map(|(k, t)| t.duration_since(sent_at[(*k - base) as usize]).as_secs_f64() * 1e3)
            .collect();
        l.sort_by(f64::total_cmp);
        l
    });
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];

    println!(
        "Mix node over loopback links ({} B packets, {} scheme, zero delay)",
        Geometry::default_for(SCHEME).packet_len(),
        SCHEME.name()
    );
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| bare unwrap (this run) | {unwrap_us:.1} µs = {bound:.0} packets/s |");
    println!("| sender's offered rate (link queue accepting) | {rate_in:.0} packets/s |");
    println!("| packets through the mix per second, in = out (one core) | {rate_out:.0} |");
    println!("| out / unwrap-bound rate | {:.0}% |", 100.0 * rate_out / bound);
    if let (Some(mix), Some(unwrap)) = (mix_cpu_us, unwrap_cpu_us) {
        println!("| mix thread CPU time per packet (unwrap alone: {unwrap:.1} µs) | {mix:.1} µs |");
        println!(
            "| packets per CPU-second of the mix thread / per CPU-second of unwrap | {:.0}% |",
            100.0 * unwrap / mix
        );
    }
    println!("| latency through the node at {rate:.0} packets/s: p50 | {:.3} ms |", pct(0.5));
    println!("| p99 | {:.3} ms |", pct(0.99));
    println!("| max | {:.3} ms |", pct(1.0));
    let log_end = log_at(&replay_log);
    if log_end[0] > 0.0 {
        let per = |a: [f64; 4], b: [f64; 4], k: usize, packets: usize| (b[k] - a[k]) / packets as f64;
        println!("| replay log: bytes on disk per packet | {:.1} |", per(log_before, log_end, 1, n));
        println!(
            "| replay log: packets per fdatasync, at saturation / at half rate | {:.1} / {:.1} |",
            1.0 / per(log_before, log_sat, 2, half),
            1.0 / per(log_sat, log_end, 2, m)
        );
        println!(
            "| replay log: mean write + fdatasync, at saturation / at half rate | {:.2} / {:.2} ms |",
            (log_sat[3] - log_before[3]) / (log_sat[2] - log_before[2]).max(1.0) / 1e3,
            (log_end[3] - log_sat[3]) / (log_end[2] - log_sat[2]).max(1.0) / 1e3,
        );
        if let (Some(a), Some(b)) = (writer_cpu0, writer_cpu()) {
            println!(
                "| replay log: writer thread CPU per packet | {:.2} µs |",
                (b - a) as f64 / 1e3 / n as f64
            );
        }
    }
    drop(mix_thread);
    std::process::exit(0);
}
