//! Running a node from its configuration: what `qanat node run --config FILE` does.
//!
//! [`start`] opens the key store, builds the role's core and runtime, binds the metrics
//! endpoint and, for mixes and gateways, starts the directory loop; [`RunningNode::shutdown`]
//! stops everything in order. The directory loop of a mix or gateway, once a second or so:
//!
//! 1. rotates the packet keys when the epoch changes (new keys are on disk before they are
//!    published; expired ones are erased);
//! 2. uploads the signed descriptor for the epoch [`epochs::upload_target`] names to every
//!    authority, again every [`qanat_pki::heartbeat`] as a sign of life (the authorities vote
//!    only for nodes heard from in the last few heartbeats);
//! 3. fetches the documents [`epochs::wanted_documents`] names, verifies them against the
//!    configured authorities, and hands the runtime what each means ([`epochs::update_from`]).
//!
//! A node that misses an epoch's vote (or stopped sending heartbeats before it) is not in that
//! epoch's document: it gets no packets, and its peers stop routing to it (that is how a dead
//! mix is routed around from the next epoch).
//!
//! Logs name epochs and counts, never a key, address, mailbox or node.

/// Fetching and verifying documents, uploading descriptors (shared with clients).
pub use qanat_network::directory;
pub mod epochs;
pub mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use qanat_link::http::{self, MetricsServer, RenderMetrics};
use qanat_link::{LinkConfig, LinkMetrics, LinkSecretKey};
use qanat_mailbox::redis::{RedisConfig, RedisStore};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mailbox::{Limits, MailboxStore, StoreError};
use qanat_mixnet::{Gateway, GatewayConfig, Mix, MixConfig, ResendConfig, UnixMicros};
use qanat_packet::{Geometry, MailboxId, SecretKey};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{Authority, AuthorityConfig, Epoch, NodeDescriptor, Role};
use rand::SeedableRng as _;
use rand::rngs::{StdRng, SysRng};
use rand_core::Rng as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{NodeConfig, RoleConfig, StoreConfig};
use crate::keys::{KeyStoreError, KeyWindow, NodeKeys};
use crate::replay_log::{ReplayLog, ReplayLogError};
use crate::runtime::{
    AuthorityHandle, AuthorityLink, AuthorityRuntimeConfig, DocumentCache, GatewayHandle,
    GatewayRuntimeConfig, MixHandle, MixRuntimeConfig, PULL_ANSWER_DELAY, Updater, spawn_authority,
    spawn_gateway_with_replay_log, spawn_mix_with_replay_log,
};
use directory::{DirectoryClient, RequestError};
use metrics::{DirectoryStatus, Exposition};

/// The key window of a running node: descriptors carry three keys from the epoch they are for,
/// which is at most two epochs ahead, so keys exist up to four epochs ahead; one epoch behind is
/// kept for packets in flight.
pub const KEY_WINDOW: KeyWindow = KeyWindow { ahead: 4, grace: 1 };

/// How long a mix waits for a gateway's acknowledgement before it sends a packet again.
pub const RESEND_AFTER: Duration = Duration::from_secs(2);

/// How long a mix keeps sending a packet to a gateway that does not acknowledge it: the packet
/// keys' grace (a quarter of the epoch; past it the gateway could not unwrap the packet anyway),
/// and at least 30 s so that a gateway restart on a short test epoch is ridden out.
pub fn resend_give_up(period: qanat_pki::EpochPeriod) -> Duration {
    epochs::grace(period).max(Duration::from_secs(30))
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The config file was refused.
    #[error(transparent)]
    Config(crate::config::ConfigError),
    /// The key store could not be opened.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The replay log could not be read back.
    #[error(transparent)]
    ReplayLog(#[from] ReplayLogError),
    /// An address of the config did not resolve.
    #[error("cannot resolve {field}: {source}; check the address in the config")]
    Resolve {
        /// The config field.
        field: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on the address of {field}: {source}; is another process using the port?")]
    Bind {
        /// The config field.
        field: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The Redis password file could not be read.
    #[error("cannot read gateway.redis.password_file: {source}; check the path and its permissions")]
    PasswordFile {
        /// The cause.
        source: std::io::Error,
    },
    /// The mailbox store could not be opened.
    #[error("cannot open the mailbox store: {0}")]
    Store(#[from] StoreError),
    /// The authority core refused its configuration.
    #[error("the authority's configuration is inconsistent: {0}")]
    Authority(qanat_pki::ConfigError),
    /// The system's random number generator failed.
    #[error("the system's random number generator failed")]
    Rng,
    /// A task the node depends on failed.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The link frame size cannot carry the network's packets.
    #[error("no link frame size fits the network's packets; check [network] nr_hops and forward_payload_len")]
    FrameSize,
}

/// A running node.
#[derive(Debug)]
pub struct RunningNode {
    role: &'static str,
    link_addr: SocketAddr,
    client_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    inner: Inner,
    metrics_server: Option<MetricsServer>,
    directory: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// Housekeeping tasks (a gateway's retention), aborted at shutdown.
    background: Vec<JoinHandle<()>>,
    status: Arc<DirectoryStatus>,
}

#[derive(Debug)]
enum Inner {
    Authority(AuthorityHandle),
    Mix(MixHandle),
    Gateway(GatewayHandle),
}

impl RunningNode {
    /// `"authority"`, `"mix"` or `"gateway"`.
    pub fn role(&self) -> &'static str {
        self.role
    }
    /// The bound link address.
    pub fn link_addr(&self) -> SocketAddr {
        self.link_addr
    }
    /// The bound client address (gateways).
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client_addr
    }
    /// The bound metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }
    /// The node's place in the directory (mixes and gateways).
    pub fn status(&self) -> &DirectoryStatus {
        &self.status
    }

    /// Stops the node: the directory loop first, then the runtime (listeners close, links drop,
    /// a gateway's pending writes finish or go unacknowledged), then the metrics endpoint.
    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.directory {
            let _ = stop.send(true);
            let _ = task.await;
        }
        for t in self.background {
            t.abort();
        }
        match self.inner {
            Inner::Authority(h) => h.shutdown().await,
            Inner::Mix(h) => h.shutdown().await,
            Inner::Gateway(h) => h.shutdown().await,
        }
        if let Some(m) = self.metrics_server {
            m.shutdown().await;
        }
    }
}

pub use qanat_network::wall_now;

fn os_rng() -> Result<StdRng, ServiceError> {
    StdRng::try_from_rng(&mut SysRng).map_err(|_| ServiceError::Rng)
}

async fn resolve(field: &'static str, a: &LinkAddress) -> Result<SocketAddr, ServiceError> {
    http::resolve(a.as_str()).await.map_err(|source| ServiceError::Resolve { field, source })
}

/// The link settings of a network of `geometry`.
pub fn link_config(geometry: &Geometry) -> Result<LinkConfig, ServiceError> {
    qanat_network::link_config(geometry).map_err(|_| ServiceError::FrameSize)
}

/// Starts the node `config` describes.
pub async fn start(config: NodeConfig) -> Result<RunningNode, ServiceError> {
    config.check_danger().map_err(ServiceError::Config)?;
    let mut rng = os_rng()?;
    let net = &config.network;
    let geometry = net.geometry.clone();
    let period = net.epoch_period;
    let keys = NodeKeys::open(&config.data_dir, KEY_WINDOW, wall_now(), period, geometry.scheme(), &mut rng)?;
    let link_key = Arc::new(keys.link().clone());
    let mut link = link_config(&geometry)?;
    config.listener.apply(&mut link);
    let listen = resolve("listen", &config.listen).await?;
    let status = Arc::new(DirectoryStatus::default());
    let started = Instant::now();
    let role = config.role.name();
    // A gateway's verified documents, which its clients get through their pulls.
    let mut documents: Option<DocumentCache> = None;
    let mut background = Vec::new();

    let (inner, render, client_addr): (Inner, RenderMetrics, Option<SocketAddr>) = match &config.role {
        RoleConfig::Authority(a) => {
            let mut peers = Vec::new();
            for p in net.authorities.iter().filter(|p| p.identity != keys.identity().public()) {
                let addr = resolve("network.authorities.address", &p.address).await?;
                peers.push(AuthorityLink { identity: p.identity, addr, link_key: p.link_key.clone() });
            }
            let core = Authority::new(
                AuthorityConfig {
                    identity: keys.identity().clone(),
                    authorities: net.authority_set.clone(),
                    parameters: a.parameters.clone(),
                    allowed_nodes: a.allowed_nodes.clone(),
                },
                &mut rng,
            )
            .map_err(ServiceError::Authority)?;
            let rc = AuthorityRuntimeConfig {
                listen,
                link_key: link_key.clone(),
                link: link.clone(),
                peers,
                keep_documents: 4,
                peer_queue: 256,
            };
            let h = spawn_authority(core, rc)
                .await
                .map_err(|source| ServiceError::Bind { field: "listen", source })?;
            let probe = h.probe();
            let render: RenderMetrics = Arc::new(move || {
                let mut e = Exposition::default();
                e.info("qanat_node_info", "What this node is.", "role", "authority");
                e.gauge(
                    "qanat_uptime_seconds",
                    "Seconds since the node started.",
                    started.elapsed().as_secs_f64(),
                );
                e.gauge("qanat_epoch", "The current epoch.", Epoch::at(wall_now(), period).0 as f64);
                let (latest, served) = probe.documents();
                e.gauge(
                    "qanat_authority_latest_document_epoch",
                    "The latest epoch with a published document (0: none).",
                    latest.map_or(0.0, |x| x.0 as f64),
                );
                e.gauge("qanat_authority_documents_served", "Documents held for serving.", served as f64);
                metrics::authority(&mut e, &probe.runtime);
                e.links(&probe.links);
                e.finish()
            });
            tracing::info!(epoch = Epoch::at(wall_now(), period).0, "authority started");
            (Inner::Authority(h), render, None)
        }
        RoleConfig::Mix => {
            let id = keys.identity().public().node_id();
            let mut loop_recipient = [0u8; 32];
            rng.fill_bytes(&mut loop_recipient);
            let mut core = Mix::new(MixConfig::new(id, MailboxId(loop_recipient)), geometry.clone());
            let d = qanat_pki::ParametersConfig::default_for(geometry.scheme());
            core.set_cover(Duration::from_millis(u64::from(d.mean_delay_ms)), d.lambda_m.per_second());
            let rc = MixRuntimeConfig {
                listen,
                link_key: link_key.clone(),
                link: link.clone(),
                peers: HashMap::new(),
                resend: ResendConfig::new(RESEND_AFTER, resend_give_up(period)),
                clock: UnixMicros::from_unix_millis(wall_now()),
                hostile: config.danger.as_ref().map(|d| d.hostile_mix).unwrap_or_default(),
            };
            let log = ReplayLog::open(&config.data_dir, |e| keys.packet_key(Epoch(e)).is_some())?;
            let h = spawn_mix_with_replay_log(core, rc, os_rng()?, log)
                .await
                .map_err(|source| ServiceError::Bind { field: "listen", source })?;
            let probe = h.probe();
            let st = status.clone();
            let render: RenderMetrics = Arc::new(move || {
                let mut e = Exposition::default();
                e.info("qanat_node_info", "What this node is.", "role", "mix");
                let up = started.elapsed().as_secs_f64();
                e.gauge("qanat_uptime_seconds", "Seconds since the node started.", up);
                st.render(&mut e);
                metrics::mix(&mut e, &probe, up);
                e.links(&probe.links);
                e.finish()
            });
            (Inner::Mix(h), render, None)
        }
        RoleConfig::Gateway(g) => {
            documents = Some(DocumentCache::default());
            let documents = documents.clone().unwrap_or_default();
            let id = keys.identity().public().node_id();
            let core = Gateway::new(GatewayConfig::new(id), geometry.clone());
            let log = ReplayLog::open(&config.data_dir, |e| keys.packet_key(Epoch(e)).is_some())?;
            let client_listen = resolve("gateway.client_listen", &g.client_listen).await?;
            let rc = GatewayRuntimeConfig {
                listen,
                client_listen,
                link_key: link_key.clone(),
                link: link.clone(),
                peers: HashMap::new(),
                max_batch: 256,
                clock: UnixMicros::from_unix_millis(wall_now()),
                fault_drop_rate: config.danger.as_ref().map_or(0.0, |d| d.fault_drop_rate),
                documents: documents.clone(),
                pull_answer_delay: PULL_ANSWER_DELAY,
                clients: g.clients.clone(),
            };
            let limits = Limits { remember_deleted_ids: epochs::dedup_window(period), ..g.limits.clone() };
            let h = match &g.store {
                StoreConfig::Sqlite { path } => {
                    let (path, limits) = (path.clone(), limits.clone());
                    let store = tokio::task::spawn_blocking(move || {
                        SqliteStore::open(path, SqliteConfig { limits, ..SqliteConfig::default() })
                    })
                    .await
                    .map_err(|_| ServiceError::Internal("the store's opening task failed"))??;
                    start_gateway(core, Arc::new(store), rc, log, &mut background).await?
                }
                StoreConfig::Redis {
                    seed_nodes,
                    key_prefix,
                    wait_timeout,
                    username,
                    password_file,
                    trust_persistence_unverified,
                } => {
                    let password = match password_file {
                        Some(f) => Some(
                            std::fs::read_to_string(f)
                                .map_err(|source| ServiceError::PasswordFile { source })?
                                .trim()
                                .to_owned(),
                        ),
                        None => None,
                    };
                    let config = RedisConfig {
                        limits,
                        key_prefix: key_prefix.clone(),
                        username: username.clone(),
                        password,
                        trust_persistence_unverified: *trust_persistence_unverified,
                        ..RedisConfig::new(seed_nodes.iter().map(|a| a.as_str().to_owned()).collect())
                    }
                    .with_wait_timeout(*wait_timeout);
                    let store = RedisStore::connect(config).await?;
                    start_gateway(core, Arc::new(store), rc, log, &mut background).await?
                }
            };
            let probe = h.probe();
            let st = status.clone();
            let render: RenderMetrics = Arc::new(move || {
                let mut e = Exposition::default();
                e.info("qanat_node_info", "What this node is.", "role", "gateway");
                e.gauge(
                    "qanat_uptime_seconds",
                    "Seconds since the node started.",
                    started.elapsed().as_secs_f64(),
                );
                st.render(&mut e);
                metrics::gateway(&mut e, &probe);
                e.links(&probe.links);
                e.finish()
            });
            let client = h.client_addr();
            (Inner::Gateway(h), render, Some(client))
        }
    };

    let link_addr = match &inner {
        Inner::Authority(h) => h.local_addr(),
        Inner::Mix(h) => h.local_addr(),
        Inner::Gateway(h) => h.local_addr(),
    };
    let metrics_server = match config.metrics {
        Some(addr) => Some(
            MetricsServer::bind(addr, render)
                .await
                .map_err(|source| ServiceError::Bind { field: "metrics", source })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_server.as_ref().map(MetricsServer::local_addr);

    let directory = match &inner {
        Inner::Authority(_) => None,
        Inner::Mix(h) => Some((Role::Mix, h.updater())),
        Inner::Gateway(h) => Some((Role::Gateway, h.updater())),
    }
    .map(|(role, updater)| {
        let (stop, stop_rx) = watch::channel(false);
        let client = DirectoryClient::new(
            net.authorities.clone(),
            net.authority_set.clone(),
            link_key.clone(),
            link.clone(),
            Arc::new(LinkMetrics::default()),
        );
        let agent = Agent {
            role,
            keys,
            link_key: link_key.clone(),
            address: config.listen.clone(),
            geometry: geometry.clone(),
            period,
            client,
            updater,
            status: status.clone(),
            held: BTreeSet::new(),
            documents: documents.clone(),
            listed: BTreeSet::new(),
            uploaded: BTreeSet::new(),
            last_upload: None,
            rotated: None,
        };
        (stop, tokio::spawn(agent.run(stop_rx)))
    });
    if directory.is_some() {
        tracing::info!(role, epoch = Epoch::at(wall_now(), period).0, "node started");
    }
    Ok(RunningNode {
        role,
        link_addr,
        client_addr,
        metrics_addr,
        inner,
        metrics_server,
        directory,
        background,
        status,
    })
}

/// How often a gateway deletes messages older than its retention and forgets the ids of deleted
/// messages past their de-duplication window (`epochs::dedup_window`): an id stays at most this
/// much longer than the window.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(300);

/// Starts a gateway runtime over `store`, and its retention task (in `background`).
async fn start_gateway<S: MailboxStore>(
    core: Gateway,
    store: Arc<S>,
    rc: GatewayRuntimeConfig,
    log: ReplayLog,
    background: &mut Vec<JoinHandle<()>>,
) -> Result<GatewayHandle, ServiceError> {
    let h = spawn_gateway_with_replay_log(core, store.clone(), rc, log)
        .await
        .map_err(|source| ServiceError::Bind { field: "listen or gateway.client_listen", source })?;
    background.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(EXPIRE_EVERY);
        loop {
            every.tick().await;
            let now = crate::runtime::gateway::store_now();
            match store.expire(now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "messages past retention deleted"),
                Err(e) => tracing::warn!("retention: {e}"),
            }
        }
    }));
    Ok(h)
}

/// The directory loop of a mix or gateway.
struct Agent {
    role: Role,
    keys: NodeKeys,
    link_key: Arc<LinkSecretKey>,
    address: LinkAddress,
    geometry: Geometry,
    period: qanat_pki::EpochPeriod,
    client: DirectoryClient,
    updater: Updater,
    status: Arc<DirectoryStatus>,
    /// Epochs whose document the runtime has.
    held: BTreeSet<Epoch>,
    /// A gateway's cache of verified documents, served to its clients.
    documents: Option<DocumentCache>,
    /// Epochs whose document lists this node.
    listed: BTreeSet<Epoch>,
    /// Epochs whose descriptor a majority of authorities accepted.
    uploaded: BTreeSet<Epoch>,
    /// When the descriptor was last uploaded (it is uploaded again every heartbeat, as a sign
    /// of life the authorities require at their vote).
    last_upload: Option<Instant>,
    /// The epoch of the last key rotation.
    rotated: Option<Epoch>,
}

impl Agent {
    fn tick(&self) -> Duration {
        Duration::from_millis((self.period.as_millis() / 20).clamp(100, 1_000))
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let Ok(mut rng) = os_rng() else {
            tracing::error!("the system's random number generator failed; the directory loop stops");
            return;
        };
        loop {
            self.step(&mut rng).await;
            tokio::select! {
                _ = tokio::time::sleep(self.tick()) => {}
                _ = stop.changed() => break,
            }
        }
    }

    async fn step(&mut self, rng: &mut StdRng) {
        let now = wall_now();
        let cur = Epoch::at(now, self.period);
        self.status.epoch.store(cur.0, Ordering::Relaxed);
        if let Some(cache) = &self.documents {
            cache.set_epoch(cur.0);
        }
        if self.rotated != Some(cur) {
            match self.keys.rotate(now, self.period, self.geometry.scheme(), rng) {
                Ok(r) => {
                    self.rotated = Some(cur);
                    self.status.keys_created.fetch_add(r.created.len() as u64, Ordering::Relaxed);
                    self.status.keys_deleted.fetch_add(r.deleted.len() as u64, Ordering::Relaxed);
                    if !r.created.is_empty() || !r.deleted.is_empty() {
                        tracing::info!(
                            epoch = cur.0,
                            created = r.created.len(),
                            deleted = r.deleted.len(),
                            "packet keys rotated"
                        );
                    }
                }
                Err(e) => tracing::error!(epoch = cur.0, "packet key rotation failed: {e}"),
            }
            self.held.retain(|e| e.0 + 2 >= cur.0);
            self.listed.retain(|e| *e >= cur);
            self.uploaded.retain(|e| *e >= cur);
        }
        self.status.listed.store(u64::from(self.listed.contains(&cur)), Ordering::Relaxed);

        let target = epochs::upload_target(now, self.period);
        let heartbeat = Duration::from_millis(qanat_pki::heartbeat(self.period));
        if !self.uploaded.contains(&target) || self.last_upload.is_none_or(|t| t.elapsed() >= heartbeat) {
            self.upload(target).await;
        }

        for e in epochs::wanted_documents(now, self.period, &self.held) {
            match self.client.fetch(e, rng).await {
                Ok(doc) => self.install(&doc).await,
                Err(err) => {
                    self.status.fetches_failed.fetch_add(1, Ordering::Relaxed);
                    if e == cur && !matches!(err, RequestError::NotYet) {
                        tracing::warn!(epoch = e.0, "no usable directory document: {err}");
                    }
                }
            }
        }
    }

    async fn upload(&mut self, target: Epoch) {
        let keys: Option<Vec<_>> =
            (0..3).map(|i| self.keys.packet_key(target.plus(i)).map(SecretKey::public_key)).collect();
        let Some(keys) = keys else {
            tracing::error!(epoch = target.0, "no packet keys for the descriptor; check the data directory");
            return;
        };
        let signed = NodeDescriptor::new(
            target,
            self.keys.identity().public(),
            self.role,
            self.address.clone(),
            self.link_key.public_key().to_bytes(),
            keys,
        )
        .and_then(|d| d.sign(self.keys.identity()));
        let signed = match signed {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(epoch = target.0, "cannot build the descriptor: {e}");
                return;
            }
        };
        self.last_upload = Some(Instant::now());
        let results = self.client.upload(signed.as_bytes()).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        self.status.uploads_accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        self.status.uploads_failed.fetch_add((results.len() - accepted) as u64, Ordering::Relaxed);
        if accepted * 2 > self.client.len() {
            if self.uploaded.insert(target) {
                tracing::info!(epoch = target.0, accepted, of = results.len(), "descriptor uploaded");
            }
        } else if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(
                epoch = target.0,
                accepted,
                of = results.len(),
                "descriptor upload incomplete: {e}"
            );
        }
    }

    async fn install(&mut self, doc: &qanat_pki::Document) {
        let e = doc.epoch();
        // Clients verify it themselves; a gateway relays what verified here too.
        if let Some(cache) = &self.documents {
            cache.insert(e.0, doc.to_bytes());
        }
        let me = self.keys.identity().public().node_id();
        let scheme = self.geometry.scheme();
        let key =
            self.keys.packet_key(e).and_then(|k| SecretKey::from_bytes(scheme, k.to_bytes().as_ref()).ok());
        // Names are resolved once per document; an address that does not resolve leaves its
        // node out of this node's peers (counted as unreachable).
        let mut resolved = HashMap::new();
        for n in doc.nodes() {
            let a = n.descriptor().address().as_str();
            if !resolved.contains_key(a)
                && let Ok(addr) = http::resolve(a).await
            {
                resolved.insert(a.to_owned(), addr);
            }
        }
        let resolve = |a: &str| resolved.get(a).copied();
        match epochs::update_from(doc, me, key, &self.geometry, self.period, resolve) {
            Ok((update, unreachable)) => {
                let listed = update.key.is_some();
                let (mixes, gateways) = (
                    update.topology.layers.iter().map(Vec::len).sum::<usize>(),
                    update.topology.gateways.len(),
                );
                if self.updater.send(update).await.is_err() {
                    return;
                }
                self.held.insert(e);
                if listed {
                    self.listed.insert(e);
                }
                self.status.document_epoch.fetch_max(e.0, Ordering::Relaxed);
                tracing::info!(
                    epoch = e.0,
                    mixes,
                    gateways,
                    listed,
                    unreachable,
                    "directory document installed"
                );
            }
            Err(err) => {
                self.status.documents_unusable.fetch_add(1, Ordering::Relaxed);
                tracing::error!(epoch = e.0, "directory document unusable: {err}");
                self.held.insert(e);
            }
        }
    }
}
