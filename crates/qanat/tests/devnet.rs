//! The mix network as separate processes on 127.0.0.1: `qanat devnet up` starts 3 authorities,
//! 3 layers of 2 mixes and 2 gateways (each a `qanat node run`), with an 8-second epoch. A test
//! client (this file) fetches and verifies the directory like any client, builds Sphinx packets
//! gateway 1 → layer 1 → layer 2 → layer 3 → gateway 2, sends them on a link to gateway 1's
//! client port, and reads its mailbox on gateway 2. In phases:
//!
//! 1. packets cross all three layers and land in the right mailbox, exactly once;
//! 2. traffic keeps flowing across two epoch boundaries, with key rotation, and loses nothing;
//! 3. gateway 2, killed with SIGKILL under load and restarted, has lost nothing it acknowledged
//!    (nothing at all: the last layer keeps what was not acknowledged and sends it again);
//! 4. a mix killed with SIGKILL is left out of the document of the next epoch voted after the
//!    kill, and packets routed with that document all arrive.
//!
//! The devnet is stopped by PID (`qanat devnet down`) when the test ends, even on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qanat_link::{
    Connection, Frame, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, PacketId, connect, http,
};
use qanat_mixnet::client_proto::{Request, Response};
use qanat_mixnet::{Destination, Hop, MailboxItem, Topology, path_hops};
use qanat_node::NodeConfig;
use qanat_node::service::directory::DirectoryClient;
use qanat_node::service::{epochs, link_config, wall_now};
use qanat_packet::{MailboxId, NodeId, Sphinx};
use qanat_pki::{Document, Epoch, IdentityKey};
use rand::Rng as _;
use serde::Deserialize;

const EPOCH_SECS: u64 = 8;
const BIN: &str = env!("CARGO_BIN_EXE_qanat");

#[derive(Debug, Clone, Deserialize)]
struct NodeEntry {
    name: String,
    role: String,
    config: PathBuf,
    pid: Option<u32>,
    link: SocketAddr,
    metrics: SocketAddr,
    client: Option<SocketAddr>,
    identity_key: String,
    link_key: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Manifest {
    nodes: Vec<NodeEntry>,
}

fn manifest(dir: &Path) -> Manifest {
    serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap()
}

fn qanat(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qanat {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the devnet when dropped (also when the test fails).
struct Devnet {
    dir: tempfile::TempDir,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["devnet", "down", "--dir"]).arg(self.dir.path()).output();
        if std::thread::panicking() {
            // Keep what the nodes logged for the failure report.
            for name in ["auth1", "mix1a", "mix2a", "mix3a", "gw1", "gw2"] {
                let log =
                    std::fs::read_to_string(self.dir.path().join(name).join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {name} (last lines, newest first)\n{}", tail.join("\n"));
            }
        }
    }
}

fn node_id(hex_key: &str) -> NodeId {
    let b: [u8; 32] = hex::decode(hex_key).unwrap().try_into().unwrap();
    IdentityKey::from_bytes(&b).unwrap().node_id()
}

fn sigkill(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
}

/// A client of the devnet, as a user's client would be (minus the cover traffic).
struct Client {
    dir: PathBuf,
    config: NodeConfig,
    directory: DirectoryClient,
    link: LinkConfig,
    key: LinkSecretKey,
    sphinx: Sphinx,
    docs: BTreeMap<Epoch, Document>,
    next_id: u64,
}

impl Client {
    fn new(dir: &Path) -> Self {
        let m = manifest(dir);
        let gw = m.nodes.iter().find(|n| n.name == "gw1").unwrap();
        let config = NodeConfig::load(&gw.config).unwrap();
        let link = link_config(&config.network.geometry).unwrap();
        let key = LinkSecretKey::generate(&mut rand::rng());
        let directory = DirectoryClient::new(
            config.network.authorities.clone(),
            config.network.authority_set.clone(),
            Arc::new(key.clone()),
            link.clone(),
            Arc::new(LinkMetrics::default()),
        );
        let sphinx = Sphinx::new(config.network.geometry.clone());
        Self { dir: dir.to_owned(), config, directory, link, key, sphinx, docs: BTreeMap::new(), next_id: 0 }
    }

    fn node(&self, name: &str) -> NodeEntry {
        manifest(&self.dir).nodes.into_iter().find(|n| n.name == name).unwrap()
    }

    /// The verified document of `epoch`, fetched once.
    async fn document(&mut self, epoch: Epoch) -> &Document {
        if !self.docs.contains_key(&epoch) {
            let deadline = Instant::now() + Duration::from_secs(20);
            let doc = loop {
                match self.directory.fetch(epoch, &mut rand::rng()).await {
                    Ok(d) => break d,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "no document for epoch {}: {e}", epoch.0);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            self.docs.insert(epoch, doc);
        }
        &self.docs[&epoch]
    }

    async fn topology(&mut self, epoch: Epoch) -> (Topology, Duration) {
        let (g, p) = (self.config.network.geometry.clone(), self.config.network.epoch_period);
        let doc = self.document(epoch).await;
        let (u, _) = epochs::update_from(doc, NodeId([0; 32]), None, &g, p, |a| a.parse().ok()).unwrap();
        (u.topology, u.mean_delay)
    }

    /// A packet gw1 → one mix per layer → gw2, for `mailbox`, routed with the current document.
    async fn packet(&mut self, mailbox: [u8; 32], text: &str) -> (Epoch, Vec<u8>) {
        let epoch = Epoch::at(wall_now(), self.config.network.epoch_period);
        let (topo, mean) = self.topology(epoch).await;
        let (gin, gout) = (node_id(&self.node("gw1").identity_key), node_id(&self.node("gw2").identity_key));
        let find = |id: NodeId| topo.hop(&id).cloned().expect("gateway in the document");
        let mut rng = rand::rng();
        let mut hops: Vec<Hop> = vec![find(gin)];
        for l in 0..topo.layers.len() {
            hops.push(topo.random_mix(l, &mut rng).unwrap().clone());
        }
        hops.push(find(gout));
        let refs: Vec<&Hop> = hops.iter().collect();
        let is_gw = |id: &NodeId| *id == gin || *id == gout;
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let destination = Destination::SurbReply(MailboxId(mailbox), qanat_packet::SurbId(id));
        let path = path_hops(&refs, is_gw, mean, destination, &mut rng);
        let g = self.sphinx.geometry();
        // An opaque packet, as clients make them (its text in the clear here: only the test reads it).
        let mut payload = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
        payload[..text.len()].copy_from_slice(text.as_bytes());
        (epoch, self.sphinx.new_opaque_packet(&mut rng, &path, &payload).unwrap())
    }

    async fn connect_to(&self, name: &str) -> Connection<LinkPublicKey> {
        let n = self.node(name);
        let remote = LinkPublicKey::from_bytes(&hex::decode(&n.link_key).unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match connect(
                n.client.unwrap(),
                &self.key,
                &remote,
                self.link.clone(),
                Arc::new(LinkMetrics::default()),
            )
            .await
            {
                Ok(c) => return c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot reach {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn send(&mut self, conn: &Connection<LinkPublicKey>, mailbox: [u8; 32], text: &str) -> Epoch {
        let (epoch, packet) = self.packet(mailbox, text).await;
        self.next_id += 1;
        conn.send(Frame::Packet { id: PacketId(self.next_id), packet }).await.unwrap();
        epoch
    }
}

async fn control(conn: &mut Connection<LinkPublicKey>, req: Request) -> Option<Vec<Response>> {
    conn.send(Frame::Control(req.encode().ok()?)).await.ok()?;
    let mut out = Vec::new();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), conn.recv()).await.ok()??;
        let Frame::Control(b) = f else { continue };
        let r = Response::decode(&b).unwrap();
        let done = !matches!(r, Response::Message { .. });
        out.push(r);
        if done {
            return Some(out);
        }
    }
}

/// A mailbox on gw2.
struct Mailbox {
    id: [u8; 32],
    credential: [u8; 32],
}

impl Mailbox {
    fn new() -> Self {
        let mut rng = rand::rng();
        let (mut id, mut credential) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut credential);
        Self { id, credential }
    }

    async fn register(&self, client: &Client) {
        let mut c = client.connect_to("gw2").await;
        let r = control(
            &mut c,
            Request::Register { id: 1, mailbox: MailboxId(self.id), credential: self.credential },
        )
        .await;
        assert_eq!(r, Some(vec![Response::Ok { id: 1 }]));
    }

    /// Every text in the mailbox, with how many times it is there.
    async fn contents(&self, client: &Client) -> BTreeMap<String, usize> {
        let mut c = client.connect_to("gw2").await;
        let mut out = BTreeMap::new();
        let mut after = 0;
        loop {
            let req = Request::Fetch {
                id: 2,
                mailbox: MailboxId(self.id),
                credential: self.credential,
                after,
                limit: 200,
            };
            let Some(rs) = control(&mut c, req).await else { return out };
            let mut more = false;
            for r in rs {
                match r {
                    Response::Message { seq, item, .. } => {
                        let item = MailboxItem::decode(&item).unwrap();
                        let end = item.body.iter().position(|b| *b == 0).unwrap_or(item.body.len());
                        *out.entry(String::from_utf8_lossy(&item.body[..end]).into_owned()).or_default() += 1;
                        after = seq;
                    }
                    Response::FetchDone { more: m, .. } => more = m,
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            if !more {
                return out;
            }
        }
    }

    /// Waits until every text of `want` is in the mailbox (or the deadline), then checks each is
    /// there exactly once and nothing else is.
    async fn expect_exactly(&self, client: &Client, want: &BTreeSet<String>, within: Duration) {
        let deadline = Instant::now() + within;
        let got = loop {
            let got = self.contents(client).await;
            if want.iter().all(|t| got.contains_key(t)) || Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let missing: Vec<&String> = want.iter().filter(|t| !got.contains_key(*t)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} packets missing, e.g. {:?}",
            missing.len(),
            want.len(),
            missing.first()
        );
        let dup: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
        assert!(dup.is_empty(), "delivered more than once: {dup:?}");
        let extra: Vec<_> = got.keys().filter(|t| !want.contains(*t)).collect();
        assert!(extra.is_empty(), "unexpected packets: {extra:?}");
    }
}

/// Connects to `addr`, writes `len` random bytes and waits (a little) for the node to close.
async fn garbage(addr: SocketAddr, len: usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    let _ = s.write_all(&bytes).await;
    let _ = s.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
}

async fn metric(n: &NodeEntry, name: &str) -> f64 {
    let (_, body) = http::get(n.metrics, "/metrics", Duration::from_secs(5)).await.unwrap();
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok()).unwrap_or(0.0)
}

/// Waits up to `within` for the metric to reach `at_least`; returns its last value.
///
/// A node rotates its keys a little after an epoch boundary (once the new document is
/// installed), so a test that has just crossed a boundary must wait for it.
async fn metric_at_least(n: &NodeEntry, name: &str, at_least: f64, within: Duration) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = metric(n, name).await;
        if v >= at_least || tokio::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_processes_deliver_across_epochs_and_crashes() {
    let net = Devnet { dir: tempfile::tempdir().unwrap() };
    let dir = net.dir.path().to_owned();
    let d = dir.to_str().unwrap();
    qanat(&["devnet", "up", "--dir", d, "--epoch-secs", &EPOCH_SECS.to_string(), "--wait"]);
    qanat(&["devnet", "status", "--dir", d]);
    let mut client = Client::new(&dir);
    let period = client.config.network.epoch_period;

    // 0. Garbage and truncated handshakes on every port of every node: each is dropped and
    // counted, and the nodes go on serving (the phases below).
    let nodes = manifest(&dir).nodes;
    for n in &nodes {
        let ports = [Some(n.link), n.client, Some(n.metrics)];
        for addr in ports.into_iter().flatten() {
            garbage(addr, 5_000).await;
            garbage(addr, 10).await;
        }
    }
    for n in &nodes {
        let failures =
            metric_at_least(n, "qanat_link_handshake_failures_total", 2.0, Duration::from_secs(5)).await;
        assert!(failures >= 2.0, "{}: {failures} handshake failures counted", n.name);
    }

    // 1. Three layers, the right mailbox, exactly once; forged and replayed packets dropped.
    let mb = Mailbox::new();
    mb.register(&client).await;
    let other = Mailbox::new();
    other.register(&client).await;
    let gw1 = client.connect_to("gw1").await;
    let mut want = BTreeSet::new();
    for i in 0..60 {
        let t = format!("phase1 packet {i}");
        client.send(&gw1, mb.id, &t).await;
        want.insert(t);
    }
    // A forged packet (random bytes of the right length) and a replay. (A packet of another
    // length cannot even be framed: the link layer refuses it.)
    let len = client.sphinx.geometry().packet_len();
    let mut forged = vec![0u8; len];
    rand::rng().fill_bytes(&mut forged);
    gw1.send(Frame::Packet { id: PacketId(1 << 40), packet: forged }).await.unwrap();
    assert!(gw1.send(Frame::Packet { id: PacketId((1 << 40) + 1), packet: vec![7; len / 2] }).await.is_err());
    let (_, replayed) = client.packet(mb.id, "phase1 replayed").await;
    for k in 0..3 {
        gw1.send(Frame::Packet { id: PacketId((1 << 41) + k), packet: replayed.clone() }).await.unwrap();
    }
    want.insert("phase1 replayed".to_owned());
    mb.expect_exactly(&client, &want, Duration::from_secs(30)).await;
    assert!(other.contents(&client).await.is_empty(), "packets landed in another mailbox");
    let g1 = client.node("gw1");
    let within = Duration::from_secs(5);
    assert!(metric_at_least(&g1, "qanat_gateway_dropped_malformed_total", 1.0, within).await >= 1.0);
    assert!(metric_at_least(&g1, "qanat_gateway_dropped_replay_total", 2.0, within).await >= 2.0);
    eprintln!("phase 1: {} packets through three layers, each delivered once", want.len());

    // 2. Across two epoch boundaries with key rotation.
    let mb2 = Mailbox::new();
    mb2.register(&client).await;
    let deleted_before = metric(&client.node("mix2a"), "qanat_packet_keys_deleted_total").await;
    let start = Epoch::at(wall_now(), period);
    let mut want = BTreeSet::new();
    let mut epochs_used = BTreeSet::new();
    let mut i = 0;
    while Epoch::at(wall_now(), period) < start.plus(2) || i < 20 {
        let t = format!("phase2 packet {i}");
        epochs_used.insert(client.send(&gw1, mb2.id, &t).await);
        want.insert(t);
        i += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A little more into the new epoch.
    for _ in 0..10 {
        let t = format!("phase2 packet {i}");
        epochs_used.insert(client.send(&gw1, mb2.id, &t).await);
        want.insert(t);
        i += 1;
    }
    assert!(epochs_used.len() >= 3, "packets in epochs {epochs_used:?}");
    mb2.expect_exactly(&client, &want, Duration::from_secs(30)).await;
    // Regression: CI once read this metric before mix2a had rotated after the second boundary.
    let deleted_after = metric_at_least(
        &client.node("mix2a"),
        "qanat_packet_keys_deleted_total",
        deleted_before + 2.0,
        Duration::from_secs(2 * EPOCH_SECS),
    )
    .await;
    assert!(deleted_after >= deleted_before + 2.0, "keys rotated: {deleted_before} -> {deleted_after}");
    for name in ["mix1a", "mix2a", "mix3a", "gw1", "gw2"] {
        let n = client.node(name);
        let no_key = metric(
            &n,
            if n.role == "mix" {
                "qanat_mix_dropped_no_key_total"
            } else {
                "qanat_gateway_dropped_no_key_total"
            },
        )
        .await;
        assert_eq!(no_key, 0.0, "{name} dropped packets for want of a key");
    }
    eprintln!("phase 2: {} packets over epochs {epochs_used:?}, all delivered once", want.len());

    // 3. Gateway 2 killed under load, then restarted: nothing acknowledged is lost.
    let mb3 = Mailbox::new();
    mb3.register(&client).await;
    let gw2 = client.node("gw2");
    let mut want = BTreeSet::new();
    let t0 = Instant::now();
    let mut killed = false;
    let mut restarted = false;
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(8) {
        for _ in 0..15 {
            let t = format!("phase3 packet {i}");
            client.send(&gw1, mb3.id, &t).await;
            want.insert(t);
            i += 1;
        }
        if !killed && t0.elapsed() > Duration::from_secs(2) {
            sigkill(gw2.pid.unwrap());
            killed = true;
        }
        if killed && !restarted && t0.elapsed() > Duration::from_secs(4) {
            qanat(&["devnet", "restart", "--dir", d, "gw2"]);
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed && restarted);
    mb3.expect_exactly(&client, &want, Duration::from_secs(45)).await;
    let resent: f64 = {
        let mut s = 0.0;
        for name in ["mix3a", "mix3b"] {
            s += metric(&client.node(name), "qanat_mix_gateway_resent_total").await;
        }
        s
    };
    eprintln!(
        "phase 3: {} packets, gateway killed and restarted, all delivered once ({resent} resent)",
        want.len()
    );

    // 4. A mix killed with SIGKILL is routed around from the next epoch.
    let victim = client.node("mix2a");
    let victim_id = node_id(&victim.identity_key);
    sigkill(victim.pid.unwrap());
    let killed_at = wall_now();
    // The first epoch whose vote came after the kill.
    let cur = Epoch::at(killed_at, period);
    let first_without = if killed_at < cur.schedule(period).vote() { cur.next() } else { cur.next().next() };
    let wait = first_without.start(period).as_millis().saturating_sub(wall_now().as_millis());
    tokio::time::sleep(Duration::from_millis(wait + 300)).await;
    let doc = client.document(first_without).await;
    assert!(
        doc.node(&victim_id).is_none(),
        "the killed mix is still in the document of epoch {}",
        first_without.0
    );
    assert_eq!(doc.nodes().len(), 7, "5 mixes and 2 gateways");
    let mb4 = Mailbox::new();
    mb4.register(&client).await;
    let mut want = BTreeSet::new();
    for i in 0..40 {
        let t = format!("phase4 packet {i}");
        let e = client.send(&gw1, mb4.id, &t).await;
        assert_eq!(e, first_without, "still in the epoch without the killed mix");
        want.insert(t);
    }
    mb4.expect_exactly(&client, &want, Duration::from_secs(30)).await;
    eprintln!(
        "phase 4: mix killed, left out of epoch {}, {} packets all delivered once",
        first_without.0,
        want.len()
    );

    // The nodes' logs name no key, address or mailbox.
    let mut secrets: Vec<String> = vec!["127.0.0.1".into()];
    for n in manifest(&dir).nodes {
        secrets.push(n.identity_key.clone());
        secrets.push(n.link_key[..64].to_owned());
    }
    for m in [&mb, &other, &mb2, &mb3, &mb4] {
        secrets.push(hex::encode(m.id));
        secrets.push(hex::encode(&m.id[..8]));
    }
    let mut lines = 0;
    for n in manifest(&dir).nodes {
        let log = std::fs::read_to_string(dir.join(&n.name).join("node.log")).unwrap();
        lines += log.lines().count();
        for s in &secrets {
            assert!(!log.contains(s.as_str()), "{}'s log names {s}", n.name);
        }
    }
    assert!(lines > 50, "the nodes logged {lines} lines");
}
