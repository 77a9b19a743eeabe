//! The node's TOML configuration: one file per node.
//!
//! Reading a config is two steps. Serde parses the text into a raw mirror of the file (every
//! table `deny_unknown_fields`, so a misspelt key is an error rather than a silently ignored
//! setting); then [`validate`](NodeConfig::from_toml_str) turns it into a [`NodeConfig`] whose
//! fields are parsed types ([`LinkAddress`], [`IdentityKey`](qanat_pki::IdentityKey),
//! [`LinkPublicKey`](qanat_link::LinkPublicKey), [`Duration`](std::time::Duration),
//! [`Parameters`](qanat_pki::Parameters)), never strings. Every [`ConfigError`] names the file,
//! the field (a dotted path such as `network.authorities[1].link_key`) and what to do about it.
//! Writing is the reverse, by one renderer: [`NodeConfig::render`] writes any typed config as a
//! commented file that reads back equal (`qanat node example-config` and the devnet use it).
//!
//! The module, by concern: `raw.rs` (the serde mirror), `validate.rs` (raw to typed, the
//! errors), `types.rs` (the typed tables), `render.rs` (typed to text), `tests.rs`. The
//! `[network]` table, the network file and [`ConfigError`] live in `qanat-network`, which
//! clients share.
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
//! client_packet_slack = 4.0       # × the directory's fast_factor_max·λ_P + λ_L + λ_D per session
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
//! each defaulting to
//! [`ParametersConfig::default_for`](qanat_pki::ParametersConfig::default_for) of the
//! scheme). A mix has neither table.
//!
//! `max_file_bytes` and `fast_factor_max` in `[authority.parameters]` are the operator's switch
//! to version 2 of the directory ([`FileLimits`](qanat_pki::FileLimits)): without either line
//! the authority votes version 1 (which clients read as 1 MiB files and no fast mode); with
//! either, version 2, the line left out at its default (4 MiB, 4). Authorities adopt parameters
//! a majority voted byte for byte, so the switch takes effect once a majority of them has it
//! (docs/OPERATING.md).
//!
//! The packet geometry (scheme, hops, payload length) is in `[network]`, not in the authorities'
//! parameters: every node needs it before any directory document exists (to generate the packet
//! keys it publishes and to size its link frames), and a node refuses a document whose geometry
//! differs from its own.

mod raw;
mod render;
mod types;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use qanat_network::config::invalid;
use qanat_pki::descriptor::LinkAddress;

/// The network file and the `[network]` table live in `qanat-network`, which clients share.
pub use qanat_network::config::{
    AuthorityPeer, ClientGateway, ClientNetwork, ConfigError, DEFAULT_SCHEME, NetworkConfig,
};
pub use types::{
    AuthorityRoleConfig, DangerConfig, GatewayRoleConfig, HostileMix, ListenerConfig, RoleConfig, StoreConfig,
};
pub use validate::MAX_RETENTION_DAYS;

/// A node's validated configuration: what [`NodeConfig::load`] reads, and what
/// [`NodeConfig::render`] writes.
#[derive(Debug, Clone, PartialEq)]
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

impl NodeConfig {
    /// A config of `role` whose optional settings are at their defaults: no metrics, the
    /// default listener budgets, no `[danger]` table (what a file with only `role`, `data_dir`,
    /// `listen`, `[network]` and the role's table gives).
    pub fn new(role: RoleConfig, data_dir: PathBuf, listen: LinkAddress, network: NetworkConfig) -> Self {
        Self {
            role,
            data_dir,
            listen,
            metrics: None,
            listener: ListenerConfig::default(),
            network,
            danger: None,
            danger_allowed: false,
        }
    }

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

#[cfg(test)]
mod tests;
