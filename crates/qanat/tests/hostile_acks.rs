//! Acknowledgements that cannot lie (issue "Hostile peers"), as separate processes on 127.0.0.1
//! (`qanat devnet up`: 3 authorities, 3 layers of 2 mixes, 2 gateways). A hostile client sends,
//! through gw1 and the three layers, packets whose last hop at gw2 is encrypted to a random key,
//! together with honest packets to a mailbox on gw2:
//!
//! 1. gw2 answers every hostile packet (counted as refused), so the last layer forgets them
//!    instead of resending them every 2 s for ever; the honest packets arrive exactly once.
//! 2. With gw2 killed, the last layer gives up on what it keeps for gw2 after the bound (the key
//!    grace, at least 30 s) and counts it, instead of keeping it for ever.
//!
//! Every wait has a deadline; the devnet is stopped by PID (`qanat devnet down`) when the test
//! ends, even on failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qanat_link::{
    Connection, Frame, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, PacketId, connect, http,
};
use qanat_mixnet::client_proto::{Request, Response};
use qanat_mixnet::{Destination, Hop, MailboxItem, path_hops};
use qanat_node::NodeConfig;
use qanat_node::service::directory::DirectoryClient;
use qanat_node::service::{epochs, link_config, wall_now};
use qanat_packet::{MailboxId, NodeId, SecretKey, Sphinx};
use qanat_pki::{Epoch, IdentityKey};
use rand::Rng as _;
use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_qanat");

#[derive(Debug, Clone, Deserialize)]
struct NodeEntry {
    name: String,
    role: String,
    config: PathBuf,
    pid: Option<u32>,
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
            for name in ["mix3a", "mix3b", "gw1", "gw2"] {
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

struct Client {
    nodes: Vec<NodeEntry>,
    config: NodeConfig,
    directory: DirectoryClient,
    link: LinkConfig,
    key: LinkSecretKey,
    sphinx: Sphinx,
    next_id: u64,
}

impl Client {
    fn new(dir: &Path) -> Self {
        let nodes = manifest(dir).nodes;
        let gw = nodes.iter().find(|n| n.name == "gw1").unwrap();
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
        Self { nodes, config, directory, link, key, sphinx, next_id: 0 }
    }

    fn node(&self, name: &str) -> &NodeEntry {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// A packet gw1 → one mix per layer → gw2 for `mailbox`; with `hostile`, its last hop is
    /// encrypted to a random key instead of gw2's.
    async fn packet(&mut self, mailbox: MailboxId, text: &str, hostile: bool) -> Vec<u8> {
        let (g, period) = (self.config.network.geometry.clone(), self.config.network.epoch_period);
        let epoch = Epoch::at(wall_now(), period);
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
        let (u, _) =
            epochs::update_from(&doc, NodeId([0; 32]), None, &g, period, |a| a.parse().ok()).unwrap();
        let topo = u.topology;
        let (gin, gout) = (node_id(&self.node("gw1").identity_key), node_id(&self.node("gw2").identity_key));
        let mut rng = rand::rng();
        let mut hops: Vec<Hop> = vec![topo.hop(&gin).cloned().unwrap()];
        for l in 0..topo.layers.len() {
            hops.push(topo.random_mix(l, &mut rng).unwrap().clone());
        }
        let mut last = topo.hop(&gout).cloned().unwrap();
        if hostile {
            last.key = SecretKey::generate(g.scheme(), &mut rng).public_key();
        }
        hops.push(last);
        let refs: Vec<&Hop> = hops.iter().collect();
        let is_gw = |id: &NodeId| *id == gin || *id == gout;
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let destination = Destination::SurbReply(mailbox, qanat_packet::SurbId(id));
        let path = path_hops(&refs, is_gw, u.mean_delay, destination, &mut rng);
        let mut payload = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
        payload[..text.len()].copy_from_slice(text.as_bytes());
        self.sphinx.new_opaque_packet(&mut rng, &path, &payload).unwrap()
    }

    async fn connect_to(&self, name: &str) -> Connection<LinkPublicKey> {
        let n = self.node(name);
        let remote = LinkPublicKey::from_bytes(&hex::decode(&n.link_key).unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = Arc::new(LinkMetrics::default());
            match connect(n.client.unwrap(), &self.key, &remote, self.link.clone(), m).await {
                Ok(c) => return c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot reach {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn send(
        &mut self,
        conn: &Connection<LinkPublicKey>,
        mailbox: MailboxId,
        text: &str,
        hostile: bool,
    ) {
        let packet = self.packet(mailbox, text, hostile).await;
        self.next_id += 1;
        conn.send(Frame::Packet { id: PacketId(self.next_id), packet }).await.unwrap();
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

/// Every text in a mailbox on gw2, with how many times it is there.
async fn contents(client: &Client, mailbox: MailboxId, credential: [u8; 32]) -> BTreeMap<String, usize> {
    let mut c = client.connect_to("gw2").await;
    let mut out = BTreeMap::new();
    let mut after = 0;
    loop {
        let req = Request::Fetch { id: 2, mailbox, credential, after, limit: 200 };
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

async fn metric(n: &NodeEntry, name: &str) -> f64 {
    let Ok((_, body)) = http::get(n.metrics, "/metrics", Duration::from_secs(5)).await else { return 0.0 };
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok()).unwrap_or(0.0)
}

/// The sum of a metric over every mix.
async fn mixes_sum(nodes: &[NodeEntry], name: &str) -> f64 {
    let mut s = 0.0;
    for n in nodes.iter().filter(|n| n.role == "mix") {
        s += metric(n, name).await;
    }
    s
}

/// Polls `read` until `ok` holds of its value or `within` passes; returns the last value.
async fn wait_for<F, Fut>(within: Duration, mut read: F, ok: impl Fn(f64) -> bool) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let deadline = Instant::now() + within;
    loop {
        let v = read().await;
        if ok(v) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_answer_what_they_cannot_store_and_mixes_give_up_on_dead_gateways() {
    let net = Devnet { dir: tempfile::tempdir().unwrap() };
    let dir = net.dir.path().to_owned();
    let d = dir.to_str().unwrap();
    qanat(&["devnet", "up", "--dir", d, "--epoch-secs", "20", "--wait"]);
    let mut client = Client::new(&dir);
    let nodes = client.nodes.clone();
    let gw2 = client.node("gw2").clone();

    let mut rng = rand::rng();
    let (mut mailbox, mut credential) = ([0u8; 32], [0u8; 32]);
    rng.fill_bytes(&mut mailbox);
    rng.fill_bytes(&mut credential);
    let mailbox = MailboxId(mailbox);
    let mut c = client.connect_to("gw2").await;
    let r = control(&mut c, Request::Register { id: 1, mailbox, credential }).await;
    assert_eq!(r, Some(vec![Response::Ok { id: 1 }]));

    // 1. Hostile packets are answered and forgotten; honest ones arrive once.
    const HOSTILE: usize = 40;
    let gw1 = client.connect_to("gw1").await;
    let mut want = Vec::new();
    for i in 0..HOSTILE {
        client.send(&gw1, mailbox, &format!("hostile {i}"), true).await;
        if i % 2 == 0 {
            let t = format!("honest {i}");
            client.send(&gw1, mailbox, &t, false).await;
            want.push(t);
        }
    }
    let refused = wait_for(
        Duration::from_secs(30),
        || metric(&gw2, "qanat_gateway_refused_malformed_total"),
        |v| v >= HOSTILE as f64,
    )
    .await;
    assert!(refused >= HOSTILE as f64, "gw2 answered {refused} of {HOSTILE} undecryptable packets");
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = contents(&client, mailbox, credential).await;
        if want.iter().all(|t| got.contains_key(t)) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for t in &want {
        assert_eq!(got.get(t), Some(&1), "{t} delivered {:?} times", got.get(t));
    }
    assert!(got.keys().all(|t| t.starts_with("honest")), "a hostile packet was stored");
    // Nothing is left waiting in the last layer (before the fix: the 40 hostile packets, kept
    // and resent every 2 s for ever). Loops passing through gateways come and go, a few at a time.
    let kept = wait_for(
        Duration::from_secs(15),
        || mixes_sum(&nodes, "qanat_mix_gateway_unacked_packets"),
        |v| v < 10.0,
    )
    .await;
    assert!(kept < 10.0, "{kept} packets still kept for gateways");
    let resent = mixes_sum(&nodes, "qanat_mix_gateway_resent_total").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resent_later = mixes_sum(&nodes, "qanat_mix_gateway_resent_total").await;
    assert!(
        resent_later - resent < HOSTILE as f64,
        "{} resends in 5 s: the hostile packets are still being resent",
        resent_later - resent
    );
    assert_eq!(mixes_sum(&nodes, "qanat_mix_gateway_gave_up_total").await, 0.0);
    eprintln!("phase 1: {refused} hostile packets answered, {} honest delivered once", want.len());

    // 2. gw2 dies: what the last layer keeps for it is given up after the bound (at least 30 s
    // on this 20 s epoch), and counted.
    let pid = gw2.pid.expect("gw2 runs");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    for i in 0..10 {
        client.send(&gw1, mailbox, &format!("to a dead gateway {i}"), false).await;
    }
    let kept = wait_for(
        Duration::from_secs(15),
        || mixes_sum(&nodes, "qanat_mix_gateway_unacked_packets"),
        |v| v >= 10.0,
    )
    .await;
    assert!(kept >= 10.0, "only {kept} packets kept for the dead gateway");
    let gave_up = wait_for(
        Duration::from_secs(75),
        || mixes_sum(&nodes, "qanat_mix_gateway_gave_up_total"),
        |v| v >= 10.0,
    )
    .await;
    assert!(gave_up >= 10.0, "only {gave_up} packets given up after the bound");
    eprintln!("phase 2: {gave_up} packets to the dead gateway given up");
}
