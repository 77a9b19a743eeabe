//! The honest world of the hostile devnet tests (`hostile_world.rs`, `hostile_fragments.rs`):
//! the bounds they hold the network to, the devnet's manifest and metrics, real clients in the
//! test's process (`runtime::start`) and the chat of alice, bob and carol, in which every message
//! is accounted for (who must receive it, who did, how long it took).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use qanat_client::control::{Request, Response};
use qanat_client::engine::{Engine, EngineConfig, EngineEvent};
use qanat_client::gateway::{GatewayAddress, GatewaySession};
use qanat_client::runtime::{self, ClientHandle, RuntimeConfig};
use qanat_client::store::{Passphrase, Profile, danger};
use qanat_link::{LinkSecretKey, http};
use qanat_mixnet::sending::TrafficProfile;
use qanat_node::config::ClientNetwork;
use rand::RngExt as _;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep};

// ---- the bounds ------------------------------------------------------------------------------

/// λ_P of the devnet: a client's real-packet slots per second.
pub(crate) const LAMBDA_P: &str = "10";
/// Median latency of honest messages: a sending slot (0.1 s), three mixes (50 ms mean each), two
/// gateways and the recipient's pull (0.1 s) come to about 0.3 s (measured in `hostile_world`:
/// 0.31 s on a 2-core machine running the 11 nodes, 4 clients and the attacks; 0.40 s in another
/// run; in `hostile_fragments`: 0.43 and 0.44 s); the bound leaves room for a slower machine.
pub(crate) const P50_BOUND: Duration = Duration::from_secs(2);
/// 99th percentile of honest messages, attacks included (measured: 0.94 and 0.96 s in
/// `hostile_world`, 1.12 and 1.15 s in `hostile_fragments`).
pub(crate) const P99_BOUND: Duration = Duration::from_secs(5);
/// Resident memory of each node process by role, in KiB: about twice the most measured during
/// the attacks (authorities 12.6 MiB; mixes 68 MiB before `hostile_world`'s hostile mixes,
/// 104.5 MiB with them, whose replays triple what they send to their next hops; gateways
/// 147.7 MiB).
pub(crate) fn rss_bound_kb(role: &str) -> u64 {
    match role {
        "authority" => 32 * 1024,
        "mix" => 208 * 1024,
        _ => 296 * 1024,
    }
}

// ---- the devnet ------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct NodeEntry {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) pid: Option<u32>,
    pub(crate) link: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) client: Option<SocketAddr>,
    pub(crate) identity_key: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) nodes: Vec<NodeEntry>,
}

pub(crate) fn manifest(dir: &Path) -> Manifest {
    serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap()
}

/// A metric of the node serving metrics at `addr` (0 if unreadable).
pub(crate) async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let Ok((_, body)) = http::get(addr, "/metrics", Duration::from_secs(5)).await else { return 0.0 };
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok()).unwrap_or(0.0)
}

/// Resident memory of process `pid`, in KiB.
pub(crate) fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

// ---- honest users ----------------------------------------------------------------------------

pub(crate) fn engine_config() -> EngineConfig {
    // Twice the delivery delay between members, and then some.
    let mut mls = EngineConfig::default().mls;
    mls.decision_window = Duration::from_secs(6);
    EngineConfig { fetch_interval: Duration::from_millis(100), mls, ..EngineConfig::default() }
}

pub(crate) struct User {
    pub(crate) name: &'static str,
    pub(crate) handle: ClientHandle,
    pub(crate) events: broadcast::Receiver<EngineEvent>,
    pub(crate) seen: Vec<EngineEvent>,
}

impl User {
    pub(crate) fn start(root: &Path, name: &'static str, network: &ClientNetwork, gateway: usize) -> Self {
        let home = root.join(name);
        let mut p =
            Profile::create_with(&home, &Passphrase::new("pw"), danger::weak_kdf_params(8, 1, 1).unwrap())
                .unwrap();
        Engine::init(
            &mut p,
            network.gateways[gateway].identity.node_id(),
            TrafficProfile::Standard,
            &mut rand::rng(),
        )
        .unwrap();
        let engine = Engine::open(p, engine_config(), SystemTime::now()).unwrap();
        let handle = runtime::start(
            engine,
            RuntimeConfig {
                network: network.clone(),
                gateway: network.gateways[gateway].clone(),
                fetch_interval: Duration::from_millis(100),
            },
        )
        .unwrap();
        Self { name, events: handle.subscribe(), handle, seen: Vec::new() }
    }

    pub(crate) async fn call(&self, r: Request) -> Response {
        self.handle.call(r).await
    }

    pub(crate) fn pump(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.seen.push(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("{}: lost {n} events", self.name),
                Err(_) => break,
            }
        }
    }

    pub(crate) fn has(&self, e: &EngineEvent) -> bool {
        self.seen.contains(e)
    }

    pub(crate) async fn send(&self, to: &str, text: &str) {
        match self.call(Request::Send { to: to.into(), text: text.into() }).await {
            Response::Sent { .. } => {}
            r => panic!("{} send to {to}: {r:?}", self.name),
        }
    }

    pub(crate) async fn undelivered(&self) -> usize {
        match self.call(Request::Status).await {
            Response::Status { undelivered, .. } => undelivered,
            r => panic!("{} status: {r:?}", self.name),
        }
    }

    pub(crate) async fn wait_network(&self) {
        for _ in 0..600 {
            if let Response::Status { network: true, .. } = self.call(Request::Status).await {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
        panic!("{} never got the directory", self.name);
    }

    /// Waits until this user sees `n` other members in `group`.
    pub(crate) async fn wait_members(&self, group: &str, n: usize) {
        for _ in 0..1800 {
            if let Response::Members { list, .. } = self.call(Request::Members { name: group.into() }).await
                && list.len() == n
            {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
        panic!("{} never saw {n} other members in {group}", self.name);
    }

    /// Says yes to the invitation into `group` once it has arrived.
    pub(crate) async fn accept_group(&self, group: &str) {
        for _ in 0..1800 {
            if let Response::GroupInvitations { list } = self.call(Request::GroupInvitations).await
                && let Some(i) = list.iter().find(|i| i.group == group)
            {
                let r = self.call(Request::GroupAccept { invitation: i.id.clone(), name: None }).await;
                assert_eq!(r, Response::Joining { name: group.into() }, "{} accepts {group}", self.name);
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
        panic!("{} was never invited to {group}", self.name);
    }

    pub(crate) async fn group_invitations(&self) -> Vec<qanat_client::control::GroupInvitationOut> {
        match self.call(Request::GroupInvitations).await {
            Response::GroupInvitations { list } => list,
            r => panic!("{}: {r:?}", self.name),
        }
    }
}

/// Makes `a` and `b` contacts (`a` invites, `b` accepts) and waits until both are ready.
pub(crate) async fn connect(a: &mut User, b: &mut User) {
    let link = match a.call(Request::Invite { name: b.name.into() }).await {
        Response::Invitation { link, .. } => link,
        r => panic!("invite: {r:?}"),
    };
    assert_eq!(b.call(Request::Accept { link, name: a.name.into() }).await, Response::Ok);
    let (ea, eb) = (
        EngineEvent::ContactReady { name: b.name.into() },
        EngineEvent::ContactReady { name: a.name.into() },
    );
    let end = Instant::now() + Duration::from_secs(120);
    while !(a.has(&ea) && b.has(&eb)) {
        assert!(Instant::now() < end, "{} and {} never became contacts", a.name, b.name);
        sleep(Duration::from_millis(100)).await;
        a.pump();
        b.pump();
    }
}

// ---- the world: honest chat, accounted ---------------------------------------------------------

pub(crate) const ALICE: usize = 0;
pub(crate) const BOB: usize = 1;
pub(crate) const CAROL: usize = 2;
pub(crate) const HONEST: [&str; 3] = ["alice", "bob", "carol"];

/// Whom each honest user writes to, in turn (a contact by the name the sender gives it, or the
/// group), and who receives it.
pub(crate) fn targets(from: usize) -> &'static [(&'static str, &'static [usize])] {
    match from {
        ALICE => &[("bob", &[BOB]), ("carol", &[CAROL]), ("team", &[BOB, CAROL])],
        BOB => &[("alice", &[ALICE]), ("team", &[ALICE, CAROL])],
        _ => &[("alice", &[ALICE]), ("team", &[ALICE, BOB])],
    }
}

/// One honest message: who sent it when, who must receive it, and when each did.
pub(crate) struct Sent {
    pub(crate) from: usize,
    pub(crate) at: SystemTime,
    pub(crate) to: Vec<usize>,
    pub(crate) got: Vec<(usize, Duration)>,
}

pub(crate) struct World {
    pub(crate) users: Vec<User>,
    pub(crate) chatting: bool,
    pub(crate) next_send: [Instant; 3],
    pub(crate) turn: [usize; 3],
    /// Every honest message by its text.
    pub(crate) sent: BTreeMap<String, Sent>,
    /// Honest-looking texts a user received that were not meant for it.
    pub(crate) stray: Vec<String>,
    /// Mallory's texts alice received, by text.
    pub(crate) spam: HashMap<String, usize>,
    pub(crate) nodes: Vec<NodeEntry>,
    pub(crate) rss_max: BTreeMap<String, u64>,
    pub(crate) next_rss: Instant,
}

impl World {
    /// The chat of `users` (alice, bob and carol first, at [`ALICE`], [`BOB`] and [`CAROL`]; any
    /// others are pumped, not chatting), sampling the memory of the devnet's `nodes`, from now.
    pub(crate) fn new(users: Vec<User>, nodes: Vec<NodeEntry>) -> Self {
        let start = Instant::now();
        Self {
            users,
            chatting: true,
            next_send: [start; 3],
            turn: [0; 3],
            sent: BTreeMap::new(),
            stray: Vec::new(),
            spam: HashMap::new(),
            nodes,
            rss_max: BTreeMap::new(),
            next_rss: start,
        }
    }

    pub(crate) fn user(&self, i: usize) -> &User {
        &self.users[i]
    }

    /// Takes every user's events: honest messages are accounted, the rest kept.
    pub(crate) fn pump(&mut self) {
        for (i, u) in self.users.iter_mut().enumerate() {
            u.pump();
            let mut keep = Vec::new();
            for e in u.seen.drain(..) {
                match e {
                    EngineEvent::Message { text, sent_at, received_at, .. } if text.starts_with("h:") => {
                        let latency = received_at.duration_since(sent_at).unwrap_or_default();
                        match self.sent.get_mut(&text) {
                            Some(s) if s.to.contains(&i) => s.got.push((i, latency)),
                            _ => self.stray.push(format!("{} got {text}", u.name)),
                        }
                    }
                    EngineEvent::Message { text, .. } if i == ALICE && text.starts_with("spam ") => {
                        *self.spam.entry(text).or_default() += 1;
                    }
                    // Mallory's deliveries are not watched.
                    EngineEvent::Delivery { .. } => {}
                    e => keep.push(e),
                }
            }
            u.seen = keep;
        }
    }

    /// Sends the honest messages that are due, takes events, samples memory.
    pub(crate) async fn tick(&mut self) {
        let now = Instant::now();
        if self.chatting {
            for from in 0..3 {
                if now < self.next_send[from] {
                    continue;
                }
                let ts = targets(from);
                let (to, receivers) = ts[self.turn[from] % ts.len()];
                self.turn[from] += 1;
                let text = format!("h:{}:{to}:{}", HONEST[from], self.sent.len());
                let at = SystemTime::now();
                self.users[from].send(to, &text).await;
                self.sent.insert(text, Sent { from, at, to: receivers.to_vec(), got: Vec::new() });
                self.next_send[from] = now + Duration::from_millis(rand::rng().random_range(1000..2000));
            }
        }
        self.pump();
        if now >= self.next_rss {
            self.next_rss = now + Duration::from_secs(2);
            for n in &self.nodes {
                let kb = n.pid.and_then(rss_kb).unwrap_or(0);
                let m = self.rss_max.entry(n.name.clone()).or_default();
                *m = (*m).max(kb);
            }
        }
    }

    /// Runs the world until `done` holds (checked every 100 ms) or `limit` passes (the test
    /// fails, naming `what`).
    pub(crate) async fn until<F>(&mut self, limit: Duration, what: &str, mut done: F)
    where
        F: AsyncFnMut(&mut World) -> bool,
    {
        let end = Instant::now() + limit;
        loop {
            self.tick().await;
            if done(self).await {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs the world for `d`.
    pub(crate) async fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.tick().await;
            sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn delivered_all(&self) -> bool {
        self.sent.values().all(|s| s.to.iter().all(|r| s.got.iter().any(|g| g.0 == *r)))
    }

    /// Latencies of every delivery of a message sent by one of `from` within `window`, sorted.
    pub(crate) fn latencies(&self, from: &[usize], window: (SystemTime, SystemTime)) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .sent
            .values()
            .filter(|s| from.contains(&s.from) && s.at >= window.0 && s.at <= window.1)
            .flat_map(|s| s.got.iter().map(|g| g.1))
            .collect();
        v.sort();
        v
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A raw session with a gateway's client port, with a fresh link key.
pub(crate) async fn session(network: &ClientNetwork, addr: SocketAddr, gateway: usize) -> GatewaySession {
    let link = qanat_network::link_config(&network.network.geometry).unwrap();
    let address = GatewayAddress { addr, link_key: network.gateways[gateway].link_key.clone() };
    let key = LinkSecretKey::generate(&mut rand::rng());
    GatewaySession::connect(&address, &key, link).await.unwrap()
}
