//! The typed tables of a node's config: what validation produces and the runtime reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qanat_mailbox::Limits;
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{IdentityKey, Parameters};

use crate::runtime::ClientBudgets;

/// The `[danger]` table: settings that break the network's promises, for test networks only.
/// Its name is what an auditor greps for.
#[derive(Debug, Clone, PartialEq, Default)]
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
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RoleConfig {
    /// A directory authority.
    Authority(AuthorityRoleConfig),
    /// A mix node (its layer is assigned by the directory).
    Mix,
    /// A gateway.
    Gateway(GatewayRoleConfig),
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

/// The `[authority]` table: the authority role's settings (the core's own configuration,
/// [`qanat_pki::AuthorityConfig`], is built from them at start).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorityRoleConfig {
    /// The nodes (mixes and gateways) allowed into the network.
    pub allowed_nodes: BTreeSet<IdentityKey>,
    /// The parameters this authority votes for.
    pub parameters: Parameters,
}

impl AuthorityRoleConfig {
    /// An `[authority]` table allowing `allowed_nodes` and voting for `parameters` (whose
    /// geometry and epoch period must be the network's, as validation makes them).
    pub fn new(allowed_nodes: BTreeSet<IdentityKey>, parameters: Parameters) -> Self {
        Self { allowed_nodes, parameters }
    }
}

/// The `[gateway]` table: the gateway role's settings (the core's own configuration,
/// [`qanat_mixnet::GatewayConfig`], is built at start).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GatewayRoleConfig {
    /// Where clients connect (`host:port`).
    pub client_listen: LinkAddress,
    /// The mailbox store.
    pub store: StoreConfig,
    /// Retention and quotas of the mailbox store.
    pub limits: Limits,
    /// The budgets of the client listener and of each client session.
    pub clients: ClientBudgets,
}

/// The SQLite file of a gateway whose config names none, inside its data directory.
pub(super) const DEFAULT_SQLITE_PATH: &str = "mailboxes.sqlite";

impl GatewayRoleConfig {
    /// A `[gateway]` table with only `client_listen` set: the SQLite store in `data_dir`, the
    /// default limits and client budgets.
    pub fn new(client_listen: LinkAddress, data_dir: &Path) -> Self {
        Self {
            client_listen,
            store: StoreConfig::Sqlite { path: data_dir.join(DEFAULT_SQLITE_PATH) },
            limits: Limits::default(),
            clients: ClientBudgets::default(),
        }
    }
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
