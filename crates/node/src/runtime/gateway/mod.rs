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
//!   or pull (its operation slots carried out, then the store reads planned by the IO-free
//!   [`qanat_mixnet::pull::PullServer`], then exactly `1 + limit` frames built by it: a head with
//!   each slot's outcome, then items from the mailboxes this connection registered, chunks of
//!   the directory document the client lacks from [`DocumentCache`], and padding). A pull of
//!   another version is answered with one `Error { code: Version }` frame.
//! - `now` for the mailbox store is wall-clock seconds (retention is in days); `now` for the core
//!   is the monotonic time since the runtime started, plus [`GatewayRuntimeConfig::clock`].
//! - [`GatewayHandle::update`] hands the runtime what the directory says about an epoch: the
//!   gateway's packet key, the topology (which mixes form the first layer) and the peers.
//! - With a [`ReplayLog`] ([`spawn_gateway_with_replay_log`]) the replay filters survive
//!   restarts exactly as a mix's do (see `runtime::mix`): packets going into layer 1 leave only
//!   once their tags are durable.
//!
//! The code: how to run a gateway in `config.rs` ([`GatewayRuntimeConfig`], [`ClientBudgets`]),
//! the documents it serves in `documents.rs` ([`DocumentCache`]); here the spawning (the two
//! listeners and each connection's tasks); `event_loop.rs` the loop around the core (what arrives
//! goes in; store writes, acknowledgements, replay tags and packets come out); `session.rs` a client
//! session's state without IO (its mailboxes, which plan its pulls' reads, and its budgets);
//! `clients.rs` its requests served on the store.

mod clients;
mod config;
mod documents;
mod event_loop;
mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qanat_link::{AcceptAnyKey, Frame, FrameSender, LinkMetrics, LinkPublicKey, Listener, PacketId};
use qanat_mailbox::{MailboxStore, UnixSeconds};
use qanat_mixnet::client_proto::doc_chunk_len;
use qanat_mixnet::{Gateway, GatewayMetrics, StoreResult, StoreToken};
use qanat_packet::NodeId;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::clients::{ServeContext, serve};
pub use self::config::{ClientBudgets, GatewayRuntimeConfig, MAX_SESSION_MAILBOXES, PULL_ANSWER_DELAY};
pub use self::documents::{CACHED_DOCUMENTS, DocumentCache};
use self::event_loop::run;
use self::session::Session;
use super::budget::ClientRate;
use super::handle::RuntimeHandle;
use super::links::{accept_loop, bind_nodes};
use super::node_core::attach_log;
use super::peers::{EpochUpdate, PeerTable, Probe, SharedPeers};
use crate::replay_log::{ReplayLog, ReplayLogMetrics};

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

/// The current time on the mailbox store's clock: whole seconds of the one wall clock,
/// [`qanat_network::wall_now`]. The one place a mailbox time is made from the directory's.
pub(crate) fn store_now() -> UnixSeconds {
    UnixSeconds(qanat_network::wall_now().as_secs())
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
    let replay_metrics = attach_log(&mut core, &mut log);
    let metrics =
        Arc::new(GatewayRuntimeMetrics { replay_log: replay_metrics, ..GatewayRuntimeMetrics::default() });
    let peers: SharedPeers = Arc::new(std::sync::RwLock::new(PeerTable::new(config.peers.clone())));
    let table = peers.clone();
    let authorizer = move |k: &LinkPublicKey| table.read().ok().and_then(|t| t.by_link_key(k));
    let (nodes, link_metrics) =
        bind_nodes(config.listen, &config.link_key, &config.link, authorizer, Listener::bind).await?;
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
    let chunk_len = doc_chunk_len(config.link.frame_size.max_control_len());
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
            // The session's clock: the time since it began.
            let origin = Instant::now();
            let mut session = Session::new(&budgets, Duration::ZERO);
            let ctx = ServeContext { docs: &docs, chunk_len, metrics: &m, origin };
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
                    if !session.take_packet(origin.elapsed(), rate.get()) {
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
    // The same fields as the mix's handle, listed in each runtime on purpose: a constructor would
    // take them all as arguments and save nothing.
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
