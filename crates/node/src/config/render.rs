//! The one renderer of node configs: a typed [`NodeConfig`] to a commented TOML file that
//! [`NodeConfig::from_toml_str`] reads back equal. `qanat node example-config` prints what it
//! renders of a config at its defaults, and `qanat devnet` writes what it renders of the configs
//! it builds; neither assembles TOML text of its own.
//!
//! Every setting is written, defaults included, each under a comment saying what it does, so an
//! operator edits a value rather than looking up a key. What a file cannot express (a store path
//! outside the data directory, a retention that is not whole days, a setting that is not in the
//! file such as [`ClientBudgets::packet_rate`](crate::runtime::ClientBudgets)) is written as
//! close as the file allows, and reading it back then fails or differs: the round-trip tests in
//! `tests.rs` and the devnet's check of every file it writes catch such a config.

use std::fmt::Write as _;
use std::path::Path;

use qanat_network::config::toml_str;

use super::{
    AuthorityRoleConfig, DangerConfig, GatewayRoleConfig, ListenerConfig, NodeConfig, RoleConfig, StoreConfig,
};

impl NodeConfig {
    /// The config as a commented file. Paths are written relative to `base_dir` (the directory
    /// that will hold the file) when they are inside it, so that
    /// `NodeConfig::from_toml_str(&c.render(base_dir), base_dir)`, and [`NodeConfig::load`] of
    /// the file written in `base_dir`, give `c` back.
    pub fn render(&self, base_dir: &Path) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(s, "# Qanat node configuration ('qanat node run --config FILE').\n");
        let _ = writeln!(s, "# What this node is: \"authority\", \"mix\" or \"gateway\".");
        let _ = writeln!(s, "role = \"{}\"", self.role.name());
        let _ = writeln!(s, "# Keys and state; a relative path is relative to this file's directory.");
        let _ = writeln!(s, "data_dir = {}", path_str(&self.data_dir, base_dir));
        let _ = writeln!(s, "# Link address (host:port) other nodes dial; published in the directory.");
        let _ = writeln!(s, "listen = {}", toml_str(self.listen.as_str()));
        match self.metrics {
            Some(m) => {
                let _ = writeln!(s, "# Prometheus metrics endpoint (remove the line to serve none).");
                let _ = writeln!(s, "metrics = \"{m}\"");
            }
            None => {
                let _ = writeln!(s, "# Prometheus metrics endpoint, for example:");
                let _ = writeln!(s, "# metrics = \"127.0.0.1:9100\"");
            }
        }
        s.push('\n');
        self.network.write_toml(&mut s);
        write_listener(&mut s, &self.listener);
        match &self.role {
            RoleConfig::Authority(a) => write_authority(&mut s, a),
            RoleConfig::Mix => {}
            RoleConfig::Gateway(g) => write_gateway(&mut s, g, &self.data_dir),
        }
        if let Some(d) = &self.danger {
            write_danger(&mut s, d, &self.role);
        }
        s
    }
}

/// `path` as a TOML string, relative to `base` when inside it.
fn path_str(path: &Path, base: &Path) -> String {
    toml_str(&path.strip_prefix(base).unwrap_or(path).to_string_lossy())
}

fn write_listener(s: &mut String, l: &ListenerConfig) {
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
}

fn write_authority(s: &mut String, a: &AuthorityRoleConfig) {
    let _ = writeln!(s, "\n[authority]");
    let _ = writeln!(s, "# Identity keys of the mixes and gateways allowed into the network.");
    let _ = writeln!(s, "allowed_nodes = [");
    for k in &a.allowed_nodes {
        let _ = writeln!(s, "    \"{}\",", hex::encode(k.as_bytes()));
    }
    let _ = writeln!(s, "]");
    let p = &a.parameters;
    let _ = writeln!(s, "\n# The network parameters this authority votes for; every line is optional");
    let _ = writeln!(s, "# (the defaults: mix_layers 3, mean_delay_ms 1000, lambda_p 0.2, lambda_l 0.05,");
    let _ = writeln!(s, "# lambda_d 0.05, lambda_m 2). All authorities must agree.");
    let _ = writeln!(s, "[authority.parameters]");
    let _ = writeln!(s, "# Mix layers (at most network.nr_hops - 2).");
    let _ = writeln!(s, "mix_layers = {}", p.mix_layers());
    let _ = writeln!(s, "# Mean delay per hop (1/mu), milliseconds.");
    let _ = writeln!(s, "mean_delay_ms = {}", p.mean_delay_ms());
    let _ = writeln!(s, "# Rates, packets per second: client payload, loop and drop; mix loop.");
    // `Display` of an f64 is the shortest decimal that reads back as the same f64.
    let _ = writeln!(s, "lambda_p = {}", p.lambda_p().per_second());
    let _ = writeln!(s, "lambda_l = {}", p.lambda_l().per_second());
    let _ = writeln!(s, "lambda_d = {}", p.lambda_d().per_second());
    let _ = writeln!(s, "lambda_m = {}", p.lambda_m().per_second());
    // Only when set: a config without them votes version 1 of the directory, and reads and
    // writes back as it did before version 2.
    if let Some(l) = p.config().file_limits {
        let _ = writeln!(s, "# File transfers (directory version 2: set once clients are upgraded; remove");
        let _ = writeln!(s, "# both lines for version 1, which means 1 MiB and no fast mode): the largest");
        let _ = writeln!(s, "# file in bytes (at most 64 MiB), and the largest multiple of lambda_p a fast");
        let _ = writeln!(s, "# transfer may use (1 to 8; 1: no fast mode).");
        let _ = writeln!(s, "max_file_bytes = {}", l.max_file_bytes);
        let _ = writeln!(s, "fast_factor_max = {}", l.fast_factor_max);
    }
}

fn write_gateway(s: &mut String, g: &GatewayRoleConfig, data_dir: &Path) {
    let _ = writeln!(s, "\n[gateway]");
    let _ = writeln!(s, "# Where clients connect.");
    let _ = writeln!(s, "client_listen = {}", toml_str(g.client_listen.as_str()));
    let _ =
        writeln!(s, "# Mailbox store: \"sqlite\" (embedded, the default) or \"redis\" (a Redis Cluster).");
    match &g.store {
        StoreConfig::Sqlite { path } => {
            let _ = writeln!(s, "store = \"sqlite\"");
            let _ = writeln!(s, "# The database file, relative to data_dir.");
            let _ = writeln!(s, "sqlite_path = {}", path_str(path, data_dir));
        }
        StoreConfig::Redis { .. } => {
            let _ = writeln!(s, "store = \"redis\"");
        }
    }
    let l = &g.limits;
    let _ = writeln!(s, "# Retention and per-mailbox quotas.");
    let _ = writeln!(s, "retention_days = {}", l.retention.as_secs() / 86_400);
    let _ = writeln!(s, "max_messages_per_mailbox = {}", l.max_messages_per_mailbox);
    let _ = writeln!(s, "max_bytes_per_mailbox = {}", l.max_bytes_per_mailbox);
    let _ = writeln!(s, "max_payload_len = {}", l.max_payload_len);
    let c = &g.clients;
    let _ = writeln!(s, "# Client budgets (docs/LINK.md, \"Budgets\"); every line is optional.");
    let _ = writeln!(s, "# Client connections at once, and from one address (clients behind one NAT");
    let _ = writeln!(s, "# share it); frames queued per client connection, each way.");
    let _ = writeln!(s, "client_max_connections = {}", c.max_connections);
    let _ = writeln!(s, "client_max_connections_per_ip = {}", c.max_connections_per_ip);
    let _ = writeln!(s, "client_queue_frames = {}", c.queue_frames);
    let _ = writeln!(s, "# Packets per session: this many times the directory's fast_factor_max x lambda_p");
    let _ = writeln!(s, "# + lambda_l + lambda_d, with a burst; excess packets are dropped and counted.");
    // `Debug` of an f64 reads back as the same f64 and always has a '.' or an exponent, so TOML
    // reads a float.
    let _ = writeln!(s, "client_packet_slack = {:?}", c.packet_slack);
    let _ = writeln!(s, "client_packet_burst = {}", c.packet_burst);
    let _ = writeln!(s, "# Registrations per session: a rate with a burst, and a bound on mailboxes held;");
    let _ = writeln!(s, "# a registration beyond fails alone (the client retries it later).");
    let _ = writeln!(s, "registrations_per_second = {:?}", c.registrations_per_second);
    let _ = writeln!(s, "registration_burst = {}", c.registration_burst);
    let _ = writeln!(s, "max_mailboxes_per_session = {}", c.max_mailboxes);
    match &g.store {
        StoreConfig::Sqlite { .. } => {
            let _ = writeln!(s, "# Redis Cluster store (with store = \"redis\"; see docs/OPERATING.md):");
            let _ = writeln!(s, "# [gateway.redis]");
            let _ = writeln!(s, "# seed_nodes = [\"10.0.0.11:7000\", \"10.0.0.12:7000\"]");
            let _ = writeln!(s, "# key_prefix = \"qanat\"");
            let _ = writeln!(s, "# wait_timeout_ms = 1000");
            let _ = writeln!(s, "# username = \"qanat-gateway\"");
            let _ = writeln!(s, "# password_file = \"redis-password\"");
            let _ = writeln!(s, "# trust_persistence_unverified = false");
        }
        // Every field named, as where the service opens the store (`service/mod.rs`), on purpose:
        // a field added to `StoreConfig::Redis` then fails to compile in both until both use it.
        StoreConfig::Redis {
            seed_nodes,
            key_prefix,
            wait_timeout,
            username,
            password_file,
            trust_persistence_unverified,
        } => {
            let _ = writeln!(s, "\n# The Redis Cluster store (see docs/OPERATING.md).");
            let _ = writeln!(s, "[gateway.redis]");
            let _ = writeln!(s, "# Some of the cluster's nodes; the rest are discovered.");
            let seeds: Vec<String> = seed_nodes.iter().map(|n| toml_str(n.as_str())).collect();
            let _ = writeln!(s, "seed_nodes = [{}]", seeds.join(", "));
            let _ = writeln!(s, "# Prefix of every key.");
            let _ = writeln!(s, "key_prefix = {}", toml_str(key_prefix));
            let _ = writeln!(s, "# How long a write waits for a replica's confirmation, milliseconds.");
            let _ = writeln!(s, "wait_timeout_ms = {}", wait_timeout.as_millis());
            let _ = writeln!(s, "# ACL user and the file holding its password (relative to data_dir).");
            match username {
                Some(u) => {
                    let _ = writeln!(s, "username = {}", toml_str(u));
                }
                None => {
                    let _ = writeln!(s, "# username = \"qanat-gateway\"");
                }
            }
            match password_file {
                Some(p) => {
                    let _ = writeln!(s, "password_file = {}", path_str(p, data_dir));
                }
                None => {
                    let _ = writeln!(s, "# password_file = \"redis-password\"");
                }
            }
            let _ =
                writeln!(s, "# Serve when the nodes' persistence settings cannot be read (OPERATING.md).");
            let _ = writeln!(s, "trust_persistence_unverified = {trust_persistence_unverified}");
        }
    }
}

/// The `[danger]` table: the settings of the node's role, and any other that is set (which
/// validation then refuses, as it should).
fn write_danger(s: &mut String, d: &DangerConfig, role: &RoleConfig) {
    let gateway = matches!(role, RoleConfig::Gateway(_));
    let mix = matches!(role, RoleConfig::Mix);
    let h = &d.hostile_mix;
    let _ = writeln!(s, "\n# Settings for tests only: the node refuses to start with this table unless");
    let _ = writeln!(s, "# started with --allow-danger.");
    let _ = writeln!(s, "[danger]");
    if gateway || d.fault_drop_rate != 0.0 {
        let _ = writeln!(s, "# Fault injection (gateways): drop this fraction of the packets received.");
        let _ = writeln!(s, "fault_drop_rate = {:?}", d.fault_drop_rate);
    }
    if mix || h.is_active() {
        let _ = writeln!(s, "# A hostile mix: drop this fraction of what it should forward, send each");
        let _ = writeln!(s, "# packet this many more times, and this many forged packets with each.");
        let _ = writeln!(s, "withhold_rate = {:?}", h.withhold_rate);
        let _ = writeln!(s, "replay_copies = {}", h.replay_copies);
        let _ = writeln!(s, "forge_copies = {}", h.forge_copies);
    }
}
