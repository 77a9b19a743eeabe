//! The raw file, as serde reads it: a mirror of the TOML with every table
//! `deny_unknown_fields`, so that a misspelt key is an error rather than a silently ignored
//! setting. [`super::validate`] turns it into the typed config.

use qanat_network::config::RawNetwork;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) role: String,
    pub(super) data_dir: String,
    pub(super) listen: String,
    pub(super) metrics: Option<String>,
    pub(super) network: RawNetwork,
    pub(super) listener: Option<RawListener>,
    pub(super) gateway: Option<RawGateway>,
    pub(super) authority: Option<RawAuthority>,
    pub(super) danger: Option<RawDanger>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) max_connections: Option<u64>,
    pub(super) max_connections_per_ip: Option<u64>,
    pub(super) max_handshakes: Option<u64>,
    pub(super) max_handshakes_per_ip: Option<u64>,
    pub(super) handshake_timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDanger {
    pub(super) fault_drop_rate: Option<f64>,
    pub(super) withhold_rate: Option<f64>,
    pub(super) replay_copies: Option<u32>,
    pub(super) forge_copies: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub(super) client_listen: String,
    pub(super) store: Option<String>,
    pub(super) sqlite_path: Option<String>,
    pub(super) retention_days: Option<u64>,
    pub(super) max_messages_per_mailbox: Option<u64>,
    pub(super) max_bytes_per_mailbox: Option<u64>,
    pub(super) max_payload_len: Option<u64>,
    pub(super) client_max_connections: Option<u64>,
    pub(super) client_max_connections_per_ip: Option<u64>,
    pub(super) client_queue_frames: Option<u64>,
    pub(super) client_packet_slack: Option<f64>,
    pub(super) client_packet_burst: Option<u64>,
    pub(super) registrations_per_second: Option<f64>,
    pub(super) registration_burst: Option<u64>,
    pub(super) max_mailboxes_per_session: Option<u64>,
    /// Moved to `[danger]`: read only to say so.
    pub(super) fault_drop_rate: Option<f64>,
    pub(super) redis: Option<RawRedis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub(super) seed_nodes: Vec<String>,
    pub(super) key_prefix: Option<String>,
    pub(super) wait_timeout_ms: Option<u64>,
    pub(super) username: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) trust_persistence_unverified: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthority {
    pub(super) allowed_nodes: Vec<String>,
    #[serde(default)]
    pub(super) parameters: RawParameters,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParameters {
    pub(super) mix_layers: Option<u8>,
    pub(super) mean_delay_ms: Option<u32>,
    pub(super) lambda_p: Option<f64>,
    pub(super) lambda_l: Option<f64>,
    pub(super) lambda_d: Option<f64>,
    pub(super) lambda_m: Option<f64>,
    /// Version 2 of the directory: either line set votes it (the other at its default). Read as
    /// TOML's integers, so that a negative or huge value gets an error that names the range.
    pub(super) max_file_bytes: Option<i64>,
    pub(super) fast_factor_max: Option<i64>,
}
