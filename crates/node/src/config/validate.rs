//! Validation: the raw file into a [`NodeConfig`] of parsed types, every error naming its field
//! and the fix.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use qanat_mailbox::Limits;
use qanat_network::config::{invalid, parse_address, parse_identity, parse_network, syntax_error};
use qanat_pki::{FileLimits, Parameters, ParametersConfig, Rate};

use super::raw::{RawAuthority, RawConfig, RawDanger, RawGateway, RawListener, RawParameters};
use super::types::DEFAULT_SQLITE_PATH;
use super::{
    AuthorityRoleConfig, ConfigError, DangerConfig, GatewayRoleConfig, HostileMix, ListenerConfig,
    NetworkConfig, NodeConfig, RoleConfig, StoreConfig,
};
use crate::runtime::ClientBudgets;

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

fn parse_gateway(raw: RawGateway, data_dir: &Path) -> Result<GatewayRoleConfig, ConfigError> {
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
            let rel = raw.sqlite_path.as_deref().unwrap_or(DEFAULT_SQLITE_PATH);
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
    Ok(GatewayRoleConfig { client_listen, store, limits, clients })
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

fn parse_authority(raw: RawAuthority, network: &NetworkConfig) -> Result<AuthorityRoleConfig, ConfigError> {
    let mut allowed_nodes = BTreeSet::new();
    for (i, k) in raw.allowed_nodes.iter().enumerate() {
        let field = format!("authority.allowed_nodes[{i}]");
        if !allowed_nodes.insert(parse_identity(&field, k)?) {
            return Err(invalid(field, "the same node is listed twice", "remove the duplicate"));
        }
    }
    let parameters = parse_parameters(&raw.parameters, network)?;
    Ok(AuthorityRoleConfig { allowed_nodes, parameters })
}

/// The file limits an authority votes for: none (version 1 of the directory) unless the
/// operator set `max_file_bytes` or `fast_factor_max`; then version 2, with the line left out
/// at its default ([`FileLimits::DEFAULT`]).
fn parse_file_limits(raw: &RawParameters) -> Result<Option<FileLimits>, ConfigError> {
    const P: &str = "authority.parameters";
    const VERSION_1: &str = "or remove both max_file_bytes and fast_factor_max to keep the \
                             directory at version 1 (1 MiB, no fast mode)";
    if raw.max_file_bytes.is_none() && raw.fast_factor_max.is_none() {
        return Ok(None);
    }
    let d = FileLimits::DEFAULT;
    let max_file_bytes = match raw.max_file_bytes {
        None => d.max_file_bytes,
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|b| (1..=FileLimits::MAX_FILE_BYTES).contains(b))
            .ok_or_else(|| {
                invalid(
                    format!("{P}.max_file_bytes"),
                    format!(
                        "{v} is not a size between 1 and {} bytes (64 MiB, the most a file \
                         description can announce)",
                        FileLimits::MAX_FILE_BYTES
                    ),
                    format!(
                        "give the largest file clients may send or accept, in bytes ({}, 4 MiB, \
                         is the default), {VERSION_1}",
                        d.max_file_bytes
                    ),
                )
            })?,
    };
    let fast_factor_max = match raw.fast_factor_max {
        None => d.fast_factor_max,
        Some(0) => {
            return Err(invalid(
                format!("{P}.fast_factor_max"),
                "0 is not a multiple of lambda_p a transfer can be sent at",
                format!(
                    "use 1 for no fast mode, or up to 8 ({} is the default), {VERSION_1}",
                    d.fast_factor_max
                ),
            ));
        }
        Some(v) => u8::try_from(v)
            .ok()
            .filter(|f| (1..=FileLimits::MAX_FAST_FACTOR).contains(f))
            .ok_or_else(|| {
                invalid(
                    format!("{P}.fast_factor_max"),
                    format!("{v} is outside 1..={}", FileLimits::MAX_FAST_FACTOR),
                    format!(
                        "use at most {} ({} is the default, 1 means no fast mode): gateways budget \
                         each client for fast_factor_max x lambda_p + lambda_l + lambda_d, {VERSION_1}",
                        FileLimits::MAX_FAST_FACTOR,
                        d.fast_factor_max
                    ),
                )
            })?,
    };
    Ok(Some(FileLimits { max_file_bytes, fast_factor_max }))
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
        file_limits: parse_file_limits(raw)?,
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
