//! The mix node runtime: a [`qanat_mixnet::Mix`] behind a link listener, with one reconnecting
//! link per next hop.
//!
//! - Packets arriving on any authorised connection go from the connection's reader straight
//!   into one bounded queue shared by all of them ([`Listener::bind_shared`]), and from there,
//!   a burst per wake-up, to `Mix::handle_packets` with the time since the runtime started as
//!   `now`. A full queue stops the readers, so TCP pushes back on the previous hops.
//! - What `Mix::poll_transmit` releases is sent on the next hop's [`qanat_link::PeerLink`] with a fresh
//!   packet id. A full queue drops the packet (counted): a mix must never block on one slow peer.
//! - Packet ids, and the packets to gateways kept until the gateway acknowledges them, are the
//!   IO-free [`Resends`] table's: ids count from a random base drawn at start (so they do not
//!   repeat across restarts), a packet is sent again every `resend_after` with the same id (the
//!   gateway de-duplicates) and given up after `give_up_after`, with a bound per gateway and a
//!   global one. Acknowledgements are taken only off the link dialled to a gateway, with that
//!   gateway's id, and clear only what was sent to it.
//! - [`MixHandle::update`] hands the runtime what the directory says about an epoch
//!   ([`EpochUpdate`]): the node's packet key, the topology (for loop packets), the mixing
//!   parameters and the peers, which join the [`PeerTable`] shared with the listener's
//!   authoriser. A link to a node whose address or key changed is closed.
//! - With a [`ReplayLog`] ([`spawn_mix_with_replay_log`]), every key the core gets has its
//!   filter rebuilt from the tags logged before a restart, the tags the core accepts are handed
//!   to the log's writer after each wake-up (before `poll_transmit`, which releases a packet only
//!   once its tag's batch is durable), each durable report goes back to the core, and the log of
//!   a key the core erased is deleted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qanat_link::{
    Frame, FrameReceiver, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, Listener, PacketId,
};
use qanat_mixnet::{Mix, MixMetrics, ResendConfig, ResendMetrics, Resends, UnixMicros};
use qanat_packet::NodeId;
use rand_core::{CryptoRng, Rng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::handle::RuntimeHandle;
use super::links::{Links, accept_loop, bind_nodes};
use super::node_core::{apply_update, attach_log, durable, log_tags, retain_logs};
use super::peers::{EpochUpdate, Peer, PeerTable, Probe, SharedPeers};
use crate::config::HostileMix;
use crate::replay_log::{ReplayLog, ReplayLogMetrics};

/// How to run a mix.
#[derive(Debug)]
pub struct MixRuntimeConfig {
    /// Where to listen for links.
    pub listen: SocketAddr,
    /// This node's link key.
    pub link_key: Arc<LinkSecretKey>,
    /// Link settings (frame size, timeouts, queues).
    pub link: LinkConfig,
    /// Nodes that may connect here or that packets may go to, whatever the directory says
    /// (more come with [`MixHandle::update`]).
    pub peers: HashMap<NodeId, Peer>,
    /// When an unacknowledged packet to a gateway is sent again, when it is given up, and how
    /// many are kept (in all, and per gateway).
    pub resend: ResendConfig,
    /// What the core's clock reads when the runtime starts: `UnixMicros::ZERO` for a private clock,
    /// or the Unix time in microseconds so that epoch windows are wall-clock times.
    pub clock: UnixMicros,
    /// A hostile mix, for tests only (the `[danger]` table): off by default.
    pub hostile: HostileMix,
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
    /// Packets to gateways not kept for resending because `resend.max_packets` were waiting.
    pub unacked_full: AtomicU64,
    /// Packets to gateways not kept because `resend.max_per_gateway` were waiting for that one.
    pub unacked_gateway_full: AtomicU64,
    /// Packets to gateways given up after `resend.give_up_after` without an acknowledgement.
    pub gave_up: AtomicU64,
    /// Acknowledged ids that named no packet kept for the gateway that sent them.
    pub stray_acks: AtomicU64,
    /// Packets to gateways kept now (a gauge).
    pub unacked: AtomicU64,
    /// A hostile mix (tests only, [`HostileMix`]): packets it dropped instead of forwarding.
    pub hostile_withheld: AtomicU64,
    /// A hostile mix: extra copies of forwarded packets it sent.
    pub hostile_replayed: AtomicU64,
    /// A hostile mix: packets of random bytes it sent.
    pub hostile_forged: AtomicU64,
    /// The replay log's counters (zero without one).
    pub replay_log: Arc<ReplayLogMetrics>,
}

impl RuntimeMetrics {
    fn publish_resends(&self, m: &ResendMetrics, kept: usize) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.resent, m.resent);
        set(&self.acked, m.acked);
        set(&self.unacked_full, m.full);
        set(&self.unacked_gateway_full, m.gateway_full);
        set(&self.gave_up, m.gave_up);
        set(&self.stray_acks, m.stray_acks);
        set(&self.unacked, kept as u64);
    }
}

/// Every counter of a running mix.
pub type MixProbe = Probe<MixMetrics, RuntimeMetrics>;

/// A running mix.
pub type MixHandle = RuntimeHandle<MixMetrics, RuntimeMetrics>;

/// Starts a mix around `core`, with replay filters in memory only (a restarted mix forgets
/// them; see [`spawn_mix_with_replay_log`]).
pub async fn spawn_mix<R: CryptoRng + Send + 'static>(
    core: Mix,
    config: MixRuntimeConfig,
    rng: R,
) -> std::io::Result<MixHandle> {
    spawn(core, config, rng, None).await
}

/// Starts a mix around `core` whose replay filters survive restarts through `log`: the filters
/// of keys installed (now or later) are rebuilt from it, and no packet leaves before its tag is
/// durable in it.
pub async fn spawn_mix_with_replay_log<R: CryptoRng + Send + 'static>(
    core: Mix,
    config: MixRuntimeConfig,
    rng: R,
    log: ReplayLog,
) -> std::io::Result<MixHandle> {
    spawn(core, config, rng, Some(log)).await
}

async fn spawn<R: CryptoRng + Send + 'static>(
    mut core: Mix,
    config: MixRuntimeConfig,
    rng: R,
    mut log: Option<ReplayLog>,
) -> std::io::Result<MixHandle> {
    let replay_metrics = attach_log(&mut core, &mut log);
    let peers: SharedPeers = Arc::new(std::sync::RwLock::new(PeerTable::new(config.peers.clone())));
    let table = peers.clone();
    let authorizer = move |k: &LinkPublicKey| table.read().ok().and_then(|t| t.by_link_key(k)).map(|_| ());
    // Every connection's frames go straight into one bounded queue that the main loop reads.
    let ((listener, inbound), link_metrics) =
        bind_nodes(config.listen, &config.link_key, &config.link, authorizer, Listener::bind_shared).await?;
    let local_addr = listener.local_addr();
    let (updates, updates_rx) = mpsc::channel::<EpochUpdate>(16);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let core_metrics = Arc::new(Mutex::new(core.metrics()));
    let metrics = Arc::new(RuntimeMetrics { replay_log: replay_metrics, ..RuntimeMetrics::default() });

    // Accept loop: a connection needs nothing more once accepted (nothing is sent back to the
    // previous hop); it keeps delivering into `inbound` until it ends or the runtime stops.
    let accept = accept_loop(listener, shutdown_rx.clone(), drop);

    let task = tokio::spawn(run(
        core,
        config,
        peers,
        rng,
        inbound,
        updates_rx,
        shutdown_rx,
        core_metrics.clone(),
        link_metrics.clone(),
        metrics.clone(),
        accept,
        log,
    ));
    Ok(MixHandle {
        local_addr,
        client_addr: None,
        shutdown,
        task,
        updates,
        core_metrics,
        link_metrics,
        metrics,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run<R: CryptoRng + Send + 'static>(
    mut core: Mix,
    config: MixRuntimeConfig,
    peers: SharedPeers,
    mut rng: R,
    mut inbound: FrameReceiver,
    mut updates: mpsc::Receiver<EpochUpdate>,
    mut shutdown: watch::Receiver<bool>,
    core_metrics: Arc<Mutex<MixMetrics>>,
    link_metrics: Arc<LinkMetrics>,
    metrics: Arc<RuntimeMetrics>,
    accept: JoinHandle<()>,
    mut log: Option<ReplayLog>,
) {
    let origin = Instant::now();
    let clock = config.clock;
    let hostile = config.hostile;
    let now = || clock + origin.elapsed();
    let (acks_tx, mut acks) = mpsc::channel::<(NodeId, Vec<PacketId>)>(1024);
    let mut links = Links::new(
        config.link_key.clone(),
        config.link.clone(),
        link_metrics,
        Some(acks_tx),
        shutdown.clone(),
    );
    let mut resends = Resends::new(config.resend, &mut rng);
    // One timer for the core's next deadline, moved only when that deadline changes; one for the
    // resend table's.
    let far = || Instant::now() + Duration::from_secs(3600);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    let resend_sleep = tokio::time::sleep_until(far());
    tokio::pin!(resend_sleep);
    let mut last_resend = Instant::now();
    // Frames taken from `inbound` in one wake-up: what is already waiting, at most this many.
    const BURST: usize = 64;
    let mut burst: Vec<Frame> = Vec::with_capacity(BURST);
    loop {
        // A key's expiry may lie past what an `Instant` can hold (tests install endless windows).
        let wake = core.poll_timeout().and_then(|t| origin.checked_add(t.saturating_since(clock)));
        match wake {
            Some(w) if w != sleep.deadline() => sleep.as_mut().reset(w),
            None if sleep.is_elapsed() => sleep.as_mut().reset(far()),
            _ => {}
        }
        // The resend table's wake-ups are at least 10 ms apart: each sends every packet due.
        let resend_wake = resends
            .poll_timeout()
            .map(|t| (origin + t.saturating_since(clock)).max(last_resend + Duration::from_millis(10)));
        match resend_wake {
            Some(w) if w != resend_sleep.deadline() => resend_sleep.as_mut().reset(w),
            None if resend_sleep.is_elapsed() => resend_sleep.as_mut().reset(far()),
            _ => {}
        }
        tokio::select! {
            n = inbound.recv_many(&mut burst, BURST) => {
                if n == 0 {
                    break;
                }
                // One batch: the core checks all their replay tags before unwrapping any.
                let packets = burst.drain(..).filter_map(|f| match f {
                    Frame::Packet { packet, .. } => Some(packet),
                    _ => None,
                });
                core.handle_packets(now(), packets);
            }
            Some((from, ids)) = acks.recv() => {
                resends.handle_acks(from, ids.into_iter().map(|id| id.0));
            }
            Some(id) = durable(&mut log) => core.handle_replay_logged(id),
            () = &mut sleep => {
                core.handle_timeout(now(), &mut rng);
                sleep.as_mut().reset(far());
                retain_logs(&core, &mut log);
            }
            update = updates.recv() => {
                let Some(u) = update else { continue };
                core.set_cover(u.mean_delay, u.loop_rate);
                apply_update(&mut core, &mut log, &peers, &mut links, u);
            }
            () = &mut resend_sleep => {
                resend_sleep.as_mut().reset(far());
                last_resend = Instant::now();
                let t = now();
                while let Some(r) = resends.poll_resend(t) {
                    let Some((link, _)) = links.route(r.to, &peers) else { continue };
                    // A full queue loses this attempt only; the packet stays kept.
                    let _ = link.try_send(Frame::Packet { id: PacketId(r.id), packet: r.packet });
                }
            }
            _ = shutdown.changed() => break,
        }
        // The tags of what was accepted go to the log; the packets wait for the durable report.
        log_tags(&mut core, &mut log);
        let t = now();
        while let Some(tx) = core.poll_transmit(t) {
            if hostile.withhold_rate > 0.0 && unit(&mut rng) < hostile.withhold_rate {
                metrics.hostile_withheld.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some((link, gateway)) = links.route(tx.to, &peers) else {
                metrics.unknown_next_hop.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            for _ in 0..hostile.forge_copies {
                let mut forged = vec![0u8; tx.packet.len()];
                rng.fill_bytes(&mut forged);
                let id = PacketId(resends.send(t, tx.to, gateway, &forged));
                let _ = link.try_send(Frame::Packet { id, packet: forged });
                metrics.hostile_forged.fetch_add(1, Ordering::Relaxed);
            }
            for _ in 0..hostile.replay_copies {
                let id = PacketId(resends.send(t, tx.to, gateway, &tx.packet));
                let _ = link.try_send(Frame::Packet { id, packet: tx.packet.clone() });
                metrics.hostile_replayed.fetch_add(1, Ordering::Relaxed);
            }
            let id = PacketId(resends.send(t, tx.to, gateway, &tx.packet));
            let sent = link.try_send(Frame::Packet { id, packet: tx.packet });
            if sent.is_err() && !gateway {
                metrics.link_queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut m) = core_metrics.lock() {
            *m = core.metrics();
        }
        metrics.publish_resends(resends.metrics(), resends.len());
    }
    accept.abort();
    links.shutdown().await;
}

/// A uniform draw in [0, 1).
fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
