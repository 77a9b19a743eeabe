//! Example configs: a commented file per role that [`NodeConfig::from_toml_str`] accepts as it
//! is (`qanat node example-config`).

use std::fmt::Write as _;
use std::net::SocketAddr;

use qanat_mailbox::Limits;
use qanat_network::config::toml_str;
use qanat_packet::{Geometry, Scheme};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, IdentityKey, ParametersConfig};

#[cfg(doc)]
use super::NodeConfig;
use super::{AuthorityPeer, DEFAULT_SCHEME, ListenerConfig};
use crate::runtime::ClientBudgets;

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
