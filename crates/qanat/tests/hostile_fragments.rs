//! A contact who sends fragments of messages that never complete (issue 13, "Hostile peers and
//! hostile networks"), against a devnet of 11 node processes on 127.0.0.1 (`qanat devnet up`,
//! λ_P = 10 a second, 20-second epochs, no injected loss) while honest people talk: the world of
//! `hostile_world.rs` (`common::world`: real clients in this process; alice, bob and carol,
//! alice's contacts bob and carol, their group "team"; each sends a message every 1 to 2 s to a
//! contact or to the group, in turn).
//!
//! Mallory becomes alice's contact as anyone does (a real client and profile, an invitation, the
//! conversation set up, both mailboxes rotated). Then the attack program takes her profile over
//! (`qanat_client::engine::attacks`, the client's feature `attacks`, which only these tests
//! enable): for [`ATTACK`] it writes into the mailbox alice gave her, through its own session
//! at mallory's gateway and the three mix layers, [`RATE`] packets a second (twice a client's
//! λ_P, and as many as alice's pulls take in: 2 items every 100 ms): fragments of messages that
//! never complete, in rounds of two that claim 4,096 fragments (the most the codec takes), all
//! but the last fragment of a message of 2 to 8, one fragment contradicting an earlier message's
//! count and one claiming 65,535 fragments. Every fragment is a full one (781 bytes of data in
//! this devnet's geometry), sealed to the mailbox, with a working SURB: alice cannot tell it
//! from an honest fragment before reassembly.
//!
//! Checked: every honest message delivered exactly once; the honest messages' latency (sender's
//! clock at `send` to recipient's at delivery, one machine) within [`P50_BOUND`] and
//! [`P99_BOUND`], over the whole run and while the attack lasts; every node's resident memory
//! under its role's bound ([`rss_bound_kb`], as in `hostile_world.rs`), and this process's (the
//! clients') under [`CLIENTS_RSS_BOUND_KB`]; alice's counters (her
//! client's `status`) show the attack: one partial message held per message mallory started
//! (its claimed count costing nothing: the bytes held are those of the fragments that came),
//! the contradicting fragments refused (`deferred`), the over-claimed ones dropped
//! (`malformed`). Then, on alice's profile from the run, the clean-up with the clock moved on:
//! nothing expires before [`REMEMBER_DELIVERED`], everything after it, and a restart brings
//! none of it back. A summary is printed for docs/RELIABILITY.md.
//!
//! `cargo test --release -p qanat --test hostile_fragments -- --nocapture` (94 and 104 s on 2
//! cores shared with other builds).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use qanat_client::control::{InputCounts, Request, Response};
use qanat_client::engine::attacks::{Incomplete, IncompleteMessages};
use qanat_client::engine::{Engine, EngineStats};
use qanat_client::gateway::GatewaySession;
use qanat_link::{LinkMetrics, LinkSecretKey};
use qanat_mixnet::sending::{MAX_PARTIAL_BYTES, MAX_PARTIAL_MESSAGES, REMEMBER_DELIVERED, fragment_capacity};
use qanat_network::directory::DirectoryClient;
use qanat_network::{link_config, wall_now};
use qanat_node::config::ClientNetwork;
use qanat_pki::{Epoch, IdentityKey};
use rand::SeedableRng as _;
use rand::rngs::{StdRng, SysRng};
use tokio::time::{Instant, sleep};

mod common;
use common::devnet_up;
use common::world::{
    ALICE, BOB, CAROL, LAMBDA_P, NodeEntry, P50_BOUND, P99_BOUND, User, World, connect, engine_config,
    manifest, percentile, rss_bound_kb, rss_kb, session,
};

/// How long mallory's attack program writes.
const ATTACK: Duration = Duration::from_secs(40);
/// Its packets per second.
const RATE: f64 = 20.0;
/// Resident memory of this process (alice's, bob's and carol's clients, and the attack program)
/// while the attack lasts, in KiB: measured 17.6 MiB. Were a claimed count to cost the room of
/// its fragments, the 200 or so messages claiming 4,096 fragments of 781 bytes would take over
/// 600 MiB.
const CLIENTS_RSS_BOUND_KB: u64 = 128 * 1024;

/// What alice's client says it dropped, refused or holds.
async fn input(u: &User) -> InputCounts {
    match u.call(Request::Status).await {
        Response::Status { input, .. } => input,
        r => panic!("{} status: {r:?}", u.name),
    }
}

/// The directory document of the current epoch, from the authorities (the attack program is no
/// honest client: it may ask them directly).
async fn document(directory: &DirectoryClient, network: &ClientNetwork) -> (Epoch, qanat_pki::Document) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let epoch = Epoch::at(wall_now(), network.network.epoch_period);
        let mut rng = StdRng::try_from_rng(&mut SysRng).unwrap();
        match directory.fetch(epoch, &mut rng).await {
            Ok(d) => return (epoch, d),
            Err(e) => {
                assert!(Instant::now() < deadline, "no document for epoch {}: {e}", epoch.0);
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What the attack program did.
struct Attack {
    plan: IncompleteMessages,
    sent: u64,
    sessions: u32,
    from: SystemTime,
    to: SystemTime,
}

/// Mallory's attack program: her engine (her profile, her route to alice) builds the packets;
/// they leave through a session of their own at her gateway (`gateway_addr`, the network's
/// gateway `gateway`), [`RATE`] a second for [`ATTACK`], with a fresh document each epoch.
async fn attack(
    mut engine: Engine,
    network: ClientNetwork,
    gateway_addr: SocketAddr,
    gateway: usize,
) -> Attack {
    let link = link_config(&network.network.geometry).unwrap();
    let directory = DirectoryClient::new(
        network.network.authorities.clone(),
        network.network.authority_set.clone(),
        Arc::new(LinkSecretKey::generate(&mut rand::rng())),
        link,
        Arc::new(LinkMetrics::default()),
    );
    let mut rng = StdRng::try_from_rng(&mut SysRng).unwrap();
    let (mut epoch, doc) = document(&directory, &network).await;
    engine.set_document(&doc).unwrap();
    let mut plan = IncompleteMessages::new(fragment_capacity(&network.network.geometry).unwrap());
    let mut s: Option<GatewaySession> = None;
    let (mut sent, mut sessions) = (0u64, 0u32);
    let gap = Duration::from_secs_f64(1.0 / RATE);
    let start = Instant::now();
    let from = SystemTime::now();
    let mut next = start;
    while start.elapsed() < ATTACK {
        if Epoch::at(wall_now(), network.network.epoch_period) != epoch {
            let (e, doc) = document(&directory, &network).await;
            engine.set_document(&doc).unwrap();
            epoch = e;
        }
        tokio::time::sleep_until(next).await;
        // After a stall (a document fetch), no burst beyond the gateway's allowance of 32.
        next = (next + gap).max(Instant::now() - gap * 8);
        if s.is_none() {
            s = Some(session(&network, gateway_addr, gateway).await);
            sessions += 1;
        }
        let (_, f) = plan.next_fragment(&mut rng);
        let p = engine.forged_fragment("alice", &f, &mut rng).unwrap();
        match s.as_mut().unwrap().send_packet(p).await {
            Ok(()) => sent += 1,
            // The fragment is lost (made, never sent: the check against the plan fails).
            Err(_) => s = None,
        }
    }
    if let Some(s) = s {
        s.close().await;
    }
    Attack { plan, sent, sessions, from, to: SystemTime::now() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_users_talk_while_a_contact_sends_fragments_that_never_complete() {
    let begin = Instant::now();
    let devnet = devnet_up(&["--epoch-secs", "20", "--lambda-p", LAMBDA_P]);
    let dir = devnet.dir.path().to_owned();
    let network = ClientNetwork::load(&dir.join("network.toml")).unwrap();
    let nodes = manifest(&dir).nodes;
    let gw_index = |n: &NodeEntry| -> usize {
        let b: [u8; 32] = hex::decode(&n.identity_key).unwrap().try_into().unwrap();
        let id = IdentityKey::from_bytes(&b).unwrap().node_id();
        network.gateways.iter().position(|g| g.identity.node_id() == id).unwrap()
    };
    let gw_client = |i: usize| nodes.iter().find(|n| n.role == "gateway" && gw_index(n) == i).unwrap().client;

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
    // Each side of a new contact moves to a fresh mailbox and says so (ROUTE): once everything
    // alice and mallory sent is acknowledged, mallory writes where alice reads now.
    let end = Instant::now() + Duration::from_secs(60);
    while alice.undelivered().await + mallory.undelivered().await > 0 {
        assert!(Instant::now() < end, "alice's and mallory's first messages never delivered");
        sleep(Duration::from_millis(100)).await;
    }
    eprintln!("set up in {:.0?}: contacts, the group of three, mallory alice's contact", setup.elapsed());

    // The attack program takes mallory's profile over.
    let profile = mallory.handle.shutdown().await.unwrap();
    let mallory = Engine::open(profile, engine_config(), SystemTime::now()).unwrap();

    let mut w = World::new(vec![alice, bob, carol], nodes.clone());
    let t_begin = SystemTime::now();
    w.run_for(Duration::from_secs(5)).await;
    let before = input(w.user(ALICE)).await;
    let task = tokio::spawn(attack(mallory, network.clone(), gw_client(1).unwrap(), 1));
    // While it lasts: alice's holdings and this process's memory (alice, bob, carol and the
    // attacker), every 2 s.
    let (mut held_max, mut rss_self_max) = (InputCounts::default(), 0u64);
    let mut next_sample = Instant::now();
    w.until(ATTACK + Duration::from_secs(30), "the attack program to finish", async |w| {
        if Instant::now() >= next_sample {
            next_sample = Instant::now() + Duration::from_secs(2);
            let i = input(w.user(ALICE)).await;
            held_max.partial_messages = held_max.partial_messages.max(i.partial_messages);
            held_max.partial_bytes = held_max.partial_bytes.max(i.partial_bytes);
            rss_self_max = rss_self_max.max(rss_kb(std::process::id()).unwrap_or(0));
        }
        task.is_finished()
    })
    .await;
    let a = task.await.unwrap();
    let (claimed, truncated) = (a.plan.made(Incomplete::ClaimedMax), a.plan.made(Incomplete::Truncated));
    let (contradicting, over) =
        (a.plan.made(Incomplete::Contradicting), a.plan.made(Incomplete::OverClaimed));
    eprintln!(
        "the attack: {} packets in {:.1?} ({} sessions): {claimed} claiming 4,096 fragments, {truncated} of {} truncated messages, {contradicting} contradicting, {over} claiming 65,535",
        a.sent,
        a.to.duration_since(a.from).unwrap_or_default(),
        a.sessions,
        a.plan.messages() - claimed,
    );
    assert_eq!(a.sent, a.plan.fragments(), "packets the gateway session did not take");
    assert!(claimed > 0 && truncated > 0 && contradicting > 0 && over > 0);

    // Talk a little longer, then everything honest arrives, exactly once, and alice has taken in
    // every fragment (what her gateway kept for her drains at her pulls' pace).
    w.run_for(Duration::from_secs(5)).await;
    w.chatting = false;
    let t_end = SystemTime::now();
    w.until(Duration::from_secs(120), "every honest message", async |w| w.delivered_all()).await;
    let expect = a.plan.messages();
    w.until(Duration::from_secs(120), "alice to hold every message mallory started", async |w| {
        let i = input(w.user(ALICE)).await;
        i.partial_messages == expect
            && i.deferred - before.deferred >= contradicting
            && i.malformed - before.malformed >= over
    })
    .await;
    w.run_for(Duration::from_secs(3)).await;
    let after = input(w.user(ALICE)).await;
    assert!(w.stray.is_empty(), "messages to the wrong people: {:?}", w.stray);
    for (text, s) in &w.sent {
        let mut got: Vec<usize> = s.got.iter().map(|g| g.0).collect();
        got.sort();
        assert_eq!(got, s.to, "{text}: delivered to {got:?}, meant for {:?}", s.to);
    }
    let all = w.latencies(&[ALICE, BOB, CAROL], (t_begin, t_end));
    let during = w.latencies(&[ALICE, BOB, CAROL], (a.from, a.to));
    let to_alice: Vec<Duration> = {
        let mut v: Vec<Duration> = w
            .sent
            .values()
            .filter(|s| s.at >= a.from && s.at <= a.to)
            .flat_map(|s| s.got.iter().filter(|g| g.0 == ALICE).map(|g| g.1))
            .collect();
        v.sort();
        v
    };

    let cap = fragment_capacity(&network.network.geometry).unwrap() as u64;
    let held_fragments = claimed + truncated + contradicting;
    eprintln!();
    eprintln!("| alice's counter | before | after | made by the attack |");
    eprintln!("|---|---|---|---|");
    let rows = [
        ("partial messages held", before.partial_messages, after.partial_messages, expect),
        ("partial bytes held", before.partial_bytes, after.partial_bytes, held_fragments * cap),
        ("deferred (refused, unacknowledged)", before.deferred, after.deferred, contradicting),
        ("malformed", before.malformed, after.malformed, over),
        ("duplicates", before.duplicates, after.duplicates, 0),
        ("acknowledgements dropped", before.acks_dropped, after.acks_dropped, 0),
    ];
    for (name, b, af, x) in rows {
        eprintln!("| {name} | {b} | {af} | {x} |");
    }
    eprintln!(
        "alice's most held while it lasted: {} messages, {:.1} MiB; this process (three clients and the attacker) at most {:.1} MiB resident",
        held_max.partial_messages,
        held_max.partial_bytes as f64 / (1 << 20) as f64,
        rss_self_max as f64 / 1024.0
    );
    let line = |what: &str, v: &[Duration]| {
        eprintln!(
            "{what}: {} deliveries, p50 {:.2} s, p99 {:.2} s, max {:.2} s",
            v.len(),
            percentile(v, 0.5).as_secs_f64(),
            percentile(v, 0.99).as_secs_f64(),
            v.last().copied().unwrap_or_default().as_secs_f64()
        )
    };
    eprintln!();
    eprintln!(
        "honest: {} messages, each delivered exactly once (bounds p50 {P50_BOUND:?}, p99 {P99_BOUND:?})",
        w.sent.len()
    );
    line("  whole run", &all);
    line("  during the attack", &during);
    line("  to alice during the attack", &to_alice);
    eprintln!("| node | max RSS (MiB) | bound (MiB) |");
    eprintln!("|---|---|---|");
    for n in &nodes {
        let kb = w.rss_max[&n.name];
        eprintln!("| {} | {:.1} | {} |", n.name, kb as f64 / 1024.0, rss_bound_kb(&n.role) / 1024);
    }

    // The attack was seen: every message mallory started is held once (a claimed count costs
    // nothing: only the fragments that came are), the contradicting fragments refused, the
    // over-claimed ones dropped; within the inbox's bounds all along.
    assert_eq!(after.partial_messages, expect, "{after:?}");
    assert!(after.deferred - before.deferred >= contradicting, "{after:?}");
    assert!(after.malformed - before.malformed >= over, "{after:?}");
    assert!(after.partial_bytes <= held_fragments * cap, "{after:?}: more than the fragments that came");
    assert!(after.partial_bytes >= expect * cap, "{after:?}: less than a fragment per message");
    assert!(
        rss_self_max > 0 && rss_self_max <= CLIENTS_RSS_BOUND_KB,
        "the clients' process: {rss_self_max} KiB resident, bound {CLIENTS_RSS_BOUND_KB} KiB"
    );
    assert!(held_max.partial_messages <= MAX_PARTIAL_MESSAGES as u64);
    assert!(held_max.partial_bytes <= MAX_PARTIAL_BYTES as u64);
    for (what, v) in [("whole run", &all), ("during the attack", &during), ("to alice", &to_alice)] {
        assert!(!v.is_empty(), "no honest deliveries ({what})");
        let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
        assert!(p50 <= P50_BOUND, "honest p50 {p50:?} ({what}) above {P50_BOUND:?}");
        assert!(p99 <= P99_BOUND, "honest p99 {p99:?} ({what}) above {P99_BOUND:?}");
    }
    for n in &nodes {
        let (kb, bound) = (w.rss_max[&n.name], rss_bound_kb(&n.role));
        assert!(kb > 0, "{}: no memory reading", n.name);
        assert!(kb <= bound, "{}: {kb} KiB resident, bound {bound} KiB", n.name);
    }

    // The clean-up, on alice's profile from the run, with the clock moved on: a restart keeps
    // what is held; nothing goes before REMEMBER_DELIVERED after its first fragment (none came
    // before the attack began), everything after it (the clean-up runs at most an hour apart).
    let alice = w.users.remove(ALICE);
    let profile = alice.handle.shutdown().await.unwrap();
    let mut e = Engine::open(profile, engine_config(), SystemTime::now()).unwrap();
    let held = |s: EngineStats| (s.partial_messages, s.partial_bytes);
    assert_eq!(held(e.stats()), (after.partial_messages, after.partial_bytes), "lost in the restart");
    let mut rng = StdRng::try_from_rng(&mut SysRng).unwrap();
    e.handle_timeout(a.from + REMEMBER_DELIVERED - Duration::from_secs(1), &mut rng).unwrap();
    assert_eq!(held(e.stats()), (after.partial_messages, after.partial_bytes), "expired too early");
    e.handle_timeout(SystemTime::now() + REMEMBER_DELIVERED + Duration::from_secs(2 * 3600), &mut rng)
        .unwrap();
    assert_eq!(held(e.stats()), (0, 0), "not expired");
    let e = Engine::open(e.into_profile(), engine_config(), SystemTime::now()).unwrap();
    assert_eq!(held(e.stats()), (0, 0), "back after a restart");
    eprintln!("alice's partial messages: kept by a restart, none gone before 30 days, all after");
    eprintln!("whole test: {:.0?}", begin.elapsed());
}
