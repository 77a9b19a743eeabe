//! `qanat testbed run | down`: a devnet in Linux network namespaces, with the links users
//! meet, and the same chat measured over each (see `docs/TESTBED.md`).
//!
//! Layout of one run (namespaces `qtb-<run id>-*`):
//! - a router namespace; every node (3 authorities, 3 layers of 2 mixes, 2 gateways) and every
//!   client in its own namespace, joined to the router by a veth pair (`net`);
//! - each client's access link shaped as its profile says (`profile`): `tc tbf` on both ends of
//!   its veth for bandwidth, nftables `numgen random` drops at both ends for loss, and, since
//!   this kernel has no `netem`, a userspace relay in the router (`relay`) for delay, jitter,
//!   stalls and resets: the client's network file names the relay as its gateway's address;
//! - trouble on a seeded schedule (`profile::plan`): link flaps (`ip link set`), relay stalls
//!   and resets, partitions between adjacent layers (nftables drops in the router);
//! - real `qanat node run` and `qanat run` processes started with `ip netns exec`, tracked and
//!   stopped by PID; the driver (relays, metrics probes, the chat) runs on one thread moved into
//!   the router namespace, so this process opens no socket outside the testbed.

mod chat;
mod net;
mod profile;
mod relay;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use qanat_client::control::{Request, Response};
use qanat_link::http;
use qanat_node::config::ClientNetwork;
use qanat_pki::descriptor::LinkAddress;
use rand::RngExt as _;
use tokio::net::TcpListener;
use tokio::time::Instant;

use chat::{Control, Events, Message, Tally, quantile};
use net::{CLIENT_BASE, Topology, Tracker, at, router_ip};
use profile::{Action, LinkProfile, PROFILES};
use relay::{Delay, Relay};

use crate::devnet::generate::{self, NodeAddresses};

pub(crate) use net::{down, namespaces_available};

const LINK_PORT: u16 = 7100;
const CLIENT_PORT: u16 = 7200;
const METRICS_PORT: u16 = 7300;
const RELAY_PORT: u16 = 7400;
const PASSPHRASE: &str = "testbed";
/// The clients and the gateway each uses.
const CLIENTS: [(&str, &str); 3] = [("alice", "gw1"), ("bob", "gw2"), ("carol", "gw1")];

/// Settings of `testbed run`.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    /// Profile names, or `all`.
    pub(crate) profiles: Vec<String>,
    pub(crate) messages: usize,
    /// The chat's length: messages are sent evenly over it.
    pub(crate) duration: Duration,
    /// How long after the last send every message must have arrived.
    pub(crate) drain: Duration,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) seed: u64,
    /// A group of three besides the two who chat.
    pub(crate) group: bool,
    /// The network's epoch length, in seconds.
    pub(crate) epoch_secs: u64,
}

/// The names `--profile` takes.
pub(crate) fn profile_names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).chain(["all"]).collect()
}

/// What one profile's run measured.
struct Outcome {
    profile: &'static str,
    expected: usize,
    delivered: usize,
    wrong: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    trouble: String,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.delivered == self.expected && self.wrong == 0
    }
}

/// `qanat testbed run`.
pub(crate) fn run(o: &RunOptions) -> Result<()> {
    let mut profiles: Vec<LinkProfile> = Vec::new();
    for name in &o.profiles {
        if name == "all" {
            profiles.extend(PROFILES);
        } else {
            profiles.push(
                profile::by_name(name).with_context(|| {
                    format!("unknown profile {name:?}: use {}", profile_names().join(", "))
                })?,
            );
        }
    }
    if !namespaces_available()? {
        bail!("network namespaces are unavailable (the testbed needs root: ip netns add was refused)");
    }
    let (base, temporary) = match &o.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("qanat-testbed-{}", std::process::id())), true),
    };
    let mut outcomes = Vec::new();
    for p in profiles {
        let dir = base.join(p.name);
        if dir.exists() {
            bail!("{} exists: choose another --dir", dir.display());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let outcome = run_one(&p, o, &dir)
            .with_context(|| format!("profile {}: the run failed (logs in {})", p.name, dir.display()))?;
        println!(
            "testbed: {}: {}/{} delivered, {} duplicate or misdelivered, p50 {} ms, p99 {} ms",
            outcome.profile,
            outcome.delivered,
            outcome.expected,
            outcome.wrong,
            outcome.p50.as_millis(),
            outcome.p99.as_millis()
        );
        let ok = outcome.ok();
        outcomes.push(outcome);
        if !ok {
            print_table(&outcomes);
            bail!("profile {}: not every message arrived exactly once (logs in {})", p.name, dir.display());
        }
    }
    print_table(&outcomes);
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}

fn print_table(outcomes: &[Outcome]) {
    // (Its argument list looks like eval's report header to `duplicates`: other data, nothing
    // shared.)
    println!(
        "\n| profile | delivered | duplicates | p50 (ms) | p99 (ms) | max (ms) | trouble during the chat |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in outcomes {
        println!(
            "| {} | {}/{} | {} | {} | {} | {} | {} |",
            r.profile,
            r.delivered,
            r.expected,
            r.wrong,
            r.p50.as_millis(),
            r.p99.as_millis(),
            r.max.as_millis(),
            r.trouble
        );
    }
}

/// A node of the network and its endpoint index.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    role: &'static str,
    index: u8,
    config: PathBuf,
    client: Option<std::net::SocketAddr>,
}

/// The epoch length `qanat testbed run` uses unless told otherwise. An epoch's timing must
/// leave the clients room at λ_P = 0.5/s (a payload slot every 2 s, a pull every 2 s): the next
/// epoch's document is published `P/8` before the epoch and used until `P/8` after its start
/// (half the key grace), and has to reach each client in its pulls (four of them, 8 s, for a
/// five-chunk document); an acknowledgement's SURB lives until its epoch's end plus the key
/// grace, only `P/8` for one made last, and the acknowledgement's round trip (the recipient's
/// pull and payload slot, both ways through the mixes) takes 5 to 15 s. With 20-second epochs
/// both were too short: messages waited for documents, about a quarter of the acknowledgements
/// were lost and their messages resent, and the sending slots ran near saturation, so the
/// latencies measured the epochs, not the links (docs/TESTBED.md). With 60 s, the budgets are
/// 15 s and 7.5 s at the least, and keys still change several times a run.
pub(crate) const EPOCH_SECS: u64 = 60;

/// The network's parameters: clients on the directory's rates must fit 2G's 50 kbit/s. Up:
/// λ_P + λ_L + λ_D packets and λ_P pulls a second (1.25 frames of about 2.2 KB: 22 kbit/s);
/// down: 3 frames per pull (1.5 a second: 27 kbit/s).
fn network_options(epoch_secs: u64) -> generate::Options {
    generate::Options {
        epoch_secs,
        lambda_p: 0.5,
        lambda_l: 0.125,
        metrics: true,
        ..generate::Options::default()
    }
}

fn run_one(p: &LinkProfile, o: &RunOptions, dir: &Path) -> Result<Outcome> {
    let id: u16 = rand::rng().random();
    let topo = Topology { prefix: format!("qtb-{id:04x}") };
    let tracker = Arc::new(Mutex::new(Tracker::new(dir)?));
    println!(
        "testbed: profile {} ({}); namespaces {}-*, files and logs in {}",
        p.name,
        p.summary,
        topo.prefix,
        dir.display()
    );
    let t0 = Instant::now();
    let lock = || tracker.lock().map_err(|_| anyhow!("a testbed thread panicked"));

    // The network: one namespace per node.
    let mut next = 1u8;
    let mut index = BTreeMap::new();
    let generated =
        generate::generate_placed(&dir.join("net"), &network_options(o.epoch_secs), |name, role| {
            let i = next;
            next += 1;
            index.insert(name.to_owned(), i);
            Ok(NodeAddresses {
                link: at(i, LINK_PORT),
                metrics: Some(at(i, METRICS_PORT)),
                client: (role == "gateway").then(|| at(i, CLIENT_PORT)),
            })
        })?;
    let nodes: Vec<Node> = generated
        .iter()
        .map(|n| Node {
            name: n.name.clone(),
            role: n.role,
            index: index[&n.name],
            config: n.config.clone(),
            client: n.client,
        })
        .collect();
    {
        let mut t = lock()?;
        topo.add_router(&mut t)?;
        for n in &nodes {
            topo.add_endpoint(&mut t, &n.name, n.index)?;
        }
        let clients = if o.group { 3 } else { 2 };
        for (c, (name, _)) in CLIENTS.iter().enumerate().take(clients) {
            let i = CLIENT_BASE + c as u8;
            topo.add_endpoint(&mut t, name, i)?;
            topo.shape(name, i, p.rate_kbit, p.loss_permille)?;
        }
        for role in ["authority", "mix", "gateway"] {
            for n in nodes.iter().filter(|n| n.role == role) {
                let args: [&OsStr; 4] =
                    ["node".as_ref(), "run".as_ref(), "--config".as_ref(), n.config.as_ref()];
                let log = n.config.with_file_name("node.log");
                t.spawn_in(&topo.ns(&n.name), &args, &n.config, &log, &[])?;
            }
        }
    }
    println!(
        "testbed: {} namespaces and {} nodes started in {} ms",
        nodes.len() + 1 + 2 + usize::from(o.group),
        nodes.len(),
        t0.elapsed().as_millis()
    );

    // The driver, inside the router namespace.
    let router = topo.router();
    let ctx = Driver { p: *p, o: o.clone(), dir: dir.to_owned(), nodes, topo, tracker: tracker.clone() };
    let driver = std::thread::Builder::new()
        .name("testbed".into())
        .spawn(move || -> Result<Outcome> {
            enter_namespace(&router)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                tokio::select! {
                    r = ctx.drive() => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
                }
            })
        })
        .context("cannot start the driver thread")?;
    let outcome = driver.join().map_err(|_| anyhow!("the testbed's driver panicked"));
    let down = lock()?.teardown();
    let outcome = outcome??;
    down?;
    Ok(outcome)
}

/// Moves the calling thread into network namespace `name`: every socket it opens from then on
/// is in that namespace.
fn enter_namespace(name: &str) -> Result<()> {
    use std::os::fd::AsFd as _;
    let f = std::fs::File::open(Path::new("/var/run/netns").join(name))
        .with_context(|| format!("no namespace {name}"))?;
    rustix::thread::move_into_link_name_space(f.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .with_context(|| format!("cannot enter namespace {name}"))
}

struct Driver {
    p: LinkProfile,
    o: RunOptions,
    dir: PathBuf,
    nodes: Vec<Node>,
    topo: Topology,
    tracker: Arc<Mutex<Tracker>>,
}

impl Driver {
    async fn drive(self) -> Result<Outcome> {
        let t0 = Instant::now();
        let p = &self.p;
        let clients = if self.o.group { 3 } else { 2 };

        // 1. Every mix and gateway in the directory.
        let limit = Duration::from_secs(2 * self.o.epoch_secs + 60);
        self.wait_listed(limit).await?;
        println!("testbed: every node is in the directory after {} s", t0.elapsed().as_secs());

        // 2. Profiles, then relays, then the clients.
        let net = ClientNetwork::load(&generate::network_file(&self.dir.join("net")))?;
        let root = self.dir.join("clients");
        std::fs::create_dir_all(&root)?;
        let mut relays = Vec::new();
        let mut homes = Vec::new();
        for (c, (name, gw)) in CLIENTS.iter().enumerate().take(clients) {
            let i = CLIENT_BASE + c as u8;
            let front = std::net::SocketAddr::from((router_ip(i), RELAY_PORT));
            let gateway =
                self.nodes.iter().find(|n| n.name == *gw).and_then(|n| n.client).context("no gateway")?;
            let mut n = net.clone();
            let g =
                n.gateways.iter_mut().find(|g| g.name == *gw).context("gateway not in the network file")?;
            g.client_address = LinkAddress::parse(&front.to_string()).map_err(|e| anyhow!("{e}"))?;
            let file = root.join(format!("{name}-network.toml"));
            std::fs::write(&file, n.render())?;
            let home = root.join(name);
            let exe = std::env::current_exe()?;
            let out = tokio::task::spawn_blocking({
                let (home, file, gw) = (home.clone(), file.clone(), gw.to_string());
                move || {
                    std::process::Command::new(exe)
                        .arg("init")
                        .arg("--home")
                        .arg(home)
                        .arg("--network")
                        .arg(file)
                        .args(["--gateway", &gw])
                        .env("QANAT_PASSPHRASE", PASSPHRASE)
                        .output()
                }
            })
            .await??;
            if !out.status.success() {
                bail!("qanat init for {name}: {}", String::from_utf8_lossy(&out.stderr));
            }
            let listener = TcpListener::bind(front).await.context("cannot bind a relay")?;
            relays.push(Relay::start(listener, gateway, Delay { one_way: p.one_way, jitter: p.jitter }));
            // One member (alice) commits at a time: a short decision window is safe.
            let args: [&OsStr; 5] = [
                "run".as_ref(),
                "--home".as_ref(),
                home.as_ref(),
                "--decision-window-secs".as_ref(),
                "15".as_ref(),
            ];
            let log = root.join(format!("{name}.log"));
            self.tracker.lock().map_err(|_| anyhow!("poisoned"))?.spawn_in(
                &self.topo.ns(name),
                &args,
                &home,
                &log,
                &[("QANAT_PASSPHRASE", PASSPHRASE)],
            )?;
            homes.push(home);
        }
        let mut ctl = Vec::new();
        let (mut events, tx) = Events::new();
        for (c, home) in homes.iter().enumerate() {
            let mut control = Control::connect(home, Duration::from_secs(60)).await?;
            chat::wait_directory(&mut control, Duration::from_secs(300)).await?;
            Control::connect(home, Duration::from_secs(5)).await?.watch(c, tx.clone());
            ctl.push(control);
        }
        println!("testbed: the clients have the directory after {} s", t0.elapsed().as_secs());

        // 3. Contacts (and the group).
        let setup = Duration::from_secs(300);
        befriend(&mut ctl, &mut events, (0, "bob"), (1, "alice"), setup).await?;
        println!("testbed: alice and bob are contacts after {} s", t0.elapsed().as_secs());
        if self.o.group {
            befriend(&mut ctl, &mut events, (0, "carol"), (2, "alice"), setup).await?;
            expect_ok(ctl[0].call(&Request::GroupCreate { name: "team".into() }).await?, "group create")?;
            for who in ["bob", "carol"] {
                let add = Request::GroupAdd { group: "team".into(), contact: who.into() };
                expect_ok(ctl[0].call(&add).await?, "group add")?;
            }
            let end = Instant::now() + setup;
            for c in ctl.iter_mut() {
                loop {
                    if let Response::Members { list, .. } =
                        c.call(&Request::Members { name: "team".into() }).await?
                        && list.len() == 2
                    {
                        break;
                    }
                    if Instant::now() >= end {
                        bail!("the group of three did not form within {} s", setup.as_secs());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        // What the set-up queued (answers, MLS welcomes, routes, acknowledgements) leaves at
        // λ_P: the chat measures a steady state, not that backlog.
        settle(&mut ctl, Duration::from_secs(10), setup).await?;
        println!(
            "testbed: contacts ready and queues drained after {} s; the chat starts",
            t0.elapsed().as_secs()
        );

        // 4. The chat, with the profile's trouble on its schedule.
        let mut messages = chat_script(self.o.messages, self.o.group, &self.topo.prefix);
        let plan = profile::plan(p, clients, self.o.duration, self.o.seed);
        let relays = Arc::new(relays);
        let trouble = tokio::spawn(play(
            plan,
            relays.clone(),
            Topology { prefix: self.topo.prefix.clone() },
            self.nodes.clone(),
        ));
        let start = Instant::now();
        let gap = self.o.duration / self.o.messages.max(1) as u32;
        for (k, m) in messages.iter_mut().enumerate() {
            tokio::time::sleep_until(start + gap * k as u32).await;
            m.sent = Some(Instant::now());
            match ctl[m.from].call(&Request::Send { to: m.to.clone(), text: m.text.clone() }).await? {
                Response::Sent { .. } => {}
                r => bail!("send: {r:?}"),
            }
        }
        let all_in =
            events.until(self.o.drain, |seen| Tally::count(&messages, seen).complete(&messages)).await;
        // Late duplicates have a few seconds to show.
        events.until(Duration::from_secs(5), |_| false).await;
        let trouble = if trouble.is_finished() {
            trouble.await??
        } else {
            trouble.abort();
            "(cut short)".into()
        };
        let tally = Tally::count(&messages, &events.seen);
        for (i, m) in messages.iter().enumerate() {
            for r in &m.recipients {
                let got = tally.arrivals.get(&(i, *r));
                println!(
                    "  #{i:<3} {:>5} -> {:<5} {:<6} {}",
                    CLIENTS[m.from].0,
                    CLIENTS[*r].0,
                    if m.to == "team" { "(team)" } else { "" },
                    got.map_or("MISSING".into(), |(n, d)| format!(
                        "{} ms{}",
                        d.as_millis(),
                        if *n > 1 { format!(" x{n}") } else { String::new() }
                    ))
                );
            }
        }
        if !all_in {
            println!(
                "testbed: not every message arrived within {} s of the last send",
                self.o.drain.as_secs()
            );
        }
        let stats: String = relays
            .iter()
            .map(|r| r.stats.connections.load(std::sync::atomic::Ordering::Relaxed).to_string())
            .collect::<Vec<_>>()
            .join("/");
        let lat = tally.latencies();
        let expected: usize = messages.iter().map(|m| m.recipients.len()).sum();
        Ok(Outcome {
            profile: p.name,
            expected,
            delivered: expected - tally.missing(&messages),
            wrong: tally.wrong(&messages),
            p50: quantile(&lat, 0.5),
            p99: quantile(&lat, 0.99),
            max: lat.last().copied().unwrap_or_default(),
            trouble: format!("{trouble}; client sessions {stats}"),
        })
    }

    /// Waits until every authority answers and every mix and gateway is listed.
    async fn wait_listed(&self, limit: Duration) -> Result<()> {
        let end = Instant::now() + limit;
        loop {
            let mut waiting = Vec::new();
            for n in &self.nodes {
                let page = http::get(at(n.index, METRICS_PORT), "/metrics", Duration::from_secs(2)).await;
                let ok = match page {
                    Ok((200, body)) => {
                        n.role == "authority"
                            || body.lines().any(|l| {
                                l.strip_prefix("qanat_directory_listed ")
                                    .and_then(|v| v.trim().parse::<f64>().ok())
                                    .is_some_and(|v| v >= 1.0)
                            })
                    }
                    _ => false,
                };
                if !ok {
                    waiting.push(n.name.as_str());
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= end {
                bail!("not in the directory after {} s: {}", limit.as_secs(), waiting.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Waits until no client has sent a real packet or an acknowledgement for `quiet` (their
/// queues are empty: at λ_P = 0.5/s, 10 s without one while a backlog waits has odds e^-5).
async fn settle(ctl: &mut [Control], quiet: Duration, limit: Duration) -> Result<()> {
    let end = Instant::now() + limit;
    let mut last: Vec<Option<[u64; 2]>> = vec![None; ctl.len()];
    let mut since = Instant::now();
    loop {
        for (c, l) in ctl.iter_mut().zip(last.iter_mut()) {
            if let Response::Status { sent, .. } = c.call(&Request::Status).await? {
                let now = Some([sent[0], sent[1]]);
                if *l != now {
                    *l = now;
                    since = Instant::now();
                }
            }
        }
        if since.elapsed() >= quiet {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("the clients' queues did not drain within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn expect_ok(r: Response, what: &str) -> Result<()> {
    if r == Response::Ok { Ok(()) } else { bail!("{what}: {r:?}") }
}

/// `a` invites `b`; both wait until the contact is ready.
async fn befriend(
    ctl: &mut [Control],
    events: &mut Events,
    (a, a_calls_b): (usize, &str),
    (b, b_calls_a): (usize, &str),
    limit: Duration,
) -> Result<()> {
    let link = match ctl[a].call(&Request::Invite { name: a_calls_b.into() }).await? {
        Response::Invitation { link, .. } => link,
        r => bail!("invite: {r:?}"),
    };
    expect_ok(ctl[b].call(&Request::Accept { link, name: b_calls_a.into() }).await?, "accept")?;
    let (ea, eb) = (format!("contact {a_calls_b} is ready"), format!("contact {b_calls_a} is ready"));
    if !events.until(limit, |s| Events::has(s, a, &ea) && Events::has(s, b, &eb)).await {
        bail!("{a_calls_b} and {b_calls_a} did not become contacts within {} s", limit.as_secs());
    }
    Ok(())
}

/// The chat: alice and bob write to each other in turn; with the group, every third message
/// goes to the group of three, from each member in turn.
fn chat_script(n: usize, group: bool, tag: &str) -> Vec<Message> {
    (0..n)
        .map(|k| {
            let text = format!("tb{k} {tag}");
            let (from, to, recipients) = match (group, k % 3) {
                (true, 2) => {
                    let from = (k / 3) % 3;
                    (from, "team", (0..3).filter(|c| *c != from).collect())
                }
                _ if k % 2 == 0 => (0, "bob", vec![1]),
                _ => (1, "alice", vec![0]),
            };
            Message { from, to: to.into(), recipients, text, sent: None }
        })
        .collect()
}

/// Plays `plan` from now; returns what it did, for people.
async fn play(
    plan: profile::Plan,
    relays: Arc<Vec<Relay>>,
    topo: Topology,
    nodes: Vec<Node>,
) -> Result<String> {
    let start = Instant::now();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let topo = Arc::new(topo);
    // The sides of the boundaries: gateways, L1, L2, L3, gateways; boundary b is between side b
    // and side b + 1.
    let side = |s: usize| -> Vec<u8> {
        let prefix = match s {
            1 => "mix1",
            2 => "mix2",
            3 => "mix3",
            _ => "gw",
        };
        nodes.iter().filter(|n| n.name.starts_with(prefix)).map(|n| n.index).collect()
    };
    for (t, action) in plan {
        tokio::time::sleep_until(start + t).await;
        let topo = topo.clone();
        match action {
            Action::LinkDown(c) | Action::LinkUp(c) => {
                let up = matches!(action, Action::LinkUp(_));
                *counts.entry(if up { "link up" } else { "link flaps" }).or_default() += usize::from(!up);
                tokio::task::spawn_blocking(move || topo.set_link(CLIENT_BASE + c as u8, up)).await??;
            }
            Action::Stall(c, d) => {
                *counts.entry("stalls").or_default() += 1;
                relays[c].stall(d);
            }
            Action::Reset(c) => {
                *counts.entry("resets").or_default() += 1;
                relays[c].reset();
            }
            Action::Cut(b) => {
                *counts.entry("partitions").or_default() += 1;
                let (x, y) = (side(b), side(b + 1));
                tokio::task::spawn_blocking(move || topo.cut(&x, &y)).await??;
            }
            Action::Heal => tokio::task::spawn_blocking(move || topo.heal()).await??,
        }
    }
    counts.remove("link up");
    let mut s = String::new();
    for (k, v) in &counts {
        let _ = write!(s, "{}{v} {k}", if s.is_empty() { "" } else { ", " });
    }
    Ok(if s.is_empty() { "none".into() } else { s })
}
