//! SQLite and Redis Cluster side by side, in one run: durable appends per second and
//! fetch-and-delete per second with 10,000 mailboxes and 2 KiB payloads, and the memory a mailbox
//! takes in Redis.
//!
//! Run with a cluster up (`scripts/redis-cluster start DIR`, then
//! `QANAT_REDIS_SEEDS=<seeds> cargo bench -p qanat-mailbox --bench stores`); without
//! `QANAT_REDIS_SEEDS` only SQLite is measured. Each phase runs for a fixed time with many
//! concurrent callers, as a gateway's would be:
//!
//! - `append 16×32`: 16 callers, each appending batches of 32 messages to random mailboxes;
//! - `append 128×1`: 128 callers appending one message at a time;
//! - `fetch+delete`: 32 clients, each taking the next mailbox, fetching up to 16 messages and
//!   deleting them (`delete_up_to` the last), until every mailbox is empty.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qanat_mailbox::redis::{RedisConfig, RedisStore};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mailbox::{Append, Credential, ItemId, Limits, MailboxId, MailboxStore, UnixSeconds};

const MAILBOXES: u64 = 10_000;
const PAYLOAD: usize = 2048;
const NOW: UnixSeconds = UnixSeconds(1_700_000_000);
const PHASE: Duration = Duration::from_secs(6);

fn mailbox(i: u64) -> MailboxId {
    let mut b = [0x6b; 32];
    b[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    b[8..16].copy_from_slice(&i.to_be_bytes());
    MailboxId(b)
}

fn credential(i: u64) -> Credential {
    let mut b = [0x2f; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    Credential::from_bytes(b)
}

/// A fresh message (ids from a global counter) for a pseudo-random mailbox.
fn message(n: u64) -> Append {
    let mut id = [0x3c; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    let m = n.wrapping_mul(0x2545_f491_4f6c_dd1d) % MAILBOXES;
    Append { mailbox: mailbox(m), item_id: ItemId(id), payload: vec![n as u8; PAYLOAD] }
}

fn limits() -> Limits {
    Limits { max_messages_per_mailbox: u64::MAX, max_bytes_per_mailbox: u64::MAX, ..Limits::default() }
}

/// Runs `callers` tasks appending batches of `batch` for `PHASE`; returns messages per second.
async fn append_phase<S: MailboxStore>(
    store: &Arc<S>,
    counter: &Arc<AtomicU64>,
    callers: u64,
    batch: u64,
) -> f64 {
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (store, counter, done) = (store.clone(), counter.clone(), done.clone());
            tokio::spawn(async move {
                while start.elapsed() < PHASE {
                    let first = counter.fetch_add(batch, Ordering::Relaxed);
                    let items: Vec<Append> = (first..first + batch).map(message).collect();
                    let out = store.append(items, NOW).await.expect("append");
                    assert!(out.iter().all(|o| matches!(o, qanat_mailbox::AppendOutcome::Stored(_))));
                    done.fetch_add(batch, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// 32 clients drain every mailbox, 16 messages at a time; returns (messages/s, round trips/s).
async fn fetch_delete_phase<S: MailboxStore>(store: &Arc<S>) -> (f64, f64, u64) {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let (msgs, ops) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, next, msgs, ops) = (store.clone(), next.clone(), msgs.clone(), ops.clone());
            tokio::spawn(async move {
                loop {
                    let m = next.fetch_add(1, Ordering::Relaxed);
                    if m >= MAILBOXES || start.elapsed() > 4 * PHASE {
                        break;
                    }
                    loop {
                        let got = store.fetch(mailbox(m), &credential(m), None, 16).await.expect("fetch");
                        ops.fetch_add(1, Ordering::Relaxed);
                        let Some(last) = got.last().map(|g| g.seq) else { break };
                        let n = store.delete_up_to(mailbox(m), &credential(m), last).await.expect("delete");
                        assert_eq!(n, got.len() as u64);
                        ops.fetch_add(1, Ordering::Relaxed);
                        msgs.fetch_add(n, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = msgs.load(Ordering::Relaxed);
    (n as f64 / secs, ops.load(Ordering::Relaxed) as f64 / secs, n)
}

/// `used_memory` summed over the cluster's masters (each seed is asked; give all nodes).
fn masters_used_memory(seeds: &[String]) -> u64 {
    let mut total = 0;
    for seed in seeds {
        let mut con = redis::Client::open(format!("redis://{seed}")).unwrap().get_connection().unwrap();
        let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
        let repl: String = redis::cmd("INFO").arg("replication").query(&mut con).unwrap();
        if repl.lines().any(|l| l.trim() == "role:master") {
            let used = info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap();
            total += used.trim().parse::<u64>().unwrap();
        }
    }
    total
}

/// `MEMORY USAGE` of `keys` (each asked of every master; only its owner answers).
fn keys_memory(seeds: &[String], keys: &[Vec<u8>]) -> u64 {
    let mut total = 0;
    for seed in seeds {
        let mut con = redis::Client::open(format!("redis://{seed}")).unwrap().get_connection().unwrap();
        let repl: String = redis::cmd("INFO").arg("replication").query(&mut con).unwrap();
        if !repl.lines().any(|l| l.trim() == "role:master") {
            continue;
        }
        for key in keys {
            let used: redis::RedisResult<Option<u64>> =
                redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query(&mut con);
            total += used.ok().flatten().unwrap_or(0);
        }
    }
    total
}

/// Mailboxes whose keys `keys_memory` samples.
const SAMPLED: u64 = 200;

struct Row {
    name: &'static str,
    batched: f64,
    single: f64,
    fetch_msgs: f64,
    fetch_ops: f64,
}

async fn run<S: MailboxStore>(
    name: &'static str,
    store: Arc<S>,
    mut memory: impl FnMut() -> u64,
) -> (Row, [u64; 3]) {
    let m0 = memory();
    let t = Instant::now();
    for chunk in 0..MAILBOXES / 100 {
        let regs: Vec<_> = (chunk * 100..chunk * 100 + 100)
            .map(|m| {
                let store = store.clone();
                tokio::spawn(async move { store.register(mailbox(m), &credential(m), NOW).await.unwrap() })
            })
            .collect();
        for r in regs {
            r.await.unwrap();
        }
    }
    eprintln!("{name}: registered {MAILBOXES} mailboxes in {:.1} s", t.elapsed().as_secs_f64());
    let m1 = memory();
    let counter = Arc::new(AtomicU64::new(0));
    let batched = append_phase(&store, &counter, 16, 32).await;
    eprintln!("{name}: append 16×32: {batched:.0} messages/s");
    let single = append_phase(&store, &counter, 128, 1).await;
    eprintln!("{name}: append 128×1: {single:.0} messages/s");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.messages, counter.load(Ordering::Relaxed));
    let m2 = memory();
    let (fetch_msgs, fetch_ops, drained) = fetch_delete_phase(&store).await;
    eprintln!(
        "{name}: fetch+delete: {fetch_msgs:.0} messages/s, {fetch_ops:.0} calls/s ({drained} messages)"
    );
    assert_eq!(drained, stats.messages);
    (
        Row { name, batched, single, fetch_msgs, fetch_ops },
        [m1.saturating_sub(m0), m2.saturating_sub(m1), stats.messages],
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seeds: Option<Vec<String>> = std::env::var("QANAT_REDIS_SEEDS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|s| s.trim().to_owned()).collect());
    let mut rows = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let sqlite =
        SqliteStore::open(&path, SqliteConfig { limits: limits(), ..SqliteConfig::default() }).unwrap();
    let (row, _) = rt.block_on(run("SQLite", Arc::new(sqlite), || 0));
    let db_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    rows.push(row);

    let mut redis_memory = None;
    match &seeds {
        Some(seeds) => {
            let prefix = format!("bench-{}", std::process::id());
            let mut config =
                RedisConfig { limits: limits(), key_prefix: prefix, ..RedisConfig::new(seeds.clone()) };
            if let Some(n) = std::env::var("QANAT_BENCH_REDIS_CONNECTIONS").ok().and_then(|n| n.parse().ok())
            {
                config.connections = n;
            }
            eprintln!("Redis Cluster: {} connections", config.connections);
            let store = Arc::new(rt.block_on(RedisStore::connect(config)).expect("connect to the cluster"));
            let sample: Vec<Vec<u8>> = (0..SAMPLED).flat_map(|m| store.mailbox_keys(&mailbox(m))).collect();
            // Registered and empty: sampled after registration (the memory closure's second call).
            let mut calls = 0;
            let (mut empty_keys, mut full_keys) = (0, 0);
            let (row, mem) = rt.block_on(run("Redis Cluster", store.clone(), || {
                calls += 1;
                match calls {
                    2 => empty_keys = keys_memory(seeds, &sample),
                    3 => full_keys = keys_memory(seeds, &sample),
                    _ => {}
                }
                masters_used_memory(seeds)
            }));
            let drained_keys = keys_memory(seeds, &sample);
            rows.push(row);
            redis_memory = Some((mem, empty_keys, full_keys, drained_keys));
        }
        None => eprintln!("QANAT_REDIS_SEEDS is not set: Redis Cluster not measured"),
    }

    println!(
        "\n| store | append 16×32 (msg/s) | append 128×1 (msg/s) | fetch+delete (msg/s) | fetch+delete (calls/s) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.name, r.batched, r.single, r.fetch_msgs, r.fetch_ops
        );
    }
    println!("\nSQLite file after the appends and deletes: {:.1} MiB", db_bytes as f64 / (1 << 20) as f64);
    if let Some(([registered, appended, messages], empty_keys, full_keys, drained_keys)) = redis_memory {
        let per_mailbox = registered as f64 / MAILBOXES as f64;
        let per_message = appended as f64 / messages as f64;
        println!(
            "Redis masters' used_memory: {per_mailbox:.0} B per empty mailbox; {per_message:.0} B per stored \
             message ({PAYLOAD} B payload, so {:.0} B overhead); {messages} messages in {MAILBOXES} mailboxes \
             (replicas hold as much again)",
            per_message - PAYLOAD as f64
        );
        println!(
            "MEMORY USAGE of {SAMPLED} sampled mailboxes' keys: {:.0} B per empty mailbox; {:.0} B per mailbox \
             holding on average {:.1} messages ({:.0} B per message) before the fetch+delete phase",
            empty_keys as f64 / SAMPLED as f64,
            full_keys as f64 / SAMPLED as f64,
            messages as f64 / MAILBOXES as f64,
            (full_keys.saturating_sub(empty_keys)) as f64
                / (SAMPLED as f64 * messages as f64 / MAILBOXES as f64),
        );
        println!(
            "after every message was fetched and deleted: {:.0} B per mailbox (item ids are remembered \
             for de-duplication until retention ends)",
            drained_keys as f64 / SAMPLED as f64
        );
    }
}
