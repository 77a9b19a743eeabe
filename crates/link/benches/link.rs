//! Frames per second through one link on loopback, and the round-trip latency of one frame,
//! at F = 2,213 bytes (2,204-byte KEM Sphinx packets plus the 9-byte header).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qanat_link::{
    AcceptAnyKey, Frame, FrameSize, LinkConfig, LinkMetrics, LinkSecretKey, Listener, PacketId, PeerLink,
};
use rand::SeedableRng;
use tokio::sync::Mutex;

const PACKET_LEN: usize = 2_204;

fn packet(i: u64) -> Frame {
    Frame::Packet { id: PacketId(i), packet: vec![(i % 251) as u8; PACKET_LEN] }
}

struct Pair {
    link: PeerLink,
    conn: qanat_link::Connection<()>,
}

async fn pair() -> Pair {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let server = Arc::new(LinkSecretKey::generate(&mut rng));
    let client = Arc::new(LinkSecretKey::generate(&mut rng));
    let config = LinkConfig::new(FrameSize::for_packet_len(PACKET_LEN).unwrap_or_else(|e| panic!("{e}")));
    let mut l = Listener::bind(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        server.clone(),
        config.clone(),
        AcceptAnyKey,
        Arc::new(LinkMetrics::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let link = PeerLink::spawn(
        l.local_addr(),
        server.public_key().clone(),
        client,
        config,
        Arc::new(LinkMetrics::default()),
    );
    let conn = l.accept().await.unwrap_or_else(|| panic!("no connection"));
    Pair { link, conn }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("link");
    g.measurement_time(Duration::from_secs(5));

    // Throughput: a producer task queues frames; the listener side receives them all.
    let Pair { link, conn } = rt.block_on(pair());
    let (_, _, mut rx) = conn.split();
    // One plain run first, outside criterion's sampling, for a headline number.
    let n = 50_000u64;
    let (elapsed, rx) = rt.block_on(async {
        let sender = link.sender();
        let start = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..n {
                let _ = sender.send(packet(i)).await;
            }
        });
        let consumer = tokio::spawn(async move {
            for _ in 0..n {
                let _ = rx.recv().await;
            }
            rx
        });
        let _ = producer.await;
        let rx = consumer.await.unwrap_or_else(|e| panic!("{e}"));
        (start.elapsed(), rx)
    });
    println!(
        "link: {n} frames of F=2213 in {elapsed:?}: {:.0} frames/s, {:.1} MB/s of frames",
        n as f64 / elapsed.as_secs_f64(),
        n as f64 * 2229.0 / elapsed.as_secs_f64() / 1e6
    );
    let rx = Arc::new(Mutex::new(rx));
    let sender = link.sender();
    g.throughput(Throughput::Elements(1));
    g.bench_function("one-way frames, F=2213", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sender, rx) = (sender.clone(), rx.clone());
            async move {
                let mut rx = rx.lock().await;
                let start = Instant::now();
                let producer = tokio::spawn(async move {
                    for i in 0..iters {
                        let _ = sender.send(packet(i)).await;
                    }
                });
                for _ in 0..iters {
                    let _ = rx.recv().await;
                }
                let _ = producer.await;
                start.elapsed()
            }
        })
    });
    drop(link);

    // Latency: one frame out and echoed back, one at a time.
    let Pair { link, conn } = rt.block_on(pair());
    let (_, tx, mut rx) = conn.split();
    rt.spawn(async move {
        while let Some(f) = rx.recv().await {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    let link = Arc::new(Mutex::new(link));
    g.bench_function("round trip of one frame, F=2213", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let link = link.clone();
            async move {
                let mut link = link.lock().await;
                let start = Instant::now();
                for i in 0..iters {
                    let _ = link.send(packet(i)).await;
                    let _ = link.recv().await;
                }
                start.elapsed()
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
