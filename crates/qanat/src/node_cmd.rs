//! `qanat node run | show-keys | example-config`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use qanat_link::LinkSecretKey;
use qanat_node::NodeConfig;
use qanat_node::config::{
    AuthorityPeer, AuthorityRoleConfig, DEFAULT_SCHEME, GatewayRoleConfig, NetworkConfig, RoleConfig,
};
use qanat_node::keys::NodeKeys;
use qanat_node::service::{self, KEY_WINDOW, wall_now};
use qanat_packet::Geometry;
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, IdentitySecret, Parameters};

/// Loads and validates a config, with the error naming the field and the fix.
pub(crate) fn load(path: &Path) -> Result<NodeConfig> {
    NodeConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `qanat node run --config FILE [--allow-danger]`: runs the node until SIGINT or SIGTERM.
pub(crate) fn run(path: &Path, allow_danger: bool) -> Result<()> {
    let mut config = load(path)?;
    if allow_danger {
        config.allow_danger();
    }
    config.check_danger().map_err(|e| anyhow::anyhow!("{}", e.with_path(path)))?;
    if config.danger.is_some() {
        tracing::warn!("running with a [danger] table (--allow-danger): a test network only");
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    rt.block_on(async move {
        let node = service::start(config).await?;
        tracing::info!(role = node.role(), "running; SIGINT or SIGTERM stops the node");
        wait_for_signal().await?;
        tracing::info!("stopping");
        if tokio::time::timeout(Duration::from_secs(15), node.shutdown()).await.is_err() {
            tracing::warn!("shutdown took longer than 15 s; exiting anyway");
        }
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// `qanat node show-keys --config FILE`: the public keys others put in their configs.
pub(crate) fn show_keys(config: &Path) -> Result<()> {
    let config = load(config)?;
    let mut rng = rand::rng();
    let net = &config.network;
    let keys = NodeKeys::open(
        &config.data_dir,
        KEY_WINDOW,
        wall_now(),
        net.epoch_period,
        net.geometry.scheme(),
        &mut rng,
    )?;
    let identity = keys.identity().public();
    println!("# {} node: its public keys (created on first use, kept in data_dir/keys).", config.role.name());
    println!("# Authorities list a mix or gateway's identity_key in authority.allowed_nodes;");
    println!("# every node lists each authority as a [[network.authorities]] table.");
    println!("identity_key = \"{}\"", hex::encode(identity.as_bytes()));
    println!("link_key = \"{}\"", hex::encode(keys.link().public_key().to_bytes()));
    println!("address = \"{}\"", config.listen);
    Ok(())
}

/// `qanat node example-config --role ROLE`: a commented config to start from: the config of
/// `role` with every optional setting at its default, rendered by the node's one renderer.
pub(crate) fn example_config(role: &str, listen: &str) -> Result<()> {
    let listen = LinkAddress::parse(listen).map_err(|e| anyhow::anyhow!("--listen {listen:?}: {e}"))?;
    let data_dir = PathBuf::from("data");
    let role = match role {
        "authority" => RoleConfig::Authority(AuthorityRoleConfig::new(
            BTreeSet::new(),
            Parameters::default_for(DEFAULT_SCHEME),
        )),
        "mix" => RoleConfig::Mix,
        "gateway" => RoleConfig::Gateway(GatewayRoleConfig::new(
            LinkAddress::parse("127.0.0.1:7201").map_err(|e| anyhow::anyhow!("{e}"))?,
            &data_dir,
        )),
        other => bail!("--role {other:?}: use authority, mix or gateway"),
    };
    // A placeholder authority with fresh keys, so that the example parses as it is.
    let mut rng = rand::rng();
    let placeholder = AuthorityPeer {
        identity: IdentitySecret::generate(&mut rng).public(),
        link_key: LinkSecretKey::generate(&mut rng).public_key().clone(),
        address: LinkAddress::parse("127.0.0.1:7001").map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let network = NetworkConfig::new(
        "mynet",
        EpochPeriod::DEFAULT,
        vec![placeholder],
        Geometry::default_for(DEFAULT_SCHEME),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = NodeConfig::new(role, data_dir, listen, network);
    println!("# Replace the [[network.authorities]] table below (a placeholder with fresh keys)");
    println!("# with one table per authority of your network, from 'qanat node show-keys'.");
    print!("{}", config.render(Path::new("")));
    Ok(())
}
