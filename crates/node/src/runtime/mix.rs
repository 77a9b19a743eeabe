//! The mix node runtime: a [`qanat_mixnet::Mix`] behind a link listener, with one reconnecting
//! link per next hop.
//!
//! - Packets arriving on any authorised connection go to `Mix::handle_packet` with the time
//!   since the runtime started as `now`.
//! - What `Mix::poll_transmit` releases is sent on the next hop's [`PeerLink`] with a fresh
//!   packet id. A full queue drops the packet (counted): a mix must never block on one slow peer.
//! - Packets to a gateway are kept until the gateway acknowledges them (it does so only once the
//!   payload is durable) and sent again after `resend_after`; the gateway de-duplicates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qanat_link::{
    Frame, FrameSender, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener, PacketId, PeerLink,
};
use qanat_mixnet::{Mix, MixMetrics, Time};
use qanat_packet::NodeId;
use rand_core::CryptoRng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most packets kept for gateways that have not acknowledged them (about 44 MB of 2.2 KB
/// packets); beyond it a packet is still sent once but not kept for resending, and counted.
pub const MAX_UNACKED: usize = 20_000;

/// A node this mix talks to.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its link address.
    pub addr: SocketAddr,
    /// Its link public key (also what authorises it to connect here).
    pub link_key: LinkPublicKey,
    /// Whether it is a gateway (packets to it are kept until acknowledged).
    pub gateway: bool,
}

/// How to run a mix.
#[derive(Debug)]
pub struct MixRuntimeConfig {
    /// Where to listen for links.
    pub listen: SocketAddr,
    /// This node's link key.
    pub link_key: Arc<LinkSecretKey>,
    /// Link settings (frame size, timeouts, queues).
    pub link: LinkConfig,
    /// Every node that may connect here or that packets may go to.
    pub peers: HashMap<NodeId, Peer>,
    /// When an unacknowledged packet to a gateway is sent again.
    pub resend_after: Duration,
}

/// Counters of the runtime itself (the core's are in [`MixMetrics`]).
#[derive(Debug, Default)]
pub struct RuntimeMetrics {
    /// Packets the core released for a node this mix does not know.
    pub unknown_next_hop: AtomicU64,
    /// Packets dropped because the next hop's link queue was full.
    pub link_queue_full: AtomicU64,
    /// Packets to gateways sent again for want of an acknowledgement.
    pub resent: AtomicU64,
    /// Packets to gateways acknowledged.
    pub acked: AtomicU64,
    /// Packets to gateways not kept for resending because [`MAX_UNACKED`] were already waiting.
    pub unacked_full: AtomicU64,
}

/// A running mix.
#[derive(Debug)]
pub struct MixHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    core_metrics: Arc<Mutex<MixMetrics>>,
    /// Link counters.
    pub link_metrics: Arc<LinkMetrics>,
    /// Runtime counters.
    pub metrics: Arc<RuntimeMetrics>,
}

impl MixHandle {
    /// The address the listener bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The core's counters, as of the last event.
    pub fn core_metrics(&self) -> MixMetrics {
        self.core_metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Stops the mix: the listener closes and outgoing links are dropped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

enum Event {
    Packet(Vec<u8>),
    Acked(Vec<PacketId>),
}

/// Starts a mix around `core`.
pub async fn spawn_mix<R: CryptoRng + Send + 'static>(
    core: Mix,
    config: MixRuntimeConfig,
    rng: R,
) -> std::io::Result<MixHandle> {
    let link_metrics = Arc::new(LinkMetrics::default());
    let allowed: Vec<LinkPublicKey> = config.peers.values().map(|p| p.link_key.clone()).collect();
    let authorizer = move |k: &LinkPublicKey| allowed.iter().any(|a| a == k).then_some(());
    let mut listener = Listener::bind(
        config.listen,
        config.link_key.clone(),
        config.link.clone(),
        authorizer,
        link_metrics.clone(),
    )
    .await?;
    let local_addr = listener.local_addr();
    let (events_tx, events_rx) = mpsc::channel::<Event>(4096);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let core_metrics = Arc::new(Mutex::new(core.metrics()));
    let metrics = Arc::new(RuntimeMetrics::default());

    // Accept loop: every authorised connection's packets go to the main loop.
    let accept_tx = events_tx.clone();
    let mut accept_shutdown = shutdown_rx.clone();
    let accept = tokio::spawn(async move {
        loop {
            tokio::select! {
                conn = listener.accept() => {
                    let Some(conn) = conn else { break };
                    let tx = accept_tx.clone();
                    let (_, _sender, mut receiver) = conn.split();
                    tokio::spawn(async move {
                        while let Some(frame) = receiver.recv().await {
                            if let Frame::Packet { packet, .. } = frame
                                && tx.send(Event::Packet(packet)).await.is_err()
                            {
                                    break;
                            }
                        }
                    });
                }
                _ = accept_shutdown.changed() => break,
            }
        }
        listener.shutdown().await;
    });

    let task = tokio::spawn(run(
        core,
        config,
        rng,
        events_tx,
        events_rx,
        shutdown_rx,
        core_metrics.clone(),
        link_metrics.clone(),
        metrics.clone(),
        accept,
    ));
    Ok(MixHandle { local_addr, shutdown, task, core_metrics, link_metrics, metrics })
}

#[allow(clippy::too_many_arguments)]
async fn run<R: CryptoRng + Send + 'static>(
    mut core: Mix,
    config: MixRuntimeConfig,
    mut rng: R,
    events_tx: mpsc::Sender<Event>,
    mut events: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
    core_metrics: Arc<Mutex<MixMetrics>>,
    link_metrics: Arc<LinkMetrics>,
    metrics: Arc<RuntimeMetrics>,
    accept: JoinHandle<()>,
) {
    let origin = Instant::now();
    let now = || Time(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX));
    let mut links: HashMap<NodeId, FrameSender> = HashMap::new();
    let mut link_tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut unacked: HashMap<PacketId, (NodeId, Vec<u8>, Instant)> = HashMap::new();
    let mut next_id: u64 = 0;
    let resend_tick = config.resend_after.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(resend_tick);
    // One timer for the core's next deadline, moved only when that deadline changes.
    let far = || Instant::now() + Duration::from_secs(3600);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    loop {
        let wake = core.poll_timeout().map(|t| origin + Duration::from_micros(t.0));
        match wake {
            Some(w) if w != sleep.deadline() => sleep.as_mut().reset(w),
            None if sleep.is_elapsed() => sleep.as_mut().reset(far()),
            _ => {}
        }
        tokio::select! {
            ev = events.recv() => {
                let Some(mut ev) = ev else { break };
                // Take what else is already waiting (bounded), so one wake-up serves a burst.
                for left in (0..64).rev() {
                    match ev {
                        Event::Packet(p) => {
                            let _ = core.handle_packet(now(), p);
                        }
                        Event::Acked(ids) => {
                            for id in ids {
                                if unacked.remove(&id).is_some() {
                                    metrics.acked.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    if left == 0 {
                        break;
                    }
                    match events.try_recv() {
                        Ok(next) => ev = next,
                        Err(_) => break,
                    }
                }
            }
            () = &mut sleep => {
                core.handle_timeout(now(), &mut rng);
                sleep.as_mut().reset(far());
            }
            _ = ticker.tick() => {
                let cutoff = Instant::now() - config.resend_after;
                let due: Vec<PacketId> = unacked.iter().filter(|(_, v)| v.2 <= cutoff).map(|(k, _)| *k).collect();
                for id in due {
                    if let Some((to, packet, at)) = unacked.get_mut(&id) {
                        if let Some(link) = links.get(to)
                            && link.try_send(Frame::Packet { id, packet: packet.clone() }).is_ok()
                        {
                                metrics.resent.fetch_add(1, Ordering::Relaxed);
                        }
                        *at = Instant::now();
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
        let t = now();
        while let Some(tx) = core.poll_transmit(t) {
            let Some(peer) = config.peers.get(&tx.to) else {
                metrics.unknown_next_hop.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let link = links.entry(tx.to).or_insert_with(|| {
                let mut link = PeerLink::spawn(
                    peer.addr,
                    peer.link_key.clone(),
                    config.link_key.clone(),
                    config.link.clone(),
                    link_metrics.clone(),
                );
                let sender = link.sender();
                // The link's own task reads what comes back on it (acknowledgements) and owns
                // it until shutdown.
                let tx_ev = events_tx.clone();
                let mut stop = shutdown.clone();
                link_tasks.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            frame = link.recv() => match frame {
                                Some(Frame::Ack(ids)) => {
                                    if tx_ev.send(Event::Acked(ids)).await.is_err() {
                                        break;
                                    }
                                }
                                Some(_) => {}
                                None => break,
                            },
                            _ = stop.changed() => break,
                        }
                    }
                    link.shutdown().await;
                }));
                sender
            });
            next_id += 1;
            let id = PacketId(next_id);
            if peer.gateway {
                if unacked.len() < MAX_UNACKED {
                    unacked.insert(id, (tx.to, tx.packet.clone(), Instant::now()));
                } else {
                    metrics.unacked_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            if link.try_send(Frame::Packet { id, packet: tx.packet }).is_err() && !peer.gateway {
                metrics.link_queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut m) = core_metrics.lock() {
            *m = core.metrics();
        }
    }
    accept.abort();
    drop(links);
    for t in link_tasks {
        let _ = t.await;
    }
}
