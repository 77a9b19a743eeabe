use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::runtime::ClientBudgets;
use chacha20::ChaCha20Rng;
use qanat_link::LinkSecretKey;
use qanat_mailbox::Limits;
use qanat_packet::{Geometry, Scheme};
use qanat_pki::IdentitySecret;
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, FileLimits, IdentityKey, Parameters, Rate};
use rand_core::SeedableRng as _;

fn addr(s: &str) -> LinkAddress {
    LinkAddress::parse(s).unwrap()
}

fn authorities(n: usize) -> Vec<AuthorityPeer> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    (0..n)
        .map(|i| AuthorityPeer {
            identity: IdentitySecret::generate(&mut rng).public(),
            link_key: LinkSecretKey::generate(&mut rng).public_key().clone(),
            address: addr(&format!("127.0.0.1:{}", 7001 + i)),
        })
        .collect()
}

/// The config an example of `role` is: every optional setting at its default.
fn example_config(role: RoleConfig) -> NodeConfig {
    let network = NetworkConfig::new(
        "devnet",
        EpochPeriod::DEFAULT,
        authorities(3),
        Geometry::default_for(DEFAULT_SCHEME),
    )
    .unwrap();
    NodeConfig::new(role, PathBuf::from("data"), addr("127.0.0.1:7101"), network)
}

/// The example file of `role`, as `qanat node example-config` renders it.
fn example(role: RoleConfig) -> String {
    example_config(role).render(Path::new(""))
}

fn authority_role(allowed_nodes: Vec<IdentityKey>) -> RoleConfig {
    let parameters = Parameters::default_for(DEFAULT_SCHEME);
    RoleConfig::Authority(AuthorityRoleConfig::new(allowed_nodes.into_iter().collect(), parameters))
}

fn gateway_role() -> RoleConfig {
    RoleConfig::Gateway(GatewayRoleConfig::new(addr("127.0.0.1:7201"), Path::new("data")))
}

fn gateway_text() -> String {
    example(gateway_role())
}

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml_str(text, Path::new("/etc/qanat"))
}

/// Asserts `text` is refused for `field`, with `words` in the message.
fn refused(text: &str, field: &str, words: &str) -> ConfigError {
    let err = parse(text).unwrap_err();
    assert_eq!(err.field(), Some(field), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(words), "{msg}");
    assert!(msg.contains("; "), "no fix in: {msg}");
    err
}

#[test]
fn rendered_examples_parse_and_validate_for_every_role() {
    let allowed = authorities(2).into_iter().map(|a| a.identity).collect::<Vec<_>>();
    let auth = parse(&example(authority_role(allowed.clone()))).unwrap();
    let RoleConfig::Authority(a) = &auth.role else { panic!("{auth:?}") };
    assert_eq!(a.allowed_nodes, allowed.into_iter().collect());
    assert_eq!(a.parameters, Parameters::default_for(DEFAULT_SCHEME));
    assert_eq!(auth.network.authorities, authorities(3));
    assert_eq!(auth.network.authority_set.len(), 3);
    assert_eq!(auth.data_dir, Path::new("/etc/qanat/data"));

    let mix = parse(&example(RoleConfig::Mix)).unwrap();
    assert!(matches!(mix.role, RoleConfig::Mix));
    assert_eq!(mix.listen, addr("127.0.0.1:7101"));
    assert_eq!(mix.metrics, None);
    assert_eq!(mix.network.epoch_period, EpochPeriod::DEFAULT);

    let gw = parse(&gateway_text()).unwrap();
    let RoleConfig::Gateway(g) = &gw.role else { panic!("{gw:?}") };
    assert_eq!(g.client_listen, addr("127.0.0.1:7201"));
    assert_eq!(g.store, StoreConfig::Sqlite { path: PathBuf::from("/etc/qanat/data/mailboxes.sqlite") });
    assert_eq!(g.limits, Limits::default());
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("gw.toml");
    std::fs::write(&path, gateway_text()).unwrap();
    let c = NodeConfig::load(&path).unwrap();
    assert_eq!(c.data_dir, tmp.path().join("data"));

    std::fs::write(&path, gateway_text().replace("retention_days = 30", "retention_days = 0")).unwrap();
    let msg = NodeConfig::load(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}: gateway.retention_days: ", path.display())), "{msg}");

    let err = NodeConfig::load(&tmp.path().join("missing.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

#[test]
fn a_short_link_key_names_the_authority_and_the_fix() {
    let text = gateway_text();
    let second = hex::encode(authorities(3)[1].link_key.to_bytes());
    let err = refused(
        &text.replace(&second, "0123456789"),
        "network.authorities[1].link_key",
        "expected 2432 hex characters (a 1216-byte link public key), got 10",
    );
    assert!(err.to_string().contains("qanat node show-keys"), "{err}");
}

#[test]
fn unknown_fields_are_errors_naming_the_field() {
    let text = gateway_text().replace("retention_days = 30", "retention_dayz = 30");
    refused(&text, "gateway.retention_dayz", "unknown field `retention_dayz`");
    let text = format!("colour = \"blue\"\n{}", gateway_text());
    refused(&text, "colour", "unknown field");
    let text =
        gateway_text().replace("address = \"127.0.0.1:7002\"", "address = \"127.0.0.1:7002\"\nport = 3");
    refused(&text, "network.authorities[1].port", "unknown field");
}

#[test]
fn missing_and_mistyped_fields_are_errors() {
    let text = gateway_text().replace("listen = \"127.0.0.1:7101\"\n", "");
    refused(&text, "listen", "missing field `listen`");
    let text = gateway_text().replace("client_listen = \"127.0.0.1:7201\"\n", "");
    refused(&text, "gateway.client_listen", "missing field");
    let text = gateway_text().replace("retention_days = 30", "retention_days = \"thirty\"");
    refused(&text, "gateway.retention_days", "line ");
}

#[test]
fn invalid_values_name_their_field() {
    let gw = gateway_text();
    refused(&gw.replace("role = \"gateway\"", "role = \"relay\""), "role", "\"relay\"");
    refused(&gw.replace("listen = \"127.0.0.1:7101\"", "listen = \"localhost\""), "listen", "host:port");
    refused(&gw.replace("# metrics = \"127.0.0.1:9100\"", "metrics = \"nowhere\""), "metrics", "nowhere");
    refused(&gw.replace("name = \"devnet\"", "name = \"Dev Net\""), "network.name", "network name");
    refused(
        &gw.replace("epoch_period_secs = 1200", "epoch_period_secs = 0"),
        "network.epoch_period_secs",
        "outside",
    );
    refused(
        &gw.replace("sqlite_path = \"mailboxes.sqlite\"", "sqlite_path = \"../escape.sqlite\""),
        "gateway.sqlite_path",
        "inside data_dir",
    );
    refused(&gw.replace("store = \"sqlite\"", "store = \"postgres\""), "gateway.store", "postgres");
    refused(
        &gw.replace("max_messages_per_mailbox = 10000", "max_messages_per_mailbox = 0"),
        "gateway.max_messages_per_mailbox",
        "0",
    );
    let first = hex::encode(authorities(3)[0].identity.as_bytes());
    refused(&gw.replace(&first, &"zz".repeat(32)), "network.authorities[0].identity_key", "hexadecimal");
    let second = hex::encode(authorities(3)[1].identity.as_bytes());
    refused(&gw.replace(&second, &first), "network.authorities[1].identity_key", "twice");
}

#[test]
fn role_sections_must_match_the_role() {
    let gw = gateway_text();
    refused(&gw.replace("role = \"gateway\"", "role = \"mix\""), "gateway", "not used");
    let mix = example(RoleConfig::Mix);
    refused(&mix.replace("role = \"mix\"", "role = \"gateway\""), "gateway", "needs a [gateway] table");
    refused(
        &mix.replace("role = \"mix\"", "role = \"authority\""),
        "authority",
        "needs an [authority] table",
    );
}

#[test]
fn redis_store_is_parsed_and_validated() {
    let gw = gateway_text();
    let with_redis = gw.replace("# [gateway.redis]\n# seed_nodes", "[gateway.redis]\nseed_nodes");
    let err = refused(&with_redis, "gateway.redis", "only used with store = \"redis\"");
    assert!(matches!(err, ConfigError::Invalid { .. }));
    let redis_store = with_redis.replace("store = \"sqlite\"", "store = \"redis\"");
    let store = |text: &str| match parse(text).unwrap().role {
        RoleConfig::Gateway(g) => g.store,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        store(&redis_store),
        StoreConfig::Redis {
            seed_nodes: vec![addr("10.0.0.11:7000"), addr("10.0.0.12:7000")],
            key_prefix: "qanat".into(),
            wait_timeout: Duration::from_secs(1),
            username: None,
            password_file: None,
            trust_persistence_unverified: false,
        }
    );
    let full = redis_store
        .replace("# key_prefix = \"qanat\"", "key_prefix = \"gw-1\"")
        .replace("# wait_timeout_ms = 1000", "wait_timeout_ms = 250")
        .replace("# username", "username")
        .replace("# password_file", "password_file")
        .replace("# trust_persistence_unverified = false", "trust_persistence_unverified = true");
    assert_eq!(
        store(&full),
        StoreConfig::Redis {
            seed_nodes: vec![addr("10.0.0.11:7000"), addr("10.0.0.12:7000")],
            key_prefix: "gw-1".into(),
            wait_timeout: Duration::from_millis(250),
            username: Some("qanat-gateway".into()),
            password_file: Some(PathBuf::from("/etc/qanat/data/redis-password")),
            trust_persistence_unverified: true,
        }
    );
    refused(
        &redis_store.replace("\"10.0.0.12:7000\"]", "\"bad address\"]"),
        "gateway.redis.seed_nodes[1]",
        "host:port",
    );
    refused(
        &redis_store.replace("[\"10.0.0.11:7000\", \"10.0.0.12:7000\"]", "[]"),
        "gateway.redis.seed_nodes",
        "empty",
    );
    refused(&full.replace("\"gw-1\"", "\"a{b}\""), "gateway.redis.key_prefix", "not a valid key prefix");
    refused(&full.replace("= 250", "= 0"), "gateway.redis.wait_timeout_ms", "outside");
    refused(
        &full.replace("\"redis-password\"", "\"../secret\""),
        "gateway.redis.password_file",
        "inside data_dir",
    );
    refused(
        &gw.replace("store = \"sqlite\"", "store = \"redis\""),
        "gateway.redis",
        "needs a [gateway.redis]",
    );
}

#[test]
fn authority_parameters_default_and_are_checked() {
    let auth = example(authority_role(vec![]));
    // Without the table, the defaults.
    let cut = auth.find("\n# The network parameters").unwrap();
    let bare = &auth[..cut];
    let c = parse(bare).unwrap();
    let RoleConfig::Authority(a) = &c.role else { panic!() };
    assert_eq!(a.parameters, Parameters::default_for(DEFAULT_SCHEME));

    let custom = auth
        .replace("scheme = \"x25519-kem\"", "scheme = \"xwing\"")
        .replace("nr_hops = 5\nforward_payload_len = 1536\n", "")
        .replace("lambda_m = 2", "lambda_m = 3.5")
        .replace("epoch_period_secs = 1200", "epoch_period_secs = 60");
    let c = parse(&custom).unwrap();
    let RoleConfig::Authority(a) = &c.role else { panic!() };
    assert_eq!(a.parameters.scheme(), Scheme::XWing);
    assert_eq!(a.parameters.lambda_m(), Rate::from_milli_per_sec(3500));
    assert_eq!(a.parameters.epoch_period(), EpochPeriod::from_secs(60).unwrap());

    refused(&auth.replace("scheme = \"x25519-kem\"", "scheme = \"rsa\""), "network.scheme", "rsa");
    refused(&auth.replace("mix_layers = 3", "mix_layers = 0"), "authority.parameters.mix_layers", "outside");
    refused(&auth.replace("nr_hops = 5", "nr_hops = 4"), "authority.parameters.mix_layers", "at least 5");
    refused(&auth.replace("nr_hops = 5", "nr_hops = 99"), "network.nr_hops", "geometry");
    refused(
        &auth.replace("forward_payload_len = 1536", "forward_payload_len = 0"),
        "network.forward_payload_len",
        "geometry",
    );
    refused(&auth.replace("lambda_p = 0.2", "lambda_p = -1.0"), "authority.parameters.lambda_p", "rate");
    refused(&auth.replace("lambda_m = 2", "lambda_m = 0.1"), "authority.parameters", "(L − 1)·λ_M/μ < 2");
    refused(
        &auth.replace("mean_delay_ms = 1000", "mean_delay_ms = 0"),
        "authority.parameters.mean_delay_ms",
        "outside",
    );
}

/// `max_file_bytes` and `fast_factor_max` are the operator's switch to version 2 of the
/// directory: absent, version 1 (and the file says nothing of them); either set, version 2 with
/// the other at its default; out of range, an error naming the line and the fix.
#[test]
fn file_limits_switch_the_authority_to_version_2() {
    let auth = example(authority_role(vec![]));
    assert!(!auth.contains("max_file_bytes") && !auth.contains("fast_factor_max"), "{auth}");
    let limits = |text: &str| {
        let c = parse(text).unwrap();
        let RoleConfig::Authority(a) = &c.role else { panic!() };
        (a.parameters.version(), a.parameters.file_limits())
    };
    assert_eq!(limits(&auth), (1, FileLimits::VERSION_1));
    let with = |lines: &str| auth.replace("lambda_m = 2\n", &format!("lambda_m = 2\n{lines}\n"));
    let set = |max_file_bytes, fast_factor_max| (2, FileLimits { max_file_bytes, fast_factor_max });
    assert_eq!(limits(&with("max_file_bytes = 8388608\nfast_factor_max = 2")), set(8 << 20, 2));
    assert_eq!(limits(&with("max_file_bytes = 1000")), set(1000, 4));
    assert_eq!(limits(&with("fast_factor_max = 1")), set(4 << 20, 1));
    assert_eq!(limits(&with("fast_factor_max = 8\nmax_file_bytes = 67108864")), set(64 << 20, 8));
    // Version 2 reads back equal, both lines written whichever were set.
    let c = parse(&with("fast_factor_max = 3")).unwrap();
    assert_round_trip(&c);
    let text = c.render(Path::new("/etc/qanat"));
    assert!(text.contains("\nmax_file_bytes = 4194304\nfast_factor_max = 3\n"), "{text}");

    let f = "authority.parameters.fast_factor_max";
    refused(&with("fast_factor_max = 0"), f, "use 1 for no fast mode");
    refused(&with("fast_factor_max = 9"), f, "9 is outside 1..=8");
    refused(&with("fast_factor_max = -1"), f, "-1 is outside 1..=8");
    let err = refused(&with("fast_factor_max = 300"), f, "300 is outside 1..=8");
    assert!(err.to_string().contains("keep the directory at version 1"), "{err}");
    let m = "authority.parameters.max_file_bytes";
    refused(&with("max_file_bytes = 0"), m, "0 is not a size between 1 and 67108864 bytes");
    refused(&with("max_file_bytes = 67108865"), m, "64 MiB");
    refused(&with("max_file_bytes = 4294967296"), m, "4294967296 is not a size");
    refused(&with("max_file_bytes = -4"), m, "-4 is not a size");
    // A misspelt key is refused as any other.
    assert!(parse(&with("max_file_size = 10")).unwrap_err().to_string().contains("max_file_size"));
}

// Finding: `gateway.fault_drop_rate`, fault injection that acknowledges packets and then drops
// them, was an ordinary production setting.
#[test]
fn fault_injection_lives_in_a_danger_table_that_needs_an_explicit_flag() {
    let gw = gateway_text();
    // The old place is refused, naming the new one.
    let old = format!("{gw}fault_drop_rate = 0.1\n");
    let err = refused(&old, "gateway.fault_drop_rate", "[danger]");
    assert!(err.to_string().contains("--allow-danger"), "{err}");
    // In [danger] it parses, but the node refuses to run it unless allowed.
    let text = format!("{gw}\n[danger]\nfault_drop_rate = 0.1\n");
    let mut config = parse(&text).unwrap();
    assert_eq!(config.danger.as_ref().map(|d| d.fault_drop_rate), Some(0.1));
    let err = config.check_danger().unwrap_err();
    assert_eq!(err.field(), Some("danger"));
    assert!(err.to_string().contains("--allow-danger"), "{err}");
    config.allow_danger();
    assert!(config.check_danger().is_ok());
    // Out of range, or on a node that is not a gateway.
    refused(&format!("{gw}\n[danger]\nfault_drop_rate = 0.9\n"), "danger.fault_drop_rate", "outside");
    let mix = example(RoleConfig::Mix);
    refused(
        &format!("{mix}\n[danger]\nfault_drop_rate = 0.1\n"),
        "danger.fault_drop_rate",
        "only used by gateways",
    );
    // Without the table there is nothing to allow.
    let plain = parse(&gw).unwrap();
    assert!(plain.danger.is_none());
    assert!(plain.check_danger().is_ok());
}

#[test]
fn a_hostile_mix_is_a_danger_setting_of_mixes_only() {
    let mix = example(RoleConfig::Mix);
    let text = format!("{mix}\n[danger]\nwithhold_rate = 0.3\nreplay_copies = 2\nforge_copies = 1\n");
    let config = parse(&text).unwrap();
    let h = config.danger.as_ref().unwrap().hostile_mix;
    assert_eq!((h.withhold_rate, h.replay_copies, h.forge_copies), (0.3, 2, 1));
    assert!(h.is_active());
    assert!(config.check_danger().is_err(), "needs --allow-danger");
    refused(&format!("{mix}\n[danger]\nwithhold_rate = 1.5\n"), "danger.withhold_rate", "outside");
    refused(&format!("{mix}\n[danger]\nreplay_copies = 9\n"), "danger.replay_copies", "outside");
    refused(&format!("{mix}\n[danger]\nforge_copies = 100\n"), "danger.forge_copies", "outside");
    let gw = gateway_text();
    refused(&format!("{gw}\n[danger]\nreplay_copies = 1\n"), "danger.replay_copies", "only used by mixes");
    // Without those lines a mix is honest.
    let plain = parse(&format!("{mix}\n[danger]\n")).unwrap();
    assert!(!plain.danger.unwrap().hostile_mix.is_active());
}

#[test]
fn budgets_default_are_rendered_and_are_checked() {
    let gw = gateway_text();
    let cfg = parse(&gw).unwrap();
    assert_eq!(cfg.listener, ListenerConfig::default());
    let RoleConfig::Gateway(g) = &cfg.role else { panic!("{cfg:?}") };
    assert_eq!(g.clients, ClientBudgets::default());
    // The listener's defaults are the link layer's.
    let mut link = qanat_link::LinkConfig::new(qanat_link::FrameSize::for_packet_len(2_204).unwrap());
    let before = format!("{link:?}");
    cfg.listener.apply(&mut link);
    assert_eq!(format!("{link:?}"), before);
    // Every role has the [listener] table.
    assert!(example(RoleConfig::Mix).contains("[listener]"));

    // Changed values are read.
    let changed = gw
        .replace("max_handshakes_per_ip = 16", "max_handshakes_per_ip = 4")
        .replace("handshake_timeout_secs = 10", "handshake_timeout_secs = 20")
        .replace("client_packet_slack = 4.0", "client_packet_slack = 2.5")
        .replace("registration_burst = 256", "registration_burst = 8");
    let cfg = parse(&changed).unwrap();
    assert_eq!(cfg.listener.max_handshakes_per_ip, 4);
    assert_eq!(cfg.listener.handshake_timeout, Duration::from_secs(20));
    let RoleConfig::Gateway(g) = &cfg.role else { panic!("{cfg:?}") };
    assert_eq!((g.clients.packet_slack, g.clients.registration_burst), (2.5, 8));

    // Out of range, or a per-address bound above the whole.
    refused(
        &gw.replace("max_connections = 4096", "max_connections = 0"),
        "listener.max_connections",
        "outside",
    );
    refused(
        &gw.replace("max_handshakes_per_ip = 16", "max_handshakes_per_ip = 300"),
        "listener.max_handshakes_per_ip",
        "more than listener.max_handshakes",
    );
    refused(
        &gw.replace("handshake_timeout_secs = 10", "handshake_timeout_secs = 1"),
        "listener.handshake_timeout_secs",
        "2G",
    );
    refused(
        &gw.replace("client_packet_slack = 4.0", "client_packet_slack = 0.5"),
        "gateway.client_packet_slack",
        "honest clients",
    );
    refused(
        &gw.replace("client_packet_slack = 4.0", "client_packet_slack = nan"),
        "gateway.client_packet_slack",
        "outside",
    );
    refused(
        &gw.replace("registrations_per_second = 2.0", "registrations_per_second = 0.0"),
        "gateway.registrations_per_second",
        "outside",
    );
    refused(
        &gw.replace("client_max_connections_per_ip = 64", "client_max_connections_per_ip = 5000"),
        "gateway.client_max_connections_per_ip",
        "more than",
    );
    refused(
        &gw.replace("max_mailboxes_per_session = 4096", "max_mailboxes_per_session = 0"),
        "gateway.max_mailboxes_per_session",
        "outside",
    );
    // A mix has [listener] but no client budgets.
    let mix = example(RoleConfig::Mix);
    assert!(!mix.contains("client_packet_slack"));
    refused(&format!("{mix}\nbogus = 1\n"), "listener.bogus", "");
}

// The one renderer (`render.rs`) and validation are inverses: what the devnet and
// `qanat node example-config` write is exactly what a node then runs.

/// Renders `c` for a file in `base`, reads it back, and also loads it from a file in a fresh
/// directory; both must give `c`.
fn assert_round_trip(c: &NodeConfig) {
    let base = c.data_dir.parent().unwrap();
    let text = c.render(base);
    assert_eq!(&NodeConfig::from_toml_str(&text, base).unwrap(), c, "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let mut moved = c.clone();
    moved.data_dir = tmp.path().join(c.data_dir.strip_prefix(base).unwrap());
    if let RoleConfig::Gateway(g) = &mut moved.role {
        match &mut g.store {
            StoreConfig::Sqlite { path } => {
                *path = moved.data_dir.join(path.strip_prefix(&c.data_dir).unwrap())
            }
            StoreConfig::Redis { password_file: Some(p), .. } => {
                *p = moved.data_dir.join(p.strip_prefix(&c.data_dir).unwrap())
            }
            StoreConfig::Redis { .. } => {}
        }
    }
    let path = tmp.path().join("node.toml");
    std::fs::write(&path, moved.render(tmp.path())).unwrap();
    assert_eq!(NodeConfig::load(&path).unwrap(), moved);
}

#[test]
fn every_example_reads_back_equal() {
    let allowed = authorities(2).into_iter().map(|a| a.identity).collect::<Vec<_>>();
    for role in [authority_role(allowed), RoleConfig::Mix, gateway_role()] {
        // As parsed from /etc/qanat: data_dir and the store's file are absolute.
        let c = parse(&example(role)).unwrap();
        assert_round_trip(&c);
    }
}

#[test]
fn a_config_with_every_setting_changed_reads_back_equal() {
    let mut gw = parse(&gateway_text()).unwrap();
    gw.metrics = Some("127.0.0.1:9101".parse().unwrap());
    gw.listener = ListenerConfig {
        max_connections: 100,
        max_connections_per_ip: 7,
        max_handshakes: 50,
        max_handshakes_per_ip: 3,
        handshake_timeout: Duration::from_secs(30),
    };
    gw.danger = Some(DangerConfig { fault_drop_rate: 0.1, ..Default::default() });
    let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
    g.client_listen = addr("gw.example.org:443");
    g.store = StoreConfig::Sqlite { path: gw.data_dir.join("db/mail.sqlite") };
    g.limits.retention = Duration::from_secs(7 * 86_400);
    g.limits.max_messages_per_mailbox = 12;
    g.limits.max_bytes_per_mailbox = 34_567;
    g.limits.max_payload_len = 890;
    g.clients.max_connections = 99;
    g.clients.max_connections_per_ip = 9;
    g.clients.queue_frames = 8;
    g.clients.packet_slack = 2.3;
    g.clients.packet_burst = 10_000;
    g.clients.registrations_per_second = 0.001;
    g.clients.registration_burst = 1;
    g.clients.max_mailboxes = 5;
    assert_round_trip(&gw);

    // Redis, with and without its optional settings.
    let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
    g.store = StoreConfig::Redis {
        seed_nodes: vec![addr("10.0.0.11:7000"), addr("[::1]:7001")],
        key_prefix: "gw-1".into(),
        wait_timeout: Duration::from_millis(250),
        username: Some("qanat \"gw\"".into()),
        password_file: Some(gw.data_dir.join("secrets/redis")),
        trust_persistence_unverified: true,
    };
    assert_round_trip(&gw);
    let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
    g.store = StoreConfig::Redis {
        seed_nodes: vec![addr("redis.example:7000")],
        key_prefix: "qanat".into(),
        wait_timeout: Duration::from_secs(1),
        username: None,
        password_file: None,
        trust_persistence_unverified: false,
    };
    assert_round_trip(&gw);

    // A hostile mix, on another network.
    let mut mix = parse(&example(RoleConfig::Mix)).unwrap();
    mix.network = NetworkConfig::new(
        "other-net",
        EpochPeriod::from_secs(60).unwrap(),
        authorities(1),
        Geometry::new(Scheme::XWing, 3000, 7).unwrap(),
    )
    .unwrap();
    let hostile_mix = HostileMix { withhold_rate: 0.3, replay_copies: 2, forge_copies: 8 };
    mix.danger = Some(DangerConfig { hostile_mix, ..Default::default() });
    assert_round_trip(&mix);
    // An honest mix with an empty [danger] table.
    mix.danger = Some(DangerConfig::default());
    assert_round_trip(&mix);

    // An authority voting for its own parameters, on that network.
    let mut auth = parse(&example(authority_role(vec![]))).unwrap();
    auth.network = mix.network.clone();
    let g = &auth.network.geometry;
    let parameters = Parameters::new(qanat_pki::ParametersConfig {
        scheme: g.scheme(),
        nr_hops: g.nr_hops(),
        forward_payload_len: g.forward_payload_len(),
        mix_layers: 4,
        mean_delay_ms: 20,
        lambda_p: Rate::from_micro_per_sec(333_333),
        lambda_l: Rate::from_micro_per_sec(1),
        lambda_d: Rate::from_milli_per_sec(125),
        lambda_m: Rate::from_micro_per_sec(123_456_789),
        epoch_period: auth.network.epoch_period,
        file_limits: None,
    })
    .unwrap();
    let allowed = authorities(3).into_iter().map(|a| a.identity).collect();
    auth.role = RoleConfig::Authority(AuthorityRoleConfig::new(allowed, parameters));
    assert_round_trip(&auth);
}

#[test]
fn what_a_file_cannot_say_does_not_read_back_equal() {
    // The check is not vacuous: settings that are not in the file are caught.
    let mut gw = parse(&gateway_text()).unwrap();
    let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
    g.clients.packet_rate = Some(5.0);
    let base = Path::new("/etc/qanat");
    assert_ne!(NodeConfig::from_toml_str(&gw.render(base), base).unwrap(), gw);
    let mut gw = parse(&gateway_text()).unwrap();
    let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
    g.limits.retention = Duration::from_secs(86_400 + 1);
    assert_ne!(NodeConfig::from_toml_str(&gw.render(base), base).unwrap(), gw);
    // A store outside the data directory is refused when read back.
    let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
    g.store = StoreConfig::Sqlite { path: PathBuf::from("/var/elsewhere.sqlite") };
    let err = NodeConfig::from_toml_str(&gw.render(base), base).unwrap_err();
    assert_eq!(err.field(), Some("gateway.sqlite_path"));
    // A danger setting of another role is written, and refused when read back.
    let mut mix = parse(&example(RoleConfig::Mix)).unwrap();
    mix.danger = Some(DangerConfig { fault_drop_rate: 0.2, ..Default::default() });
    let err = NodeConfig::from_toml_str(&mix.render(base), base).unwrap_err();
    assert_eq!(err.field(), Some("danger.fault_drop_rate"));
}

proptest::proptest! {
    /// Any valid numeric setting, floats included, reads back as the same value.
    #[test]
    fn numeric_settings_read_back_equal(
        conns in 1usize..=1_000_000,
        per_ip_share in 0.0f64..=1.0,
        handshakes in 1usize..=65_536,
        timeout in 5u64..=300,
        slack in 1.0f64..=1000.0,
        registrations in 0.001f64..=10_000.0,
        burst in 1u32..=1_000_000,
        fault in 0.0f64..=0.5,
        withhold in 0.0f64..=1.0,
        lambda_p in 1u64..=10_000_000_000,
        lambda_m in 1_000_000u64..=10_000_000_000,
        file_limits in proptest::option::of((1..=FileLimits::MAX_FILE_BYTES, 1..=FileLimits::MAX_FAST_FACTOR)),
    ) {
        let per_ip = ((conns as f64 * per_ip_share) as usize).max(1);
        let mut gw = parse(&gateway_text()).unwrap();
        gw.listener.max_connections = conns;
        gw.listener.max_connections_per_ip = per_ip;
        gw.listener.max_handshakes = handshakes;
        gw.listener.max_handshakes_per_ip = handshakes.min(per_ip);
        gw.listener.handshake_timeout = Duration::from_secs(timeout);
        gw.danger = Some(DangerConfig { fault_drop_rate: fault, ..Default::default() });
        let RoleConfig::Gateway(g) = &mut gw.role else { panic!() };
        g.clients.packet_slack = slack;
        g.clients.registrations_per_second = registrations;
        g.clients.packet_burst = burst;
        let base = Path::new("/etc/qanat");
        proptest::prop_assert_eq!(&NodeConfig::from_toml_str(&gw.render(base), base).unwrap(), &gw);

        let mut mix = parse(&example(RoleConfig::Mix)).unwrap();
        let hostile_mix = HostileMix { withhold_rate: withhold, ..Default::default() };
        mix.danger = Some(DangerConfig { hostile_mix, ..Default::default() });
        proptest::prop_assert_eq!(&NodeConfig::from_toml_str(&mix.render(base), base).unwrap(), &mix);

        let mut auth = parse(&example(authority_role(vec![]))).unwrap();
        let RoleConfig::Authority(a) = &mut auth.role else { panic!() };
        let mut p = a.parameters.config();
        p.lambda_p = Rate::from_micro_per_sec(lambda_p);
        p.lambda_m = Rate::from_micro_per_sec(lambda_m);
        p.file_limits =
            file_limits.map(|(max_file_bytes, fast_factor_max)| FileLimits { max_file_bytes, fast_factor_max });
        a.parameters = Parameters::new(p).unwrap();
        proptest::prop_assert_eq!(&NodeConfig::from_toml_str(&auth.render(base), base).unwrap(), &auth);
    }
}
