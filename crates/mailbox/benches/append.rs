//! Durable appends per second on the SQLite backend (2 KiB payloads, each append call one
//! transaction and one fsync; concurrent callers share commits), and fetch + delete per second
//! with the write-ahead log truncated after deletes at most once a second (the default), after
//! every delete, or never (an interval of an hour).
//! Run with `cargo bench -p qanat-mailbox --bench append`; the store lives in a temporary
//! directory, so the figures are those of the disk under it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mailbox::{Append, Credential, ItemId, Limits, MailboxId, MailboxStore, Seq, UnixSeconds};

const PAYLOAD: usize = 2048;
const MAILBOXES: u64 = 64;
const NOW: UnixSeconds = UnixSeconds(1_700_000_000);

fn mailbox(i: u64) -> MailboxId {
    let mut b = [7; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    MailboxId(b)
}

fn credential(i: u64) -> Credential {
    let mut b = [9; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    Credential::from_bytes(b)
}

/// Message number `n`, for mailbox `n % MAILBOXES`.
fn message(n: u64) -> Append {
    let mut id = [3; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    Append { mailbox: mailbox(n % MAILBOXES), item_id: ItemId(id), payload: vec![n as u8; PAYLOAD] }
}

struct Setup {
    rt: tokio::runtime::Runtime,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    setup_with(SqliteConfig::default().checkpoint_interval)
}

fn setup_with(checkpoint_interval: Duration) -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits =
        Limits { max_messages_per_mailbox: u64::MAX, max_bytes_per_mailbox: u64::MAX, ..Limits::default() };
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("bench.db"),
            SqliteConfig { limits, checkpoint_interval, ..Default::default() },
        )
        .unwrap(),
    );
    rt.block_on(async {
        for m in 0..MAILBOXES {
            store.register(mailbox(m), &credential(m), NOW).await.unwrap();
        }
    });
    Setup { rt, store, _dir: dir }
}

fn append(c: &mut Criterion) {
    let s = setup();
    let mut next = 0u64;
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for batch in [1u64, 16, 128] {
        g.throughput(Throughput::Elements(batch));
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                let items: Vec<Append> = (next..next + batch).map(message).collect();
                next += batch;
                let out = s.rt.block_on(s.store.append(items, NOW)).unwrap();
                assert!(out.iter().all(|o| matches!(o, qanat_mailbox::AppendOutcome::Stored(_))));
            });
        });
    }
    // 128 callers appending one message each at once: group commit gathers them.
    g.throughput(Throughput::Elements(128));
    g.bench_function("concurrent_128x1", |b| {
        b.iter(|| {
            let start = next;
            next += 128;
            s.rt.block_on(async {
                let tasks: Vec<_> = (start..start + 128)
                    .map(|n| {
                        let store = s.store.clone();
                        tokio::spawn(async move { store.append(vec![message(n)], NOW).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
    });
    g.finish();
    let stats = s.store.commit_stats();
    eprintln!("append: {} append calls in {} commits", stats.appends, stats.commits);
}

/// Fetch 16 messages of a mailbox and delete them (the client's loop), timed per message; then
/// the same with the append of the 16 timed too, under three checkpoint intervals.
fn fetch_delete(c: &mut Criterion) {
    let mut g = c.benchmark_group("fetch_delete");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(16));
    fetch_delete_with(&mut g, "16", SqliteConfig::default().checkpoint_interval, false);
    g.finish();
    // The whole round timed (append 16, fetch them, delete them), so that the checkpoints show.
    let mut g = c.benchmark_group("append_fetch_delete");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(16));
    for (name, interval) in [
        ("16_checkpoint_1s", SqliteConfig::default().checkpoint_interval),
        ("16_checkpoint_every_delete", Duration::ZERO),
        ("16_no_checkpoint", Duration::from_secs(3600)),
    ] {
        fetch_delete_with(&mut g, name, interval, true);
    }
    g.finish();
}

fn fetch_delete_with(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    interval: Duration,
    time_the_append: bool,
) {
    let s = setup_with(interval);
    let mut next = 0u64;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                // Sixteen messages for mailbox 0 (timed only with `time_the_append`).
                let items: Vec<Append> = (0..16).map(|i| message((next + i) * MAILBOXES)).collect();
                next += 16;
                let before = Instant::now();
                s.rt.block_on(s.store.append(items, NOW)).unwrap();
                let t = if time_the_append { before } else { Instant::now() };
                s.rt.block_on(async {
                    let got = s.store.fetch(mailbox(0), &credential(0), None, 16).await.unwrap();
                    assert_eq!(got.len(), 16);
                    let last = got.last().map_or(Seq(0), |m| m.seq);
                    assert_eq!(s.store.delete_up_to(mailbox(0), &credential(0), last).await.unwrap(), 16);
                });
                spent += t.elapsed();
            }
            spent
        });
    });
    let stats = s.store.commit_stats();
    eprintln!("{name}: {} checkpoints, {} commits", stats.checkpoints, stats.commits);
}

criterion_group!(benches, append, fetch_delete);
criterion_main!(benches);
