//! The long-running client: the engine's IO. It keeps one session with the user's gateway
//! (reconnecting with backoff) and nothing else: the client never opens a connection to a
//! directory authority (P5). Its link carries the sending slots (one packet per slot, whatever
//! the user does) and one pull per interval ([`crate::pull::PullClient`]: fixed operation slots
//! for registrations, unregistrations and deletions; the directory document the client lacks,
//! in chunks riding in the answer's free slots, verified here against the authority keys of the
//! network file; a document for the next epoch is kept until that epoch begins). It answers
//! commands ([`ClientHandle::call`], or the control socket) between slots.
//!
//! Everything it does to the profile goes through the engine, which saves before anything
//! leaves. Only a fatal engine error ([`EngineError::is_fatal`]: the profile failed, saved state
//! is unreadable, an internal invariant broke) stops the client (a restart resumes from the
//! profile); any other concerns one item or one peer, which fails alone, counted, while the
//! client goes on (nothing from the network, a contact, a member, the gateway or a directory
//! document, stops it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use qanat_link::{LinkMetrics, LinkSecretKey, http};
use qanat_network::{ClientGateway, ClientNetwork, link_config, wall_now};
use qanat_packet::MailboxId;
use qanat_pki::document::MAX_DOCUMENT_LEN;
use qanat_pki::{Document, Epoch, UnixMillis};
use rand::rngs::StdRng;
use rand::{SeedableRng as _, rngs::SysRng};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::{self, Request, Response};
use crate::engine::{Engine, EngineError, EngineEvent};
use crate::gateway::{Fetched, GatewayAddress, GatewayError, GatewaySession, MailboxAccess, PendingPull};
use crate::pull::PullClient;
use crate::store::Profile;
use qanat_mixnet::MailboxItem;
use qanat_mixnet::sending::{PULL_BATCH, PULL_FIRST};

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The engine failed fatally ([`EngineError::is_fatal`]: a profile write, most likely).
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
            return Response::error("the client has stopped");
        }
        rx.await.unwrap_or(Response::error("the client has stopped"))
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
                let _ = write_line(&mut w, &Response::error(format!("bad request: {e}"))).await;
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
                if write_line(&mut w, &Response::event(&ev)).await.is_err() {
                    return;
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let resp = if calls.send((req, tx)).await.is_err() {
            Response::error("the client has stopped")
        } else {
            rx.await.unwrap_or(Response::error("the client has stopped"))
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

/// A new session. Nothing but the handshake: the mailboxes are registered through the pulls'
/// slots, so a session starts with the same frames whatever their number.
async fn connect(
    gw: &ClientGateway,
    config: &RuntimeConfig,
    metrics: Arc<LinkMetrics>,
) -> Option<GatewaySession> {
    let addr = http::resolve(gw.client_address.as_str()).await.ok()?;
    let link = link_config(&config.network.network.geometry).ok()?;
    // A fresh link key per session: the gateway cannot tell two sessions apart by key.
    let key = LinkSecretKey::generate(&mut rand::rng());
    let address = GatewayAddress { addr, link_key: gw.link_key.clone() };
    GatewaySession::connect_counted(&address, &key, link, metrics).await.ok()
}

/// The directory as the runtime holds it: the epoch in use and verified documents of epochs to
/// come.
#[derive(Default)]
struct Directory {
    applied: Option<Epoch>,
    pending: BTreeMap<Epoch, Document>,
}

impl Directory {
    /// The epoch whose document to ask the gateway for at `now` (0: none): the current one, then
    /// the next.
    fn want(&self, cur: Epoch) -> u64 {
        let held = |e: Epoch| self.applied == Some(e) || self.pending.contains_key(&e);
        if !held(cur) {
            cur.0
        } else if !held(cur.next()) {
            cur.next().0
        } else {
            0
        }
    }

    /// The document to apply at epoch `cur`, if a new one is due.
    fn due(&mut self, cur: Epoch) -> Option<Document> {
        let doc = self.pending.remove(&cur);
        self.pending.retain(|e, _| *e > cur);
        if doc.is_some() {
            self.applied = Some(cur);
        }
        doc
    }
}

/// What one pull's answer brought (its `1 + limit` frames, whatever was waiting: the link
/// shows the same traffic): slot outcomes to the pull core, items to the engine, whose saved
/// cursors become deletions for later pulls; a document that verifies is kept for its epoch.
fn handle_pull_answer(
    frames: Vec<qanat_mixnet::client_proto::Response>,
    core: &mut PullClient,
    engine: &mut Engine,
    directory: &mut Directory,
    network: &ClientNetwork,
    rng: &mut StdRng,
) -> Result<(), StepError> {
    let cur = Epoch::at(wall_now(), network.network.epoch_period);
    let out = core.handle_answer(frames).map_err(|_| StepError::Gateway)?;
    for m in out.unregistered {
        let r = engine.unregistered(m);
        engine.go_on("a mailbox's unregistration", r)?;
    }
    for m in out.refused {
        let r = engine.registration_refused(m, SystemTime::now(), rng);
        engine.go_on("a refused registration", r)?;
    }
    if let Some((e, bytes)) = out.document {
        match Document::verify(&bytes, &network.network.authority_set, Epoch(e)) {
            Ok(doc) if Epoch(e) >= cur => match of_this_network(&doc, &network.network) {
                Ok(()) => {
                    directory.pending.insert(Epoch(e), doc);
                }
                Err(why) => {
                    tracing::warn!(
                        epoch = e,
                        "a directory document that verifies is not of this network: {why}"
                    );
                    core.document_refused();
                }
            },
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(epoch = e, "the gateway relayed a document that does not verify: {err}");
                core.document_refused();
            }
        }
    }
    if out.items.is_empty() {
        return Ok(());
    }
    // Items by mailbox, in the order they came.
    let mut by_mailbox: BTreeMap<MailboxId, Vec<Fetched>> = BTreeMap::new();
    for (m, seq, item) in out.items {
        if let Ok(item) = MailboxItem::decode(&item) {
            by_mailbox.entry(m).or_default().push(Fetched { seq, item });
        }
    }
    let access: BTreeMap<MailboxId, MailboxAccess> =
        engine.mailboxes().into_iter().map(|(a, _)| (a.mailbox, a)).collect();
    for (m, items) in by_mailbox {
        // A mailbox whose items failed (not fatally) is not deleted from: they come again.
        let r = engine.handle_fetched(m, items, SystemTime::now(), rng);
        let upto = engine.go_on("fetched items", r)?.unwrap_or(0);
        if upto > 0
            && let Some(a) = access.get(&m)
        {
            core.delete(*a, upto);
        }
    }
    Ok(())
}

/// Whether a verified document is one of the network file's: its geometry and epoch period, as
/// nodes check theirs against their config. Packets are cut, built and framed for the network
/// file's geometry (the link's frame size comes from it), and epochs counted with its period.
fn of_this_network(doc: &Document, network: &qanat_network::NetworkConfig) -> Result<(), &'static str> {
    let params = doc.parameters();
    if *params.geometry() != network.geometry {
        return Err("another packet geometry than the network file's");
    }
    if params.epoch_period() != network.epoch_period {
        return Err("another epoch period than the network file's");
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
    let network = &config.network;
    let period = network.network.epoch_period;
    link_config(&network.network.geometry).map_err(|e| RuntimeError::Network(e.to_string()))?;
    let mut session: Option<GatewaySession> = None;
    let mut core = PullClient::new(MAX_DOCUMENT_LEN);
    let mut directory = Directory::default();
    // Frames on the link to the gateway, over every session: what the user's link carries.
    let link_metrics = Arc::new(LinkMetrics::default());
    let frame_len = link_config(&network.network.geometry).map(|c| c.frame_size.wire_len()).unwrap_or(0);
    let mut today = Today::new(wall_now());
    let mut next_connect = Instant::now();
    let mut backoff = Duration::from_millis(200);
    let mut next_fetch = Instant::now();
    // Whether this session has pulled yet.
    let mut first_pull = true;
    // The pull whose answer is on its way: the loop goes on sending packets in their slots
    // meanwhile, so neither the gateway's answer time nor the answer's handling moves them.
    let mut pending: Option<PendingPull> = None;
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        if let Some(doc) = directory.due(Epoch::at(wall_now(), period))
            && let Err(e) = engine.set_document(&doc)
        {
            tracing::warn!("directory document not usable: {e}");
        }
        if session.is_none() && Instant::now() >= next_connect {
            match connect(&config.gateway, &config, link_metrics.clone()).await {
                Some(s) => {
                    session = Some(s);
                    first_pull = true;
                    pending = None;
                    backoff = Duration::from_millis(200);
                    let _ = engine.take_registrations();
                    core.start_session(engine.mailboxes().into_iter().map(|(m, _)| m));
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
        if let Some(p) = &pending {
            wake = wake.min(p.deadline().saturating_duration_since(Instant::now()));
        }
        let mut answer = None;
        let awaiting = pending.is_some();
        tokio::select! {
            r = async {
                match session.as_mut() {
                    Some(s) if awaiting => s.recv_response().await,
                    _ => std::future::pending().await,
                }
            } => answer = Some(r),
            call = calls.recv() => {
                let Some((req, reply)) = call else { break Ok(()) };
                let mut resp = match control::try_execute(&mut engine, req, true, SystemTime::now(), &mut rng) {
                    Ok(resp) => resp,
                    Err(e) if e.is_fatal() => {
                        let _ = reply.send(Response::refused(&e));
                        tracing::error!("the client stops: {e}");
                        break Err(RuntimeError::Engine(e));
                    }
                    Err(e) => Response::refused(&e),
                };
                if let Response::Status { link, .. } | Response::Network { link, .. } = &mut resp {
                    let m = link_metrics.snapshot();
                    let frames = today.count(wall_now(), [m.frames_out, m.frames_in]);
                    *link = Some(control::LinkCounts {
                        frames_out: m.frames_out,
                        frames_in: m.frames_in,
                        frame_bytes: frame_len as u64,
                        directory_epoch: directory.applied.map_or(0, |e| e.0),
                        connected: session.is_some(),
                        today: frames.map(|n| n * frame_len as u64),
                        today_since_ms: today.since.as_millis(),
                    });
                }
                let _ = reply.send(resp);
            }
            _ = tokio::time::sleep(wake) => {}
            _ = stop.changed() => {}
        }
        let now = SystemTime::now();
        let step = async {
            // One frame of the pending pull's answer; the whole answer is handled at once.
            if let Some(r) = answer {
                let p = pending.as_mut().ok_or(StepError::Gateway)?;
                if p.take(r?)? {
                    let frames = pending.take().map(PendingPull::into_frames).unwrap_or_default();
                    handle_pull_answer(frames, &mut core, &mut engine, &mut directory, network, &mut rng)?;
                }
            }
            if pending.as_ref().is_some_and(|p| Instant::now() >= p.deadline()) {
                return Err(StepError::Gateway);
            }
            let r = engine.handle_timeout(now, &mut rng);
            engine.go_on("the timers", r)?;
            let r = engine.poll_transmit(now, &mut rng);
            let packets = engine.go_on("the sending slots", r)?.unwrap_or_default();
            // Registrations and unregistrations wait for the next pull's slots.
            for m in engine.take_registrations() {
                core.register(m);
            }
            for m in engine.retired() {
                core.unregister(m);
            }
            let Some(s) = session.as_mut() else { return Ok(()) };
            for p in packets {
                s.send_packet(p).await?;
            }
            if Instant::now() >= next_fetch {
                // On a fixed lattice: a pull that came late (a long command) does not shift the
                // ones after it; one more than an interval late starts the lattice afresh.
                let every = fetch_every(&config, &engine);
                next_fetch += every;
                if next_fetch <= Instant::now() {
                    next_fetch = Instant::now() + every;
                }
                // A larger first pull catches up after a time offline (every session starts
                // with one, so it tells nothing about what waited).
                // One pull at a time: on a link too slow for the answer to come within an
                // interval, this one is skipped (the link, not the user, sets that pace).
                if pending.is_none() {
                    let limit = if first_pull { PULL_FIRST } else { PULL_BATCH };
                    first_pull = false;
                    let cur = Epoch::at(wall_now(), period);
                    pending = Some(s.send_pull(core.poll_pull(limit, directory.want(cur))).await?);
                }
            }
            Ok::<(), StepError>(())
        };
        match step.await {
            Ok(()) => {}
            Err(StepError::Gateway) => {
                tracing::info!("gateway session lost; reconnecting");
                session = None;
                pending = None;
                next_connect = Instant::now() + backoff;
            }
            // Only fatal errors come this far (`Engine::go_on` keeps the others).
            Err(StepError::Engine(e)) => {
                tracing::error!("the client stops: {e}");
                break Err(RuntimeError::Engine(e));
            }
        }
        while let Some(ev) = engine.poll_event() {
            let _ = events.send(ev);
        }
    };
    if let Some(s) = session {
        s.close().await;
    }
    result.map(|()| engine.into_profile())
}

/// Frames on the link today (UTC): since the client's start, or since the first count after
/// midnight: what today's traffic costs.
struct Today {
    since: UnixMillis,
    base: [u64; 2],
}

const DAY_MS: u64 = 86_400_000;

impl Today {
    fn new(now: UnixMillis) -> Self {
        Self { since: now, base: [0, 0] }
    }

    /// Frames out and in since `self.since`, from the totals `frames`; a new day starts afresh.
    fn count(&mut self, now: UnixMillis, frames: [u64; 2]) -> [u64; 2] {
        let midnight = now.as_millis() - now.as_millis() % DAY_MS;
        if self.since.as_millis() < midnight {
            // Counted from now: what left between midnight and now is not known apart.
            self.since = now;
            self.base = frames;
        }
        [frames[0].saturating_sub(self.base[0]), frames[1].saturating_sub(self.base[1])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_counts_from_the_start_and_afresh_each_day() {
        let start = UnixMillis::from_millis(10 * DAY_MS + 3_600_000);
        let mut t = Today::new(start);
        assert_eq!(t.count(start, [5, 7]), [5, 7]);
        assert_eq!(t.since, start);
        let later = UnixMillis::from_millis(11 * DAY_MS - 1);
        assert_eq!(t.count(later, [9, 10]), [9, 10]);
        // The next day counts from its first count.
        let next = UnixMillis::from_millis(11 * DAY_MS + 5);
        assert_eq!(t.count(next, [12, 10]), [0, 0]);
        assert_eq!(t.since, next);
        assert_eq!(t.count(next, [20, 11]), [8, 1]);
    }
}
