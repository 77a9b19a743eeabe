//! The gateway runtime: a [`qanat_mixnet::Gateway`] with two link listeners (one for nodes, one
//! for clients), reconnecting links into the first mix layer, and the mailbox store.
//!
//! - A packet from a mix goes to `Gateway::handle_mix_packet` with the link's packet id as its
//!   ack token; the store writes the gateway asks for are appended in batches (one transaction
//!   each, see `qanat-mailbox`), and each outcome is reported back. Only then does the core
//!   release the `Ack`, which goes back on the connection the packet came on. The core also
//!   acknowledges at once what it can never store (undecryptable, misrouted, unsealed, a
//!   replayed loop) and resends of what is already stored, and joins a resend to the write in
//!   flight for it: one write per packet (see `qanat_mixnet::gateway`).
//! - A packet from a client goes to `Gateway::handle_client_packet` and on into layer 1.
//! - A control frame from a client is a [`qanat_mixnet::client_proto::Request`]: register,
//!   unregister, fetch (answered with one `Message` frame per item and a `FetchDone`), delete,
//!   or pull (its operation slots carried out, then exactly `1 + limit` frames built by the
//!   IO-free [`qanat_mixnet::pull::PullServer`]: a head with each slot's outcome, then items from
//!   the mailboxes this connection registered, chunks of the directory document the client
//!   lacks from [`DocumentCache`], and padding). A pull of another version is answered with one
//!   `Error { code: Version }` frame.
//! - `now` for the mailbox store is wall-clock seconds (retention is in days); `now` for the core
//!   is the monotonic time since the runtime started, plus [`GatewayRuntimeConfig::clock`].
//! - [`GatewayHandle::update`] hands the runtime what the directory says about an epoch: the
//!   gateway's packet key, the topology (which mixes form the first layer) and the peers.
//! - With a [`ReplayLog`] ([`spawn_gateway_with_replay_log`]) the replay filters survive
//!   restarts exactly as a mix's do (see `runtime::mix`): packets going into layer 1 leave only
//!   once their tags are durable.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use qanat_link::{
    AcceptAnyKey, Frame, FrameSender, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener,
    PacketId,
};
use qanat_mailbox::{
    Append, AppendOutcome, Credential, MailboxId, MailboxStore, MessageId, Seq, StoreError, UnixTime,
};
use qanat_mixnet::client_proto::{
    ErrorCode, MAX_CHUNK_LEN, Op, OpResult, PULL_OPS, ProtoError, Request, Response, Want,
};
use qanat_mixnet::pull::{PullServer, PulledItem};
use qanat_mixnet::{AckToken, Gateway, GatewayMetrics, StoreResult, StoreToken, Time};
use qanat_packet::NodeId;
use rand::rngs::{StdRng, SysRng};
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::budget::{ClientRate, TokenBucket};
use super::handle::RuntimeHandle;
use super::links::{Links, accept_loop};
use super::mix::durable;
use super::peers::{EpochUpdate, Peer, PeerTable, Probe, SharedPeers};
use crate::replay_log::{ReplayLog, ReplayLogMetrics};

/// How to run a gateway.
#[derive(Debug)]
pub struct GatewayRuntimeConfig {
    /// Where nodes connect.
    pub listen: SocketAddr,
    /// Where clients connect.
    pub client_listen: SocketAddr,
    /// This node's link key.
    pub link_key: Arc<LinkSecretKey>,
    /// Link settings.
    pub link: LinkConfig,
    /// Nodes that may connect here or that packets may go to, whatever the directory says
    /// (more come with [`GatewayHandle::update`]).
    pub peers: HashMap<NodeId, Peer>,
    /// Most store writes in one append call.
    pub max_batch: usize,
    /// What the core's clock reads when the runtime starts (see
    /// [`MixRuntimeConfig::clock`](super::MixRuntimeConfig::clock)).
    pub clock: Time,
    /// Fault injection for tests: the fraction of packets from clients and from mixes dropped as
    /// if lost on the link (those from mixes are acknowledged first). 0 on a real network.
    pub fault_drop_rate: f64,
    /// The verified directory documents served to clients in their pulls (filled by the
    /// directory loop).
    pub documents: DocumentCache,
    /// How long after a client's request arrives its answer leaves ([`PULL_ANSWER_DELAY`] on a
    /// real network): the answer's timing then shows nothing of the store's work (how many
    /// mailboxes the session holds, what waited, what a registration cost).
    pub pull_answer_delay: Duration,
    /// The budgets of the client listener and of each client session.
    pub clients: ClientBudgets,
}

/// The budgets of a gateway's client listener and of each client session (see
/// `runtime::budget` for how they are applied and why their defaults).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientBudgets {
    /// Client connections at once (the client listener's
    /// [`LinkConfig::max_connections`]; its handshake budgets are the node listener's).
    pub max_connections: usize,
    /// Client connections at once from one address (an IPv4 address, or an IPv6 /64). Clients
    /// behind one carrier-grade NAT share this.
    pub max_connections_per_ip: usize,
    /// Frames queued per client connection, each way (instead of [`LinkConfig::send_queue`] and
    /// [`LinkConfig::recv_queue`], which are sized for node links).
    pub queue_frames: usize,
    /// A session's packet budget is this many times the directory's client rate
    /// (λ_P + λ_L + λ_D, per second).
    pub packet_slack: f64,
    /// Packets a session may send at once above its rate (the bucket's size).
    pub packet_burst: u32,
    /// The packet rate per session before the directory sets one (tests give it; `None`: no
    /// limit until the first document, the gateway forwards nothing before it anyway).
    pub packet_rate: Option<f64>,
    /// Registrations per second per session.
    pub registrations_per_second: f64,
    /// Registrations a session may make at once above that rate.
    pub registration_burst: u32,
    /// Most mailboxes one session may hold (each costs a store read every few pulls).
    pub max_mailboxes: usize,
}

impl Default for ClientBudgets {
    /// 4,096 connections, 64 per address, queues of 128 frames, a packet budget of 4 × the
    /// directory's rate with a burst of 32, 2 registrations a second with a burst of 256, 4,096
    /// mailboxes per session.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 64,
            queue_frames: 128,
            packet_slack: 4.0,
            packet_burst: 32,
            packet_rate: None,
            registrations_per_second: 2.0,
            registration_burst: 256,
            max_mailboxes: MAX_SESSION_MAILBOXES,
        }
    }
}

/// The delay of every answer to a client's request: above the store work of a pull (at most [`MAX_PULL_READS`](qanat_mixnet::pull::MAX_PULL_READS) reads and [`PULL_OPS`] operations; a few milliseconds on SQLite
/// or a Redis Cluster on the same network). An answer that is later still leaves at once and is
/// counted ([`GatewayRuntimeMetrics::client_answers_late`]).
///
/// Short, because the client keeps one pull in flight: a delay plus round trip longer than the
/// pull interval would skip pulls and halve what the client can receive (seen on a lossy devnet
/// with 100 ms pulls, where the acknowledgement backlog then grew without end).
pub const PULL_ANSWER_DELAY: Duration = Duration::from_millis(25);

/// How many epochs' documents a [`DocumentCache`] keeps.
pub const CACHED_DOCUMENTS: usize = 4;

/// The directory documents a gateway serves its clients: the authorities' signed bytes of the
/// last [`CACHED_DOCUMENTS`] epochs, each verified by the gateway's directory loop before it is
/// inserted (clients verify them again against their own network file), and the epoch in
/// progress (a client lacking its document gets it before its items: see
/// [`PullServer::item_room`]). Shared between the directory loop and the client sessions.
#[derive(Debug, Clone, Default)]
pub struct DocumentCache {
    docs: Arc<RwLock<BTreeMap<u64, Arc<[u8]>>>>,
    epoch: Arc<AtomicU64>,
}

impl DocumentCache {
    /// Records the epoch in progress (the directory loop's clock).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The epoch in progress (0 before the directory loop said).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Keeps the document of `epoch` (dropping the oldest beyond [`CACHED_DOCUMENTS`]).
    pub fn insert(&self, epoch: u64, bytes: Vec<u8>) {
        if let Ok(mut m) = self.docs.write() {
            m.insert(epoch, bytes.into());
            while m.len() > CACHED_DOCUMENTS {
                m.pop_first();
            }
        }
    }

    /// The document of `epoch`, if held.
    pub fn get(&self, epoch: u64) -> Option<Arc<[u8]>> {
        self.docs.read().ok().and_then(|m| m.get(&epoch).cloned())
    }

    /// The epochs held, oldest first.
    pub fn epochs(&self) -> Vec<u64> {
        self.docs.read().map(|m| m.keys().copied().collect()).unwrap_or_default()
    }
}

/// Counters of the runtime itself.
#[derive(Debug, Default)]
pub struct GatewayRuntimeMetrics {
    /// Append calls made (each one transaction or more grouped).
    pub append_calls: AtomicU64,
    /// Append calls that failed (nothing acknowledged).
    pub append_failures: AtomicU64,
    /// Packets dropped by fault injection (`fault_drop_rate`).
    pub fault_dropped: AtomicU64,
    /// Client control requests answered.
    pub client_requests: AtomicU64,
    /// Packets dropped because a link queue was full.
    pub link_queue_full: AtomicU64,
    /// The replay log's counters (zero without one).
    pub replay_log: Arc<ReplayLogMetrics>,
    /// Client pulls answered.
    pub client_pulls: AtomicU64,
    /// Directory document chunks sent to clients.
    pub document_chunks: AtomicU64,
    /// Client registrations refused (a session's bound of mailboxes reached).
    pub registrations_refused: AtomicU64,
    /// Client registrations refused: beyond the session's registration rate.
    pub registrations_rate_limited: AtomicU64,
    /// Client packets dropped: beyond the session's packet budget (never acknowledged).
    pub client_packets_over_budget: AtomicU64,
    /// The client listener's link counters (handshakes, refusals, frames of client
    /// connections); the node listener's and outgoing links' are the handle's `link_metrics`.
    pub client_links: Arc<LinkMetrics>,
    /// Client requests of another protocol version.
    pub version_mismatches: AtomicU64,
    /// Writes the store rejected (acknowledged, not stored): no such mailbox.
    pub rejected_unknown_mailbox: AtomicU64,
    /// Writes the store rejected: the mailbox's quota.
    pub rejected_quota: AtomicU64,
    /// Writes the store rejected: too large.
    pub rejected_too_large: AtomicU64,
    /// Answers to clients that were ready only after their fixed delay (they leave at once; a
    /// timing signal, so operators should see none).
    pub client_answers_late: AtomicU64,
}

/// Every counter of a running gateway.
pub type GatewayProbe = Probe<GatewayMetrics, GatewayRuntimeMetrics>;

/// A running gateway.
pub type GatewayHandle = RuntimeHandle<GatewayMetrics, GatewayRuntimeMetrics>;

impl GatewayHandle {
    /// The client listener's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr.unwrap_or(self.local_addr)
    }
}

enum Event {
    FromMix { from: NodeId, id: PacketId, packet: Vec<u8>, reply: FrameSender },
    FromClient(Vec<u8>),
    Stored(Vec<(StoreToken, StoreResult)>),
}

/// The current time on the mailbox store's clock (whole seconds of the one wall clock,
/// [`qanat_network::wall_now`]).
pub(crate) fn store_now() -> UnixTime {
    UnixTime(qanat_network::wall_now().as_secs())
}

/// Starts a gateway around `core` with `store`, with replay filters in memory only (see
/// [`spawn_gateway_with_replay_log`]).
pub async fn spawn_gateway<S: MailboxStore>(
    core: Gateway,
    store: Arc<S>,
    config: GatewayRuntimeConfig,
) -> std::io::Result<GatewayHandle> {
    spawn(core, store, config, None).await
}

/// Starts a gateway around `core` with `store`, whose replay filters survive restarts through
/// `log` (as [`spawn_mix_with_replay_log`](super::spawn_mix_with_replay_log)).
pub async fn spawn_gateway_with_replay_log<S: MailboxStore>(
    core: Gateway,
    store: Arc<S>,
    config: GatewayRuntimeConfig,
    log: ReplayLog,
) -> std::io::Result<GatewayHandle> {
    spawn(core, store, config, Some(log)).await
}

async fn spawn<S: MailboxStore>(
    mut core: Gateway,
    store: Arc<S>,
    config: GatewayRuntimeConfig,
    mut log: Option<ReplayLog>,
) -> std::io::Result<GatewayHandle> {
    let replay_metrics = match &mut log {
        Some(log) => {
            core.enable_replay_log();
            for e in core.key_epochs() {
                core.restore_replay_tags(e, &log.installed(e));
            }
            log.metrics()
        }
        None => Arc::default(),
    };
    let link_metrics = Arc::new(LinkMetrics::default());
    let metrics =
        Arc::new(GatewayRuntimeMetrics { replay_log: replay_metrics, ..GatewayRuntimeMetrics::default() });
    let peers: SharedPeers = Arc::new(std::sync::RwLock::new(PeerTable::new(config.peers.clone())));
    let table = peers.clone();
    let authorizer = move |k: &LinkPublicKey| table.read().ok().and_then(|t| t.by_link_key(k));
    let nodes = Listener::bind(
        config.listen,
        config.link_key.clone(),
        config.link.clone(),
        authorizer,
        link_metrics.clone(),
    )
    .await?;
    let budgets = config.clients.clone();
    let mut client_link = config.link.clone();
    client_link.max_connections = budgets.max_connections;
    client_link.max_connections_per_ip = budgets.max_connections_per_ip;
    client_link.send_queue = budgets.queue_frames;
    client_link.recv_queue = budgets.queue_frames;
    let clients = Listener::bind(
        config.client_listen,
        config.link_key.clone(),
        client_link,
        AcceptAnyKey,
        metrics.client_links.clone(),
    )
    .await?;
    let client_rate = ClientRate::default();
    if let Some(r) = budgets.packet_rate {
        client_rate.set(r);
    }
    let (local_addr, client_addr) = (nodes.local_addr(), clients.local_addr());
    let (events_tx, events_rx) = mpsc::channel::<Event>(4096);
    let (updates, updates_rx) = mpsc::channel::<EpochUpdate>(16);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let core_metrics = Arc::new(Mutex::new(core.metrics().clone()));

    // Nodes: packets from mixes, each answered (later) on its own connection.
    let tx = events_tx.clone();
    let accept_nodes = accept_loop(nodes, shutdown_rx.clone(), move |conn| {
        let tx = tx.clone();
        let (from, reply, mut rx) = conn.split();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Frame::Packet { id, packet } = frame
                    && tx.send(Event::FromMix { from, id, packet, reply: reply.clone() }).await.is_err()
                {
                    break;
                }
            }
        });
    });

    // Clients: packets into the network, and control requests served directly on the store.
    let tx = events_tx.clone();
    let (client_store, client_metrics) = (store.clone(), metrics.clone());
    let docs = config.documents.clone();
    let answer_delay = config.pull_answer_delay;
    // Chunk length: what fits a control frame after a `DocChunk`'s 19 header bytes.
    let chunk_len = config.link.frame_size.max_control_len().saturating_sub(19).clamp(1, MAX_CHUNK_LEN);
    let rate = client_rate.clone();
    let accept_clients = accept_loop(clients, shutdown_rx.clone(), move |conn| {
        let (tx, store, m, docs) = (tx.clone(), client_store.clone(), client_metrics.clone(), docs.clone());
        let (budgets, rate) = (budgets.clone(), rate.clone());
        let (_, reply, mut rx) = conn.split();
        // Answers leave at a fixed delay after their request, in order, from their own task,
        // so that neither the store's work nor the session's other frames move them. At most
        // two wait (each at most `1 + MAX_PULL_LIMIT` frames): a client that does not read its
        // answers holds up its own session, whose frames then wait in its link's bounded queue.
        let (answers, mut due_answers) = mpsc::channel::<(Instant, Vec<Frame>)>(2);
        tokio::spawn(async move {
            while let Some((due, frames)) = due_answers.recv().await {
                tokio::time::sleep_until(due).await;
                for f in frames {
                    if reply.send(f).await.is_err() {
                        return;
                    }
                }
            }
        });
        tokio::spawn(async move {
            let mut session = Session::new(&budgets);
            let ctx = ServeContext { docs: &docs, chunk_len, metrics: &m };
            while let Some(frame) = rx.recv().await {
                if let Frame::Control(bytes) = &frame {
                    let due = Instant::now() + answer_delay;
                    m.client_requests.fetch_add(1, Ordering::Relaxed);
                    let frames: Vec<Frame> = serve(&*store, &mut session, bytes, &ctx)
                        .await
                        .into_iter()
                        .filter_map(|r| r.encode().ok().map(Frame::Control))
                        .collect();
                    if Instant::now() > due {
                        m.client_answers_late.fetch_add(1, Ordering::Relaxed);
                    }
                    if answers.send((due, frames)).await.is_err() {
                        return;
                    }
                } else if let Frame::Packet { packet, .. } = frame {
                    if !session.take_packet(rate.get()) {
                        m.client_packets_over_budget.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if tx.send(Event::FromClient(packet)).await.is_err() {
                        break;
                    }
                }
            }
        });
    });

    let task = tokio::spawn(run(
        core,
        store,
        config,
        peers,
        events_tx,
        events_rx,
        updates_rx,
        shutdown_rx,
        core_metrics.clone(),
        link_metrics.clone(),
        metrics.clone(),
        [accept_nodes, accept_clients],
        log,
        client_rate,
    ));
    Ok(GatewayHandle {
        local_addr,
        client_addr: Some(client_addr),
        shutdown,
        task,
        updates,
        core_metrics,
        link_metrics,
        metrics,
    })
}

/// Most mailboxes one client connection may register by default (each costs a store read every
/// `len / MAX_PULL_READS` pulls).
pub const MAX_SESSION_MAILBOXES: usize = 4096;

/// One client connection's state: its mailboxes and its budgets.
struct Session {
    pull: PullServer,
    origin: Instant,
    packets: TokenBucket,
    packet_slack: f64,
    registrations: TokenBucket,
    registration_rate: f64,
}

impl Session {
    fn new(b: &ClientBudgets) -> Self {
        Self {
            pull: PullServer::new(b.max_mailboxes),
            origin: Instant::now(),
            packets: TokenBucket::new(b.packet_burst, Duration::ZERO),
            packet_slack: b.packet_slack,
            registrations: TokenBucket::new(b.registration_burst, Duration::ZERO),
            registration_rate: b.registrations_per_second,
        }
    }

    /// Whether a packet is within the session's budget at the directory's client `rate` (none
    /// known: every packet is).
    fn take_packet(&mut self, rate: Option<f64>) -> bool {
        match rate {
            Some(r) => self.packets.try_take(self.origin.elapsed(), r * self.packet_slack),
            None => true,
        }
    }

    /// Whether the store should carry `op` out (the session's bound of mailboxes, then its
    /// registration rate); `Err` is the operation's result, counted.
    fn admit(&mut self, op: &Op, metrics: &GatewayRuntimeMetrics) -> Result<(), ErrorCode> {
        if let Err(code) = self.pull.admit(op) {
            metrics.registrations_refused.fetch_add(1, Ordering::Relaxed);
            return Err(code);
        }
        if matches!(op, Op::Register { .. })
            && !self.registrations.try_take(self.origin.elapsed(), self.registration_rate)
        {
            metrics.registrations_rate_limited.fetch_add(1, Ordering::Relaxed);
            // Like a store that cannot serve now: the client retries in a later pull.
            return Err(ErrorCode::Unavailable);
        }
        Ok(())
    }
}

/// What a client session's requests need besides the store.
struct ServeContext<'a> {
    docs: &'a DocumentCache,
    chunk_len: usize,
    metrics: &'a GatewayRuntimeMetrics,
}

fn store_code(e: StoreError) -> ErrorCode {
    match e {
        StoreError::Unauthorized => ErrorCode::Unauthorized,
        StoreError::Full { .. } | StoreError::Unavailable { .. } | StoreError::Io { .. } => {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    }
}

/// Answers a pull: its operations in order, then exactly `1 + limit` frames.
async fn pull<S: MailboxStore>(
    store: &S,
    session: &mut Session,
    (id, limit, want, ops): (u32, u16, Want, Vec<Op>),
    ctx: &ServeContext<'_>,
) -> Vec<Response> {
    let now = store_now();
    let mut results = [OpResult::Done; PULL_OPS];
    for (op, result) in ops.iter().zip(results.iter_mut()) {
        *result = match session.admit(op, ctx.metrics) {
            Err(code) => OpResult::Failed(code),
            Ok(()) => {
                let r = match *op {
                    Op::Register { mailbox, credential } => {
                        store.register(MailboxId(mailbox), &Credential::from_bytes(credential), now).await
                    }
                    Op::Unregister { mailbox, credential } => {
                        store.unregister(MailboxId(mailbox), &Credential::from_bytes(credential)).await
                    }
                    Op::Delete { mailbox, credential, up_to } => store
                        .delete_up_to(MailboxId(mailbox), &Credential::from_bytes(credential), Seq(up_to))
                        .await
                        .map(|_| ()),
                };
                r.map_or_else(|e| OpResult::Failed(store_code(e)), |()| OpResult::Done)
            }
        };
        session.pull.handle_op_result(op, *result);
    }
    let session = &mut session.pull;
    let doc = if want.epoch == 0 { None } else { ctx.docs.get(want.epoch) };
    let epoch = ctx.docs.epoch();
    let room = PullServer::item_room(limit, want, doc.as_deref(), ctx.chunk_len, epoch);
    let mut items = Vec::new();
    let mut more = false;
    for (mailbox, c) in session.fetch_order() {
        let left = room - items.len();
        if left == 0 && more {
            break;
        }
        // With no room left, one item is asked for only to learn whether any wait.
        match store.fetch(MailboxId(mailbox), &Credential::from_bytes(c), None, left + 1).await {
            Ok(msgs) => {
                more |= msgs.len() > left;
                items.extend(msgs.into_iter().take(left).map(|m| PulledItem {
                    mailbox,
                    seq: m.seq.0,
                    item: m.payload,
                }));
            }
            Err(_) => more = true,
        }
    }
    let out = session.answer(id, limit, more, results, items, want, doc.as_deref(), ctx.chunk_len, epoch);
    ctx.metrics.client_pulls.fetch_add(1, Ordering::Relaxed);
    let chunks = out.iter().filter(|r| matches!(r, Response::DocChunk { .. })).count();
    ctx.metrics.document_chunks.fetch_add(chunks as u64, Ordering::Relaxed);
    out
}

/// Answers one client control request.
async fn serve<S: MailboxStore>(
    store: &S,
    session: &mut Session,
    bytes: &[u8],
    ctx: &ServeContext<'_>,
) -> Vec<Response> {
    let req = match Request::decode(bytes) {
        Ok(req) => req,
        Err(ProtoError::Version(_)) => {
            ctx.metrics.version_mismatches.fetch_add(1, Ordering::Relaxed);
            return vec![Response::Error { id: 0, code: ErrorCode::Version }];
        }
        Err(_) => return vec![Response::Error { id: 0, code: ErrorCode::BadRequest }],
    };
    let now = store_now();
    let err = |id: u32, e: StoreError| Response::Error { id, code: store_code(e) };
    match req {
        Request::Register { id, mailbox, credential } => {
            let op = Op::Register { mailbox, credential };
            if let Err(code) = session.admit(&op, ctx.metrics) {
                return vec![Response::Error { id, code }];
            }
            match store.register(MailboxId(mailbox), &Credential::from_bytes(credential), now).await {
                Ok(()) => {
                    session.pull.handle_op_result(&op, OpResult::Done);
                    vec![Response::Ok { id }]
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Unregister { id, mailbox, credential } => {
            match store.unregister(MailboxId(mailbox), &Credential::from_bytes(credential)).await {
                Ok(()) => {
                    session.pull.handle_op_result(&Op::Unregister { mailbox, credential }, OpResult::Done);
                    vec![Response::Ok { id }]
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Pull { id, limit, want, ops } => pull(store, session, (id, limit, want, ops), ctx).await,
        Request::Fetch { id, mailbox, credential, after, limit } => {
            let limit = usize::from(limit.clamp(1, 256));
            let after = (after > 0).then_some(Seq(after));
            match store.fetch(MailboxId(mailbox), &Credential::from_bytes(credential), after, limit + 1).await
            {
                Ok(msgs) => {
                    let more = msgs.len() > limit;
                    let mut out: Vec<Response> = msgs
                        .into_iter()
                        .take(limit)
                        .map(|m| Response::Message { id, seq: m.seq.0, item: m.payload })
                        .collect();
                    out.push(Response::FetchDone { id, more });
                    out
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Delete { id, mailbox, credential, up_to } => {
            match store
                .delete_up_to(MailboxId(mailbox), &Credential::from_bytes(credential), Seq(up_to))
                .await
            {
                Ok(_) => vec![Response::Ok { id }],
                Err(e) => vec![err(id, e)],
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<S: MailboxStore>(
    mut core: Gateway,
    store: Arc<S>,
    config: GatewayRuntimeConfig,
    peers: SharedPeers,
    events_tx: mpsc::Sender<Event>,
    mut events: mpsc::Receiver<Event>,
    mut updates: mpsc::Receiver<EpochUpdate>,
    mut shutdown: watch::Receiver<bool>,
    core_metrics: Arc<Mutex<GatewayMetrics>>,
    link_metrics: Arc<LinkMetrics>,
    metrics: Arc<GatewayRuntimeMetrics>,
    accepts: [JoinHandle<()>; 2],
    mut log: Option<ReplayLog>,
    client_rate: ClientRate,
) {
    // The client rate of each epoch the directory described (the last few): sessions get the
    // largest, so that a client still on an epoch with higher rates is not cut off.
    let mut client_rates: BTreeMap<u64, f64> = BTreeMap::new();
    let origin = Instant::now();
    let clock = config.clock;
    let now = || clock + origin.elapsed();
    let mut links =
        Links::new(config.link_key.clone(), config.link.clone(), link_metrics, None, shutdown.clone());
    // Where each pending ack goes: the connection its packet came on.
    let mut reply_to: HashMap<(NodeId, u64), FrameSender> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut fault_rng = StdRng::try_from_rng(&mut SysRng).ok();
    let rate = config.fault_drop_rate;
    let mut fault = move || {
        rate > 0.0
            && fault_rng.as_mut().is_some_and(|r| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= rate)
    };
    loop {
        // A key's expiry may lie past what an `Instant` can hold (tests install endless windows).
        let wake = core.poll_timeout().and_then(|t| origin.checked_add(t.saturating_since(clock)));
        let sleep =
            tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::FromMix { reply, id, .. }) if fault() => {
                    // Lost after the hop acknowledged it.
                    metrics.fault_dropped.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.try_send(Frame::Ack(vec![id]));
                }
                Some(Event::FromClient(_)) if fault() => {
                    metrics.fault_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::FromMix { from, id, packet, reply }) => {
                    reply_to.insert((from, id.0), reply);
                    if core.handle_mix_packet(now(), from, AckToken(id.0), packet).is_err() {
                        reply_to.remove(&(from, id.0));
                    }
                }
                Some(Event::FromClient(packet)) => { let _ = core.handle_client_packet(now(), packet); }
                Some(Event::Stored(results)) => {
                    for (token, result) in results {
                        // A failed write is never acknowledged: forget where the acks would go.
                        for nack in core.handle_store_result(token, result) {
                            reply_to.remove(&(nack.to, nack.token.0));
                        }
                    }
                }
                None => break,
            },
            Some(id) = durable(&mut log) => core.handle_replay_logged(id),
            _ = sleep => {
                core.handle_timeout(now());
                if let Some(log) = &mut log {
                    log.retain(&core.key_epochs());
                }
            }
            update = updates.recv() => {
                let Some(u) = update else { continue };
                if let Some(key) = u.key {
                    let new = !core.key_epochs().contains(&u.epoch);
                    core.add_epoch_key(u.epoch, key, u.window);
                    if let Some(log) = log.as_mut().filter(|_| new) {
                        core.restore_replay_tags(u.epoch, &log.installed(u.epoch));
                    }
                }
                core.add_topology(u.topology);
                if u.client_rate > 0.0 {
                    client_rates.insert(u.epoch, u.client_rate);
                    while client_rates.len() > CACHED_DOCUMENTS {
                        client_rates.pop_first();
                    }
                    client_rate.set(client_rates.values().copied().fold(0.0, f64::max));
                }
                let changed = match peers.write() {
                    Ok(mut t) => t.set_epoch(u.epoch, u.peers),
                    Err(_) => Vec::new(),
                };
                for id in changed {
                    links.close(&id);
                }
            }
            _ = shutdown.changed() => break,
        }
        // Store writes: one append call per batch, off the event loop.
        let mut batch = Vec::new();
        while let Some(req) = core.poll_store() {
            batch.push(req);
            if batch.len() >= config.max_batch.max(1) {
                break;
            }
        }
        if !batch.is_empty() {
            let (store, tx, m) = (store.clone(), events_tx.clone(), metrics.clone());
            tokio::spawn(async move {
                let tokens: Vec<StoreToken> = batch.iter().map(|r| r.token).collect();
                let appends: Vec<Append> = batch
                    .into_iter()
                    .map(|r| Append {
                        mailbox: MailboxId(r.mailbox.0),
                        message_id: MessageId(r.message_id),
                        payload: r.item,
                    })
                    .collect();
                m.append_calls.fetch_add(1, Ordering::Relaxed);
                let results: Vec<(StoreToken, StoreResult)> = match store.append(appends, store_now()).await {
                    Ok(outcomes) => tokens
                        .into_iter()
                        .zip(outcomes)
                        .map(|(t, o)| {
                            let r = match o {
                                AppendOutcome::Stored(_) | AppendOutcome::Duplicate(_) => {
                                    StoreResult::Durable
                                }
                                AppendOutcome::UnknownMailbox => {
                                    m.rejected_unknown_mailbox.fetch_add(1, Ordering::Relaxed);
                                    StoreResult::Rejected
                                }
                                AppendOutcome::QuotaExceeded => {
                                    m.rejected_quota.fetch_add(1, Ordering::Relaxed);
                                    StoreResult::Rejected
                                }
                                _ => {
                                    m.rejected_too_large.fetch_add(1, Ordering::Relaxed);
                                    StoreResult::Rejected
                                }
                            };
                            (t, r)
                        })
                        .collect(),
                    Err(_) => {
                        m.append_failures.fetch_add(1, Ordering::Relaxed);
                        tokens.into_iter().map(|t| (t, StoreResult::Failed)).collect()
                    }
                };
                let _ = tx.send(Event::Stored(results)).await;
            });
        }
        while let Some(ack) = core.poll_ack() {
            if let Some(reply) = reply_to.remove(&(ack.to, ack.token.0)) {
                let _ = reply.try_send(Frame::Ack(vec![PacketId(ack.token.0)]));
            }
        }
        if let Some(log) = &mut log {
            while let Some(batch) = core.poll_replay_log() {
                log.append(batch);
            }
        }
        let t = now();
        while let Some(tx) = core.poll_transmit(t) {
            let Some((link, _)) = links.route(tx.to, &peers) else { continue };
            next_id += 1;
            if link.try_send(Frame::Packet { id: PacketId(next_id), packet: tx.packet }).is_err() {
                metrics.link_queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut m) = core_metrics.lock() {
            *m = core.metrics().clone();
        }
    }
    for a in accepts {
        a.abort();
    }
    links.shutdown().await;
}
