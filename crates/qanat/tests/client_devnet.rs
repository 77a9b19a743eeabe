//! Clients through a real devnet: 11 node processes on 127.0.0.1 (`qanat devnet up`) whose
//! gateways drop 10% of the packets they receive (client packets, and packets from the last mix
//! after acknowledging them), and real clients (encrypted profiles, the long-running runtime,
//! gateway sessions over hybrid-Noise links) in this process.
//!
//! Shows: two clients exchange 1,000 messages, each delivered exactly once and in order per
//! sender; a recipient offline for a while gets everything when it returns; a group of five in
//! which members are added and removed while others talk. All with 10% loss.
//!
//! And what a gateway keeps: with a group of three and two one-to-one contacts whose recipients
//! are offline on one gateway, its SQLite store holds items of one length, incompressible, no two
//! of which share any 16-byte run (sealed end to end: the same group message is unrelated bytes
//! in each member's mailbox).
//!
//! `cargo test --release -p qanat --test client_devnet` (about 4 minutes).

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use qanat_client::control::{Request, Response};
use qanat_client::engine::EngineEvent;
use qanat_node::config::ClientNetwork;

mod common;
use common::users::{User, accept_group, connect, send, until, wait_members, wait_network};
use common::{Devnet, devnet_up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_a_lossy_devnet() {
    let devnet = devnet_up(&["--epoch-secs", "10", "--lambda-p", "40", "--fault-drop-rate", "0.1"]);
    let network = ClientNetwork::load(&devnet.dir.path().join("network.toml")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut alice = User::new(root.path(), "alice", &network, 0);
    let mut bob = User::new(root.path(), "bob", &network, 1);
    alice.start(&network);
    bob.start(&network);
    wait_network(&alice).await;
    wait_network(&bob).await;
    connect(&mut alice, "bob", &mut bob, "alice").await;

    // 1,000 messages, 500 each way, sent as fast as the user types them in bursts.
    let n = 500;
    for i in 0..n {
        send(&alice, "bob", &format!("a{i}")).await;
        send(&bob, "alice", &format!("b{i}")).await;
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    until(&mut [&mut alice, &mut bob], Duration::from_secs(600), "1,000 messages", |u| {
        u[0].texts_from("bob").len() >= n && u[1].texts_from("alice").len() >= n
    })
    .await;
    let want = |p: &str, from: &str| (0..n).map(|i| (from.to_owned(), format!("{p}{i}"))).collect::<Vec<_>>();
    assert_eq!(bob.texts_from("alice"), want("a", "alice"), "exactly once, in order");
    assert_eq!(alice.texts_from("bob"), want("b", "bob"), "exactly once, in order");

    // Bob goes offline; Alice writes; Bob comes back and gets everything, in order.
    bob.stop().await;
    for i in 0..20 {
        send(&alice, "bob", &format!("while away {i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    bob.seen.clear();
    bob.start(&network);
    until(&mut [&mut bob], Duration::from_secs(300), "the offline messages", |u| {
        u[0].texts_from("alice").len() >= 20
    })
    .await;
    let got: Vec<String> = bob.texts_from("alice").into_iter().map(|t| t.1).collect();
    assert_eq!(got, (0..20).map(|i| format!("while away {i}")).collect::<Vec<_>>());

    // A group of five: alice creates it and adds her contacts; they talk while it changes.
    let mut carol = User::new(root.path(), "carol", &network, 0);
    let mut dave = User::new(root.path(), "dave", &network, 1);
    let mut erin = User::new(root.path(), "erin", &network, 0);
    for u in [&mut carol, &mut dave, &mut erin] {
        u.start(&network);
    }
    for u in [&carol, &dave, &erin] {
        wait_network(u).await;
    }
    connect(&mut alice, "carol", &mut carol, "alice").await;
    connect(&mut alice, "dave", &mut dave, "alice").await;
    connect(&mut alice, "erin", &mut erin, "alice").await;
    assert_eq!(alice.call(Request::GroupCreate { name: "team".into() }).await, Response::Ok);
    let joined = EngineEvent::GroupJoined { name: "team".into() };
    for c in ["bob", "carol"] {
        assert_eq!(
            alice.call(Request::GroupAdd { group: "team".into(), contact: c.into() }).await,
            Response::Ok
        );
    }
    accept_group(&bob, "team").await;
    accept_group(&carol, "team").await;
    until(&mut [&mut bob, &mut carol], Duration::from_secs(180), "bob and carol in the group", |u| {
        u.iter().all(|u| u.has(&joined))
    })
    .await;
    // Dave and Erin are added while Bob and Carol talk.
    for c in ["dave", "erin"] {
        assert_eq!(
            alice.call(Request::GroupAdd { group: "team".into(), contact: c.into() }).await,
            Response::Ok
        );
    }
    accept_group(&dave, "team").await;
    accept_group(&erin, "team").await;
    for i in 0..10 {
        send(&bob, "team", &format!("bob {i}")).await;
        send(&carol, "team", &format!("carol {i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    until(&mut [&mut dave, &mut erin], Duration::from_secs(180), "dave and erin in the group", |u| {
        u.iter().all(|u| u.has(&joined))
    })
    .await;
    until(&mut [&mut alice], Duration::from_secs(180), "everything from bob and carol", |u| {
        u[0].texts_from("team").len() >= 20
    })
    .await;
    let from = |u: &User, who: &str| -> Vec<String> {
        u.texts_from("team").into_iter().filter(|t| t.1.starts_with(who)).map(|t| t.1).collect()
    };
    assert_eq!(from(&alice, "bob"), (0..10).map(|i| format!("bob {i}")).collect::<Vec<_>>());
    assert_eq!(from(&alice, "carol"), (0..10).map(|i| format!("carol {i}")).collect::<Vec<_>>());
    // Everyone says hello once each sees all five.
    for u in [&alice, &bob, &carol, &dave, &erin] {
        wait_members(u, "team", 4).await;
    }
    let mut users = [&mut alice, &mut bob, &mut carol, &mut dave, &mut erin];
    for u in users.iter() {
        send(u, "team", &format!("hello from {}", u.name)).await;
    }
    until(&mut users, Duration::from_secs(180), "five hellos", |u| {
        u.iter().all(|u| u.texts_from("team").iter().filter(|t| t.1.starts_with("hello from")).count() == 4)
    })
    .await;
    // Alice removes carol; erin leaves; the rest go on.
    assert_eq!(
        alice.call(Request::GroupRemove { group: "team".into(), member: "carol".into() }).await,
        Response::Ok
    );
    assert_eq!(erin.call(Request::GroupLeave { group: "team".into() }).await, Response::Ok);
    let left = EngineEvent::Left { name: "team".into() };
    until(&mut [&mut carol, &mut erin], Duration::from_secs(300), "carol removed and erin gone", |u| {
        u.iter().all(|u| u.has(&left))
    })
    .await;
    for u in [&alice, &bob, &dave] {
        wait_members(u, "team", 2).await;
    }
    send(&dave, "team", "after the changes").await;
    until(&mut [&mut alice, &mut bob], Duration::from_secs(180), "the last message", |u| {
        u.iter().all(|u| u.texts_from("team").iter().any(|t| t.1 == "after the changes"))
    })
    .await;
    match alice.call(Request::Members { name: "team".into() }).await {
        Response::Members { list, .. } => assert_eq!(list.len(), 2, "{list:?}"),
        r => panic!("{r:?}"),
    }
    carol.pump();
    assert!(!carol.texts_from("team").iter().any(|t| t.1 == "after the changes"));
    for u in [&mut alice, &mut bob, &mut carol, &mut dave, &mut erin] {
        u.stop().await;
    }
}

/// Every item in the SQLite store of the devnet's gateway `gw` (`gw1`, `gw2`): (mailbox, item).
/// (A deleted item keeps its row, without payload, for duplicate detection.)
fn stored_items(devnet: &Devnet, gw: &str) -> Vec<([u8; 32], Vec<u8>)> {
    let path = devnet.dir.path().join(gw).join("data").join("mailboxes.sqlite");
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut q = db
        .prepare(
            "SELECT b.mailbox_id, m.payload FROM messages m JOIN mailboxes b ON m.mailbox = b.id \
             WHERE m.payload IS NOT NULL",
        )
        .unwrap();
    q.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .unwrap()
        .map(|r| {
            let (m, item) = r.unwrap();
            (m.try_into().unwrap(), item)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stores_only_sealed_items() {
    let devnet = devnet_up(&["--epoch-secs", "10", "--lambda-p", "40", "--fault-drop-rate", "0"]);
    let network = ClientNetwork::load(&devnet.dir.path().join("network.toml")).unwrap();
    let root = tempfile::tempdir().unwrap();
    // Alice on gw1; Bob and Carol on gw2.
    let mut alice = User::new(root.path(), "alice", &network, 0);
    let mut bob = User::new(root.path(), "bob", &network, 1);
    let mut carol = User::new(root.path(), "carol", &network, 1);
    for u in [&mut alice, &mut bob, &mut carol] {
        u.start(&network);
    }
    for u in [&alice, &bob, &carol] {
        wait_network(u).await;
    }
    connect(&mut alice, "bob", &mut bob, "alice").await;
    connect(&mut alice, "carol", &mut carol, "alice").await;
    assert_eq!(alice.call(Request::GroupCreate { name: "team".into() }).await, Response::Ok);
    for c in ["bob", "carol"] {
        assert_eq!(
            alice.call(Request::GroupAdd { group: "team".into(), contact: c.into() }).await,
            Response::Ok
        );
    }
    accept_group(&bob, "team").await;
    accept_group(&carol, "team").await;
    let joined = EngineEvent::GroupJoined { name: "team".into() };
    until(&mut [&mut bob, &mut carol], Duration::from_secs(180), "bob and carol in the group", |u| {
        u.iter().all(|u| u.has(&joined))
    })
    .await;
    wait_members(&alice, "team", 2).await;

    // Bob and Carol go offline; what Alice writes waits in their mailboxes at gw2.
    bob.stop().await;
    carol.stop().await;
    let before = stored_items(&devnet, "gw2").len();
    for i in 0..3 {
        send(&alice, "bob", &format!("to bob {i}")).await;
        send(&alice, "carol", &format!("to carol {i}")).await;
        send(&alice, "team", &format!("to the team {i}")).await;
    }
    // 3 + 3 one-to-one packets and 3 group messages to 2 members.
    let want = before + 12;
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    let items = loop {
        let items = stored_items(&devnet, "gw2");
        if items.len() >= want {
            break items;
        }
        assert!(tokio::time::Instant::now() < end, "only {} of {want} items stored", items.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mailboxes: std::collections::BTreeSet<_> = items.iter().map(|(m, _)| *m).collect();
    assert!(mailboxes.len() >= 4, "two contact and two group mailboxes: {}", mailboxes.len());
    let len = items[0].1.len();
    let mut runs: HashMap<&[u8], usize> = HashMap::new();
    for (i, (_, item)) in items.iter().enumerate() {
        assert_eq!(item.len(), len, "every item of one length");
        for w in item.windows(16) {
            if let Some(j) = runs.insert(w, i)
                && j != i
            {
                panic!("stored items {j} and {i} share a 16-byte run");
            }
        }
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(item).unwrap();
        assert!(z.finish().unwrap().len() >= len, "item {i} compresses");
    }
    // Back online, Bob and Carol read everything.
    bob.seen.clear();
    carol.seen.clear();
    bob.start(&network);
    carol.start(&network);
    until(&mut [&mut bob, &mut carol], Duration::from_secs(180), "the waiting messages", |u| {
        u[0].texts_from("alice").len() == 3
            && u[1].texts_from("alice").len() == 3
            && u.iter().all(|u| u.texts_from("team").len() == 3)
    })
    .await;
    for u in [&mut alice, &mut bob, &mut carol] {
        u.stop().await;
    }
}

#[derive(serde::Deserialize)]
struct DevnetNode {
    name: String,
    role: String,
    pid: Option<u32>,
}

#[derive(serde::Deserialize)]
struct DevnetManifest {
    nodes: Vec<DevnetNode>,
}

fn devnet_nodes(devnet: &Devnet) -> Vec<DevnetNode> {
    let m: DevnetManifest =
        serde_json::from_str(&std::fs::read_to_string(devnet.dir.path().join("devnet.json")).unwrap())
            .unwrap();
    m.nodes
}

fn qanat(args: &[&str]) {
    let out = std::process::Command::new(common::BIN).args(args).output().unwrap();
    assert!(out.status.success(), "qanat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The soak: honest users chat (two contacts and a group of three) for `QANAT_SOAK_SECS`
/// seconds (90 by default; the long run in docs/RELIABILITY.md is 1,800) while nodes are killed
/// with SIGKILL and restarted, users go offline and come back, and a hostile contact floods one
/// of them with messages and group invitations. Then everything calms down and every honest
/// message must arrive exactly once: nothing acknowledged is lost.
///
/// `QANAT_SOAK_SECS=1800 cargo test --release -p qanat --test client_devnet soak -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_churn_and_attacks() {
    // Warnings and errors of the clients (why one stopped, if one does) go to the test's output.
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_test_writer().try_init();
    let secs: u64 = std::env::var("QANAT_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(90);
    let devnet = devnet_up(&["--epoch-secs", "20", "--lambda-p", "20"]);
    let d = devnet.dir.path().to_str().unwrap().to_owned();
    let network = ClientNetwork::load(&devnet.dir.path().join("network.toml")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut alice = User::new(root.path(), "alice", &network, 0);
    let mut bob = User::new(root.path(), "bob", &network, 1);
    let mut carol = User::new(root.path(), "carol", &network, 1);
    let mut mallory = User::new(root.path(), "mallory", &network, 0);
    for u in [&mut alice, &mut bob, &mut carol, &mut mallory] {
        u.start(&network);
    }
    for u in [&alice, &bob, &carol, &mallory] {
        wait_network(u).await;
    }
    connect(&mut alice, "bob", &mut bob, "alice").await;
    connect(&mut alice, "carol", &mut carol, "alice").await;
    connect(&mut alice, "mallory", &mut mallory, "alice").await;
    assert_eq!(alice.call(Request::GroupCreate { name: "team".into() }).await, Response::Ok);
    for c in ["bob", "carol"] {
        assert_eq!(
            alice.call(Request::GroupAdd { group: "team".into(), contact: c.into() }).await,
            Response::Ok
        );
    }
    accept_group(&bob, "team").await;
    accept_group(&carol, "team").await;
    let joined = EngineEvent::GroupJoined { name: "team".into() };
    until(&mut [&mut bob, &mut carol], Duration::from_secs(180), "bob and carol in the group", |u| {
        u.iter().all(|u| u.has(&joined))
    })
    .await;
    wait_members(&alice, "team", 2).await;
    wait_members(&bob, "team", 2).await;
    wait_members(&carol, "team", 2).await;

    // (receiver, thread as the receiver calls it, text) of every honest message sent.
    let mut expected: Vec<(&str, String, String)> = Vec::new();
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tick = 0u64;
    let mut churn = Vec::new();
    let mut offline: Option<(usize, tokio::time::Instant)> = None;
    let mut restart_at: Option<(String, tokio::time::Instant)> = None;
    let mut invitations_sent = 0;
    while tokio::time::Instant::now() < end {
        tick += 1;
        let now = tokio::time::Instant::now();
        // Every honest user online says something, to a contact and now and then to the group.
        let online = |i: usize| offline.is_none_or(|(o, _)| o != i);
        // (user, name, to, the receiver and what it calls the sender)
        let plan = [
            (0, "alice", "bob", ("bob", "alice")),
            (1, "bob", "alice", ("alice", "bob")),
            (2, "carol", "alice", ("alice", "carol")),
        ];
        for (i, from, to, (r, thread)) in plan {
            if !online(i) {
                continue;
            }
            let u = [&alice, &bob, &carol][i];
            let text = format!("{from} {tick}");
            send(u, to, &text).await;
            expected.push((r, thread.to_owned(), text.clone()));
            if tick.is_multiple_of(3) {
                let text = format!("{from} team {tick}");
                send(u, "team", &text).await;
                for r in ["alice", "bob", "carol"].into_iter().filter(|r| *r != from) {
                    expected.push((r, "team".into(), text.clone()));
                }
            }
        }
        // The hostile contact: a burst of messages and a group invitation now and then.
        if tick.is_multiple_of(10) {
            for j in 0..30 {
                let _ = mallory
                    .call(Request::Send { to: "alice".into(), text: format!("spam {tick} {j}") })
                    .await;
            }
            let g = format!("spam{tick}");
            let _ = mallory.call(Request::GroupCreate { name: g.clone() }).await;
            let _ = mallory.call(Request::GroupAdd { group: g, contact: "alice".into() }).await;
            invitations_sent += 1;
        }
        // Churn: every 15 ticks a node is killed (restarted 5 s later), every 20 a user goes
        // offline for 20 s.
        if tick.is_multiple_of(15) && restart_at.is_none() {
            let nodes = devnet_nodes(&devnet);
            let candidates: Vec<&DevnetNode> =
                nodes.iter().filter(|n| n.role != "authority" && n.pid.is_some()).collect();
            let victim = candidates[(tick / 15) as usize % candidates.len()];
            let pid = rustix::process::Pid::from_raw(victim.pid.unwrap() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            churn.push(format!("{:>5.0}s killed {}", now.duration_since(start).as_secs_f64(), victim.name));
            restart_at = Some((victim.name.clone(), now + Duration::from_secs(5)));
        }
        if let Some((name, at)) = &restart_at
            && now >= *at
        {
            qanat(&["devnet", "restart", "--dir", &d, name]);
            churn.push(format!("{:>5.0}s restarted {name}", now.duration_since(start).as_secs_f64()));
            restart_at = None;
        }
        if tick.is_multiple_of(20) && offline.is_none() {
            let i = 1 + (tick / 20) as usize % 2;
            [&mut bob, &mut carol][i - 1].stop().await;
            churn.push(format!(
                "{:>5.0}s {} offline",
                now.duration_since(start).as_secs_f64(),
                ["bob", "carol"][i - 1]
            ));
            offline = Some((i, now + Duration::from_secs(20)));
        }
        if let Some((i, at)) = offline
            && now >= at
        {
            [&mut bob, &mut carol][i - 1].start(&network);
            churn.push(format!(
                "{:>5.0}s {} back",
                now.duration_since(start).as_secs_f64(),
                ["bob", "carol"][i - 1]
            ));
            offline = None;
        }
        until(
            &mut [&mut alice, &mut bob, &mut carol, &mut mallory],
            Duration::from_secs(5),
            "a pump",
            |_| true,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if let Some((name, _)) = restart_at.take() {
        qanat(&["devnet", "restart", "--dir", &d, &name]);
    }
    if let Some((i, _)) = offline.take() {
        [&mut bob, &mut carol][i - 1].start(&network);
    }
    // Calm: everything sent must arrive, exactly once.
    let count = |u: &User, thread: &str, text: &str| {
        u.seen
            .iter()
            .filter(
                |e| matches!(e, EngineEvent::Message { thread: t, text: x, .. } if t == thread && x == text),
            )
            .count()
    };
    let drained = tokio::time::Instant::now();
    let drain: u64 = std::env::var("QANAT_SOAK_DRAIN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let deadline = drained + Duration::from_secs(drain);
    loop {
        for u in [&mut alice, &mut bob, &mut carol, &mut mallory] {
            u.pump();
        }
        let missing: Vec<&(&str, String, String)> = expected
            .iter()
            .filter(|(r, thread, text)| {
                let u =
                    [&alice, &bob, &carol][["alice", "bob", "carol"].iter().position(|n| n == r).unwrap()];
                count(u, thread, text) == 0
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            for u in [&alice, &bob, &carol] {
                eprintln!("{}: {:?}", u.name, u.call(Request::Status).await);
            }
            for c in &churn {
                eprintln!("soak: {c}");
            }
            // Delivered but never seen as an event, or never delivered at all?
            for (r, thread, text) in &missing {
                let u =
                    [&alice, &bob, &carol][["alice", "bob", "carol"].iter().position(|n| n == r).unwrap()];
                let in_history = match u
                    .call(Request::History { name: thread.clone(), before: None, limit: None })
                    .await
                {
                    Response::Messages { list } => list.iter().any(|m| &m.text == text),
                    _ => false,
                };
                eprintln!("soak: {r} {thread} {text:?}: in history {in_history}");
            }
            panic!("{} of {} honest messages never arrived: {missing:?}", missing.len(), expected.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_secs = drained.elapsed().as_secs();
    // A while longer: no copies arrive.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for u in [&mut alice, &mut bob, &mut carol] {
        u.pump();
    }
    for (r, thread, text) in &expected {
        let u = [&alice, &bob, &carol][["alice", "bob", "carol"].iter().position(|n| n == r).unwrap()];
        assert_eq!(count(u, thread, text), 1, "{r} got {text:?} in {thread} once");
    }
    let mut latencies: Vec<u64> = [&alice, &bob, &carol]
        .iter()
        .flat_map(|u| u.seen.iter())
        .filter_map(|e| match e {
            EngineEvent::Message { text, sent_at, received_at, .. } if !text.starts_with("spam") => {
                received_at.duration_since(*sent_at).ok().map(|d| d.as_millis() as u64)
            }
            _ => None,
        })
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let invitations = match alice.call(Request::GroupInvitations).await {
        Response::GroupInvitations { list } => list.len(),
        r => panic!("{r:?}"),
    };
    assert!(invitations <= qanat_client::engine::MAX_GROUP_INVITATIONS_PER_CONTACT);
    println!("soak: {secs} s, {} honest messages delivered exactly once", expected.len());
    println!(
        "soak: honest latency p50 {} ms, p99 {} ms; drained {drain_secs} s after the churn stopped",
        pct(0.5),
        pct(0.99)
    );
    println!(
        "soak: {invitations_sent} group invitations from the hostile contact, {invitations} waiting (cap {})",
        qanat_client::engine::MAX_GROUP_INVITATIONS_PER_CONTACT
    );
    for c in &churn {
        println!("soak: {c}");
    }
    for u in [&mut alice, &mut bob, &mut carol, &mut mallory] {
        u.stop().await;
    }
}
