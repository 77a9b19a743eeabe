//! The long-running client: the engine's IO. It keeps the network's directory (fetched from the
//! authorities every epoch), one session with the user's gateway (reconnecting with backoff),
//! the sending slots (one packet per slot, whatever the user does), and the mailbox fetches; and
//! it answers commands ([`ClientHandle::call`], or the control socket) between slots.
//!
//! Everything it does to the profile goes through the engine, which saves before anything
//! leaves; a store error stops the client (a restart resumes from the profile).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use qanat_link::{LinkMetrics, LinkSecretKey, http};
use qanat_mixnet::client_proto::MAX_PULL_DONE;
use qanat_network::directory::DirectoryClient;
use qanat_network::{ClientGateway, ClientNetwork, link_config, wall_now};
use qanat_pki::{Document, Epoch};
use rand::rngs::StdRng;
use rand::{SeedableRng as _, rngs::SysRng};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::{self, Request, Response};
use crate::engine::{Engine, EngineError, EngineEvent};
use crate::gateway::{Fetched, GatewayAddress, GatewayError, GatewaySession};
use crate::store::Profile;

use crate::sending::{PULL_BATCH, PULL_FIRST};

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The engine failed (a profile write, most likely).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No randomness from the operating system.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// The network file is unusable.
    #[error("the network file: {0}")]
    Network(String),
    /// The control socket could not be opened.
    #[error("control socket {}: {source}", path.display())]
    Socket {
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The client task ended abnormally.
    #[error("the client task failed")]
    Task,
}

/// How the client runs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The network.
    pub network: ClientNetwork,
    /// The user's gateway (one of `network.gateways`).
    pub gateway: ClientGateway,
    /// How often the mailboxes are pulled; zero: once per mean payload slot of the traffic
    /// profile (1/λ_P), since a pull costs a frame up and [`PULL_BATCH`] down.
    pub fetch_interval: Duration,
}

type Call = (Request, oneshot::Sender<Response>);

/// The running client.
pub struct ClientHandle {
    calls: mpsc::Sender<Call>,
    events: broadcast::Sender<EngineEvent>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Profile, RuntimeError>>,
    socket: Option<(PathBuf, JoinHandle<()>)>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientHandle(..)")
    }
}

/// Starts the client around `engine`.
pub fn start(engine: Engine, config: RuntimeConfig) -> Result<ClientHandle, RuntimeError> {
    let rng = StdRng::try_from_rng(&mut SysRng).map_err(|_| RuntimeError::Rng)?;
    let (calls, calls_rx) = mpsc::channel(64);
    let (events, _) = broadcast::channel(4096);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(engine, config, calls_rx, events.clone(), stop_rx, rng));
    Ok(ClientHandle { calls, events, stop, task, socket: None })
}

impl ClientHandle {
    /// Carries out a command.
    pub async fn call(&self, req: Request) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.calls.send((req, tx)).await.is_err() {
            return Response::Error { message: "the client has stopped".into() };
        }
        rx.await.unwrap_or(Response::Error { message: "the client has stopped".into() })
    }

    /// The events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// Whether the client stopped (on an error: [`ClientHandle::shutdown`] returns it).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Answers commands on a Unix socket at `path` (readable by the owner only), one JSON line
    /// per request and per response. A stale socket file is replaced.
    pub fn serve_socket(&mut self, path: &Path) -> Result<(), RuntimeError> {
        let err = |source| RuntimeError::Socket { path: path.to_owned(), source };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another client answers there",
                )));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        let (calls, events) = (self.calls.clone(), self.events.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (calls, events) = (calls.clone(), events.clone());
                tokio::spawn(serve_connection(stream, calls, events));
            }
        });
        self.socket = Some((path.to_owned(), task));
        Ok(())
    }

    /// Stops the client and gives the profile back.
    pub async fn shutdown(mut self) -> Result<Profile, RuntimeError> {
        let _ = self.stop.send(true);
        if let Some((path, task)) = self.socket.take() {
            task.abort();
            let _ = std::fs::remove_file(path);
        }
        self.task.await.map_err(|_| RuntimeError::Task)?
    }
}

async fn serve_connection(
    stream: tokio::net::UnixStream,
    calls: mpsc::Sender<Call>,
    events: broadcast::Sender<EngineEvent>,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.len() > 1 << 20 {
            return;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_line(&mut w, &Response::Error { message: format!("bad request: {e}") }).await;
                continue;
            }
        };
        if req == Request::Watch {
            let mut rx = events.subscribe();
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let (text, latency_ms) = control::describe(&ev);
                if write_line(&mut w, &Response::Event { text, latency_ms }).await.is_err() {
                    return;
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let resp = if calls.send((req, tx)).await.is_err() {
            Response::Error { message: "the client has stopped".into() }
        } else {
            rx.await.unwrap_or(Response::Error { message: "the client has stopped".into() })
        };
        if write_line(&mut w, &resp).await.is_err() {
            return;
        }
    }
}

async fn write_line(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut b = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    b.push(b'\n');
    w.write_all(&b).await
}

/// Fetches the directory's document for each epoch as it begins.
async fn directory_loop(
    client: DirectoryClient,
    period: qanat_pki::EpochPeriod,
    docs: mpsc::Sender<Document>,
) {
    let Ok(mut rng) = StdRng::try_from_rng(&mut SysRng) else { return };
    let mut have: Option<Epoch> = None;
    loop {
        let e = Epoch::at(wall_now(), period);
        if have != Some(e) {
            match client.fetch(e, &mut rng).await {
                Ok(doc) => {
                    if docs.send(doc).await.is_err() {
                        return;
                    }
                    have = Some(e);
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let next = e.next().start(period).as_millis();
        let wait = next.saturating_sub(wall_now().as_millis());
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

enum StepError {
    Gateway,
    Engine(EngineError),
}

impl From<GatewayError> for StepError {
    fn from(_: GatewayError) -> Self {
        Self::Gateway
    }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

async fn connect(
    gw: &ClientGateway,
    mailboxes: Vec<crate::gateway::MailboxAccess>,
    config: &RuntimeConfig,
    metrics: Arc<LinkMetrics>,
) -> Option<GatewaySession> {
    let addr = http::resolve(gw.client_address.as_str()).await.ok()?;
    let link = link_config(&config.network.network.geometry).ok()?;
    // A fresh link key per session: the gateway cannot tell two sessions apart by key.
    let key = LinkSecretKey::generate(&mut rand::rng());
    let address = GatewayAddress { addr, link_key: gw.link_key.clone() };
    let mut s = GatewaySession::connect_counted(&address, &key, link, metrics).await.ok()?;
    for m in mailboxes {
        s.register(m).await.ok()?;
    }
    Some(s)
}

/// One pull of `limit` frames (whatever is waiting: the link shows the same traffic), carrying
/// the deletions of what earlier pulls brought and the engine has saved (`done`: mailbox → last
/// sequence number processed).
async fn pull(
    s: &mut GatewaySession,
    engine: &mut Engine,
    limit: u16,
    done: &mut BTreeMap<[u8; 32], u64>,
    rng: &mut StdRng,
) -> Result<(), StepError> {
    let deletions: Vec<([u8; 32], u64)> =
        done.iter().take(MAX_PULL_DONE).map(|(m, upto)| (*m, *upto)).collect();
    let pulled = s.pull(limit, &deletions).await?;
    for (m, _) in &deletions {
        done.remove(m);
    }
    // Items by mailbox, in the order they came.
    let mut by_mailbox: BTreeMap<[u8; 32], Vec<Fetched>> = BTreeMap::new();
    for (m, f) in pulled.items {
        by_mailbox.entry(m).or_default().push(f);
    }
    for (m, items) in by_mailbox {
        let upto = engine.handle_fetched(m, items, SystemTime::now(), rng)?;
        if upto > 0 {
            done.insert(m, upto);
        }
    }
    Ok(())
}

fn fetch_every(config: &RuntimeConfig, engine: &Engine) -> Duration {
    if !config.fetch_interval.is_zero() {
        return config.fetch_interval;
    }
    engine
        .rates()
        .filter(|r| r.payload > 0.0)
        .map(|r| Duration::from_secs_f64((1.0 / r.payload).clamp(0.05, 600.0)))
        .unwrap_or(Duration::from_secs(1))
}

async fn run(
    mut engine: Engine,
    config: RuntimeConfig,
    mut calls: mpsc::Receiver<Call>,
    events: broadcast::Sender<EngineEvent>,
    mut stop: watch::Receiver<bool>,
    mut rng: StdRng,
) -> Result<Profile, RuntimeError> {
    let net = &config.network.network;
    let link = link_config(&net.geometry).map_err(|e| RuntimeError::Network(e.to_string()))?;
    let dir_key = Arc::new(LinkSecretKey::generate(&mut rng));
    let directory = DirectoryClient::new(
        net.authorities.clone(),
        net.authority_set.clone(),
        dir_key,
        link,
        Arc::new(LinkMetrics::default()),
    );
    let (docs_tx, mut docs) = mpsc::channel(4);
    let dir_task = tokio::spawn(directory_loop(directory, net.epoch_period, docs_tx));
    let mut session: Option<GatewaySession> = None;
    // Frames on the link to the gateway, over every session: what the user's link carries.
    let link_metrics = Arc::new(LinkMetrics::default());
    let frame_len =
        link_config(&config.network.network.geometry).map(|c| c.frame_size.wire_len()).unwrap_or(0);
    let mut next_connect = Instant::now();
    let mut backoff = Duration::from_millis(200);
    let mut next_fetch = Instant::now();
    // Deletions for the next pull; and whether this session has pulled yet.
    let mut done: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    let mut first_pull = true;
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        if session.is_none() && engine.has_network() && Instant::now() >= next_connect {
            let mailboxes = engine.mailboxes().into_iter().map(|(m, _)| m).collect();
            match connect(&config.gateway, mailboxes, &config, link_metrics.clone()).await {
                Some(s) => {
                    session = Some(s);
                    first_pull = true;
                    backoff = Duration::from_millis(200);
                    let _ = engine.take_registrations();
                }
                None => {
                    next_connect = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        let now = SystemTime::now();
        let mut wake = next_fetch.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        if let Some(t) = engine.poll_timeout() {
            wake = wake.min(t.duration_since(now).unwrap_or(Duration::ZERO));
        }
        tokio::select! {
            call = calls.recv() => {
                let Some((req, reply)) = call else { break Ok(()) };
                let mut resp = control::execute(&mut engine, req, true, SystemTime::now(), &mut rng);
                if let Response::Status { link, .. } = &mut resp {
                    let m = link_metrics.snapshot();
                    *link = Some(control::LinkCounts {
                        frames_out: m.frames_out,
                        frames_in: m.frames_in,
                        frame_bytes: frame_len as u64,
                    });
                }
                let _ = reply.send(resp);
            }
            doc = docs.recv() => {
                if let Some(doc) = doc && let Err(e) = engine.set_document(&doc) {
                    tracing::warn!("directory document not usable: {e}");
                }
            }
            _ = tokio::time::sleep(wake) => {}
            _ = stop.changed() => {}
        }
        let now = SystemTime::now();
        let step = async {
            engine.handle_timeout(now, &mut rng)?;
            let packets = engine.poll_transmit(now, &mut rng)?;
            let regs = engine.take_registrations();
            let Some(s) = session.as_mut() else { return Ok(()) };
            for m in regs {
                s.register(m).await?;
            }
            for m in engine.retired() {
                match s.unregister(m).await {
                    // Refused: the gateway does not know it (any more).
                    Ok(()) | Err(GatewayError::Refused(_)) => engine.unregistered(m.mailbox)?,
                    Err(e) => return Err(e.into()),
                }
            }
            for p in packets {
                s.send_packet(p).await?;
            }
            if Instant::now() >= next_fetch {
                next_fetch = Instant::now() + fetch_every(&config, &engine);
                // A larger first pull catches up after a time offline (every session starts
                // with one, so it tells nothing about what waited).
                let limit = if first_pull { PULL_FIRST } else { PULL_BATCH };
                first_pull = false;
                pull(s, &mut engine, limit, &mut done, &mut rng).await?;
            }
            Ok::<(), StepError>(())
        };
        match step.await {
            Ok(()) => {}
            Err(StepError::Gateway) => {
                tracing::info!("gateway session lost; reconnecting");
                session = None;
                next_connect = Instant::now() + backoff;
            }
            Err(StepError::Engine(e)) => {
                tracing::error!("the client stops: {e}");
                break Err(RuntimeError::Engine(e));
            }
        }
        while let Some(ev) = engine.poll_event() {
            let _ = events.send(ev);
        }
    };
    dir_task.abort();
    if let Some(s) = session {
        s.close().await;
    }
    result.map(|()| engine.into_profile())
}
