//! The testbed's network: Linux network namespaces joined by veth pairs to one router
//! namespace, shaped with `tc tbf`, lossy through nftables `numgen random`, partitioned by
//! nftables drop rules in the router. Every namespace and process is recorded in
//! `DIR/testbed.json` as it is created, and removed (processes stopped by PID) when the
//! [`Tracker`] is dropped, also on failure, or by `qanat testbed down --dir DIR`.
//!
//! Addresses: endpoint `i` (a node, or a client at `CLIENT_BASE + c`) has the subnet
//! `10.77.i.0/24`, the router `10.77.i.1` on its interface `v<i>`, the endpoint `10.77.i.2` on
//! `eth0`. Nothing is added to the namespace the testbed is started from.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qanat_network::file::{Access, write_atomically};
use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::devnet::{runs, signal};

/// The index of client 0's endpoint.
pub(crate) const CLIENT_BASE: u8 = 100;
/// The router's nftables table.
const TABLE: &str = "qtb";

const MANIFEST: &str = "testbed.json";

/// The router-side address of endpoint `i`.
pub(crate) fn router_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, i, 1)
}

/// Endpoint `i`'s address.
pub(crate) fn endpoint_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, i, 2)
}

/// Runs `prog args`; fails with its standard error.
pub(crate) fn sh(prog: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {prog} (is it installed? scripts/test installs it)"))?;
    if !out.status.success() {
        bail!("{prog} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `nft -f -` in namespace `ns` with `script` on standard input.
fn nft(ns: &str, script: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (apt-get install nftables)")?;
    child.stdin.take().context("nft stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft in {ns}: {}\n{script}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether this process may create network namespaces: `Ok(false)` only when the kernel
/// refuses for lack of privilege (not root, EPERM); a missing tool is an error.
pub(crate) fn namespaces_available() -> Result<bool> {
    let name = format!("qtb-probe-{}", std::process::id());
    let out = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .context("cannot run ip (apt-get install iproute2)")?;
    if out.status.success() {
        sh("ip", &["netns", "del", &name])?;
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") || err.contains("Permission denied") {
        return Ok(false);
    }
    bail!("ip netns add: {}", err.trim())
}

/// A process the testbed started: stopped by PID, if that PID still runs `marker` (an
/// argument of its command line: a node's config, a client's home).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Proc {
    pid: u32,
    marker: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    namespaces: Vec<String>,
    processes: Vec<Proc>,
}

/// What a run created; torn down when dropped.
pub(crate) struct Tracker {
    dir: PathBuf,
    m: Manifest,
}

impl Tracker {
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        let t = Self { dir: dir.to_owned(), m: Manifest::default() };
        t.save()?;
        Ok(t)
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.m)?;
        write_atomically(&self.dir.join(MANIFEST), &bytes, Access::Default)
            .context("cannot write the testbed manifest")
    }

    /// Creates namespace `name` (recorded before it exists: a crash in between leaves a name
    /// `down` ignores).
    pub(crate) fn add_namespace(&mut self, name: &str) -> Result<()> {
        self.m.namespaces.push(name.to_owned());
        self.save()?;
        sh("ip", &["netns", "add", name])?;
        sh("ip", &["-n", name, "link", "set", "lo", "up"])
    }

    /// Starts `args` inside namespace `ns` (`ip netns exec` execs it: the PID is the
    /// program's), output appended to `log`, in its own process group.
    pub(crate) fn spawn_in(
        &mut self,
        ns: &str,
        args: &[&std::ffi::OsStr],
        marker: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<u32> {
        use std::os::unix::process::CommandExt as _;
        let exe = std::env::current_exe().context("cannot find the qanat binary")?;
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .context("cannot start a process in a namespace")?;
        let pid = child.id();
        // Reaped by `teardown` (or by init once this process is gone).
        std::mem::forget(child);
        self.m.processes.push(Proc { pid, marker: marker.to_owned() });
        self.save()?;
        Ok(pid)
    }

    /// Stops every process (SIGTERM, then SIGKILL after 10 s), then deletes every namespace.
    pub(crate) fn teardown(&mut self) -> Result<()> {
        stop_all(&self.m.processes, Duration::from_secs(10));
        self.m.processes.clear();
        let mut failed = Vec::new();
        for ns in std::mem::take(&mut self.m.namespaces).into_iter().rev() {
            if Path::new("/var/run/netns").join(&ns).exists()
                && let Err(e) = sh("ip", &["netns", "del", &ns])
            {
                failed.push(e.to_string());
                self.m.namespaces.push(ns);
            }
        }
        self.save()?;
        if !failed.is_empty() {
            bail!("namespaces not removed: {}", failed.join("; "));
        }
        Ok(())
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("testbed: teardown: {e:#}");
        }
    }
}

fn stop_all(procs: &[Proc], grace: Duration) {
    let alive = |p: &Proc| runs(p.pid, &p.marker);
    for p in procs.iter().filter(|p| alive(p)) {
        signal(p.pid, Signal::TERM);
    }
    let start = Instant::now();
    while procs.iter().any(alive) && start.elapsed() < grace {
        reap();
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter().filter(|p| alive(p)) {
        signal(p.pid, Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(100));
    reap();
}

/// Reaps this process's exited children (they are ours: the testbed's processes).
fn reap() {
    use rustix::process::{WaitOptions, wait};
    while let Ok(Some(_)) = wait(WaitOptions::NOHANG) {}
}

/// `qanat testbed down --dir DIR`: stops what a run left behind, in `dir` (one profile's
/// directory) or in each of its subdirectories (the `--dir` of `testbed run`).
pub(crate) fn down(dir: &Path) -> Result<()> {
    let mut found = Vec::new();
    if dir.join(MANIFEST).exists() {
        found.push(dir.to_owned());
    } else if let Ok(entries) = fs::read_dir(dir) {
        found.extend(entries.flatten().map(|e| e.path()).filter(|p| p.join(MANIFEST).exists()));
    }
    if found.is_empty() {
        bail!("no testbed in {}", dir.display());
    }
    for d in found {
        let path = d.join(MANIFEST);
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let m: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{} is unreadable", path.display()))?;
        let (n, p) = (m.namespaces.len(), m.processes.len());
        let mut t = Tracker { dir: d.clone(), m };
        t.teardown()?;
        println!("testbed: {}: stopped up to {p} processes, removed up to {n} namespaces", d.display());
    }
    Ok(())
}

/// The router and its links, by namespace name.
pub(crate) struct Topology {
    /// The namespaces' prefix: `qtb-<run id>`.
    pub(crate) prefix: String,
}

impl Topology {
    pub(crate) fn router(&self) -> String {
        format!("{}-r", self.prefix)
    }

    pub(crate) fn ns(&self, who: &str) -> String {
        format!("{}-{who}", self.prefix)
    }

    /// The router namespace, forwarding, with an empty partition chain.
    pub(crate) fn add_router(&self, t: &mut Tracker) -> Result<()> {
        let r = self.router();
        t.add_namespace(&r)?;
        sh("ip", &["netns", "exec", &r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        nft(
            &r,
            &format!(
                "table inet {TABLE} {{\n\
                 chain forward {{ type filter hook forward priority 0; policy accept; jump partition; }}\n\
                 chain input {{ type filter hook input priority 0; policy accept; }}\n\
                 chain partition {{ }}\n}}\n"
            ),
        )
    }

    /// Namespace `who` as endpoint `i`, linked to the router.
    pub(crate) fn add_endpoint(&self, t: &mut Tracker, who: &str, i: u8) -> Result<()> {
        let (r, ns) = (self.router(), self.ns(who));
        t.add_namespace(&ns)?;
        let v = format!("v{i}");
        sh("ip", &["link", "add", &v, "netns", &r, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        sh("ip", &["-n", &r, "addr", "add", &format!("{}/24", router_ip(i)), "dev", &v])?;
        sh("ip", &["-n", &r, "link", "set", &v, "up"])?;
        sh("ip", &["-n", &ns, "addr", "add", &format!("{}/24", endpoint_ip(i)), "dev", "eth0"])?;
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        sh("ip", &["-n", &ns, "route", "add", "default", "via", &router_ip(i).to_string()])
    }

    /// Shapes endpoint `i`'s link: `rate_kbit` each way (tbf on both ends of the veth), and
    /// `loss_permille` of the packets dropped as they arrive at either end.
    pub(crate) fn shape(&self, who: &str, i: u8, rate_kbit: Option<u32>, loss_permille: u32) -> Result<()> {
        let (r, ns, v) = (self.router(), self.ns(who), format!("v{i}"));
        if let Some(kbit) = rate_kbit {
            // A burst of 50 ms of the rate (at least two full frames), a queue of up to 2 s:
            // slow links hold deep buffers.
            let burst = (kbit as usize * 1000 / 8 / 20).max(3200).to_string();
            let rate = format!("{kbit}kbit");
            for (n, dev) in [(&r, v.as_str()), (&ns, "eth0")] {
                sh(
                    "tc",
                    &[
                        "-n", n, "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
                        "latency", "2s",
                    ],
                )?;
            }
        }
        if loss_permille > 0 {
            let drop = format!("numgen random mod 1000 < {loss_permille} drop");
            nft(&r, &format!("add rule inet {TABLE} input iifname \"{v}\" {drop}\n"))?;
            nft(&r, &format!("add rule inet {TABLE} forward iifname \"{v}\" {drop}\n"))?;
            nft(
                &ns,
                &format!(
                    "table inet {TABLE} {{\n chain input {{ type filter hook input priority 0; policy accept; \
                     iifname \"eth0\" {drop}; }}\n}}\n"
                ),
            )?;
        }
        Ok(())
    }

    /// Endpoint `i`'s link down or up (the router's end).
    pub(crate) fn set_link(&self, i: u8, up: bool) -> Result<()> {
        sh("ip", &["-n", &self.router(), "link", "set", &format!("v{i}"), if up { "up" } else { "down" }])
    }

    /// Drops every packet between the endpoints `a` and the endpoints `b`, both ways.
    pub(crate) fn cut(&self, a: &[u8], b: &[u8]) -> Result<()> {
        let set = |xs: &[u8]| xs.iter().map(|i| endpoint_ip(*i).to_string()).collect::<Vec<_>>().join(", ");
        let (a, b) = (set(a), set(b));
        nft(
            &self.router(),
            &format!(
                "add rule inet {TABLE} partition ip saddr {{ {a} }} ip daddr {{ {b} }} drop\n\
                 add rule inet {TABLE} partition ip saddr {{ {b} }} ip daddr {{ {a} }} drop\n"
            ),
        )
    }

    /// Ends every partition.
    pub(crate) fn heal(&self) -> Result<()> {
        nft(&self.router(), &format!("flush chain inet {TABLE} partition\n"))
    }
}

/// A socket address of endpoint `i`.
pub(crate) fn at(i: u8, port: u16) -> SocketAddr {
    SocketAddr::from((endpoint_ip(i), port))
}
