//! A whole network on 127.0.0.1, generated in one directory: keys, free ports and one config per
//! node (3 authorities, 3 layers of 2 mixes and 2 gateways). `qanat devnet` starts each node as
//! its own process, `qanat testbed` each in its own network namespace (it places the nodes with
//! [`generate_placed`]), and `qanat demo` all of them in this process with [`start_all`].
//!
//! Layout: `DIR/<name>/node.toml`, `DIR/<name>/data/` (keys, and a gateway's mailboxes), and the
//! clients' network file `DIR/network.toml`.
//!
//! Every config is built as a typed [`NodeConfig`] (its `[danger]` table a [`DangerConfig`], a
//! gateway's client budgets a `ClientBudgets`, the network a [`NetworkConfig`]), written by the
//! node library's one renderer ([`NodeConfig::render`], the one `qanat node example-config`
//! uses), and read back with [`NodeConfig::load`], which must give exactly the config rendered;
//! the network file likewise with [`ClientNetwork`]. No TOML is assembled here.
//!
//! Why here, in the binary, and not in `qanat-node`: generating a test network (fresh keys for
//! every node, free ports, names, the devnet's burst and fault-injection settings) is what the
//! devnet, demo and testbed commands do, not something a node operator's library should offer.
//! The integration tests, which cannot import from a binary, need none of it: those that need
//! a running network run `qanat devnet up` and read `DIR/network.toml` (or, for its parameters,
//! an authority's `node.toml`), and `tests/client_cli.rs`, which needs only a network file,
//! builds one from `qanat-network`'s typed `ClientNetwork`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use qanat_link::LinkPublicKey;
use qanat_link::http::free_local_port;
use qanat_node::NodeConfig;
use qanat_node::config::{
    AuthorityPeer, AuthorityRoleConfig, ClientGateway, ClientNetwork, DangerConfig, GatewayRoleConfig,
    NetworkConfig, RoleConfig,
};
use qanat_node::keys::NodeKeys;
use qanat_node::service::{self, KEY_WINDOW, RunningNode, wall_now};
use qanat_packet::{Geometry, Scheme};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, FileLimits, IdentityKey, Parameters, ParametersConfig, Rate};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// The epoch period in seconds.
    pub(crate) epoch_secs: u64,
    /// The packet scheme.
    pub(crate) scheme: Scheme,
    /// The mean delay per mix, in milliseconds.
    pub(crate) mean_delay_ms: u32,
    /// Loop cover packets per second per mix.
    pub(crate) lambda_m: f64,
    /// Client payload packets per second (λ_P).
    pub(crate) lambda_p: f64,
    /// Client loop and drop packets per second (λ_L, λ_D).
    pub(crate) lambda_l: f64,
    /// Whether each node serves Prometheus metrics (on a free port).
    pub(crate) metrics: bool,
    /// Fault injection for tests: the gateways drop this fraction of the packets they receive
    /// (`danger.fault_drop_rate`: such a gateway starts only with `--allow-danger`, or through
    /// [`start_all`]).
    pub(crate) fault_drop_rate: f64,
    /// The file limits the authorities vote for (`authority.parameters.max_file_bytes` and
    /// `fast_factor_max`): the directory is then of version 2; `None`, version 1 (an
    /// authority whose operator has not switched).
    pub(crate) file_limits: Option<FileLimits>,
}

impl Default for Options {
    /// A fast development network: 20-second epochs, X25519-KEM packets, 50 ms mean delay, 20 mix
    /// loops per second ((3 − 1) layers × 20/s × 50 ms = 2 ≥ 2), clients at 2 packets per second,
    /// a directory of version 2 with the default file limits (4 MiB, fast factor 4).
    fn default() -> Self {
        Self {
            epoch_secs: 20,
            scheme: Scheme::X25519Kem,
            mean_delay_ms: 50,
            lambda_m: 20.0,
            lambda_p: 2.0,
            lambda_l: 0.5,
            metrics: true,
            fault_drop_rate: 0.0,
            file_limits: Some(FileLimits::DEFAULT),
        }
    }
}

/// The client packet burst of a generated network's gateways (a real one's is 32): its tools
/// (and `qanat devnet`'s tests) send bursts of packets far above a client's rate through one
/// connection.
const CLIENT_PACKET_BURST: u32 = 10_000;

/// One generated node.
#[derive(Debug, Clone)]
pub(crate) struct LocalNode {
    /// Its name: `auth1`…, `mix1a`…, `gw1`….
    pub(crate) name: String,
    /// `"authority"`, `"mix"` or `"gateway"`.
    pub(crate) role: &'static str,
    /// Its config file.
    pub(crate) config: PathBuf,
    /// The config that file holds (what [`NodeConfig::load`] reads back from it).
    pub(crate) settings: NodeConfig,
    /// Its link address.
    pub(crate) link: SocketAddr,
    /// Its metrics address, if any.
    pub(crate) metrics: Option<SocketAddr>,
    /// A gateway's client address.
    pub(crate) client: Option<SocketAddr>,
    /// Its identity key.
    pub(crate) identity: IdentityKey,
    /// Its link public key.
    pub(crate) link_key: LinkPublicKey,
}

/// Where one node listens (what [`generate_placed`] asks of its placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeAddresses {
    /// The link address (mixes, gateways and authorities).
    pub(crate) link: SocketAddr,
    /// The metrics address, if the node serves metrics.
    pub(crate) metrics: Option<SocketAddr>,
    /// A gateway's client address (ignored for other roles).
    pub(crate) client: Option<SocketAddr>,
}

/// The network's parameters for `o` (its epoch period is `o.epoch_secs`); an error names the
/// rule broken.
fn parameters(o: &Options) -> Result<Parameters> {
    let period = EpochPeriod::from_secs(o.epoch_secs)
        .map_err(|_| anyhow!("invalid network parameters: the epoch must be 1 to 86400 seconds"))?;
    if let Some(l) = o.file_limits {
        l.check().map_err(|e| {
            anyhow!(
                "invalid network parameters: {e} (--max-file-bytes is 1 to {} bytes, \
                 --fast-factor-max 1 to {})",
                FileLimits::MAX_FILE_BYTES,
                FileLimits::MAX_FAST_FACTOR
            )
        })?;
    }
    let rate = |r: f64| Rate::from_micro_per_sec((r * 1e6).round() as u64);
    Parameters::new(ParametersConfig {
        mean_delay_ms: o.mean_delay_ms,
        lambda_m: rate(o.lambda_m),
        lambda_p: rate(o.lambda_p),
        lambda_l: rate(o.lambda_l),
        lambda_d: rate(o.lambda_l),
        epoch_period: period,
        file_limits: o.file_limits,
        ..ParametersConfig::default_for(o.scheme)
    })
    .map_err(|e| {
        anyhow!("invalid network parameters: {e} ((3 - 1) layers x lambda_m x mean delay must be >= 2)")
    })
}

/// A node with its keys and addresses, before its config.
struct Placed {
    name: String,
    role: &'static str,
    dir: PathBuf,
    link: SocketAddr,
    metrics: Option<SocketAddr>,
    client: Option<SocketAddr>,
    identity: IdentityKey,
    link_key: LinkPublicKey,
}

/// Generates keys and configs for 3 authorities, 3 layers of 2 mixes and 2 gateways in `dir`,
/// each on free ports of 127.0.0.1 (metrics if `o.metrics`).
pub(crate) fn generate(dir: &Path, o: &Options) -> Result<Vec<LocalNode>> {
    generate_placed(dir, o, |_, role| {
        let port = || {
            free_local_port()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                .context("no free port on 127.0.0.1")
        };
        Ok(NodeAddresses {
            link: port()?,
            metrics: if o.metrics { Some(port()?) } else { None },
            client: if role == "gateway" { Some(port()?) } else { None },
        })
    })
}

/// As [`generate`], with each node's addresses chosen by `place(name, role)` (`o.metrics` is
/// then the placement's choice): `qanat testbed` puts every node at its own address in its own
/// network namespace.
pub(crate) fn generate_placed(
    dir: &Path,
    o: &Options,
    mut place: impl FnMut(&str, &'static str) -> Result<NodeAddresses>,
) -> Result<Vec<LocalNode>> {
    let parameters = parameters(o)?;
    let period = parameters.epoch_period();

    let mut names: Vec<(String, &'static str)> = Vec::new();
    names.extend((1..=3).map(|i| (format!("auth{i}"), "authority")));
    for l in 1..=3 {
        names.extend(["a", "b"].iter().map(|m| (format!("mix{l}{m}"), "mix")));
    }
    names.extend((1..=2).map(|i| (format!("gw{i}"), "gateway")));

    // Keys and addresses first: every config names the authorities, and the authorities name
    // every other node.
    let mut rng = rand::rng();
    let mut placed = Vec::new();
    for (name, role) in names {
        let node_dir = dir.join(&name);
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        let keys =
            NodeKeys::open(&node_dir.join("data"), KEY_WINDOW, wall_now(), period, o.scheme, &mut rng)?;
        let at = place(&name, role)?;
        if role == "gateway" && at.client.is_none() {
            bail!("the placement gave {name} no client address");
        }
        placed.push(Placed {
            name,
            role,
            dir: node_dir,
            link: at.link,
            metrics: at.metrics,
            client: if role == "gateway" { at.client } else { None },
            identity: keys.identity().public(),
            link_key: keys.link().public_key().clone(),
        });
    }
    let mut authorities = Vec::new();
    for p in placed.iter().filter(|p| p.role == "authority") {
        authorities.push(AuthorityPeer {
            identity: p.identity,
            link_key: p.link_key.clone(),
            address: link_address(p.link)?,
        });
    }
    let network = NetworkConfig::new("devnet", period, authorities, Geometry::default_for(o.scheme))?;
    let allowed: BTreeSet<IdentityKey> =
        placed.iter().filter(|p| p.role != "authority").map(|p| p.identity).collect();

    let mut nodes = Vec::new();
    for p in placed {
        let data_dir = p.dir.join("data");
        let role = match (p.role, p.client) {
            ("authority", _) => {
                RoleConfig::Authority(AuthorityRoleConfig::new(allowed.clone(), parameters.clone()))
            }
            ("gateway", Some(c)) => {
                let mut g = GatewayRoleConfig::new(link_address(c)?, &data_dir);
                g.clients.packet_burst = CLIENT_PACKET_BURST;
                RoleConfig::Gateway(g)
            }
            _ => RoleConfig::Mix,
        };
        let mut settings = NodeConfig::new(role, data_dir, link_address(p.link)?, network.clone());
        settings.metrics = p.metrics;
        if p.role == "gateway" && o.fault_drop_rate > 0.0 {
            let mut danger = DangerConfig::default();
            danger.fault_drop_rate = o.fault_drop_rate;
            settings.danger = Some(danger);
        }
        let config = p.dir.join("node.toml");
        write_config(&config, &settings)?;
        nodes.push(LocalNode {
            name: p.name,
            role: p.role,
            config,
            settings,
            link: p.link,
            metrics: p.metrics,
            client: p.client,
            identity: p.identity,
            link_key: p.link_key,
        });
    }

    // The clients' network file.
    let mut gateways = Vec::new();
    for n in nodes.iter().filter(|n| n.role == "gateway") {
        let Some(c) = n.client else { continue };
        gateways.push(ClientGateway {
            name: n.name.clone(),
            identity: n.identity,
            link_key: n.link_key.clone(),
            client_address: link_address(c)?,
        });
    }
    let file = ClientNetwork { network, gateways };
    let path = network_file(dir);
    std::fs::write(&path, file.render()).with_context(|| format!("cannot write {}", path.display()))?;
    ensure!(
        ClientNetwork::load(&path)? == file,
        "{}: reads back as another network file than the one written",
        path.display()
    );
    Ok(nodes)
}

/// Writes `settings` to `path` with the node's renderer, and checks that the node reads back
/// exactly that config.
fn write_config(path: &Path, settings: &NodeConfig) -> Result<()> {
    let base = path.parent().unwrap_or(Path::new(""));
    std::fs::write(path, settings.render(base))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let back = NodeConfig::load(path)?;
    ensure!(&back == settings, "{}: reads back as another config than the one written", path.display());
    Ok(())
}

fn link_address(a: SocketAddr) -> Result<LinkAddress> {
    LinkAddress::parse(&a.to_string()).map_err(|e| anyhow!("{a}: {e}"))
}

/// Where [`generate`] writes the clients' network file: `DIR/network.toml`.
pub(crate) fn network_file(dir: &Path) -> PathBuf {
    dir.join("network.toml")
}

/// Starts every node of `nodes` in this process (authorities first). A generated network is a
/// test network: a `[danger]` table [`generate`] wrote (fault injection) is allowed.
pub(crate) async fn start_all(nodes: &[LocalNode]) -> Result<Vec<RunningNode>> {
    let mut running = Vec::new();
    for role in ["authority", "mix", "gateway"] {
        for n in nodes.iter().filter(|n| n.role == role) {
            let mut config = n.settings.clone();
            config.allow_danger();
            running.push(service::start(config).await?);
        }
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_network_is_read_back_as_generated() {
        let dir = tempfile::tempdir().unwrap();
        let o = Options { fault_drop_rate: 0.1, metrics: false, ..Options::default() };
        let nodes = generate(dir.path(), &o).unwrap();
        let count = |role| nodes.iter().filter(|n| n.role == role).count();
        assert_eq!((count("authority"), count("mix"), count("gateway")), (3, 6, 2));
        let allowed: BTreeSet<IdentityKey> =
            nodes.iter().filter(|n| n.role != "authority").map(|n| n.identity).collect();
        for n in &nodes {
            // `generate` checked this already; what a node run from the file gets is `settings`.
            assert_eq!(NodeConfig::load(&n.config).unwrap(), n.settings, "{}", n.name);
            let text = std::fs::read_to_string(&n.config).unwrap();
            assert_eq!(text, n.settings.render(n.config.parent().unwrap()));
            let c = &n.settings;
            assert_eq!(c.network.authorities.len(), 3);
            assert_eq!(c.metrics, None);
            assert_eq!(c.data_dir, n.config.parent().unwrap().join("data"));
            match &c.role {
                RoleConfig::Authority(a) => {
                    assert_eq!(a.allowed_nodes, allowed);
                    assert_eq!(a.parameters, parameters(&o).unwrap());
                    assert_eq!(a.parameters.version(), 2);
                    assert_eq!(a.parameters.file_limits(), FileLimits::DEFAULT);
                    assert!(text.contains("\nmax_file_bytes = 4194304\nfast_factor_max = 4\n"));
                    assert!(c.danger.is_none());
                }
                RoleConfig::Gateway(g) => {
                    assert_eq!(g.clients.packet_burst, CLIENT_PACKET_BURST);
                    assert_eq!(c.danger.as_ref().map(|d| d.fault_drop_rate), Some(0.1));
                    assert!(text.contains("\n[danger]\n"));
                }
                _ => {
                    assert!(c.danger.is_none());
                    assert!(!text.contains("[danger]"));
                }
            }
        }
        let file = ClientNetwork::load(&network_file(dir.path())).unwrap();
        assert_eq!(file.gateways.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["gw1", "gw2"]);
        assert_eq!(file.network, nodes[0].settings.network);
    }

    #[test]
    fn options_that_make_no_network_are_refused_before_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = |max_file_bytes, fast_factor_max| Options {
            file_limits: Some(FileLimits { max_file_bytes, fast_factor_max }),
            ..Options::default()
        };
        for (o, words) in [
            (Options { lambda_m: 0.1, ..Options::default() }, "lambda_m"),
            (bad(4096, 0), "--fast-factor-max 1 to 8"),
            (bad(4096, 9), "--fast-factor-max 1 to 8"),
            (bad(0, 4), "--max-file-bytes is 1 to 67108864"),
        ] {
            let err = generate(dir.path(), &o).unwrap_err().to_string();
            assert!(err.contains("invalid network parameters") && err.contains(words), "{err}");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    /// A devnet of version 1 (authorities that have not switched) and one of chosen limits.
    #[test]
    fn the_directory_version_and_file_limits_are_the_options() {
        let limits = FileLimits { max_file_bytes: 1 << 20, fast_factor_max: 2 };
        for (file_limits, version) in [(None, 1), (Some(limits), 2)] {
            let dir = tempfile::tempdir().unwrap();
            let o = Options { file_limits, metrics: false, ..Options::default() };
            let nodes = generate(dir.path(), &o).unwrap();
            let auth = nodes.iter().find(|n| n.role == "authority").unwrap();
            let RoleConfig::Authority(a) = &auth.settings.role else { panic!() };
            assert_eq!(a.parameters.version(), version);
            assert_eq!(a.parameters.file_limits(), file_limits.unwrap_or(FileLimits::VERSION_1));
            let text = std::fs::read_to_string(&auth.config).unwrap();
            assert_eq!(text.contains("max_file_bytes"), file_limits.is_some());
        }
    }

    /// What this code writes in place of format 1's comments: (format 1's text, today's). Format 2
    /// changed no setting of a file of format 1, only this comment, which no longer held once the
    /// gateway's budget counted the fast factor.
    const FORMAT_1_COMMENTS: [(&str, &str); 1] = [(
        "# Packets per session: this many times the directory's lambda_p + lambda_l +\n\
         # lambda_d, with a burst; excess packets are dropped and counted.\n",
        "# Packets per session: this many times the directory's fast_factor_max x lambda_p\n\
         # + lambda_l + lambda_d, with a burst; excess packets are dropped and counted.\n",
    )];

    /// Reads the committed config files of `tests/data/configs-{format}/` (an authority's, a
    /// mix's and a gateway's config as `qanat devnet up` wrote them, and the clients' network
    /// file), and checks that this code writes each back as the file's text with `comments`
    /// replaced. Returns the authority's config.
    fn read_config_files(format: u32, comments: &[(&str, &str)]) -> NodeConfig {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/configs-{format}"));
        let mut authority = None;
        for (file, role) in [("auth1.toml", "authority"), ("mix1a.toml", "mix"), ("gw1.toml", "gateway")] {
            let path = dir.join(file);
            let config = NodeConfig::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            let is_role = matches!(
                (&config.role, role),
                (RoleConfig::Authority(_), "authority")
                    | (RoleConfig::Gateway(_), "gateway")
                    | (RoleConfig::Mix, "mix")
            );
            assert!(is_role, "{file} is a {role}'s config");
            let mut text = std::fs::read_to_string(&path).unwrap();
            for (old, new) in comments {
                text = text.replace(old, new);
            }
            assert_eq!(config.render(&dir), text, "{file}");
            if role == "authority" {
                authority = Some(config);
            }
        }
        let path = dir.join("network.toml");
        let network = ClientNetwork::load(&path).unwrap();
        assert_eq!(network.gateways.len(), 2);
        assert_eq!(network.render(), std::fs::read_to_string(&path).unwrap());
        authority.unwrap()
    }

    fn voted(authority: &NodeConfig) -> &Parameters {
        let RoleConfig::Authority(a) = &authority.role else { panic!("not an authority") };
        &a.parameters
    }

    /// The committed config files of format 1 (before the directory's version 2) are read by this
    /// code, and written back to the same text but for the comments of [`FORMAT_1_COMMENTS`]: a
    /// config written by an older Qanat still runs a node, and its authority still votes the
    /// directory's version 1. Config files carry no version number; they are read with
    /// `deny_unknown_fields`, so a
    /// renamed or removed field is refused with an error naming it, and these tests are what
    /// keep such a change from being made by accident.
    #[test]
    fn config_files_of_format_1_are_read_and_written_back_the_same() {
        let gw = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs-1/gw1.toml");
        let text = std::fs::read_to_string(gw).unwrap();
        assert!(FORMAT_1_COMMENTS.iter().all(|(old, _)| text.contains(old)), "the comments are format 1's");
        let authority = read_config_files(1, &FORMAT_1_COMMENTS);
        assert_eq!(voted(&authority).version(), 1);
        assert_eq!(voted(&authority).file_limits(), FileLimits::VERSION_1);
    }

    /// Format 2: an authority's `[authority.parameters]` may hold `max_file_bytes` and
    /// `fast_factor_max` (the directory's version 2), as `qanat devnet up` writes them.
    #[test]
    fn config_files_of_format_2_are_read_and_written_back_the_same() {
        let authority = read_config_files(2, &[]);
        assert_eq!(voted(&authority).version(), 2);
        assert_eq!(voted(&authority).file_limits(), FileLimits::DEFAULT);
    }

    /// Writes `tests/data/configs-2/` (the current format) with this code (run by hand before a
    /// config format change, into a new directory, keeping the test of the previous one:
    /// `cargo test -p qanat --bin qanat write_config_fixtures -- --ignored`).
    #[test]
    #[ignore = "writes the committed fixture; run by hand before a format change"]
    fn write_config_fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = generate(tmp.path(), &Options { metrics: true, ..Options::default() }).unwrap();
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs-2");
        std::fs::create_dir_all(&out).unwrap();
        for name in ["auth1", "mix1a", "gw1"] {
            let node = nodes.iter().find(|n| n.name == name).unwrap();
            std::fs::copy(&node.config, out.join(format!("{name}.toml"))).unwrap();
        }
        std::fs::copy(network_file(tmp.path()), out.join("network.toml")).unwrap();
    }
}
