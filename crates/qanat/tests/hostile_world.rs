//! Every attack against one devnet while honest people talk (issue 13, "Must show"): 11 node
//! processes on 127.0.0.1 (`qanat devnet up`, λ_P = 10 a second, no injected loss), real
//! clients in this process (`runtime::start`): alice, bob and carol, alice's contacts bob and
//! carol, and their group "team". From the first attack to the last, each of the three sends a
//! message every 1 to 2 s to a contact or to the group, in turn. The attacks, one after the
//! other while they talk:
//!
//! 1. a flooding client: a raw gateway session sending packets far above its budget;
//! 2. a handshake flood and slowloris dialers (from 127.0.0.2 to 127.0.0.5) at every listener:
//!    each node's link port (authorities, mixes, gateways) and each gateway's client port; then
//!    a flood from 20 addresses, more than the handshake table holds, at gw1's client port;
//! 3. a registration squatter: bob makes an invitation, the attacker registers its mailbox
//!    first at bob's gateway (bob's client reports the invitation refused);
//! 4. a group-invitation spammer: mallory, alice's contact, creates 20 groups and adds alice;
//! 5. a contact writing steadily: mallory queues 200 messages to alice at once;
//! 6. two hostile mixes (a `[danger]` table, see `qanat_node::config::HostileMix`): one drops
//!    30% of what it should forward, acknowledgements included, and both replay and forge
//!    packets to their next hops, for two epochs and more.
//!
//! Checked for the whole run: every honest message delivered exactly once; during attacks 1 to 5
//! (which must not slow anyone down) the honest messages'
//! latency (sender's clock at `send` to recipient's at delivery, one machine) within
//! [`P50_BOUND`] and [`P99_BOUND`], and alice's within [`SPAM_BOUND`] while mallory writes;
//! every node's resident memory under its role's bound ([`rss_bound_kb`]); each attack's counter grown. A summary
//! table is printed for docs/RELIABILITY.md.
//!
//! A contact sending fragments of messages that never complete is `hostile_fragments.rs` (the
//! same world: `common::world`).
//!
//! `cargo test --release -p qanat --test hostile_world -- --nocapture` (about 140 s on 2 cores).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use qanat_client::control::{Request, Response};
use qanat_client::engine::EngineEvent;
use qanat_client::gateway::{GatewayError, GatewaySession, MailboxAccess};
use qanat_client::invite::Invitation;
use qanat_mixnet::client_proto::ErrorCode;
use qanat_node::config::ClientNetwork;
use qanat_pki::IdentityKey;
use rand::RngExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

mod common;
use common::devnet_up;
use common::world::{
    ALICE, BOB, CAROL, LAMBDA_P, NodeEntry, P50_BOUND, P99_BOUND, User, World, connect, manifest, metric,
    percentile, rss_bound_kb, session,
};

// ---- the bounds (and those of common::world) ---------------------------------------------------

/// Alice's messages sent while mallory's 200 arrive (and she acknowledges them). Her own
/// messages take turns with the acknowledgements, so they wait a few slots of 0.1 s, not for
/// 200 acknowledgements to leave (before that fix: over 120 s; measured: 0.8 s at most).
const SPAM_BOUND: Duration = Duration::from_secs(5);
/// Latency while two of the six mixes are hostile (one drops 30% of what it should forward):
/// about one round trip in six loses a packet or its acknowledgement and is resent after the
/// outbox's first wait (about 1.4 s at λ_P = 10, times 1 to 2), so the median barely moves and
/// the tail is three or four resends, waiting about 1.4, 2.8, 5.6 and 11.2 s, each times 1 to
/// 2, with about 28% of round trips failing: four in a row is one round trip in 160, at most
/// 42 s (measured in two runs: p50 0.40 and 0.68 s, p99 12.0 and 21.9 s, max 16.1 and 25.8 s).
const HOSTILE_MIX_P50_BOUND: Duration = Duration::from_secs(2);
/// See [`HOSTILE_MIX_P50_BOUND`].
const HOSTILE_MIX_P99_BOUND: Duration = Duration::from_secs(45);
/// How long a fresh honest session may take to connect while its gateway's handshake table is
/// full of flooders: the client's handshake timeout.
const CONNECT_BOUND: Duration = Duration::from_secs(10);

/// The config file of node `name` in the devnet at `dir`.
fn manifest_config(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap();
    let node = m["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap();
    node["config"].as_str().unwrap().into()
}

const MALLORY: usize = 3;

// ---- attackers -------------------------------------------------------------------------------

/// A TCP connection to `to` from 127.0.0.`last`.
async fn tcp_from(last: u8, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from(([127, 0, 0, last], 0)))?;
    s.connect(to).await
}

/// What a dialer does with each connection it opens.
#[derive(Clone, Copy)]
enum Style {
    /// Opens it and holds it for a second, sending nothing.
    Flood,
    /// Sends a plausible first handshake message one byte every 200 ms.
    Slowloris,
}

/// `per_address` dialers of `style` from each of 127.0.0.`sources` at `to`, re-opening what the
/// listener closes, until `stop`.
fn dialers(
    to: SocketAddr,
    style: Style,
    sources: &[u8],
    per_address: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for &last in sources {
        for _ in 0..per_address {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = tcp_from(last, to).await else {
                        sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    match style {
                        Style::Flood => sleep(Duration::from_secs(1)).await,
                        Style::Slowloris => {
                            // u16 length 2,320 (a real first message's), then the message crawling
                            // in; a closed connection ends the write.
                            let mut msg = vec![0x09, 0x10];
                            msg.resize(2 + 2_320, 0x5a);
                            for b in msg {
                                if stop.load(Ordering::Relaxed) || s.write_all(&[b]).await.is_err() {
                                    break;
                                }
                                sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                    drop(s);
                }
            }));
        }
    }
    tasks
}

/// Sends packets of random bytes through `s` as fast as the link takes them, until `stop`;
/// counts them in `sent`.
fn packet_flood(
    mut s: GatewaySession,
    packet_len: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut p = vec![0u8; packet_len];
        while !stop.load(Ordering::Relaxed) {
            rand::Rng::fill_bytes(&mut rand::rng(), &mut p);
            if s.send_packet(p.clone()).await.is_err() {
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            // Still far above any budget (the link alone would take thousands a second), but
            // leaves the shared machine to everyone else.
            if sent.load(Ordering::Relaxed).is_multiple_of(20) {
                sleep(Duration::from_millis(10)).await;
            }
        }
    })
}

// ---- the test --------------------------------------------------------------------------------

/// One row of the summary.
struct Row {
    attack: &'static str,
    counter: String,
    value: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_users_talk_through_every_attack() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addresses = tcp_from(2, probe.local_addr().unwrap()).await.is_ok();
    drop(probe);

    let devnet = devnet_up(&["--epoch-secs", "20", "--lambda-p", LAMBDA_P]);
    let dir = devnet.dir.path().to_owned();
    let network = ClientNetwork::load(&dir.join("network.toml")).unwrap();
    let nodes = manifest(&dir).nodes;
    let gw_index = |n: &NodeEntry| -> usize {
        let b: [u8; 32] = hex::decode(&n.identity_key).unwrap().try_into().unwrap();
        let id = IdentityKey::from_bytes(&b).unwrap().node_id();
        network.gateways.iter().position(|g| g.identity.node_id() == id).unwrap()
    };
    let gateways: Vec<(usize, NodeEntry)> =
        nodes.iter().filter(|n| n.role == "gateway").map(|n| (gw_index(n), n.clone())).collect();
    let gw_node = |i: usize| gateways.iter().find(|g| g.0 == i).unwrap().1.clone();

    // Alice and carol on the first gateway, bob and mallory on the second.
    let root = tempfile::tempdir().unwrap();
    let mut alice = User::start(root.path(), "alice", &network, 0);
    let mut bob = User::start(root.path(), "bob", &network, 1);
    let mut carol = User::start(root.path(), "carol", &network, 0);
    let mut mallory = User::start(root.path(), "mallory", &network, 1);
    for u in [&alice, &bob, &carol, &mallory] {
        u.wait_network().await;
    }
    let setup = Instant::now();
    connect(&mut alice, &mut bob).await;
    connect(&mut alice, &mut carol).await;
    connect(&mut mallory, &mut alice).await;
    assert_eq!(alice.call(Request::GroupCreate { name: "team".into() }).await, Response::Ok);
    for c in ["bob", "carol"] {
        let r = alice.call(Request::GroupAdd { group: "team".into(), contact: c.into() }).await;
        assert_eq!(r, Response::Ok);
    }
    bob.accept_group("team").await;
    carol.accept_group("team").await;
    for u in [&alice, &bob, &carol] {
        u.wait_members("team", 2).await;
    }
    eprintln!("set up in {:.0?}: contacts and the group of three", setup.elapsed());

    let start = Instant::now();
    let mut w = World::new(vec![alice, bob, carol, mallory], nodes.clone());
    let mut rows = Vec::new();
    let t_begin = SystemTime::now();
    w.run_for(Duration::from_secs(5)).await;

    // 1 and 2 at once: a flooding client at each gateway, handshake floods and slowloris
    // dialers at every listener.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let flooded = Arc::new(AtomicU64::new(0));
    let packet_len = network.network.geometry.packet_len();
    let over = "qanat_gateway_client_packets_over_budget_total";
    let mut over0 = 0.0;
    for (i, n) in &gateways {
        over0 += metric(n.metrics, over).await;
        let s = session(&network, n.client.unwrap(), *i).await;
        tasks.push(packet_flood(s, packet_len, stop.clone(), flooded.clone()));
    }
    // Every listener: (metrics address, counter prefix, port).
    let mut listeners: Vec<(String, SocketAddr, &str, SocketAddr)> = Vec::new();
    for n in &nodes {
        listeners.push((format!("{} link", n.name), n.metrics, "qanat_link", n.link));
        if let Some(c) = n.client {
            listeners.push((format!("{} clients", n.name), n.metrics, "qanat_gateway_client_link", c));
        }
    }
    let counters = ["refused_handshakes_per_ip_total", "handshake_timeouts_total"];
    let mut before = HashMap::new();
    if other_addresses {
        for (name, m, prefix, port) in &listeners {
            for c in counters {
                before.insert((name.clone(), c), metric(*m, &format!("{prefix}_{c}")).await);
            }
            // 18 silent connections from each of two addresses (the bound is 16 handshakes in
            // flight per address), 4 crawling ones from each of two others (the handshake
            // timeout is 10 s).
            tasks.extend(dialers(*port, Style::Flood, &[2, 3], 18, &stop));
            tasks.extend(dialers(*port, Style::Slowloris, &[4, 5], 4, &stop));
        }
    } else {
        eprintln!("handshake floods skipped: cannot bind 127.0.0.2 on this machine");
    }
    let gws: Vec<NodeEntry> = gateways.iter().map(|g| g.1.clone()).collect();
    w.until(Duration::from_secs(60), "the packet floods to be counted", async |_| {
        let mut v = 0.0;
        for n in &gws {
            v += metric(n.metrics, over).await;
        }
        v - over0 >= 500.0
    })
    .await;
    let mut seen = HashMap::new();
    if other_addresses {
        let ls = listeners.clone();
        let b = before.clone();
        w.until(Duration::from_secs(60), "every listener to count the floods and time-outs", async |_| {
            for (name, m, prefix, _) in &ls {
                for c in counters {
                    if metric(*m, &format!("{prefix}_{c}")).await <= b[&(name.clone(), c)] {
                        return false;
                    }
                }
            }
            true
        })
        .await;
        for (name, m, prefix, _) in &listeners {
            for c in counters {
                let v = metric(*m, &format!("{prefix}_{c}")).await - before[&(name.clone(), c)];
                *seen.entry(c).or_insert(0.0) += v;
            }
        }
        // More flooding addresses than the table holds (20 × 16 > 256) at the first gateway's
        // client port: the oldest handshakes of the busiest addresses are evicted, and a fresh
        // honest session still connects within its handshake timeout.
        let gw = gw_node(0);
        let evictions = "qanat_gateway_client_link_handshake_evictions_total";
        let ev0 = metric(gw.metrics, evictions).await;
        let sources: Vec<u8> = (6..26).collect();
        tasks.extend(dialers(gw.client.unwrap(), Style::Flood, &sources, 16, &stop));
        let m = gw.metrics;
        w.until(Duration::from_secs(60), "evictions at the full table", async |_| {
            metric(m, evictions).await > ev0
        })
        .await;
        let t = Instant::now();
        let honest = tokio::time::timeout(CONNECT_BOUND, session(&network, gw.client.unwrap(), 0)).await;
        assert!(honest.is_ok(), "no honest session within {CONNECT_BOUND:?} during the flood");
        eprintln!("a fresh honest session connected in {:.1?} with the table full", t.elapsed());
        honest.unwrap().close().await;
        w.run_for(Duration::from_secs(2)).await;
        rows.push(Row {
            attack: "2. handshake flood from 20 addresses (gw1 client port)",
            counter: evictions.into(),
            value: metric(m, evictions).await - ev0,
        });
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    w.run_for(Duration::from_secs(1)).await;
    let mut over_total = 0.0;
    for n in &gws {
        over_total += metric(n.metrics, over).await;
    }
    rows.push(Row {
        attack: "1. packet flood (a session per gateway)",
        counter: over.into(),
        value: over_total - over0,
    });
    eprintln!("attacks 1 and 2 over: {} flood packets sent", flooded.load(Ordering::Relaxed));
    if other_addresses {
        for c in counters {
            rows.push(Row {
                attack: "2. handshake flood + slowloris (all listeners)",
                counter: format!("qanat_link_{c} (+ client ports)"),
                value: seen[c],
            });
        }
    }
    w.run_for(Duration::from_secs(3)).await;

    // 3. A registration squatter: whoever sees bob's invitation link registers its mailbox at
    // bob's gateway before bob's client does (its next pull, within 0.1 s): the attacker's
    // session is open before the link exists. It may lose the race; then bob tries again.
    let bob_gw = 1; // bob's gateway, as started above
    let mut squatter = session(&network, gw_node(bob_gw).client.unwrap(), bob_gw).await;
    let mut attempts = 0;
    let squatted = loop {
        attempts += 1;
        assert!(attempts <= 10, "the squatter never registered first");
        let link = match w.user(BOB).call(Request::Invite { name: format!("friend{attempts}") }).await {
            Response::Invitation { link, .. } => link,
            r => panic!("invite: {r:?}"),
        };
        let inv = Invitation::parse(&link).unwrap();
        assert_eq!(inv.gateway().node_id(), &network.gateways[bob_gw].identity.node_id());
        let m = MailboxAccess { mailbox: *inv.mailbox(), credential: rand::rng().random() };
        match squatter.register(m).await {
            Ok(()) => break m,
            Err(GatewayError::Refused(ErrorCode::Unauthorized)) => {}
            Err(e) => panic!("the squatter's registration: {e}"),
        }
        w.run_for(Duration::from_millis(500)).await;
    };
    // Bob's registration is refused for good: his client reports the invitation dead (and
    // forgets it), and his conversations go on.
    let refused = EngineEvent::InvitationRefused { name: format!("friend{attempts}") };
    w.until(Duration::from_secs(30), "bob to learn his invitation was squatted", async |w| {
        w.user(BOB).has(&refused)
    })
    .await;
    assert!(squatter.fetch(squatted, 0, 1).await.is_ok(), "the squatter still holds the mailbox");
    eprintln!("the squatter registered bob's invitation mailbox first (attempt {attempts})");
    rows.push(Row {
        attack: "3. registration squatter",
        counter: "EngineEvent::InvitationRefused (bob)".into(),
        value: w.user(BOB).seen.iter().filter(|e| matches!(e, EngineEvent::InvitationRefused { .. })).count()
            as f64,
    });

    // 4. A group-invitation spammer: mallory creates 20 groups and adds alice to each.
    for g in 0..20 {
        let name = format!("spam{g}");
        let m = w.user(MALLORY);
        assert_eq!(m.call(Request::GroupCreate { name: name.clone() }).await, Response::Ok);
        let r = m.call(Request::GroupAdd { group: name, contact: "alice".into() }).await;
        assert_eq!(r, Response::Ok);
        w.tick().await;
    }
    w.until(Duration::from_secs(120), "mallory's 20 invitations delivered", async |w| {
        w.user(MALLORY).undelivered().await == 0
    })
    .await;
    w.run_for(Duration::from_secs(2)).await;
    let invites = w.user(ALICE).group_invitations().await;
    assert_eq!(
        invites.iter().filter(|i| i.from == "mallory").count(),
        qanat_client::engine::MAX_GROUP_INVITATIONS_PER_CONTACT,
        "{invites:?}"
    );
    match w.user(ALICE).call(Request::Contacts).await {
        Response::Threads { list } => {
            assert!(!list.iter().any(|t| t.name.starts_with("spam")), "alice joined a group: {list:?}")
        }
        r => panic!("{r:?}"),
    }
    rows.push(Row {
        attack: "4. group-invitation spam (20 groups)",
        counter: "alice's group invitations kept".into(),
        value: invites.len() as f64,
    });

    // 5. Mallory writes 200 messages to alice at once, while everyone talks.
    let spam_from = SystemTime::now();
    for i in 0..200 {
        w.user(MALLORY).send("alice", &format!("spam {i}")).await;
    }
    w.until(Duration::from_secs(120), "mallory's 200 messages", async |w| w.spam.len() == 200).await;
    let spam_to = SystemTime::now();
    assert!(w.spam.values().all(|n| *n == 1), "a message of mallory's twice");
    let alice_during = w.latencies(&[ALICE], (spam_from, spam_to));
    let all_during = w.latencies(&[ALICE, BOB, CAROL], (spam_from, spam_to));
    let worst = alice_during.last().copied().unwrap_or_default();
    rows.push(Row {
        attack: "5. contact writing 200 messages",
        counter: "messages alice received from mallory".into(),
        value: w.spam.len() as f64,
    });
    eprintln!(
        "while mallory wrote ({:.1?}): alice's {} deliveries at most {worst:.1?}; everyone's p50 {:.1?}, p99 {:.1?}",
        spam_to.duration_since(spam_from).unwrap_or_default(),
        alice_during.len(),
        percentile(&all_during, 0.5),
        percentile(&all_during, 0.99),
    );
    assert!(!alice_during.is_empty(), "alice sent nothing while mallory wrote");
    assert!(worst <= SPAM_BOUND, "alice's message took {worst:?} while mallory wrote (bound {SPAM_BOUND:?})");

    // 6. Two hostile mixes: a node operator restarts two mixes with a [danger] table (the
    // devnet starts such a node with --allow-danger). One drops 30% of what it should forward
    // (acknowledgements included: it cannot tell them apart), and each sends copies of what it
    // forwards (replays) and packets of random bytes (forgeries) to the same next hops. The
    // directory moves them between layers every epoch, so they are sometimes the last layer and
    // their replays and forgeries reach the gateways.
    let mixes: Vec<NodeEntry> = nodes.iter().filter(|n| n.role == "mix").cloned().collect();
    let hostile = [mixes[0].name.clone(), mixes[mixes.len() - 1].name.clone()];
    let honest_mixes: Vec<NodeEntry> = mixes.iter().filter(|n| !hostile.contains(&n.name)).cloned().collect();
    let sum = async |ns: &[NodeEntry], name: &str| {
        let mut v = 0.0;
        for n in ns {
            v += metric(n.metrics, name).await;
        }
        v
    };
    let mix_replays0 = sum(&honest_mixes, "qanat_mix_dropped_replay_total").await;
    let mix_forged0 = sum(&honest_mixes, "qanat_mix_dropped_malformed_total").await;
    let gw_forged0 = sum(&gws, "qanat_gateway_refused_malformed_total").await;
    let gw_replays0 = sum(&gws, "qanat_gateway_duplicate_stores_total").await
        + sum(&gws, "qanat_gateway_dropped_replay_total").await;
    for (name, table) in [
        (&hostile[0], "withhold_rate = 0.3\nreplay_copies = 1\nforge_copies = 1\n"),
        (&hostile[1], "replay_copies = 2\nforge_copies = 1\n"),
    ] {
        let config = manifest_config(&dir, name);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!("\n[danger]\n{table}"));
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(common::BIN)
            .args(["devnet", "restart", "--dir"])
            .arg(&dir)
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "restart {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    w.nodes = manifest(&dir).nodes;
    let hostile_nodes: Vec<NodeEntry> =
        w.nodes.iter().filter(|n| hostile.contains(&n.name)).cloned().collect();
    let hostile_from = SystemTime::now();
    // Two epochs at least, so that each hostile mix serves more than one layer.
    w.run_for(Duration::from_secs(45)).await;
    let counted = async |name: &str| sum(&hostile_nodes, name).await;
    w.until(Duration::from_secs(60), "the hostile mixes' attacks to be seen", async |_| {
        sum(&honest_mixes, "qanat_mix_dropped_replay_total").await > mix_replays0
            && sum(&honest_mixes, "qanat_mix_dropped_malformed_total").await > mix_forged0
            && sum(&gws, "qanat_gateway_refused_malformed_total").await > gw_forged0
            && sum(&gws, "qanat_gateway_duplicate_stores_total").await
                + sum(&gws, "qanat_gateway_dropped_replay_total").await
                > gw_replays0
    })
    .await;
    let hostile_to = SystemTime::now();
    rows.push(Row {
        attack: "6. hostile mixes (withhold 30%, replay, forge)",
        counter: "hostile mixes' `qanat_mix_danger_withheld_total`".into(),
        value: counted("qanat_mix_danger_withheld_total").await,
    });
    rows.push(Row {
        attack: "6. hostile mixes (withhold 30%, replay, forge)",
        counter: "honest mixes' `qanat_mix_dropped_replay_total` (replays caught)".into(),
        value: sum(&honest_mixes, "qanat_mix_dropped_replay_total").await - mix_replays0,
    });
    rows.push(Row {
        attack: "6. hostile mixes (withhold 30%, replay, forge)",
        counter: "honest mixes' `qanat_mix_dropped_malformed_total` (forgeries caught)".into(),
        value: sum(&honest_mixes, "qanat_mix_dropped_malformed_total").await - mix_forged0,
    });
    rows.push(Row {
        attack: "6. hostile mixes (withhold 30%, replay, forge)",
        counter: "gateways' `qanat_gateway_refused_malformed_total` (forgeries answered)".into(),
        value: sum(&gws, "qanat_gateway_refused_malformed_total").await - gw_forged0,
    });
    rows.push(Row {
        attack: "6. hostile mixes (withhold 30%, replay, forge)",
        counter: "gateways' duplicate stores and replays (one write per packet)".into(),
        value: sum(&gws, "qanat_gateway_duplicate_stores_total").await
            + sum(&gws, "qanat_gateway_dropped_replay_total").await
            - gw_replays0,
    });
    let during = w.latencies(&[ALICE, BOB, CAROL], (hostile_from, hostile_to));
    let (h50, h99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    eprintln!(
        "while two mixes were hostile ({:.0?}): {} deliveries, p50 {:.2} s, p99 {:.2} s, max {:.2} s (bounds {:?}, {:?})",
        hostile_to.duration_since(hostile_from).unwrap_or_default(),
        during.len(),
        h50.as_secs_f64(),
        h99.as_secs_f64(),
        during.last().copied().unwrap_or_default().as_secs_f64(),
        HOSTILE_MIX_P50_BOUND,
        HOSTILE_MIX_P99_BOUND,
    );
    assert!(!during.is_empty(), "nothing delivered while the mixes were hostile");
    assert!(h50 <= HOSTILE_MIX_P50_BOUND, "p50 {h50:?} with hostile mixes");
    assert!(h99 <= HOSTILE_MIX_P99_BOUND, "p99 {h99:?} with hostile mixes");

    // The end: everything honest delivered, exactly once.
    w.chatting = false;
    w.until(Duration::from_secs(120), "every honest message", async |w| w.delivered_all()).await;
    w.run_for(Duration::from_secs(5)).await;
    assert!(w.stray.is_empty(), "messages to the wrong people: {:?}", w.stray);
    for (text, s) in &w.sent {
        let mut got: Vec<usize> = s.got.iter().map(|g| g.0).collect();
        got.sort();
        assert_eq!(got, s.to, "{text}: delivered to {got:?}, meant for {:?}", s.to);
    }
    // Attacks 1 to 5 must not slow honest users; hostile mixes lose packets, which costs
    // resends, and are bounded on their own above.
    let all = w.latencies(&[ALICE, BOB, CAROL], (t_begin, hostile_from));

    let (p50, p99) = (percentile(&all, 0.5), percentile(&all, 0.99));

    rows.sort_by_key(|r| r.attack.chars().next());
    eprintln!();
    eprintln!("| attack | counter | value |");
    eprintln!("|---|---|---|");
    for r in &rows {
        eprintln!("| {} | `{}` | {} |", r.attack, r.counter, r.value);
    }
    eprintln!();
    eprintln!(
        "honest: {} messages, each delivered exactly once; during attacks 1 to 5, {} deliveries: latency p50 {:.2} s, p99 {:.2} s, max {:.2} s (bounds {:?}, {:?})",
        w.sent.len(),
        all.len(),
        p50.as_secs_f64(),
        p99.as_secs_f64(),
        all.last().copied().unwrap_or_default().as_secs_f64(),
        P50_BOUND,
        P99_BOUND
    );
    eprintln!("| node | max RSS (MiB) | bound (MiB) |");
    eprintln!("|---|---|---|");
    for n in &nodes {
        let kb = w.rss_max[&n.name];
        eprintln!("| {} | {:.1} | {} |", n.name, kb as f64 / 1024.0, rss_bound_kb(&n.role) / 1024);
    }
    eprintln!("whole run: {:.0?}", start.elapsed());

    for r in &rows {
        assert!(r.value > 0.0, "{}: {} did not grow", r.attack, r.counter);
    }
    assert!(p50 <= P50_BOUND, "honest p50 {p50:?} above {P50_BOUND:?}");
    assert!(p99 <= P99_BOUND, "honest p99 {p99:?} above {P99_BOUND:?}");
    for n in &nodes {
        let (kb, bound) = (w.rss_max[&n.name], rss_bound_kb(&n.role));
        assert!(kb > 0, "{}: no memory reading", n.name);
        assert!(kb <= bound, "{}: {kb} KiB resident, bound {bound} KiB", n.name);
    }
}
