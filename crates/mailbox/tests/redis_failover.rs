//! Failover of the Redis Cluster backend under load: nothing acknowledged is lost.
//!
//! The test starts its own cluster (`scripts/redis-cluster`, its own ports and directory,
//! `cluster-node-timeout 1000`), since it kills masters. 32 writers append continuously to 64
//! mailboxes spread over all masters, retrying each batch until it is acknowledged. Then:
//!
//! 1. the master that owns the most of the writers' mailboxes is killed with SIGKILL; its replica
//!    takes over; the killed node is restarted (it rejoins as the new master's replica);
//! 2. the same again on the new topology, but the busiest master's replica is first stopped with
//!    SIGSTOP for two seconds, and the master killed in the middle of those two seconds: writes to
//!    that master can no longer be confirmed by a replica, so they must fail, not be acknowledged.
//!
//! After each, every acknowledged message is in its mailbox exactly once with its payload, and no
//! item id appears twice (retries were de-duplicated). Last, a whole shard (master and replica)
//! is stopped: a new store refuses to connect (the cluster is not in `cluster_state:ok`) and an
//! append to that shard fails rather than being acknowledged; once the shard is back, its retry
//! is stored once. Every process the test started is
//! stopped by PID when it ends, also on panic.
//!
//! Needs `redis-server` (skipped with a message when missing, except under `CI=true`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qanat_mailbox::redis::{RedisConfig, RedisStore, mailbox_slot};
use qanat_mailbox::{Append, Credential, ItemId, Limits, MailboxId, MailboxStore, UnixSeconds};
use redis::Value;

const WRITERS: u64 = 32;
const MAILBOXES: u64 = 64;
const NOW: UnixSeconds = UnixSeconds(1_700_000_000);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster")
}

/// A cluster this test started; stopped (every recorded PID) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    seeds: Vec<String>,
    /// Nodes the test restarted (their PIDs are in `pids` too); reaped after `stop`.
    restarted: Mutex<Vec<std::process::Child>>,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true but redis-server is not installed"
            );
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server redis-tools)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(dir.path())
            .env_remove("REDIS_CLUSTER_PORT")
            .env("REDIS_CLUSTER_PORT_FROM", "7401")
            .env("REDIS_CLUSTER_NODE_TIMEOUT", "1000")
            .output()
            .unwrap();
        let mut cluster = Cluster { dir, seeds: Vec::new(), restarted: Mutex::new(Vec::new()) };
        assert!(out.status.success(), "cluster start failed: {}", String::from_utf8_lossy(&out.stderr));
        cluster.seeds = String::from_utf8(out.stdout).unwrap().trim().split(',').map(str::to_owned).collect();
        Some(cluster)
    }

    fn ports(&self) -> Vec<u16> {
        std::fs::read_to_string(self.dir.path().join("ports"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// Starts the node on `port` again with its own config; its PID is recorded for `stop`.
    fn restart(&self, port: u16) {
        let conf = self.dir.path().join(format!("node-{port}/redis.conf"));
        let child = Command::new("redis-server").arg(conf).spawn().unwrap();
        let pids = self.dir.path().join("pids");
        let mut list = std::fs::read_to_string(&pids).unwrap();
        list.push_str(&format!("{}\n", child.id()));
        std::fs::write(pids, list).unwrap();
        self.restarted.lock().unwrap().push(child);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(self.dir.path()).status();
        for mut child in self.restarted.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn node(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(1))
        .unwrap()
}

fn try_query(port: u16, args: &[&str]) -> Option<Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut con = client.get_connection_with_timeout(Duration::from_millis(300)).ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut con).ok()
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn pid(port: u16) -> u32 {
    let info: String = redis::cmd("INFO").arg("server").query(&mut node(port)).unwrap();
    info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().parse().unwrap()
}

/// One slot range: its first and last slot, its master's port, its replicas' ports.
#[derive(Debug, Clone)]
struct Shard {
    start: u16,
    end: u16,
    master: u16,
    replicas: Vec<u16>,
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// `CLUSTER SLOTS` as one live node sees it.
fn shards(port: u16) -> Option<Vec<Shard>> {
    let Value::Array(ranges) = try_query(port, &["CLUSTER", "SLOTS"])? else { return None };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(r) = r else { return None };
        let node_port = |n: &Value| match n {
            Value::Array(n) => int(&n[1]) as u16,
            other => panic!("bad node {other:?}"),
        };
        out.push(Shard {
            start: int(&r[0]) as u16,
            end: int(&r[1]) as u16,
            master: node_port(&r[2]),
            replicas: r[3..].iter().map(node_port).collect(),
        });
    }
    Some(out)
}

fn cluster_ok(port: u16) -> bool {
    try_query(port, &["CLUSTER", "INFO"]).is_some_and(|v| text(&v).contains("cluster_state:ok"))
}

fn kill(signal: &str, pid: u32) {
    assert!(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success());
}

fn mailbox(i: u64) -> MailboxId {
    let mut b = [0x5a; 32];
    b[..8].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
    MailboxId(b)
}

fn credential(i: u64) -> Credential {
    let mut b = [0xc3; 32];
    b[..8].copy_from_slice(&i.to_be_bytes());
    Credential::from_bytes(b)
}

fn message(writer: u64, n: u64) -> Append {
    let mut id = [0x11; 32];
    id[..8].copy_from_slice(&writer.to_be_bytes());
    id[8..16].copy_from_slice(&n.to_be_bytes());
    let mut payload = vec![0u8; 64];
    payload[..16].copy_from_slice(&id[..16]);
    Append { mailbox: mailbox((writer * 7 + n * 13) % MAILBOXES), item_id: ItemId(id), payload }
}

#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<Append>>,
    errors: AtomicU64,
    duplicates: AtomicU64,
}

/// Appends until `stop`, each batch retried until acknowledged (for at most a minute).
async fn writer(store: Arc<RedisStore>, w: u64, first: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> u64 {
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<Append> = (n..n + 1 + n % 4).map(|i| message(w, i)).collect();
        n += batch.len() as u64;
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            match store.append(batch.clone(), NOW).await {
                Ok(out) => {
                    assert!(out.iter().all(|o| o.is_durable()), "{out:?}");
                    let dups = out
                        .iter()
                        .filter(|o| matches!(o, qanat_mailbox::AppendOutcome::Duplicate(_)))
                        .count();
                    tally.duplicates.fetch_add(dups as u64, Ordering::Relaxed);
                    tally.acked.lock().unwrap().extend(batch);
                    break;
                }
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        Instant::now() < give_up,
                        "writer {w}: no acknowledgement for a minute after failover"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    n
}

/// Every acknowledged message is present exactly once, with its payload; no id twice.
async fn verify(store: &RedisStore, acked: &[Append]) {
    let mut want: BTreeMap<MailboxId, BTreeMap<ItemId, Vec<u8>>> = BTreeMap::new();
    for a in acked {
        want.entry(a.mailbox).or_default().insert(a.item_id, a.payload.clone());
    }
    let mut total = 0;
    for m in 0..MAILBOXES {
        let got =
            store.fetch(mailbox(m), &credential(m), None, usize::MAX).await.expect("fetch after failover");
        total += got.len();
        let mut seen = BTreeSet::new();
        for msg in &got {
            assert!(seen.insert(msg.item_id), "mailbox {m}: an item id stored twice");
        }
        let got: BTreeMap<ItemId, Vec<u8>> = got.into_iter().map(|m| (m.item_id, m.payload)).collect();
        for (id, payload) in want.get(&mailbox(m)).into_iter().flatten() {
            assert_eq!(got.get(id), Some(payload), "mailbox {m}: an acknowledged message is missing");
        }
    }
    assert_eq!(store.stats().await.unwrap().messages, total as u64);
    println!("verified: {} acknowledged messages, {total} stored, none lost, none twice", acked.len());
}

/// The busiest master (most of the writers' mailboxes) and its replica, as `port`s.
fn busiest(seed: u16) -> (u16, u16, Vec<Shard>) {
    let shards = shards(seed).expect("CLUSTER SLOTS");
    let mut load: BTreeMap<u16, usize> = BTreeMap::new();
    for m in 0..MAILBOXES {
        let slot = mailbox_slot(&mailbox(m));
        let s = shards.iter().find(|s| s.start <= slot && slot <= s.end).expect("slot served");
        *load.entry(s.master).or_default() += 1;
    }
    let (&master, _) = load.iter().max_by_key(|(_, n)| **n).unwrap();
    let replica = shards.iter().find(|s| s.master == master).and_then(|s| s.replicas.first().copied());
    (master, replica.expect("the busiest master has a replica"), shards)
}

/// Waits until `replica` serves every range `master` served, the cluster is ok, then restarts the
/// killed master and waits until it replicates from its former replica.
fn await_failover(cluster: &Cluster, master: u16, replica: u16, before: &[Shard]) -> Duration {
    let t = Instant::now();
    let ranges: Vec<(u16, u16)> =
        before.iter().filter(|s| s.master == master).map(|s| (s.start, s.end)).collect();
    loop {
        assert!(t.elapsed() < Duration::from_secs(60), "no failover within a minute");
        let taken = shards(replica).is_some_and(|now| {
            ranges.iter().all(|r| now.iter().any(|s| (s.start, s.end) == *r && s.master == replica))
        });
        if taken && cluster.ports().iter().filter(|&&p| p != master).all(|&p| cluster_ok(p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let failover = t.elapsed();
    cluster.restart(master);
    loop {
        assert!(t.elapsed() < Duration::from_secs(120), "the restarted node never became a replica");
        let synced = try_query(replica, &["INFO", "replication"]).is_some_and(|v| {
            text(&v).lines().any(|l| l.starts_with("slave0:") && l.contains("state=online"))
        });
        if synced {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    failover
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_loses_nothing_acknowledged() {
    let Some(cluster) = Cluster::start() else { return };
    let seed: u16 = cluster.seeds[0].rsplit_once(':').unwrap().1.parse().unwrap();
    let config = RedisConfig {
        limits: Limits::default(),
        key_prefix: "failover".into(),
        wait_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(3),
        ..RedisConfig::new(cluster.seeds.clone())
    };
    let store = Arc::new(RedisStore::connect(config).await.expect("connect"));
    for m in 0..MAILBOXES {
        store.register(mailbox(m), &credential(m), NOW).await.unwrap();
    }
    let tally = Arc::new(Tally::default());
    let mut next = vec![0u64; WRITERS as usize];

    for variant in
        ["SIGKILL of the busiest master", "its replica SIGSTOPped for 2 s, then SIGKILL of the master"]
    {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(store.clone(), w, next[w as usize], stop.clone(), tally.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let live = cluster.ports().into_iter().find(|&p| cluster_ok(p)).unwrap_or(seed);
        let (master, replica, before) = busiest(live);
        let (master_pid, replica_pid) = (pid(master), pid(replica));
        let acked_before = tally.acked.lock().unwrap().len();
        let errors_before = tally.errors.load(Ordering::Relaxed);
        if variant.contains("SIGSTOP") {
            kill("STOP", replica_pid);
            tokio::time::sleep(Duration::from_millis(300)).await;
            kill("KILL", master_pid);
            tokio::time::sleep(Duration::from_millis(1700)).await;
            kill("CONT", replica_pid);
        } else {
            kill("KILL", master_pid);
        }
        let took = tokio::task::block_in_place(|| await_failover(&cluster, master, replica, &before));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        for (w, h) in writers.into_iter().enumerate() {
            next[w] = h.await.expect("writer");
        }
        let acked = tally.acked.lock().unwrap().clone();
        println!(
            "{variant}: master :{master} killed, replica :{replica} took over in {:.1} s; {} appends acknowledged \
             during the run ({} before the kill), {} failed attempts retried, {} duplicates reported so far",
            took.as_secs_f64(),
            acked.len() - acked_before.min(acked.len()),
            acked_before,
            tally.errors.load(Ordering::Relaxed) - errors_before,
            tally.duplicates.load(Ordering::Relaxed),
        );
        verify(&store, &acked).await;
    }

    // A shard with neither master nor replica answering: the cluster leaves cluster_state:ok; a
    // new store refuses to connect, naming the state, and appends to that shard fail (nothing is
    // acknowledged) until the shard is back.
    let live = cluster.ports().into_iter().find(|&p| cluster_ok(p)).unwrap();
    let (master, replica, _) = busiest(live);
    let (master_pid, replica_pid) = (pid(master), pid(replica));
    kill("STOP", master_pid);
    kill("STOP", replica_pid);
    let watcher = cluster.ports().into_iter().find(|&p| p != master && p != replica).unwrap();
    let t = Instant::now();
    while cluster_ok(watcher) {
        assert!(t.elapsed() < Duration::from_secs(30), "the cluster never noticed the stopped shard");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = RedisConfig {
        connect_timeout: Duration::from_millis(500),
        ..RedisConfig::new(vec![format!("127.0.0.1:{watcher}")])
    };
    let refused = RedisStore::connect(config).await.expect_err("the cluster is not ok");
    println!("connect while a shard is down: {refused}");
    assert!(matches!(refused, qanat_mailbox::StoreError::Connect { .. }), "{refused:?}");
    let slot_of = |m: u64| mailbox_slot(&mailbox(m));
    let shards_now = shards(watcher).unwrap_or_default();
    let on_stopped = (0..MAILBOXES)
        .find(|&m| {
            shards_now.iter().any(|s| s.master == master && s.start <= slot_of(m) && slot_of(m) <= s.end)
        })
        .expect("a mailbox on the stopped shard");
    let lost = message(WRITERS + 1, 0);
    let lost = Append { mailbox: mailbox(on_stopped), ..lost };
    let e = store.append(vec![lost.clone()], NOW).await.expect_err("append to a stopped shard");
    println!("append to the stopped shard: {e}");
    kill("CONT", master_pid);
    kill("CONT", replica_pid);
    let t = Instant::now();
    while !cluster.ports().iter().all(|&p| cluster_ok(p)) {
        assert!(t.elapsed() < Duration::from_secs(60), "the cluster did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refused packet was not stored twice when retried.
    let t = Instant::now();
    let out = loop {
        match store.append(vec![lost.clone()], NOW).await {
            Ok(out) => break out,
            Err(_) if t.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("append after recovery: {e}"),
        }
    };
    assert!(out[0].is_durable(), "{out:?}");
    let mut acked = tally.acked.lock().unwrap().clone();
    acked.push(lost);
    verify(&store, &acked).await;
}
