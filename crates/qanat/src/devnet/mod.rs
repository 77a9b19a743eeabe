//! `qanat devnet up | status | down | restart`: a whole network as separate processes on
//! 127.0.0.1: 3 authorities, 3 layers of 2 mixes, 2 gateways, each a `qanat node run` with its
//! own generated keys, config, data directory and log under `DIR/<name>/`.
//!
//! `DIR/devnet.json` (the manifest) records every node: its role, config, addresses, public keys
//! and the PID of its process. Processes are stopped by that PID only, after checking that the
//! PID still runs this node's config (a PID can be reused once a process is gone).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qanat_link::http;
use qanat_network::file::{Access, write_atomically};
use rustix::process::{Pid, Signal, kill_process, test_kill_process};
use serde::{Deserialize, Serialize};

pub(crate) mod generate;

const MANIFEST: &str = "devnet.json";

/// Settings of `devnet up`.
#[derive(Debug, Clone)]
pub(crate) struct UpOptions {
    /// The network to generate. Its nodes serve metrics whatever `network.metrics` says:
    /// `devnet status` reads them.
    pub(crate) network: generate::Options,
    /// Return only once every mix and gateway is in the directory.
    pub(crate) wait: bool,
}

/// One node of the devnet, as recorded in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeEntry {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) config: PathBuf,
    pub(crate) pid: Option<u32>,
    pub(crate) link: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) client: Option<SocketAddr>,
    pub(crate) identity_key: String,
    pub(crate) link_key: String,
}

/// The manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) network: String,
    pub(crate) epoch_secs: u64,
    pub(crate) scheme: String,
    pub(crate) nodes: Vec<NodeEntry>,
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).with_context(|| {
        format!("no devnet in {} (run 'qanat devnet up --dir {}')", dir.display(), dir.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a devnet manifest", path.display()))
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    Ok(write_atomically(&dir.join(MANIFEST), &serde_json::to_vec_pretty(m)?, Access::Default)?)
}

/// Whether `pid` is alive and still runs the node of `config`.
pub(crate) fn runs(pid: u32, config: &Path) -> bool {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else { return false };
    if test_kill_process(p).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped) is not running.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) {
        return false;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let want = config.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(p, sig);
    }
}

/// Starts `node`'s process; its output goes to `<node dir>/node.log`.
fn spawn(node: &NodeEntry) -> Result<u32> {
    let exe = std::env::current_exe().context("cannot find the qanat binary")?;
    let node_dir = node.config.parent().unwrap_or(Path::new("."));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node_dir.join("node.log"))
        .with_context(|| format!("cannot open {}/node.log", node_dir.display()))?;
    // A devnet is a test network: a [danger] table in a node's config (from --fault-drop-rate)
    // is allowed.
    let danger = crate::node_cmd::load(&node.config)?.danger.is_some();
    let child = Command::new(exe)
        .args(["node", "run", "--config"])
        .arg(&node.config)
        .args(danger.then_some("--allow-danger"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at the terminal that ran `devnet up` does not reach it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", node.name))?;
    Ok(child.id())
}

/// `qanat devnet up --dir DIR`.
pub(crate) fn up(dir: &Path, o: &UpOptions) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    if let Ok(m) = read_manifest(&dir)
        && m.nodes.iter().any(|n| n.pid.is_some_and(|p| runs(p, &n.config)))
    {
        bail!(
            "a devnet is already running in {} (stop it with 'qanat devnet down --dir {}')",
            dir.display(),
            dir.display()
        );
    }
    let opts = generate::Options { metrics: true, ..o.network };
    let nodes: Vec<NodeEntry> = generate::generate(&dir, &opts)?
        .into_iter()
        .map(|n| NodeEntry {
            name: n.name,
            role: n.role.to_owned(),
            config: n.config,
            pid: None,
            link: n.link,
            metrics: n.metrics.unwrap_or(n.link),
            client: n.client,
            identity_key: hex::encode(n.identity.as_bytes()),
            link_key: hex::encode(n.link_key.to_bytes()),
        })
        .collect();

    let mut manifest = Manifest {
        network: "devnet".into(),
        epoch_secs: opts.epoch_secs,
        scheme: opts.scheme.name().into(),
        nodes,
    };
    for i in 0..manifest.nodes.len() {
        let pid = spawn(&manifest.nodes[i]);
        match pid {
            Ok(pid) => manifest.nodes[i].pid = Some(pid),
            Err(e) => {
                write_manifest(&dir, &manifest)?;
                let _ = down(&dir);
                return Err(e);
            }
        }
    }
    write_manifest(&dir, &manifest)?;
    println!(
        "devnet: {} nodes started in {} (logs: <dir>/<node>/node.log)",
        manifest.nodes.len(),
        dir.display()
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let healthy = rt.block_on(wait_until(&manifest, Duration::from_secs(30), |s| s.healthy));
    if !healthy {
        print_status(&rt.block_on(statuses(&manifest)));
        bail!(
            "not every node answered within 30 s; see the logs, then 'qanat devnet down --dir {}'",
            dir.display()
        );
    }
    if o.wait {
        // Up to two epochs for the first document, plus slack.
        let limit = Duration::from_secs(2 * opts.epoch_secs + 15);
        println!(
            "devnet: waiting (up to {} s) until every mix and gateway is in the directory",
            limit.as_secs()
        );
        if !rt.block_on(wait_until(&manifest, limit, |s| s.role == "authority" || s.listed)) {
            print_status(&rt.block_on(statuses(&manifest)));
            bail!("not every node is in the directory after {} s", limit.as_secs());
        }
    }
    print_status(&rt.block_on(statuses(&manifest)));
    Ok(())
}

/// What `status` learns of one node.
#[derive(Debug, Clone)]
pub(crate) struct NodeStatus {
    name: String,
    role: String,
    pid: Option<u32>,
    running: bool,
    healthy: bool,
    listed: bool,
    metrics: BTreeMap<String, f64>,
}

async fn statuses(m: &Manifest) -> Vec<NodeStatus> {
    let mut out = Vec::new();
    for n in &m.nodes {
        let running = n.pid.is_some_and(|p| runs(p, &n.config));
        let page =
            if running { http::get(n.metrics, "/metrics", Duration::from_secs(2)).await.ok() } else { None };
        let metrics: BTreeMap<String, f64> = page
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| {
                body.lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| {
                        let (k, v) = l.rsplit_once(' ')?;
                        Some((k.to_owned(), v.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(NodeStatus {
            name: n.name.clone(),
            role: n.role.clone(),
            pid: n.pid,
            running,
            healthy: running && !metrics.is_empty(),
            listed: metrics.get("qanat_directory_listed").is_some_and(|v| *v >= 1.0),
            metrics,
        });
    }
    out
}

async fn wait_until(m: &Manifest, limit: Duration, ok: impl Fn(&NodeStatus) -> bool) -> bool {
    let start = Instant::now();
    loop {
        if statuses(m).await.iter().all(&ok) {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_status(s: &[NodeStatus]) {
    println!(
        "{:<7} {:<9} {:>8} {:<8} {:>6} {:>6} {:<6} {:>10} {:>10}",
        "NODE", "ROLE", "PID", "STATE", "EPOCH", "DOC", "LISTED", "IN", "OUT/STORED"
    );
    for n in s {
        let g = |k: &str| n.metrics.get(k).copied().unwrap_or(0.0);
        let state = match (n.running, n.healthy) {
            (false, _) => "down",
            (true, false) => "starting",
            (true, true) => "ok",
        };
        let (doc, listed, inn, out) = match n.role.as_str() {
            "authority" => (
                g("qanat_authority_latest_document_epoch"),
                "-",
                g("qanat_authority_descriptors_accepted_total"),
                g("qanat_authority_published_total"),
            ),
            "mix" => (
                g("qanat_directory_epoch"),
                if n.listed { "yes" } else { "no" },
                g("qanat_mix_packets_received_total"),
                g("qanat_mix_packets_forwarded_total"),
            ),
            _ => (
                g("qanat_directory_epoch"),
                if n.listed { "yes" } else { "no" },
                g("qanat_gateway_ingress_total") + g("qanat_gateway_egress_total"),
                g("qanat_gateway_stored_total"),
            ),
        };
        println!(
            "{:<7} {:<9} {:>8} {:<8} {:>6} {:>6} {:<6} {:>10} {:>10}",
            n.name,
            n.role,
            n.pid.map_or("-".into(), |p| p.to_string()),
            state,
            g("qanat_epoch"),
            doc,
            listed,
            inn,
            out
        );
    }
}

/// `qanat devnet status --dir DIR`: fails unless every node is healthy.
pub(crate) fn status(dir: &Path) -> Result<()> {
    let m = read_manifest(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let s = rt.block_on(statuses(&m));
    print_status(&s);
    let down = s.iter().filter(|n| !n.healthy).count();
    if down > 0 {
        bail!("{down} of {} nodes are not healthy", s.len());
    }
    Ok(())
}

/// Stops `node` (SIGTERM, then SIGKILL after `grace`). Returns whether it was running.
fn stop(node: &NodeEntry, grace: Duration) -> bool {
    let Some(pid) = node.pid.filter(|p| runs(*p, &node.config)) else { return false };
    signal(pid, Signal::TERM);
    let start = Instant::now();
    while runs(pid, &node.config) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    if runs(pid, &node.config) {
        signal(pid, Signal::KILL);
    }
    true
}

/// `qanat devnet down --dir DIR`.
pub(crate) fn down(dir: &Path) -> Result<()> {
    let mut m = read_manifest(dir)?;
    // Every node is asked at once, then each is waited for.
    let mut stopped = 0;
    for n in &m.nodes {
        if let Some(pid) = n.pid.filter(|p| runs(*p, &n.config)) {
            signal(pid, Signal::TERM);
            stopped += 1;
        }
    }
    for n in &mut m.nodes {
        stop(n, Duration::from_secs(10));
        n.pid = None;
    }
    write_manifest(dir, &m)?;
    println!("devnet: stopped {stopped} nodes");
    Ok(())
}

/// `qanat devnet restart --dir DIR NAME`: stops the node if it runs, then starts it again.
pub(crate) fn restart(dir: &Path, name: &str) -> Result<()> {
    let mut m = read_manifest(dir)?;
    let Some(i) = m.nodes.iter().position(|n| n.name == name) else {
        bail!("no node {name:?} in the devnet (see 'qanat devnet status --dir {}')", dir.display());
    };
    stop(&m.nodes[i], Duration::from_secs(10));
    let pid = spawn(&m.nodes[i])?;
    m.nodes[i].pid = Some(pid);
    write_manifest(dir, &m)?;
    println!("devnet: {name} started (pid {pid})");
    Ok(())
}
