//! One schedule on the client's link (P3), on the wire: what a real client's TCP connection to
//! its gateway carries does not depend on what the user does or receives, nor on how many
//! mailboxes the user has.
//!
//! A devnet of 11 processes; four clients in this process, each connected to gateway 1 through a
//! relay in this test that parses the bytes as an observer of the link would (the handshake's
//! length-prefixed messages, then fixed-size frames) and notes when each frame passed:
//! - one mailbox, idle; one mailbox, busy (it accepts an invitation while watched, talks, makes
//!   invitations);
//! - fifty mailboxes (49 invitations made before its watched session started), idle; and busy
//!   (it talks with a contact, makes invitations, joins groups and leaves them).
//!
//! Checks: every byte after the handshake belongs to a frame of the one wire length; the
//! handshakes are the same length; every session starts with the same answers (one pull of
//! `1 + PULL_FIRST` frames, then `1 + PULL_BATCH`); and the gaps between frames, up and down,
//! are indistinguishable from the idle one-mailbox client's (two-sample Kolmogorov–Smirnov over
//! thousands of frames, p > 0.05 for the family of six comparisons: Bonferroni, each p > 0.05/6).
//! Real clients draw their schedules from the operating system's randomness, so unlike the seeded
//! `link_schedule` test every run is a fresh sample: six tests at 5% each would fail about one
//! run in four with nothing wrong.
//!
//! `cargo test --release -p qanat --test link_wire` (about three minutes).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use qanat_client::control::{Request, Response};
use qanat_client::engine::{Engine, EngineConfig, EngineEvent};
use qanat_client::runtime::{self, ClientHandle, RuntimeConfig};
use qanat_client::store::{Passphrase, Profile, danger};
use qanat_mixnet::sending::{PULL_BATCH, PULL_FIRST, TrafficProfile};
use qanat_node::config::ClientNetwork;
use qanat_pki::descriptor::LinkAddress;
use qanat_sim::stats::ks_two_sample;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

mod common;
use common::devnet_up;

const FETCH: Duration = Duration::from_millis(250);
const WATCH: Duration = Duration::from_secs(100);

/// What the relay saw of one client's link.
#[derive(Default)]
struct Trace {
    /// Connections made through the relay.
    connections: usize,
    /// Handshake message lengths of the last connection, in order, with their direction.
    handshake: Vec<(bool, usize)>,
    /// Frames of the last connection: when their last byte passed (seconds since the test's
    /// start), and their direction (true: up, client to gateway).
    frames: Vec<(f64, bool)>,
    /// Bytes that fit no frame (anything but a trailing partial frame is a failure).
    stray: usize,
}

/// A relay on 127.0.0.1 to `target`, parsing each direction as an observer would.
async fn relay(target: SocketAddr, wire_len: usize, t0: Instant) -> (LinkAddress, Arc<Mutex<Trace>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = LinkAddress::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let trace = Arc::new(Mutex::new(Trace::default()));
    let t = trace.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(gateway) = TcpStream::connect(target).await else { continue };
            {
                let mut tr = t.lock().unwrap();
                tr.connections += 1;
                tr.handshake.clear();
                tr.frames.clear();
            }
            let (cr, cw) = client.into_split();
            let (gr, gw) = gateway.into_split();
            tokio::spawn(pump(cr, gw, true, wire_len, t0, t.clone()));
            tokio::spawn(pump(gr, cw, false, wire_len, t0, t.clone()));
        }
    });
    (addr, trace)
}

/// Copies `from` to `to`, noting the handshake's two length-prefixed messages of this direction
/// and then each `wire_len`-byte frame.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    up: bool,
    wire_len: usize,
    t0: Instant,
    trace: Arc<Mutex<Trace>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut handshake_left: u32 = 2;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = t0.elapsed().as_secs_f64();
        pending.extend_from_slice(&buf[..n]);
        // Noted before it is passed on, so that an answer to it (noted by the other direction's
        // pump) is never noted first: the handshake's order is the order on the wire.
        {
            let mut tr = trace.lock().unwrap();
            note(&mut tr, &mut pending, &mut handshake_left, up, wire_len, at);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    if pending.len() >= wire_len || handshake_left > 0 && !pending.is_empty() {
        trace.lock().unwrap().stray += pending.len();
    }
}

/// Takes from `pending` the handshake messages and whole frames it holds, noting each in `tr`.
fn note(tr: &mut Trace, pending: &mut Vec<u8>, handshake_left: &mut u32, up: bool, wire_len: usize, at: f64) {
    loop {
        if *handshake_left > 0 {
            if pending.len() < 2 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([pending[0], pending[1]]));
            if pending.len() < 2 + len {
                break;
            }
            pending.drain(..2 + len);
            tr.handshake.push((up, len));
            *handshake_left -= 1;
        } else if pending.len() >= wire_len {
            pending.drain(..wire_len);
            tr.frames.push((at, up));
        } else {
            break;
        }
    }
}

struct User {
    home: std::path::PathBuf,
    handle: Option<ClientHandle>,
}

impl User {
    fn new(root: &Path, name: &str, network: &ClientNetwork, gateway: usize) -> Self {
        let home = root.join(name);
        let mut p =
            Profile::create_with(&home, &Passphrase::new("pw"), danger::weak_kdf_params(8, 1, 1).unwrap())
                .unwrap();
        let gw = network.gateways[gateway].identity.node_id();
        Engine::init(&mut p, gw, TrafficProfile::Standard, &mut rand::rng()).unwrap();
        Self { home, handle: None }
    }

    /// Runs the client with `network`'s gateway `gateway` (whose address may be a relay's).
    fn start(&mut self, network: &ClientNetwork, gateway: usize) {
        let p = Profile::open(&self.home, &Passphrase::new("pw")).unwrap();
        let config = EngineConfig { fetch_interval: FETCH, ..EngineConfig::default() };
        let engine = Engine::open(p, config, SystemTime::now()).unwrap();
        let rc = RuntimeConfig {
            network: network.clone(),
            gateway: network.gateways[gateway].clone(),
            fetch_interval: FETCH,
        };
        self.handle = Some(runtime::start(engine, rc).unwrap());
    }

    async fn stop(&mut self) {
        self.handle.take().unwrap().shutdown().await.unwrap();
    }

    async fn call(&self, r: Request) -> Response {
        self.handle.as_ref().unwrap().call(r).await
    }

    async fn invite(&self, name: &str) -> String {
        match self.call(Request::Invite { name: name.into() }).await {
            Response::Invitation { link, .. } => link,
            r => panic!("invite: {r:?}"),
        }
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<EngineEvent> {
        self.handle.as_ref().unwrap().subscribe()
    }

    /// The directory epoch in use (0: none yet).
    async fn directory_epoch(&self) -> u64 {
        match self.call(Request::Status).await {
            Response::Status { link: Some(l), .. } => l.directory_epoch,
            r => panic!("status: {r:?}"),
        }
    }
}

/// Waits, with a deadline, for an event `want` accepts.
async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
    within: Duration,
    what: &str,
    mut want: impl FnMut(&EngineEvent) -> bool,
) {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {within:?}"));
}

/// Waits, with a deadline, until every user has a directory document.
async fn wait_directory(users: &[&User]) {
    let end = Instant::now() + Duration::from_secs(60);
    for u in users {
        while u.directory_epoch().await == 0 {
            assert!(Instant::now() < end, "no directory document within a minute");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `a` and `b` become contacts (`a` invites).
async fn befriend(a: &User, a_name: &str, b: &User, b_name: &str) {
    let (mut ev_a, mut ev_b) = (a.events(), b.events());
    let link = a.invite(b_name).await;
    assert_eq!(b.call(Request::Accept { link, name: a_name.into() }).await, Response::Ok);
    let ready = EngineEvent::ContactReady { name: b_name.into() };
    wait_event(&mut ev_a, Duration::from_secs(60), "contact ready", |e| *e == ready).await;
    let ready = EngineEvent::ContactReady { name: a_name.into() };
    wait_event(&mut ev_b, Duration::from_secs(60), "contact ready", |e| *e == ready).await;
}

/// Gaps between consecutive frames of one direction, within `[from, to]`.
fn gaps(frames: &[(f64, bool)], up: bool, from: f64, to: f64) -> Vec<f64> {
    let t: Vec<f64> = frames.iter().filter(|f| f.1 == up && f.0 >= from && f.0 <= to).map(|f| f.0).collect();
    t.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The sizes of the first `n` answers down (frames that follow each other within 30 ms).
fn first_answers(frames: &[(f64, bool)], n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for &(at, _) in frames.iter().filter(|f| !f.1) {
        if at - last < 0.03 {
            *out.last_mut().unwrap() += 1;
        } else {
            if out.len() == n {
                break;
            }
            out.push(1);
        }
        last = at;
    }
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_one_size_and_their_times_do_not_depend_on_the_user() {
    let devnet = devnet_up(&["--lambda-p", "20"]);
    let network = ClientNetwork::load(&devnet.dir.path().join("network.toml")).unwrap();
    let t0 = Instant::now();
    let wire_len = qanat_network::link_config(&network.network.geometry).unwrap().frame_size.wire_len();
    let target = qanat_link::http::resolve(network.gateways[0].client_address.as_str()).await.unwrap();

    let root = tempfile::tempdir().unwrap();
    let names = ["one-idle", "one-busy", "fifty-idle", "fifty-busy"];
    let mut users: Vec<User> = names.iter().map(|n| User::new(root.path(), n, &network, 0)).collect();
    let mut peer = User::new(root.path(), "peer", &network, 1);
    peer.start(&network, 1);

    // The fifty-mailbox clients make 49 invitations in a first session, straight to the gateway.
    for u in &mut users[2..] {
        u.start(&network, 0);
    }
    wait_directory(&[&users[2], &users[3], &peer]).await;
    for u in &users[2..] {
        for i in 0..49 {
            u.invite(&format!("pending{i}")).await;
        }
    }
    befriend(&peer, "peer", &users[3], "fifty-busy").await;
    for u in &mut users[2..] {
        u.stop().await;
    }

    // The watched sessions: every client through its own relay.
    let mut traces = Vec::new();
    for u in &mut users {
        let (addr, trace) = relay(target, wire_len, t0).await;
        let mut net = network.clone();
        net.gateways[0].client_address = addr;
        u.start(&net, 0);
        traces.push(trace);
    }
    wait_directory(&users.iter().collect::<Vec<_>>()).await;
    let watch_from = t0.elapsed().as_secs_f64();

    // Busy: the one-mailbox client accepts an invitation while watched, then both busy clients
    // talk, receive, make invitations, join groups and leave them.
    let mut peer_events = peer.events();
    befriend(&peer, "peer", &users[1], "one-busy").await;
    let end = Instant::now() + WATCH;
    let mut round = 0;
    let mut sent = 0;
    while Instant::now() < end {
        let (one, fifty) = (&users[1], &users[3]);
        // They say yes to every group invitation that has come.
        for u in [one, fifty] {
            if let Response::GroupInvitations { list } = u.call(Request::GroupInvitations).await {
                for i in list {
                    let _ = u.call(Request::GroupAccept { invitation: i.id, name: None }).await;
                }
            }
        }
        match round % 6 {
            0 => {
                for (u, _) in [(one, "one"), (fifty, "fifty")] {
                    let r = u.call(Request::Send { to: "peer".into(), text: format!("hello {round}") }).await;
                    assert!(matches!(r, Response::Sent { .. }), "send: {r:?}");
                    sent += 1;
                }
            }
            1 => {
                for to in ["one-busy", "fifty-busy"] {
                    let r = peer.call(Request::Send { to: to.into(), text: format!("hi {round}") }).await;
                    assert!(matches!(r, Response::Sent { .. }), "send: {r:?}");
                }
            }
            2 => {
                one.invite(&format!("new{round}")).await;
                fifty.invite(&format!("new{round}")).await;
            }
            3 => {
                let g = format!("g{round}");
                assert_eq!(peer.call(Request::GroupCreate { name: g.clone() }).await, Response::Ok);
                for c in ["one-busy", "fifty-busy"] {
                    let r = peer.call(Request::GroupAdd { group: g.clone(), contact: c.into() }).await;
                    assert_eq!(r, Response::Ok, "group add");
                }
            }
            4 => {
                // Leave the group joined two rounds ago, if it has arrived.
                for u in [one, fifty] {
                    let _ = u.call(Request::GroupLeave { group: format!("g{}", round - 1) }).await;
                }
            }
            _ => {}
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let watch_to = t0.elapsed().as_secs_f64();
    // The busy clients really were: the peer got their texts.
    let mut got = 0;
    wait_event(&mut peer_events, Duration::from_secs(60), "texts at the peer", |e| {
        if matches!(e, EngineEvent::Message { .. }) {
            got += 1;
        }
        got >= sent / 2
    })
    .await;

    for u in &mut users {
        u.stop().await;
    }
    peer.stop().await;

    let traces: Vec<Trace> = traces.into_iter().map(|t| std::mem::take(&mut *t.lock().unwrap())).collect();
    for (name, t) in names.iter().zip(&traces) {
        assert_eq!(t.connections, 1, "{name}: one session through the relay");
        assert_eq!(t.stray, 0, "{name}: bytes after the handshake that fit no {wire_len}-byte frame");
        let n = t.frames.iter().filter(|f| f.0 >= watch_from && f.0 <= watch_to).count();
        assert!(n > 2_000, "{name}: only {n} frames watched");
        eprintln!("{name}: {n} frames of {wire_len} bytes in {:.0} s", watch_to - watch_from);
    }
    // Session starts: the same handshake, and the same answers.
    let mut expected = vec![1 + usize::from(PULL_FIRST)];
    expected.extend([1 + usize::from(PULL_BATCH); 9]);
    for (name, t) in names.iter().zip(&traces) {
        assert_eq!(t.handshake, traces[0].handshake, "{name}: handshake");
        assert_eq!(first_answers(&t.frames, 10), expected, "{name}: the first answers");
    }
    // Timing: each against the idle one-mailbox client, six comparisons at a family-wise 5%.
    let comparisons = 2 * (names.len() - 1);
    let alpha = 0.05 / comparisons as f64;
    for (name, t) in names.iter().zip(&traces).skip(1) {
        for up in [true, false] {
            let a = gaps(&traces[0].frames, up, watch_from, watch_to);
            let b = gaps(&t.frames, up, watch_from, watch_to);
            let ks = ks_two_sample(&a, &b).unwrap();
            let dir = if up { "up" } else { "down" };
            eprintln!(
                "one-idle vs {name} ({dir}): {} and {} gaps, D = {:.4}, p = {:.3}",
                a.len(),
                b.len(),
                ks.statistic,
                ks.p_value
            );
            assert!(
                ks.p_value > alpha,
                "one-idle vs {name} ({dir}): D = {:.4}, p = {:.4} (family-wise 5%: each p > {alpha:.4})",
                ks.statistic,
                ks.p_value
            );
        }
    }
}
