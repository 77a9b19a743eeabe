//! A whole network on 127.0.0.1, generated in one directory: keys, free ports and one config per
//! node (3 authorities, 3 layers of 2 mixes and 2 gateways by default). `qanat devnet` starts
//! each node as its own process; `qanat demo` and tests start them all in one process with
//! [`start_all`].
//!
//! Layout: `DIR/<name>/node.toml`, `DIR/<name>/data/` (keys, and a gateway's mailboxes), and the
//! clients' network file `DIR/network.toml`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use qanat_link::LinkPublicKey;
use qanat_link::http::free_local_port;
use qanat_packet::{Geometry, Scheme};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, IdentityKey, Parameters, ParametersConfig, Rate};

use crate::NodeConfig;
use crate::config::{
    AuthorityConfig, AuthorityPeer, ClientGateway, ClientNetwork, ConfigError, DangerConfig, GatewayConfig,
    NetworkConfig, RoleConfig,
};
use crate::keys::{KeyStoreError, NodeKeys};
use crate::service::{self, KEY_WINDOW, RunningNode, ServiceError, wall_now};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The epoch period in seconds.
    pub epoch_secs: u64,
    /// The packet scheme.
    pub scheme: Scheme,
    /// The mean delay per mix, in milliseconds.
    pub mean_delay_ms: u32,
    /// Loop cover packets per second per mix.
    pub lambda_m: f64,
    /// Client payload packets per second (λ_P).
    pub lambda_p: f64,
    /// Client loop and drop packets per second (λ_L, λ_D).
    pub lambda_l: f64,
    /// Whether each node serves Prometheus metrics (on a free port).
    pub metrics: bool,
    /// Fault injection for tests: the gateways drop this fraction of the packets they receive
    /// (`danger.fault_drop_rate`: such a gateway starts only with `--allow-danger`, or through
    /// [`start_all`]).
    pub fault_drop_rate: f64,
}

impl Default for Options {
    /// A fast development network: 20-second epochs, X25519-KEM packets, 50 ms mean delay, 20 mix
    /// loops per second ((3 − 1) layers × 20/s × 50 ms = 2 ≥ 2), clients at 2 packets per second.
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
        }
    }
}

/// Why a network could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalNetError {
    /// A directory or file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No free port.
    #[error("no free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    /// A node's keys could not be created.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The options make invalid parameters.
    #[error("invalid network parameters: {0} ((3 - 1) layers x lambda_m x mean delay must be >= 2)")]
    Parameters(String),
    /// A generated config was refused (a bug).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A generated file reads back as another config than the one rendered (a bug).
    #[error("{}: reads back as another config than the one written", .0.display())]
    RoundTrip(PathBuf),
}

/// One generated node.
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// Its name: `auth1`…, `mix1a`…, `gw1`….
    pub name: String,
    /// `"authority"`, `"mix"` or `"gateway"`.
    pub role: &'static str,
    /// Its config file.
    pub config: PathBuf,
    /// Its link address.
    pub link: SocketAddr,
    /// Its metrics address, if any.
    pub metrics: Option<SocketAddr>,
    /// A gateway's client address.
    pub client: Option<SocketAddr>,
    /// Its identity key.
    pub identity: IdentityKey,
    /// Its link public key.
    pub link_key: LinkPublicKey,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn link_address(a: SocketAddr) -> Result<LinkAddress, LocalNetError> {
    LinkAddress::parse(&a.to_string()).map_err(|e| LocalNetError::Parameters(e.to_string()))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalNetError + '_ {
    move |source| LocalNetError::Io { path: path.to_owned(), source }
}

/// The network's parameters for `o`.
pub fn parameters(o: &Options) -> ParametersConfig {
    let rate = |r: f64| Rate::from_micro_per_sec((r * 1e6).round() as u64);
    ParametersConfig {
        mean_delay_ms: o.mean_delay_ms,
        lambda_m: rate(o.lambda_m),
        lambda_p: rate(o.lambda_p),
        lambda_l: rate(o.lambda_l),
        lambda_d: rate(o.lambda_l),
        ..ParametersConfig::default_for(o.scheme)
    }
}

/// Where one node listens (what [`generate_placed`] asks of its placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddresses {
    /// The link address (mixes, gateways and authorities).
    pub link: SocketAddr,
    /// The metrics address, if the node serves metrics.
    pub metrics: Option<SocketAddr>,
    /// A gateway's client address (ignored for other roles).
    pub client: Option<SocketAddr>,
}

/// Generates keys and configs for 3 authorities, 3 layers of 2 mixes and 2 gateways in `dir`,
/// each on free ports of 127.0.0.1 (metrics if `o.metrics`).
pub fn generate(dir: &Path, o: &Options) -> Result<Vec<LocalNode>, LocalNetError> {
    generate_placed(dir, o, |_, role| {
        let port = || free_local_port().map(local).map_err(LocalNetError::Port);
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
pub fn generate_placed(
    dir: &Path,
    o: &Options,
    mut place: impl FnMut(&str, &'static str) -> Result<NodeAddresses, LocalNetError>,
) -> Result<Vec<LocalNode>, LocalNetError> {
    let period = EpochPeriod::from_secs(o.epoch_secs)
        .map_err(|_| LocalNetError::Parameters("the epoch must be 1 to 86400 seconds".into()))?;
    let parameters = Parameters::new(ParametersConfig { epoch_period: period, ..parameters(o) })
        .map_err(|e| LocalNetError::Parameters(e.to_string()))?;

    let mut names: Vec<(String, &'static str)> = Vec::new();
    names.extend((1..=3).map(|i| (format!("auth{i}"), "authority")));
    for l in 1..=3 {
        names.extend(["a", "b"].iter().map(|m| (format!("mix{l}{m}"), "mix")));
    }
    names.extend((1..=2).map(|i| (format!("gw{i}"), "gateway")));

    // Keys and ports first: every config names the authorities, and the authorities name every
    // other node.
    let mut rng = rand::rng();
    let mut nodes = Vec::new();
    for (name, role) in names {
        let node_dir = dir.join(&name);
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        let keys =
            NodeKeys::open(&node_dir.join("data"), KEY_WINDOW, wall_now(), period, o.scheme, &mut rng)?;
        let at = place(&name, role)?;
        if role == "gateway" && at.client.is_none() {
            return Err(LocalNetError::Parameters(format!("the placement gave {name} no client address")));
        }
        nodes.push(LocalNode {
            role,
            config: node_dir.join("node.toml"),
            link: at.link,
            metrics: at.metrics,
            client: if role == "gateway" { at.client } else { None },
            identity: keys.identity().public(),
            link_key: keys.link().public_key().clone(),
            name,
        });
    }
    let mut authorities = Vec::new();
    for n in nodes.iter().filter(|n| n.role == "authority") {
        authorities.push(AuthorityPeer {
            identity: n.identity,
            link_key: n.link_key.clone(),
            address: link_address(n.link)?,
        });
    }
    let network = NetworkConfig::new("devnet", period, authorities, Geometry::default_for(o.scheme))?;
    let allowed: BTreeSet<IdentityKey> =
        nodes.iter().filter(|n| n.role != "authority").map(|n| n.identity).collect();
    for n in &nodes {
        let node_dir = n.config.parent().unwrap_or(dir);
        let data_dir = node_dir.join("data");
        let role = match (n.role, n.client) {
            ("authority", _) => {
                RoleConfig::Authority(AuthorityConfig::new(allowed.clone(), parameters.clone()))
            }
            ("gateway", Some(c)) => {
                let mut g = GatewayConfig::new(link_address(c)?, &data_dir);
                // A test network: its tools (and `qanat devnet`'s tests) send bursts of packets
                // far above a client's rate through one connection.
                g.clients.packet_burst = LOCALNET_CLIENT_PACKET_BURST;
                RoleConfig::Gateway(g)
            }
            _ => RoleConfig::Mix,
        };
        let mut config = NodeConfig::new(role, data_dir, link_address(n.link)?, network.clone());
        config.metrics = n.metrics;
        if n.role == "gateway" && o.fault_drop_rate > 0.0 {
            config.danger = Some(DangerConfig { fault_drop_rate: o.fault_drop_rate, ..Default::default() });
        }
        std::fs::write(&n.config, config.render(node_dir)).map_err(io(&n.config))?;
        // The node must read back exactly the config that was rendered.
        if NodeConfig::load(&n.config)? != config {
            return Err(LocalNetError::RoundTrip(n.config.clone()));
        }
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
    std::fs::write(&path, file.render()).map_err(io(&path))?;
    if ClientNetwork::load(&path)? != file {
        return Err(LocalNetError::RoundTrip(path));
    }
    Ok(nodes)
}

/// The client packet burst of a generated network's gateways (a real one's is 32).
pub const LOCALNET_CLIENT_PACKET_BURST: u32 = 10_000;

/// Where [`generate`] writes the clients' network file: `DIR/network.toml`.
pub fn network_file(dir: &Path) -> PathBuf {
    dir.join("network.toml")
}

/// Starts every node of `nodes` in this process (authorities first). A generated network is a
/// test network: a `[danger]` table [`generate`] wrote (fault injection) is allowed.
pub async fn start_all(nodes: &[LocalNode]) -> Result<Vec<RunningNode>, ServiceError> {
    let mut running = Vec::new();
    let order = ["authority", "mix", "gateway"];
    for role in order {
        for n in nodes.iter().filter(|n| n.role == role) {
            let mut config = NodeConfig::load(&n.config).map_err(ServiceError::Config)?;
            config.allow_danger();
            running.push(service::start(config).await?);
        }
    }
    Ok(running)
}
