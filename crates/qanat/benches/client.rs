//! Client figures through a devnet of 11 node processes on 127.0.0.1 (`qanat devnet up`, its
//! defaults: λ_P 2/s, λ_L = λ_D 0.5/s, mean delay 50 ms per mix), with the clients in this
//! process (so this process's CPU time is theirs):
//!
//! 1. end-to-end latency of messages between two users (p50/p99) against the Loopix model
//!    (a sending slot Exp(λ_P) plus 3 mixes' Exp(1/μ) delays);
//! 2. an idle client's CPU use and bytes per day on its link, per traffic profile.
//!
//! `cargo bench -p qanat --bench client` (about 9 minutes). Knobs: QANAT_BENCH_MESSAGES
//! (default 400), QANAT_BENCH_PAIRS (pairs of users talking at once, default 4),
//! QANAT_BENCH_ALTERNATE (1: each pair takes turns writing; default 0, one way),
//! QANAT_BENCH_IDLE_SECS (default 120), QANAT_BENCH_FETCH_MS (latency run's fetch interval,
//! default 100).

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use qanat_client::control::{Request, Response};
use qanat_client::engine::{Engine, EngineConfig, EngineEvent};
use qanat_client::runtime::{self, ClientHandle, RuntimeConfig};
use qanat_client::store::{Passphrase, Profile, danger};
use qanat_mixnet::sending::Delivery;
use qanat_mixnet::sending::TrafficProfile;
use qanat_node::NodeConfig;
use qanat_node::config::{ClientNetwork, RoleConfig};
use rand::RngExt as _;
use tokio::sync::broadcast;

const BIN: &str = env!("CARGO_BIN_EXE_qanat");

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// This process's CPU time (user + system), from /proc (USER_HZ = 100).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    // After the command name: state (0), ppid, ..., utime (11), stime (12), in clock ticks.
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((field(11) + field(12)) * 10)
}

struct Devnet(tempfile::TempDir);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["devnet", "down", "--dir"]).arg(self.0.path()).output();
    }
}

fn user(
    root: &std::path::Path,
    name: &str,
    net: &ClientNetwork,
    gw: usize,
    traffic: TrafficProfile,
    fetch: Duration,
) -> ClientHandle {
    let home = root.join(name);
    let mut p =
        Profile::create_with(&home, &Passphrase::new("pw"), danger::weak_kdf_params(8, 1, 1).unwrap())
            .unwrap();
    Engine::init(&mut p, net.gateways[gw].identity.node_id(), traffic, &mut rand::rng()).unwrap();
    let engine =
        Engine::open(p, EngineConfig { fetch_interval: fetch, ..EngineConfig::default() }, SystemTime::now())
            .unwrap();
    runtime::start(
        engine,
        RuntimeConfig { network: net.clone(), gateway: net.gateways[gw].clone(), fetch_interval: fetch },
    )
    .unwrap()
}

async fn status(c: &ClientHandle) -> (bool, u64, u64, u64) {
    match c.call(Request::Status).await {
        Response::Status { network, link, .. } => {
            let l = link.unwrap_or_default();
            (network, l.frames_out, l.frames_in, l.frame_bytes)
        }
        r => panic!("{r:?}"),
    }
}

async fn wait_network(c: &ClientHandle) {
    for _ in 0..1200 {
        if status(c).await.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no directory");
}

fn pct(v: &[f64], p: f64) -> f64 {
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// The model's p50 and p99 from 200,000 draws: a slot wait Exp(λ_P), three mixes' Exp(1/μ)
/// and, if `fetch_ms` > 0, the recipient's wait for its next fetch, U(0, fetch_ms).
fn model(lambda_p: f64, mean_delay_ms: f64, fetch_ms: f64) -> (f64, f64) {
    let mut rng = rand::rng();
    let mut exp = |mean_ms: f64| {
        qanat_mixnet::exponential(&mut rng, Duration::from_secs_f64(mean_ms / 1000.0)).as_secs_f64() * 1000.0
    };
    let mut v: Vec<f64> = (0..200_000)
        .map(|_| exp(1000.0 / lambda_p) + (0..3).map(|_| exp(mean_delay_ms)).sum::<f64>())
        .collect();
    if fetch_ms > 0.0 {
        for x in &mut v {
            *x += rng.random::<f64>() * fetch_ms;
        }
    }
    v.sort_by(f64::total_cmp);
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// A 95% confidence interval of the median of `sorted` (by the order statistics of the
/// binomial: ranks n/2 ± 1.96·√n/2).
fn median_interval(sorted: &[f64]) -> (f64, f64) {
    let n = sorted.len() as f64;
    if sorted.is_empty() {
        return (0.0, 0.0);
    }
    let half = 1.96 * n.sqrt() / 2.0;
    let at = |r: f64| sorted[(r.round().max(1.0) as usize).min(sorted.len()) - 1];
    (at(n / 2.0 - half), at(n / 2.0 + half + 1.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let messages = env("QANAT_BENCH_MESSAGES", 400) as usize;
    let pairs = env("QANAT_BENCH_PAIRS", 4).max(1) as usize;
    let alternate = env("QANAT_BENCH_ALTERNATE", 0) == 1;
    let idle_secs = env("QANAT_BENCH_IDLE_SECS", 120);
    let fetch_ms = env("QANAT_BENCH_FETCH_MS", 100);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["devnet", "up", "--wait", "--dir"]).arg(dir.path()).output().unwrap();
    let devnet = Devnet(dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let net = ClientNetwork::load(&devnet.0.path().join("network.toml")).unwrap();
    // The parameters the devnet's authorities vote for, from the first one's config.
    let params = match NodeConfig::load(&devnet.0.path().join("auth1/node.toml")).unwrap().role {
        RoleConfig::Authority(a) => a.parameters,
        other => panic!("auth1 is not an authority: {other:?}"),
    };
    let root = tempfile::tempdir().unwrap();

    // 1. Latency: `pairs` pairs of users (one on each gateway) at once, so that enough messages
    // give a p50 worth comparing with the model (with 80 messages the p50's own sampling error
    // is about ±15%). In each pair the first user writes and the second only acknowledges, so
    // the writer's payload slots are free as the model assumes (QANAT_BENCH_ALTERNATE=1: they
    // take turns, and acknowledgements compete with messages for slots).
    let fetch = Duration::from_millis(fetch_ms);
    let mut users = Vec::new();
    for i in 0..pairs {
        let a = user(root.path(), &format!("a{i}"), &net, 0, TrafficProfile::Standard, fetch);
        let b = user(root.path(), &format!("b{i}"), &net, 1, TrafficProfile::Standard, fetch);
        users.push((a, b));
    }
    let mut rxs = Vec::new();
    for (a, b) in &users {
        rxs.push((a.subscribe(), b.subscribe()));
        wait_network(a).await;
        wait_network(b).await;
        let link = match a.call(Request::Invite { name: "b".into() }).await {
            Response::Invitation { link, .. } => link,
            r => panic!("{r:?}"),
        };
        assert_eq!(b.call(Request::Accept { link, name: "a".into() }).await, Response::Ok);
    }
    let ready = |rx: &mut broadcast::Receiver<EngineEvent>| loop {
        match rx.try_recv() {
            Ok(EngineEvent::ContactReady { .. }) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    };
    let mut is_ready = vec![(false, false); pairs];
    while !is_ready.iter().all(|&(a, b)| a && b) {
        for (r, (ra, rb)) in is_ready.iter_mut().zip(rxs.iter_mut()) {
            r.0 |= ready(ra);
            r.1 |= ready(rb);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every event with the time it came out, by one task per client.
    let log: Arc<Mutex<Vec<(SystemTime, EngineEvent)>>> = Arc::default();
    for (ra, rb) in rxs {
        for mut rx in [ra, rb] {
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok(e) = rx.recv().await {
                    log.lock().unwrap().push((SystemTime::now(), e));
                }
            });
        }
    }
    let mut lat = Vec::new();
    // When each message was asked for, and when it left in a slot (its `Sent` state).
    let mut asked: HashMap<String, SystemTime> = HashMap::new();
    let mut left_at: HashMap<String, SystemTime> = HashMap::new();
    let gap = Duration::from_millis(2500);
    let collect = |lat: &mut Vec<f64>, left_at: &mut HashMap<String, SystemTime>| {
        for (at, e) in log.lock().unwrap().drain(..) {
            match e {
                EngineEvent::Message { sent_at, received_at, .. } => {
                    lat.push(received_at.duration_since(sent_at).unwrap_or_default().as_secs_f64() * 1000.0);
                }
                EngineEvent::Delivery { message, state: Delivery::Sent } => {
                    left_at.insert(message.to_string(), at);
                }
                _ => {}
            }
        }
    };
    let rounds = messages.div_ceil(pairs);
    let total = rounds * pairs;
    for i in 0..rounds {
        for (a, b) in &users {
            let back = alternate && i % 2 == 1;
            let (c, to) = if back { (b, "a") } else { (a, "b") };
            let t = SystemTime::now();
            match c.call(Request::Send { to: to.into(), text: format!("m{i}") }).await {
                Response::Sent { id } => {
                    asked.insert(id, t);
                }
                r => panic!("{r:?}"),
            }
        }
        tokio::time::sleep(gap).await;
        collect(&mut lat, &mut left_at);
    }
    let end = Instant::now() + Duration::from_secs(60);
    while lat.len() < total && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        collect(&mut lat, &mut left_at);
    }
    let mut slot_wait = Vec::new();
    for (id, t) in &asked {
        if let Some(l) = left_at.get(id) {
            slot_wait.push(l.duration_since(*t).unwrap_or_default().as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    let lambda_p = params.lambda_p().per_second();
    let delay = f64::from(params.mean_delay_ms());
    let (m50, m99) = model(lambda_p, delay, 0.0);
    let (f50, f99) = model(lambda_p, delay, fetch_ms as f64);
    let (lo, hi) = median_interval(&lat);
    println!(
        "## latency: λ_P {lambda_p}/s, mean delay {delay} ms per mix, fetch every {fetch_ms} ms, {pairs} pairs, \
         {total} messages, each pair one every {} ms, {}",
        gap.as_millis(),
        if alternate { "taking turns" } else { "one way" }
    );
    println!("| | p50 | p99 |\n|---|---:|---:|");
    println!(
        "| measured ({} of {total} delivered) | {:.0} ms (95% CI {lo:.0}–{hi:.0}) | {:.0} ms |",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    println!("| model: Exp(λ_P) + 3 × Exp(1/μ) | {m50:.0} ms | {m99:.0} ms |");
    println!(
        "| measured / model | {:.2} ({:.2}–{:.2}) | {:.2} |",
        pct(&lat, 0.5) / m50,
        lo / m50,
        hi / m50,
        pct(&lat, 0.99) / m99
    );
    println!("| model + the recipient's fetch wait, U(0, {fetch_ms} ms) | {f50:.0} ms | {f99:.0} ms |");
    slot_wait.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut real = 0;
    let mut acks = 0;
    for (a, b) in &users {
        for c in [a, b] {
            if let Response::Status { sent, .. } = c.call(Request::Status).await {
                real += sent[0];
                acks += sent[1];
            }
        }
    }
    let slot = 1000.0 / lambda_p;
    println!(
        "\nSlot wait (send → the packet leaves): p50 {:.0} ms, p90 {:.0} ms (Exp(λ_P): {:.0}, {:.0}). \
         Packets sent in payload slots: {real} real (the {total} messages, the invitations' \
         answers and Welcomes, and resends), {acks} acknowledgements.",
        pct(&slot_wait, 0.5),
        pct(&slot_wait, 0.9),
        slot * std::f64::consts::LN_2,
        slot * 10f64.ln(),
    );
    println!(
        "\nMeans: send → the packet leaves in a slot {:.0} ms over {} messages (model {:.0} ms); \
         send → delivered {:.0} ms (model {:.0} ms; with the fetch wait {:.0} ms).",
        mean(&slot_wait),
        slot_wait.len(),
        1000.0 / lambda_p,
        mean(&lat),
        1000.0 / lambda_p + 3.0 * delay,
        1000.0 / lambda_p + 3.0 * delay + fetch_ms as f64 / 2.0
    );
    for (a, b) in users {
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
    }

    // 2. Idle clients, one profile at a time; pulling once per payload slot of the profile.
    println!("\n## idle client, {idle_secs} s per profile (devnet rates; CPU of this process = the client)");
    println!(
        "| profile | pull every | CPU | up, measured | up, computed (packets + pulls) | down, measured | down, computed (pull answers) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for traffic in [TrafficProfile::Standard, TrafficProfile::Metered] {
        let rates = traffic.rates(&params);
        let fetch = Duration::from_secs_f64(1.0 / rates.payload);
        let c = user(root.path(), traffic.name(), &net, 0, traffic, fetch);
        wait_network(&c).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (_, out0, in0, wire) = status(&c).await;
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let (_, out1, in1, _) = status(&c).await;
        let (cpu, t) = (cpu_time() - cpu0, t0.elapsed());
        let day = 86_400.0 / t.as_secs_f64();
        let mb = |frames: u64| frames as f64 * wire as f64 * day / 1e6;
        let (up, down) = traffic.idle_bytes_per_day(&params, wire as usize);
        println!(
            "| {} | {:.2} s | {:.2}% of a core | {:.1} MB/day | {:.1} MB/day | {:.1} MB/day | {:.1} MB/day |",
            traffic.name(),
            fetch.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / t.as_secs_f64(),
            mb(out1 - out0),
            up / 1e6,
            mb(in1 - in0),
            down / 1e6
        );
        let _ = c.shutdown().await;
    }
    drop(devnet);
}
