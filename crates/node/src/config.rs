//! The node's TOML configuration: one file per node.
//!
//! Reading a config is two steps. Serde parses the text into a raw mirror of the file (every
//! table `deny_unknown_fields`, so a misspelt key is an error rather than a silently ignored
//! setting); then [`validate`](NodeConfig::from_toml_str) turns it into a [`NodeConfig`] whose
//! fields are parsed types ([`LinkAddress`], [`IdentityKey`], [`LinkPublicKey`](qanat_link::LinkPublicKey), [`Duration`],
//! [`Parameters`]), never strings. Every [`ConfigError`] names the file, the field (a dotted path
//! such as `network.authorities[1].link_key`) and what to do about it.
//!
//! ```toml
//! role = "gateway"              # "authority" | "mix" | "gateway"
//! data_dir = "gw1"              # relative paths are relative to the config file
//! listen = "127.0.0.1:7101"     # link address (host:port), published in the directory
//! metrics = "127.0.0.1:9101"    # optional Prometheus endpoint
//!
//! [network]
//! name = "devnet"
//! epoch_period_secs = 1200
//! scheme = "x25519-kem"         # packet scheme; with nr_hops and forward_payload_len it fixes
//!                               # the packet and link frame sizes, so it is the same everywhere
//!
//! [[network.authorities]]
//! identity_key = "…64 hex…"
//! link_key = "…2432 hex…"
//! address = "127.0.0.1:7001"
//!
//! [listener]                    # optional: the budgets of every link listener (docs/LINK.md)
//! max_connections = 4096
//! max_connections_per_ip = 256
//! max_handshakes = 256
//! max_handshakes_per_ip = 16
//! handshake_timeout_secs = 10
//!
//! [gateway]
//! client_listen = "127.0.0.1:7201"
//! # every budget below is optional (see docs/LINK.md, "Budgets")
//! client_max_connections = 4096
//! client_max_connections_per_ip = 64
//! client_queue_frames = 128
//! client_packet_slack = 4.0       # × the directory's λ_P + λ_L + λ_D per session
//! client_packet_burst = 32
//! registrations_per_second = 2.0  # per session
//! registration_burst = 256
//! max_mailboxes_per_session = 4096
//! store = "sqlite"              # the default; or "redis" with a [gateway.redis] table
//! sqlite_path = "mailboxes.sqlite"
//! retention_days = 30
//! # [gateway.redis]             # with store = "redis" (see docs/OPERATING.md)
//! # seed_nodes = ["10.0.0.11:7000", "10.0.0.12:7000"]
//! # key_prefix = "qanat"        # optional
//! # wait_timeout_ms = 1000      # optional: how long a write waits for a replica
//! # username = "qanat-gateway"  # optional ACL user
//! # password_file = "redis-password"  # optional, relative to data_dir
//! # trust_persistence_unverified = false  # optional: serve when CONFIG GET is not allowed (see OPERATING.md)
//! ```
//!
//! A `[danger]` table holds settings for tests that break the network's promises
//! (`fault_drop_rate`, a gateway's fault injection; `withhold_rate`, `replay_copies` and
//! `forge_copies`, a hostile mix: [`HostileMix`]). A config may parse with one, but
//! [`crate::service::start`] refuses to run it unless the operator said so on the command line
//! (`qanat node run --allow-danger`, [`NodeConfig::allow_danger`]): a copied test config cannot
//! make a production node acknowledge packets and then drop them.
//!
//! An authority has an `[authority]` table instead, with `allowed_nodes` (identity keys) and
//! `[authority.parameters]` (the mixing parameters it votes for: layers, mean delay and rates,
//! each defaulting to [`ParametersConfig::default_for`] of the scheme). A mix has neither table.
//!
//! The packet geometry (scheme, hops, payload length) is in `[network]`, not in the authorities'
//! parameters: every node needs it before any directory document exists (to generate the packet
//! keys it publishes and to size its link frames), and a node refuses a document whose geometry
//! differs from its own.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use qanat_mailbox::Limits;

use crate::runtime::ClientBudgets;
use qanat_network::config::{
    RawNetwork, invalid, parse_address, parse_identity, parse_network, syntax_error, toml_str,
};
use qanat_packet::{Geometry, Scheme};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, IdentityKey, Parameters, ParametersConfig, Rate};
use serde::Deserialize;

/// The network file and the `[network]` table live in `qanat-network`, which clients share.
pub use qanat_network::config::{
    AuthorityPeer, ClientGateway, ClientNetwork, ConfigError, DEFAULT_SCHEME, NetworkConfig,
};

// ---------------------------------------------------------------------------------------------
// The typed configuration.

/// A node's validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// What the node is, with the settings of that role.
    pub role: RoleConfig,
    /// Where the node keeps its keys and state (absolute, or as given when no file was read).
    pub data_dir: PathBuf,
    /// The node's link address (`host:port`), published in the directory.
    pub listen: LinkAddress,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The budgets of the node's link listeners (the `[listener]` table).
    pub listener: ListenerConfig,
    /// The network the node belongs to.
    pub network: NetworkConfig,
    /// The `[danger]` table, if the file has one: settings for tests only.
    pub danger: Option<DangerConfig>,
    /// Whether the operator allowed the `[danger]` table (`--allow-danger`); never from the file.
    danger_allowed: bool,
}

/// The `[danger]` table: settings that break the network's promises, for test networks only.
/// Its name is what an auditor greps for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DangerConfig {
    /// Fault injection (gateways only; `fault_drop_rate`, 0 to 0.5, default 0): this fraction of
    /// the packets arriving from clients and from mixes is dropped (those from mixes after
    /// acknowledging them), as if lost on the link.
    pub fault_drop_rate: f64,
    /// A hostile mix (mixes only): what it does to the packets it should forward.
    pub hostile_mix: HostileMix,
}

/// A mix that attacks the network it serves, for tests of what honest users then meet (the
/// `[danger]` table's `withhold_rate`, `replay_copies` and `forge_copies`; all off by default).
///
/// A mix acknowledges nothing (only gateways acknowledge, to the last layer), and the
/// end-to-end acknowledgements it carries (SURB replies) look like every other packet: a mix that
/// withholds acknowledgements is one that drops a share of what it should forward, and one that
/// forges them sends packets it made up, which no gateway or client can take for real ones.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct HostileMix {
    /// This fraction (0 to 1) of the packets it should forward is dropped.
    pub withhold_rate: f64,
    /// Each packet it forwards is sent this many more times (0 to 8): a replay at the next hop,
    /// under fresh link ids when the next hop is a gateway.
    pub replay_copies: u32,
    /// With each packet it forwards, this many packets of random bytes (0 to 8) go to the same
    /// next hop: forged packets, and forged acknowledgements if they were taken for SURB replies.
    pub forge_copies: u32,
}

impl HostileMix {
    /// Whether it does anything.
    pub fn is_active(&self) -> bool {
        self.withhold_rate > 0.0 || self.replay_copies > 0 || self.forge_copies > 0
    }
}

impl NodeConfig {
    /// Lets [`crate::service::start`] run this config although it has a `[danger]` table (the
    /// command line's `--allow-danger`; never on a real network).
    pub fn allow_danger(&mut self) {
        self.danger_allowed = true;
    }

    /// Whether the config may run: no `[danger]` table, or one the operator allowed.
    pub fn check_danger(&self) -> Result<(), ConfigError> {
        match &self.danger {
            Some(_) if !self.danger_allowed => Err(invalid(
                "danger",
                "holds settings for tests that break the network's promises (fault injection \
                 that acknowledges packets and then drops them, a hostile mix); the node refuses \
                 to start with it",
                "remove the [danger] table, or, on a test network only, start the node with \
                 'qanat node run --allow-danger'",
            )),
            _ => Ok(()),
        }
    }
}

/// The `[listener]` table: the budgets of every link listener of the node (a gateway's client
/// listener takes its connection budgets from `[gateway]` instead). See `qanat_link::Listener`
/// and docs/LINK.md, "Budgets".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerConfig {
    /// Established connections at once (`max_connections`, default 4,096).
    pub max_connections: usize,
    /// Connections at once from one address (`max_connections_per_ip`, default 256).
    pub max_connections_per_ip: usize,
    /// Handshakes in flight (`max_handshakes`, default 256); when full, the oldest of the
    /// busiest address is abandoned.
    pub max_handshakes: usize,
    /// Handshakes in flight from one address (`max_handshakes_per_ip`, default 16).
    pub max_handshakes_per_ip: usize,
    /// How long a handshake may take, outgoing links included (`handshake_timeout_secs`,
    /// default 10: about three times a handshake on a 2G link).
    pub handshake_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_handshakes: 256,
            max_handshakes_per_ip: 16,
            handshake_timeout: qanat_link::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl ListenerConfig {
    /// Writes these budgets into `link`.
    pub fn apply(&self, link: &mut qanat_link::LinkConfig) {
        link.max_connections = self.max_connections;
        link.max_connections_per_ip = self.max_connections_per_ip;
        link.max_pending_handshakes = self.max_handshakes;
        link.max_pending_handshakes_per_ip = self.max_handshakes_per_ip;
        link.handshake_timeout = self.handshake_timeout;
    }
}

/// The role of a node and its role-specific settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoleConfig {
    /// A directory authority.
    Authority(AuthorityConfig),
    /// A mix node (its layer is assigned by the directory).
    Mix,
    /// A gateway.
    Gateway(GatewayConfig),
}

impl RoleConfig {
    /// The role's name as written in the config (`"authority"`, `"mix"`, `"gateway"`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Authority(_) => "authority",
            Self::Mix => "mix",
            Self::Gateway(_) => "gateway",
        }
    }
}

/// The `[authority]` table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthorityConfig {
    /// The nodes (mixes and gateways) allowed into the network.
    pub allowed_nodes: BTreeSet<IdentityKey>,
    /// The parameters this authority votes for.
    pub parameters: Parameters,
}

/// The `[gateway]` table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Where clients connect (`host:port`).
    pub client_listen: LinkAddress,
    /// The mailbox store.
    pub store: StoreConfig,
    /// Retention and quotas of the mailbox store.
    pub limits: Limits,
    /// The budgets of the client listener and of each client session.
    pub clients: ClientBudgets,
}

/// The gateway's mailbox store backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreConfig {
    /// The embedded SQLite store.
    Sqlite {
        /// The database file, inside the data directory.
        path: PathBuf,
    },
    /// A Redis Cluster (`qanat_mailbox::redis::RedisStore`).
    Redis {
        /// Some of the cluster's nodes; the rest are discovered.
        seed_nodes: Vec<LinkAddress>,
        /// Prefix of every key (default `qanat`).
        key_prefix: String,
        /// How long a write waits for a replica's confirmation (`WAIT 1`) before it fails.
        wait_timeout: Duration,
        /// ACL user, if the cluster requires a login.
        username: Option<String>,
        /// File holding the ACL password (inside the data directory), if the cluster requires one.
        password_file: Option<PathBuf>,
        /// Serve even when the nodes' persistence settings cannot be read (`CONFIG GET` renamed or
        /// not permitted): `qanat_mailbox::redis::RedisConfig::trust_persistence_unverified`.
        trust_persistence_unverified: bool,
    },
}

// ---------------------------------------------------------------------------------------------
// The raw file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    role: String,
    data_dir: String,
    listen: String,
    metrics: Option<String>,
    network: RawNetwork,
    listener: Option<RawListener>,
    gateway: Option<RawGateway>,
    authority: Option<RawAuthority>,
    danger: Option<RawDanger>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListener {
    max_connections: Option<u64>,
    max_connections_per_ip: Option<u64>,
    max_handshakes: Option<u64>,
    max_handshakes_per_ip: Option<u64>,
    handshake_timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDanger {
    fault_drop_rate: Option<f64>,
    withhold_rate: Option<f64>,
    replay_copies: Option<u32>,
    forge_copies: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    client_listen: String,
    store: Option<String>,
    sqlite_path: Option<String>,
    retention_days: Option<u64>,
    max_messages_per_mailbox: Option<u64>,
    max_bytes_per_mailbox: Option<u64>,
    max_payload_len: Option<u64>,
    client_max_connections: Option<u64>,
    client_max_connections_per_ip: Option<u64>,
    client_queue_frames: Option<u64>,
    client_packet_slack: Option<f64>,
    client_packet_burst: Option<u64>,
    registrations_per_second: Option<f64>,
    registration_burst: Option<u64>,
    max_mailboxes_per_session: Option<u64>,
    /// Moved to `[danger]`: read only to say so.
    fault_drop_rate: Option<f64>,
    redis: Option<RawRedis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    seed_nodes: Vec<String>,
    key_prefix: Option<String>,
    wait_timeout_ms: Option<u64>,
    username: Option<String>,
    password_file: Option<String>,
    trust_persistence_unverified: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    allowed_nodes: Vec<String>,
    #[serde(default)]
    parameters: RawParameters,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawParameters {
    mix_layers: Option<u8>,
    mean_delay_ms: Option<u32>,
    lambda_p: Option<f64>,
    lambda_l: Option<f64>,
    lambda_d: Option<f64>,
    lambda_m: Option<f64>,
}

/// Longest retention a gateway accepts: ten years.
pub const MAX_RETENTION_DAYS: u64 = 3650;
impl NodeConfig {
    /// Reads and validates the config file at `path`. A relative `data_dir` is taken relative to
    /// the directory holding the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        Self::from_toml_str(&text, base).map_err(|e| e.with_path(path))
    }

    /// Parses and validates config text; a relative `data_dir` is joined to `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        validate(raw, base_dir)
    }
}

fn validate(raw: RawConfig, base_dir: &Path) -> Result<NodeConfig, ConfigError> {
    let data_dir = parse_data_dir(&raw.data_dir, base_dir)?;
    let listen = parse_address("listen", &raw.listen)?;
    let metrics = raw
        .metrics
        .as_deref()
        .map(|m| {
            m.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "metrics",
                    format!("expected an IP address and port such as \"127.0.0.1:9100\", got {m:?}"),
                    "write the address to serve Prometheus metrics on, or remove the line",
                )
            })
        })
        .transpose()?;
    let network = parse_network(raw.network)?;
    let listener = parse_listener(raw.listener.unwrap_or_default())?;
    let danger = raw.danger.map(|d| parse_danger(d, &raw.role)).transpose()?;

    let role = match raw.role.as_str() {
        "authority" => {
            refuse_section("gateway", raw.gateway.is_some(), "authority")?;
            let a = raw.authority.ok_or_else(|| {
                invalid(
                    "authority",
                    "an authority needs an [authority] table",
                    "add [authority] with allowed_nodes = [...] (see 'qanat node example-config --role authority')",
                )
            })?;
            RoleConfig::Authority(parse_authority(a, &network)?)
        }
        "mix" => {
            refuse_section("gateway", raw.gateway.is_some(), "mix")?;
            refuse_section("authority", raw.authority.is_some(), "mix")?;
            RoleConfig::Mix
        }
        "gateway" => {
            refuse_section("authority", raw.authority.is_some(), "gateway")?;
            let g = raw.gateway.ok_or_else(|| {
                invalid(
                    "gateway",
                    "a gateway needs a [gateway] table",
                    "add [gateway] with client_listen = \"host:port\" (see 'qanat node example-config --role gateway')",
                )
            })?;
            RoleConfig::Gateway(parse_gateway(g, &data_dir)?)
        }
        other => {
            return Err(invalid(
                "role",
                format!("expected \"authority\", \"mix\" or \"gateway\", got {other:?}"),
                "set role to one of the three",
            ));
        }
    };
    Ok(NodeConfig { role, data_dir, listen, metrics, listener, network, danger, danger_allowed: false })
}

/// A count in `range`, or `default` when absent.
fn count(
    field: &str,
    v: Option<u64>,
    default: usize,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<usize, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    if !range.contains(&v) {
        return Err(invalid(
            field,
            format!("{v} is outside {}..={}", range.start(), range.end()),
            format!("give {what} (default {default}), or remove the line for the default"),
        ));
    }
    usize::try_from(v).map_err(|_| invalid(field, "is too large for this machine", "use a smaller value"))
}

/// A rate or factor in `range` (finite), or `default` when absent.
fn real(
    field: &str,
    v: Option<f64>,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
    what: &str,
) -> Result<f64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    if !v.is_finite() || !range.contains(&v) {
        return Err(invalid(
            field,
            format!("{v} is outside {}..={}", range.start(), range.end()),
            format!("give {what} (default {default}), or remove the line for the default"),
        ));
    }
    Ok(v)
}

/// `per` must not exceed `all` (both already parsed).
fn at_most(field: &str, per: usize, all_field: &str, all: usize) -> Result<(), ConfigError> {
    if per > all {
        return Err(invalid(
            field,
            format!("{per} is more than {all_field} ({all})"),
            format!("give at most {all}, or raise {all_field}"),
        ));
    }
    Ok(())
}

fn parse_listener(raw: RawListener) -> Result<ListenerConfig, ConfigError> {
    const L: &str = "listener";
    let d = ListenerConfig::default();
    let max_connections = count(
        &format!("{L}.max_connections"),
        raw.max_connections,
        d.max_connections,
        1..=1_000_000,
        "how many connections the node holds at once",
    )?;
    let max_connections_per_ip = count(
        &format!("{L}.max_connections_per_ip"),
        raw.max_connections_per_ip,
        d.max_connections_per_ip,
        1..=1_000_000,
        "how many connections one address may hold",
    )?;
    let max_handshakes = count(
        &format!("{L}.max_handshakes"),
        raw.max_handshakes,
        d.max_handshakes,
        1..=65_536,
        "how many handshakes may run at once",
    )?;
    let max_handshakes_per_ip = count(
        &format!("{L}.max_handshakes_per_ip"),
        raw.max_handshakes_per_ip,
        d.max_handshakes_per_ip,
        1..=65_536,
        "how many handshakes one address may run at once",
    )?;
    at_most(
        &format!("{L}.max_connections_per_ip"),
        max_connections_per_ip,
        "listener.max_connections",
        max_connections,
    )?;
    at_most(
        &format!("{L}.max_handshakes_per_ip"),
        max_handshakes_per_ip,
        "listener.max_handshakes",
        max_handshakes,
    )?;
    let secs = raw.handshake_timeout_secs.unwrap_or(d.handshake_timeout.as_secs());
    if !(5..=300).contains(&secs) {
        return Err(invalid(
            format!("{L}.handshake_timeout_secs"),
            format!("{secs} is outside 5..=300"),
            "give seconds (default 10: a handshake takes about 3.2 s on a 2G link, and below 5 s \
             one lost packet makes it fail; see docs/LINK.md)",
        ));
    }
    Ok(ListenerConfig {
        max_connections,
        max_connections_per_ip,
        max_handshakes,
        max_handshakes_per_ip,
        handshake_timeout: Duration::from_secs(secs),
    })
}

fn parse_client_budgets(raw: &RawGateway) -> Result<ClientBudgets, ConfigError> {
    const G: &str = "gateway";
    let d = ClientBudgets::default();
    let max_connections = count(
        &format!("{G}.client_max_connections"),
        raw.client_max_connections,
        d.max_connections,
        1..=1_000_000,
        "how many client connections the gateway holds at once",
    )?;
    let max_connections_per_ip = count(
        &format!("{G}.client_max_connections_per_ip"),
        raw.client_max_connections_per_ip,
        d.max_connections_per_ip,
        1..=1_000_000,
        "how many client connections one address may hold (clients behind one NAT share it)",
    )?;
    at_most(
        &format!("{G}.client_max_connections_per_ip"),
        max_connections_per_ip,
        "gateway.client_max_connections",
        max_connections,
    )?;
    let queue_frames = count(
        &format!("{G}.client_queue_frames"),
        raw.client_queue_frames,
        d.queue_frames,
        8..=65_536,
        "how many frames wait per client connection each way",
    )?;
    let packet_slack = real(
        &format!("{G}.client_packet_slack"),
        raw.client_packet_slack,
        d.packet_slack,
        1.0..=1000.0,
        "how many times the directory's client rate a session may send (below 1 honest clients lose packets)",
    )?;
    let packet_burst = count(
        &format!("{G}.client_packet_burst"),
        raw.client_packet_burst,
        d.packet_burst as usize,
        1..=1_000_000,
        "how many packets a session may send at once above its rate",
    )?
    .try_into()
    .unwrap_or(u32::MAX);
    let registrations_per_second = real(
        &format!("{G}.registrations_per_second"),
        raw.registrations_per_second,
        d.registrations_per_second,
        0.001..=10_000.0,
        "registrations per second per client session",
    )?;
    let registration_burst = count(
        &format!("{G}.registration_burst"),
        raw.registration_burst,
        d.registration_burst as usize,
        1..=1_000_000,
        "how many registrations a session may make at once above its rate",
    )?
    .try_into()
    .unwrap_or(u32::MAX);
    let max_mailboxes = count(
        &format!("{G}.max_mailboxes_per_session"),
        raw.max_mailboxes_per_session,
        d.max_mailboxes,
        1..=1_000_000,
        "how many mailboxes one client session may hold",
    )?;
    Ok(ClientBudgets {
        max_connections,
        max_connections_per_ip,
        queue_frames,
        packet_slack,
        packet_burst,
        packet_rate: None,
        registrations_per_second,
        registration_burst,
        max_mailboxes,
    })
}

fn refuse_section(section: &str, present: bool, role: &str) -> Result<(), ConfigError> {
    if present {
        return Err(invalid(
            section,
            format!("a [{section}] table is not used by a node with role = \"{role}\""),
            format!("remove the [{section}] table, or change role"),
        ));
    }
    Ok(())
}

fn parse_data_dir(s: &str, base_dir: &Path) -> Result<PathBuf, ConfigError> {
    if s.trim().is_empty() {
        return Err(invalid(
            "data_dir",
            "is empty",
            "name the directory where this node keeps its keys and state",
        ));
    }
    Ok(base_dir.join(s))
}

/// A relative path inside the data directory, without `..`.
fn inside_data_dir<'a>(field: &str, rel: &'a str, example: &str) -> Result<&'a Path, ConfigError> {
    let rel_path = Path::new(rel);
    let inside = !rel.is_empty() && rel_path.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(invalid(
            field,
            format!("{rel:?} is not a relative path inside data_dir"),
            format!("give a file name relative to data_dir, without '..', e.g. \"{example}\""),
        ));
    }
    Ok(rel_path)
}

fn parse_gateway(raw: RawGateway, data_dir: &Path) -> Result<GatewayConfig, ConfigError> {
    let client_listen = parse_address("gateway.client_listen", &raw.client_listen)?;
    let clients = parse_client_budgets(&raw)?;
    let store_name = raw.store.as_deref().unwrap_or("sqlite");
    let mut seed_nodes = Vec::new();
    if let Some(redis) = &raw.redis {
        if redis.seed_nodes.is_empty() {
            return Err(invalid(
                "gateway.redis.seed_nodes",
                "is empty",
                "list at least one Redis Cluster node as \"host:port\"",
            ));
        }
        for (i, n) in redis.seed_nodes.iter().enumerate() {
            seed_nodes.push(parse_address(&format!("gateway.redis.seed_nodes[{i}]"), n)?);
        }
    }
    let store = match store_name {
        "sqlite" => {
            if raw.redis.is_some() {
                return Err(invalid(
                    "gateway.redis",
                    "is only used with store = \"redis\"",
                    "set store = \"redis\" to use the Redis Cluster, or remove the [gateway.redis] table",
                ));
            }
            let rel = raw.sqlite_path.as_deref().unwrap_or("mailboxes.sqlite");
            StoreConfig::Sqlite {
                path: data_dir.join(inside_data_dir("gateway.sqlite_path", rel, "mailboxes.sqlite")?),
            }
        }
        "redis" => {
            let Some(redis) = raw.redis else {
                return Err(invalid(
                    "gateway.redis",
                    "store = \"redis\" needs a [gateway.redis] table",
                    "add [gateway.redis] with seed_nodes = [\"host:port\", ...]",
                ));
            };
            let key_prefix = redis.key_prefix.unwrap_or_else(|| "qanat".into());
            if key_prefix.is_empty()
                || !key_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            {
                return Err(invalid(
                    "gateway.redis.key_prefix",
                    format!("{key_prefix:?} is not a valid key prefix"),
                    "use letters, digits, '-', '_', '.' or ':' (default \"qanat\")",
                ));
            }
            let wait_ms = redis.wait_timeout_ms.unwrap_or(1000);
            if !(1..=60_000).contains(&wait_ms) {
                return Err(invalid(
                    "gateway.redis.wait_timeout_ms",
                    format!("{wait_ms} is outside 1..=60000"),
                    "give how many milliseconds a write waits for a replica (default 1000)",
                ));
            }
            let password_file = match redis.password_file.as_deref() {
                Some(rel) => Some(data_dir.join(inside_data_dir(
                    "gateway.redis.password_file",
                    rel,
                    "redis-password",
                )?)),
                None => None,
            };
            StoreConfig::Redis {
                seed_nodes,
                key_prefix,
                wait_timeout: Duration::from_millis(wait_ms),
                username: redis.username,
                password_file,
                trust_persistence_unverified: redis.trust_persistence_unverified.unwrap_or(false),
            }
        }
        other => {
            return Err(invalid(
                "gateway.store",
                format!("expected \"sqlite\" or \"redis\", got {other:?}"),
                "use store = \"sqlite\" (the default) or \"redis\"",
            ));
        }
    };
    let d = Limits::default();
    let days = raw.retention_days.unwrap_or(Limits::DEFAULT_RETENTION.as_secs() / 86_400);
    if days == 0 || days > MAX_RETENTION_DAYS {
        return Err(invalid(
            "gateway.retention_days",
            format!("{days} is outside 1..={MAX_RETENTION_DAYS}"),
            "give how many days messages are kept (default 30)",
        ));
    }
    let positive = |field: &str, v: Option<u64>, default: u64| -> Result<u64, ConfigError> {
        match v {
            Some(0) => {
                Err(invalid(field, "is 0", "give a positive limit, or remove the line for the default"))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    let max_payload = positive("gateway.max_payload_len", raw.max_payload_len, d.max_payload_len as u64)?;
    let limits = Limits {
        max_messages_per_mailbox: positive(
            "gateway.max_messages_per_mailbox",
            raw.max_messages_per_mailbox,
            d.max_messages_per_mailbox,
        )?,
        max_bytes_per_mailbox: positive(
            "gateway.max_bytes_per_mailbox",
            raw.max_bytes_per_mailbox,
            d.max_bytes_per_mailbox,
        )?,
        retention: Duration::from_secs(days * 86_400),
        // Not a setting: `service::start` derives it from the epoch period (`epochs::dedup_window`).
        remember_deleted_ids: d.remember_deleted_ids,
        max_payload_len: usize::try_from(max_payload).map_err(|_| {
            invalid("gateway.max_payload_len", "is too large for this machine", "use a smaller limit")
        })?,
    };
    if raw.fault_drop_rate.is_some() {
        return Err(invalid(
            "gateway.fault_drop_rate",
            "is fault injection for tests and has moved to the [danger] table",
            "remove the line; on a test network, write it as fault_drop_rate in a [danger] table \
             and start the node with --allow-danger",
        ));
    }
    Ok(GatewayConfig { client_listen, store, limits, clients })
}

fn parse_danger(raw: RawDanger, role: &str) -> Result<DangerConfig, ConfigError> {
    let fault_drop_rate = raw.fault_drop_rate.unwrap_or(0.0);
    if !(0.0..=0.5).contains(&fault_drop_rate) {
        return Err(invalid(
            "danger.fault_drop_rate",
            format!("{fault_drop_rate} is outside 0..=0.5"),
            "remove the line (it is fault injection for tests), or use a fraction such as 0.1",
        ));
    }
    if fault_drop_rate > 0.0 && role != "gateway" {
        return Err(invalid(
            "danger.fault_drop_rate",
            format!("is only used by gateways, and this node has role = \"{role}\""),
            "remove the line",
        ));
    }
    let withhold_rate = raw.withhold_rate.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&withhold_rate) {
        return Err(invalid(
            "danger.withhold_rate",
            format!("{withhold_rate} is outside 0..=1"),
            "remove the line (it makes a hostile mix for tests), or use a fraction such as 0.3",
        ));
    }
    let copies = |field: &str, v: Option<u32>| -> Result<u32, ConfigError> {
        match v.unwrap_or(0) {
            n @ 0..=8 => Ok(n),
            n => Err(invalid(
                format!("danger.{field}"),
                format!("{n} is outside 0..=8"),
                "remove the line (it makes a hostile mix for tests), or use a small count such as 2",
            )),
        }
    };
    let hostile_mix = HostileMix {
        withhold_rate,
        replay_copies: copies("replay_copies", raw.replay_copies)?,
        forge_copies: copies("forge_copies", raw.forge_copies)?,
    };
    if hostile_mix.is_active() && role != "mix" {
        let field = if withhold_rate > 0.0 {
            "withhold_rate"
        } else if hostile_mix.replay_copies > 0 {
            "replay_copies"
        } else {
            "forge_copies"
        };
        return Err(invalid(
            format!("danger.{field}"),
            format!("is only used by mixes, and this node has role = \"{role}\""),
            "remove the line",
        ));
    }
    Ok(DangerConfig { fault_drop_rate, hostile_mix })
}

fn parse_authority(raw: RawAuthority, network: &NetworkConfig) -> Result<AuthorityConfig, ConfigError> {
    let mut allowed_nodes = BTreeSet::new();
    for (i, k) in raw.allowed_nodes.iter().enumerate() {
        let field = format!("authority.allowed_nodes[{i}]");
        if !allowed_nodes.insert(parse_identity(&field, k)?) {
            return Err(invalid(field, "the same node is listed twice", "remove the duplicate"));
        }
    }
    let parameters = parse_parameters(&raw.parameters, network)?;
    Ok(AuthorityConfig { allowed_nodes, parameters })
}

fn parse_parameters(raw: &RawParameters, network: &NetworkConfig) -> Result<Parameters, ConfigError> {
    const P: &str = "authority.parameters";
    let g = &network.geometry;
    let d = ParametersConfig::default_for(g.scheme());
    let rate = |key: &str, v: Option<f64>, default: Rate| -> Result<Rate, ConfigError> {
        let Some(per_sec) = v else { return Ok(default) };
        let micro = per_sec * 1e6;
        if !micro.is_finite() || micro < 1.0 || micro > Rate::MAX.as_micro_per_sec() as f64 {
            return Err(invalid(
                format!("{P}.{key}"),
                format!("{per_sec} is not a rate between 0.000001 and 10000 per second"),
                format!(
                    "give packets per second, or remove the line for the default {}",
                    default.per_second()
                ),
            ));
        }
        // In range, so the conversion neither truncates nor saturates.
        Ok(Rate::from_micro_per_sec(micro.round() as u64))
    };
    let c = ParametersConfig {
        scheme: g.scheme(),
        nr_hops: g.nr_hops(),
        forward_payload_len: g.forward_payload_len(),
        mix_layers: raw.mix_layers.unwrap_or(d.mix_layers),
        mean_delay_ms: raw.mean_delay_ms.unwrap_or(d.mean_delay_ms),
        lambda_p: rate("lambda_p", raw.lambda_p, d.lambda_p)?,
        lambda_l: rate("lambda_l", raw.lambda_l, d.lambda_l)?,
        lambda_d: rate("lambda_d", raw.lambda_d, d.lambda_d)?,
        lambda_m: rate("lambda_m", raw.lambda_m, d.lambda_m)?,
        epoch_period: network.epoch_period,
    };
    if c.mix_layers == 0 || c.mix_layers > qanat_pki::params::MAX_MIX_LAYERS {
        return Err(invalid(
            format!("{P}.mix_layers"),
            format!("{} is outside 1..={}", c.mix_layers, qanat_pki::params::MAX_MIX_LAYERS),
            "use 3 (the default) unless you know why not",
        ));
    }
    if c.nr_hops < usize::from(c.mix_layers) + 2 {
        return Err(invalid(
            format!("{P}.mix_layers"),
            format!(
                "{} hops (network.nr_hops) cannot cover a gateway, {} mix layers and a gateway",
                c.nr_hops, c.mix_layers
            ),
            format!(
                "use at most {} mix layers, or raise network.nr_hops to at least {}",
                c.nr_hops.saturating_sub(2),
                usize::from(c.mix_layers) + 2
            ),
        ));
    }
    if c.mean_delay_ms == 0 || c.mean_delay_ms > qanat_pki::params::MAX_MEAN_DELAY_MS {
        return Err(invalid(
            format!("{P}.mean_delay_ms"),
            format!("{} is outside 1..={}", c.mean_delay_ms, qanat_pki::params::MAX_MEAN_DELAY_MS),
            "give the mean delay per hop in milliseconds (default 500)",
        ));
    }
    Parameters::new(c).map_err(|e| {
        invalid(
            P,
            e.to_string(),
            "raise lambda_m or mean_delay_ms so that (mix_layers - 1) * lambda_m * mean_delay >= 2",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Example configs.

/// What [`render_example`] fills in.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Example {
    /// The role (`"authority"`, `"mix"` or `"gateway"`).
    pub role: ExampleRole,
    /// `data_dir`.
    pub data_dir: String,
    /// `listen`.
    pub listen: LinkAddress,
    /// `metrics`, if any.
    pub metrics: Option<SocketAddr>,
    /// `network.name`.
    pub network: String,
    /// `network.epoch_period_secs`.
    pub epoch_period_secs: u64,
    /// `network.scheme`.
    pub scheme: Scheme,
    /// `[authority.parameters]` (authorities only; the scheme and geometry come from `scheme`).
    pub parameters: ParametersConfig,
    /// `[[network.authorities]]`.
    pub authorities: Vec<AuthorityPeer>,
    /// `[listener]`.
    pub listener: ListenerConfig,
    /// The client budgets in `[gateway]` (gateways only).
    pub clients: ClientBudgets,
}

/// The role of an [`Example`], with what only that role has.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ExampleRole {
    /// An authority allowing these nodes.
    Authority {
        /// `authority.allowed_nodes`.
        allowed_nodes: Vec<IdentityKey>,
    },
    /// A mix node.
    Mix,
    /// A gateway.
    Gateway {
        /// `gateway.client_listen`.
        client_listen: LinkAddress,
    },
}

impl Example {
    /// An example for `role` in network `network` with the given authorities.
    pub fn new(
        role: ExampleRole,
        listen: LinkAddress,
        network: &str,
        authorities: Vec<AuthorityPeer>,
    ) -> Self {
        Self {
            role,
            data_dir: "data".into(),
            listen,
            metrics: None,
            network: network.into(),
            epoch_period_secs: EpochPeriod::DEFAULT.as_millis() / 1000,
            scheme: DEFAULT_SCHEME,
            parameters: ParametersConfig::default_for(DEFAULT_SCHEME),
            authorities,
            listener: ListenerConfig::default(),
            clients: ClientBudgets::default(),
        }
    }
}

/// A commented config file for `ex`, which [`NodeConfig::from_toml_str`] accepts as it is.
pub fn render_example(ex: &Example) -> String {
    let role = match ex.role {
        ExampleRole::Authority { .. } => "authority",
        ExampleRole::Mix => "mix",
        ExampleRole::Gateway { .. } => "gateway",
    };
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "# Qanat node configuration ('qanat node run --config FILE').\n");
    let _ = writeln!(s, "# What this node is: \"authority\", \"mix\" or \"gateway\".");
    let _ = writeln!(s, "role = \"{role}\"");
    let _ = writeln!(s, "# Keys and state; a relative path is relative to this file's directory.");
    let _ = writeln!(s, "data_dir = {}", toml_str(&ex.data_dir));
    let _ = writeln!(s, "# Link address (host:port) other nodes dial; published in the directory.");
    let _ = writeln!(s, "listen = \"{}\"", ex.listen);
    match ex.metrics {
        Some(m) => {
            let _ = writeln!(s, "# Prometheus metrics endpoint (remove the line to serve none).");
            let _ = writeln!(s, "metrics = \"{m}\"");
        }
        None => {
            let _ = writeln!(s, "# Prometheus metrics endpoint, for example:");
            let _ = writeln!(s, "# metrics = \"127.0.0.1:9100\"");
        }
    }
    let _ = writeln!(s, "\n[network]");
    let _ = writeln!(s, "# The same on every node of the network.");
    let _ = writeln!(s, "name = {}", toml_str(&ex.network));
    let _ = writeln!(s, "epoch_period_secs = {}", ex.epoch_period_secs);
    let g = Geometry::default_for(ex.scheme);
    let _ =
        writeln!(s, "# Packet scheme: \"xwing\" (hybrid post-quantum), \"x25519-kem\" or \"x25519-nike\".");
    let _ = writeln!(s, "scheme = \"{}\"", ex.scheme.name());
    let _ = writeln!(s, "# Sphinx hops (gateway, mix layers, gateway) and payload bytes; with the scheme");
    let _ = writeln!(s, "# they fix every packet's size ({} bytes here).", g.packet_len());
    let _ = writeln!(s, "nr_hops = {}", g.nr_hops());
    let _ = writeln!(s, "forward_payload_len = {}", g.forward_payload_len());
    for a in &ex.authorities {
        let _ = writeln!(s, "\n# One table per directory authority (from its 'qanat node show-keys').");
        let _ = writeln!(s, "[[network.authorities]]");
        let _ = writeln!(s, "identity_key = \"{}\"", hex::encode(a.identity.as_bytes()));
        let _ = writeln!(s, "link_key = \"{}\"", hex::encode(a.link_key.to_bytes()));
        let _ = writeln!(s, "address = \"{}\"", a.address);
    }
    let l = &ex.listener;
    let _ = writeln!(s, "\n# Budgets of every link listener of this node (docs/LINK.md, \"Budgets\"); every");
    let _ = writeln!(s, "# line is optional. Addresses are IPv4 addresses or IPv6 /64 prefixes.");
    let _ = writeln!(s, "[listener]");
    let _ = writeln!(s, "# Established connections at once, and from one address.");
    let _ = writeln!(s, "max_connections = {}", l.max_connections);
    let _ = writeln!(s, "max_connections_per_ip = {}", l.max_connections_per_ip);
    let _ = writeln!(s, "# Handshakes in flight, and from one address; when full, the oldest handshake of");
    let _ = writeln!(s, "# the address with the most in flight is abandoned for a newcomer.");
    let _ = writeln!(s, "max_handshakes = {}", l.max_handshakes);
    let _ = writeln!(s, "max_handshakes_per_ip = {}", l.max_handshakes_per_ip);
    let _ = writeln!(s, "# Seconds a handshake may take (about 3.2 s on a 2G link; outgoing links too).");
    let _ = writeln!(s, "handshake_timeout_secs = {}", l.handshake_timeout.as_secs());
    match &ex.role {
        ExampleRole::Authority { allowed_nodes } => {
            let _ = writeln!(s, "\n[authority]");
            let _ = writeln!(s, "# Identity keys of the mixes and gateways allowed into the network.");
            let _ = writeln!(s, "allowed_nodes = [");
            for k in allowed_nodes {
                let _ = writeln!(s, "    \"{}\",", hex::encode(k.as_bytes()));
            }
            let _ = writeln!(s, "]");
            let d = &ex.parameters;
            let _ =
                writeln!(s, "\n# The network parameters this authority votes for; every line is optional");
            let _ = writeln!(
                s,
                "# (the defaults: mix_layers 3, mean_delay_ms 1000, lambda_p 0.2, lambda_l 0.05,"
            );
            let _ = writeln!(s, "# lambda_d 0.05, lambda_m 2). All authorities must agree.");
            let _ = writeln!(s, "[authority.parameters]");
            let _ = writeln!(s, "# Mix layers (at most network.nr_hops - 2).");
            let _ = writeln!(s, "mix_layers = {}", d.mix_layers);
            let _ = writeln!(s, "# Mean delay per hop (1/mu), milliseconds.");
            let _ = writeln!(s, "mean_delay_ms = {}", d.mean_delay_ms);
            let _ = writeln!(s, "# Rates, packets per second: client payload, loop and drop; mix loop.");
            let _ = writeln!(s, "lambda_p = {}", d.lambda_p.per_second());
            let _ = writeln!(s, "lambda_l = {}", d.lambda_l.per_second());
            let _ = writeln!(s, "lambda_d = {}", d.lambda_d.per_second());
            let _ = writeln!(s, "lambda_m = {}", d.lambda_m.per_second());
        }
        ExampleRole::Mix => {}
        ExampleRole::Gateway { client_listen } => {
            let d = Limits::default();
            let _ = writeln!(s, "\n[gateway]");
            let _ = writeln!(s, "# Where clients connect.");
            let _ = writeln!(s, "client_listen = \"{client_listen}\"");
            let _ = writeln!(
                s,
                "# Mailbox store: \"sqlite\" (embedded, the default) or \"redis\" (a Redis Cluster)."
            );
            let _ = writeln!(s, "store = \"sqlite\"");
            let _ = writeln!(s, "# The database file, relative to data_dir.");
            let _ = writeln!(s, "sqlite_path = \"mailboxes.sqlite\"");
            let _ = writeln!(s, "# Retention and per-mailbox quotas.");
            let _ = writeln!(s, "retention_days = {}", d.retention.as_secs() / 86_400);
            let _ = writeln!(s, "max_messages_per_mailbox = {}", d.max_messages_per_mailbox);
            let _ = writeln!(s, "max_bytes_per_mailbox = {}", d.max_bytes_per_mailbox);
            let _ = writeln!(s, "max_payload_len = {}", d.max_payload_len);
            let c = &ex.clients;
            let _ = writeln!(s, "# Client budgets (docs/LINK.md, \"Budgets\"); every line is optional.");
            let _ = writeln!(s, "# Client connections at once, and from one address (clients behind one NAT");
            let _ = writeln!(s, "# share it); frames queued per client connection, each way.");
            let _ = writeln!(s, "client_max_connections = {}", c.max_connections);
            let _ = writeln!(s, "client_max_connections_per_ip = {}", c.max_connections_per_ip);
            let _ = writeln!(s, "client_queue_frames = {}", c.queue_frames);
            let _ =
                writeln!(s, "# Packets per session: this many times the directory's lambda_p + lambda_l +");
            let _ = writeln!(s, "# lambda_d, with a burst; excess packets are dropped and counted.");
            let _ = writeln!(s, "client_packet_slack = {:?}", c.packet_slack);
            let _ = writeln!(s, "client_packet_burst = {}", c.packet_burst);
            let _ = writeln!(
                s,
                "# Registrations per session: a rate with a burst, and a bound on mailboxes held;"
            );
            let _ = writeln!(s, "# a registration beyond fails alone (the client retries it later).");
            let _ = writeln!(s, "registrations_per_second = {:?}", c.registrations_per_second);
            let _ = writeln!(s, "registration_burst = {}", c.registration_burst);
            let _ = writeln!(s, "max_mailboxes_per_session = {}", c.max_mailboxes);
            let _ = writeln!(s, "# Redis Cluster store (with store = \"redis\"; see docs/OPERATING.md):");
            let _ = writeln!(s, "# [gateway.redis]");
            let _ = writeln!(s, "# seed_nodes = [\"10.0.0.11:7000\", \"10.0.0.12:7000\"]");
            let _ = writeln!(s, "# key_prefix = \"qanat\"");
            let _ = writeln!(s, "# wait_timeout_ms = 1000");
            let _ = writeln!(s, "# username = \"qanat-gateway\"");
            let _ = writeln!(s, "# password_file = \"redis-password\"");
            let _ = writeln!(s, "# trust_persistence_unverified = false");
        }
    }
    s
}

#[cfg(test)]
mod tests;
