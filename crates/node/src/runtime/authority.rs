//! The directory authority runtime: a [`qanat_pki::Authority`] behind a link listener, with one
//! reconnecting link per other authority.
//!
//! - One [`Listener`] takes connections from the other authorities (recognised by their link
//!   keys and tagged as such) and from any node: nodes upload descriptors and fetch documents,
//!   and their keys are not known in advance (a node's link key is in its descriptor). Only
//!   connections tagged as an authority may carry `PeerMessage`s.
//! - Messages use the chunked control protocol of [`super::authority_proto`].
//! - The core runs on wall-clock time ([`UnixMillis`](qanat_pki::UnixMillis)): the main loop feeds it uploads and peer
//!   messages, sleeps until [`Authority::next_timeout`], and carries out what
//!   [`Authority::poll`] returns: `Send` goes to the peer's [`PeerLink`] (a full queue drops the
//!   message, counted: the cert relay makes the protocol tolerate loss), `Publish` replaces the
//!   served document of that epoch (the last `keep_documents` epochs are kept).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qanat_link::{
    Frame, FrameSender, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener, PeerLink,
};
use qanat_network::wall_now;
use qanat_pki::{Action, Authority, Epoch, IdentityKey};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::authority_proto::{
    ErrorCode, MAX_PEER_LEN, MAX_REQUEST_LEN, Message, ProtoError, Reassembler, to_chunks,
};
use super::links::{accept_loop, bind_nodes};

/// Another authority, as this one reaches it.
#[derive(Debug, Clone)]
pub struct AuthorityLink {
    /// Its identity key (the `to` of [`Action::Send`]).
    pub identity: IdentityKey,
    /// Its link address.
    pub addr: SocketAddr,
    /// Its link public key (also what tags its connections here as an authority's).
    pub link_key: LinkPublicKey,
}

/// How to run an authority.
#[derive(Debug)]
pub struct AuthorityRuntimeConfig {
    /// Where to listen for links.
    pub listen: SocketAddr,
    /// This authority's link key.
    pub link_key: Arc<LinkSecretKey>,
    /// Link settings (frame size, timeouts, queues).
    pub link: LinkConfig,
    /// The other authorities.
    pub peers: Vec<AuthorityLink>,
    /// How many epochs of published documents are served (at least 1).
    pub keep_documents: usize,
    /// Messages queued toward one peer before further ones are dropped.
    pub peer_queue: usize,
}

/// Counters of the runtime.
#[derive(Debug, Default)]
pub struct AuthorityMetrics {
    /// Descriptors the core accepted.
    pub descriptors_accepted: AtomicU64,
    /// Descriptors the core refused.
    pub descriptors_rejected: AtomicU64,
    /// Peer messages the core accepted.
    pub peer_messages_accepted: AtomicU64,
    /// Peer messages the core refused.
    pub peer_messages_rejected: AtomicU64,
    /// Messages to peers dropped (full queue, unknown peer, too large).
    pub peer_messages_dropped: AtomicU64,
    /// Documents published (each `Publish`, including re-publications with more signatures).
    pub published: AtomicU64,
    /// Rounds that ended without a document.
    pub consensus_failed: AtomicU64,
    /// Connections closed for a protocol violation.
    pub protocol_errors: AtomicU64,
    /// Documents served.
    pub documents_served: AtomicU64,
    /// Out-of-sequence chunks from authorities skipped (the tail of a message cut by a
    /// reconnection).
    pub chunks_discarded: AtomicU64,
}

/// Documents served, by epoch.
type Documents = Arc<Mutex<BTreeMap<Epoch, Arc<Vec<u8>>>>>;

/// Every counter of a running authority, readable while it runs.
#[derive(Debug, Clone)]
pub struct AuthorityProbe {
    documents: Documents,
    /// Link counters.
    pub links: Arc<LinkMetrics>,
    /// Runtime counters.
    pub runtime: Arc<AuthorityMetrics>,
}

impl AuthorityProbe {
    /// The latest epoch with a published document, and how many documents are served.
    pub fn documents(&self) -> (Option<Epoch>, usize) {
        self.documents.lock().map(|d| (d.keys().next_back().copied(), d.len())).unwrap_or((None, 0))
    }
}

/// A running authority.
#[derive(Debug)]
pub struct AuthorityHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    documents: Documents,
    /// Link counters.
    pub link_metrics: Arc<LinkMetrics>,
    /// Runtime counters.
    pub metrics: Arc<AuthorityMetrics>,
}

impl AuthorityHandle {
    /// The address the listener bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The document served for `epoch`, if any.
    pub fn document(&self, epoch: Epoch) -> Option<Vec<u8>> {
        self.documents.lock().ok().and_then(|d| d.get(&epoch).map(|b| b.to_vec()))
    }

    /// A cloneable view of every counter, for a metrics endpoint.
    pub fn probe(&self) -> AuthorityProbe {
        AuthorityProbe {
            documents: self.documents.clone(),
            links: self.link_metrics.clone(),
            runtime: self.metrics.clone(),
        }
    }

    /// Stops the authority: the listener closes and the peer links are dropped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Who is at the other end of an accepted connection.
#[derive(Clone, Copy, Debug)]
enum Remote {
    Authority,
    Node,
}

enum Event {
    Peer(Vec<u8>),
    Descriptor(Vec<u8>, oneshot::Sender<Message>),
}

/// Starts an authority around `core`.
pub async fn spawn_authority(
    core: Authority,
    config: AuthorityRuntimeConfig,
) -> std::io::Result<AuthorityHandle> {
    let peer_keys: Vec<LinkPublicKey> = config.peers.iter().map(|p| p.link_key.clone()).collect();
    let authorizer = move |k: &LinkPublicKey| {
        Some(if peer_keys.iter().any(|a| a == k) { Remote::Authority } else { Remote::Node })
    };
    let (listener, link_metrics) =
        bind_nodes(config.listen, &config.link_key, &config.link, authorizer, Listener::bind).await?;
    let local_addr = listener.local_addr();
    let (events_tx, events_rx) = mpsc::channel::<Event>(1024);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(AuthorityMetrics::default());
    let documents: Documents = Arc::default();
    let size = config.link.frame_size;

    let (docs, m) = (documents.clone(), metrics.clone());
    let accept = accept_loop(listener, shutdown_rx.clone(), move |conn| {
        let (remote, sender, receiver) = conn.split();
        tokio::spawn(serve(remote, sender, receiver, size, events_tx.clone(), docs.clone(), m.clone()));
    });

    let task = tokio::spawn(run(
        core,
        config,
        events_rx,
        shutdown_rx,
        documents.clone(),
        link_metrics.clone(),
        metrics.clone(),
        accept,
    ));
    Ok(AuthorityHandle { local_addr, shutdown, task, documents, link_metrics, metrics })
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
enum SendFailure {
    /// It cannot be chunked (too large for the protocol).
    #[error("cannot send: {0}")]
    Proto(ProtoError),
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// Sends `message` as its chunks, in order.
async fn send_message(sender: &FrameSender, size: FrameSize, message: &Message) -> Result<(), SendFailure> {
    for chunk in to_chunks(message, size).map_err(SendFailure::Proto)? {
        sender.send(Frame::Control(chunk)).await.map_err(|_| SendFailure::Closed)?;
    }
    Ok(())
}

/// One accepted connection: reassembles requests and answers them in order.
async fn serve(
    remote: Remote,
    sender: FrameSender,
    mut receiver: qanat_link::FrameReceiver,
    size: FrameSize,
    events: mpsc::Sender<Event>,
    documents: Documents,
    metrics: Arc<AuthorityMetrics>,
) {
    let bound = match remote {
        Remote::Authority => MAX_PEER_LEN.max(MAX_REQUEST_LEN),
        Remote::Node => MAX_REQUEST_LEN,
    };
    let Ok(mut reassembler) = Reassembler::new(size, bound) else { return };
    while let Some(frame) = receiver.recv().await {
        let Frame::Control(bytes) = frame else { continue };
        let message = match reassembler.push(&bytes) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            // A peer's link may reconnect in the middle of a message, whose last chunks then
            // open the new connection: they are skipped until the next message starts.
            Err(ProtoError::BadChunk) if matches!(remote, Remote::Authority) => {
                metrics.chunks_discarded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(_) => {
                metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let answer = match (message, remote) {
            (Message::PeerMessage(b), Remote::Authority) => {
                if events.send(Event::Peer(b)).await.is_err() {
                    break;
                }
                continue;
            }
            (Message::UploadDescriptor(b), _) => {
                let (tx, rx) = oneshot::channel();
                if events.send(Event::Descriptor(b, tx)).await.is_err() {
                    break;
                }
                rx.await.unwrap_or(Message::Error(ErrorCode::Unavailable))
            }
            (Message::GetDocument(epoch), _) => {
                let doc = documents.lock().ok().and_then(|d| d.get(&epoch).cloned());
                match doc {
                    Some(d) => {
                        metrics.documents_served.fetch_add(1, Ordering::Relaxed);
                        Message::Document(d.to_vec())
                    }
                    None => Message::NotYet,
                }
            }
            _ => {
                metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        if send_message(&sender, size, &answer).await.is_err() {
            break;
        }
    }
}

/// The sending side of one peer authority: a reconnecting link fed whole messages.
struct PeerSender {
    queue: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

fn spawn_peer(
    peer: &AuthorityLink,
    config: &AuthorityRuntimeConfig,
    link_metrics: Arc<LinkMetrics>,
    mut stop: watch::Receiver<bool>,
) -> PeerSender {
    let (queue, mut rx) = mpsc::channel::<Vec<u8>>(config.peer_queue.max(1));
    let size = config.link.frame_size;
    let mut link = PeerLink::spawn(
        peer.addr,
        peer.link_key.clone(),
        config.link_key.clone(),
        config.link.clone(),
        link_metrics,
    );
    let task = tokio::spawn(async move {
        let sender = link.sender();
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    // A message lost to a broken connection is recovered by the cert relay.
                    Some(m) => { let _ = send_message(&sender, size, &Message::PeerMessage(m)).await; }
                    None => break,
                },
                // Nothing is expected back; reading keeps the link's queue from filling.
                frame = link.recv() => if frame.is_none() { break },
                _ = stop.changed() => break,
            }
        }
        link.shutdown().await;
    });
    PeerSender { queue, task }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut core: Authority,
    config: AuthorityRuntimeConfig,
    mut events: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
    documents: Documents,
    link_metrics: Arc<LinkMetrics>,
    metrics: Arc<AuthorityMetrics>,
    accept: JoinHandle<()>,
) {
    let peers: HashMap<IdentityKey, PeerSender> = config
        .peers
        .iter()
        .map(|p| (p.identity, spawn_peer(p, &config, link_metrics.clone(), shutdown.clone())))
        .collect();
    let keep = config.keep_documents.max(1);
    loop {
        let now = wall_now();
        for action in core.poll(now) {
            match action {
                Action::Send { to, message } => {
                    let queued = peers.get(&to).is_some_and(|p| p.queue.try_send(message).is_ok());
                    if !queued {
                        metrics.peer_messages_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Action::Publish { epoch, document } => {
                    metrics.published.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut d) = documents.lock() {
                        d.insert(epoch, Arc::new(document));
                        while d.len() > keep {
                            d.pop_first();
                        }
                    }
                }
                Action::ConsensusFailed { .. } => {
                    metrics.consensus_failed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        let wake = core.next_timeout(now);
        let delay = Duration::from_millis(wake.as_millis().saturating_sub(wall_now().as_millis()).max(1));
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Peer(bytes)) => {
                    let counter = match core.handle_message(wall_now(), &bytes) {
                        Ok(()) => &metrics.peer_messages_accepted,
                        Err(_) => &metrics.peer_messages_rejected,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::Descriptor(bytes, reply)) => {
                    let answer = match core.handle_descriptor(wall_now(), &bytes) {
                        Ok(_) => {
                            metrics.descriptors_accepted.fetch_add(1, Ordering::Relaxed);
                            Message::Ok
                        }
                        Err(e) => {
                            metrics.descriptors_rejected.fetch_add(1, Ordering::Relaxed);
                            Message::Error(ErrorCode::from(&e))
                        }
                    };
                    let _ = reply.send(answer);
                }
                None => break,
            },
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
    accept.abort();
    for (_, p) in peers {
        drop(p.queue);
        let _ = p.task.await;
    }
}
