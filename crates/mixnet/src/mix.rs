//! The mix node: unwrap one layer, drop replays, hold each packet for the delay its sender chose,
//! forward it; and send loop cover traffic of its own.
//!
//! Driven like quinn-proto: [`Mix::handle_packet`] for each packet that arrives,
//! [`Mix::poll_transmit`] for packets due to leave, [`Mix::poll_timeout`] /
//! [`Mix::handle_timeout`] for the timer. Nothing here reads a clock or opens a socket.
//!
//! Keys: the node installs one packet key per epoch ([`Mix::add_epoch_key`]) with the interval in
//! which it is accepted (the epoch widened by a grace period on both sides, so packets in flight
//! across a boundary are not lost). Each key has its own replay filter; both are erased together
//! when the key expires, which is what keeps the filter's memory bounded.
//!
//! Replay protection across restarts: with [`Mix::enable_replay_log`], the node appends the tags
//! [`Mix::poll_replay_log`] hands out to a log on disk and reports each batch durable with
//! [`Mix::handle_replay_logged`]; a packet leaves only once its tag's batch is durable. After a
//! restart the node rebuilds the filters with [`Mix::restore_replay_tags`]. See the
//! `keyring` module's notes.

use std::time::Duration;

use qanat_packet::{Geometry, MailboxId, NodeId, ReplayTag, SecretKey, Sphinx, UnwrapError, Unwrapped};
use qanat_pki::Position;
use rand_core::CryptoRng;

use crate::keyring::{
    DelayQueue, EpochWindow, KeyRing, ReplayBatch, RingError, Transmit, earliest, requested_delay,
};
use crate::time::{UnixMicros, exponential};
use crate::topology::{Destination, Hop, Topology, path_hops};

/// A mix node's configuration.
#[derive(Debug, Clone)]
pub struct MixConfig {
    /// This node.
    pub id: NodeId,
    /// The secret mailbox id this node's own loop packets carry to their last hop, this node: how
    /// it tells them from others.
    pub loop_recipient: MailboxId,
    /// Mean per-hop delay 1/μ used in the node's own loop packets.
    pub mean_delay: Duration,
    /// Rate λ_M of loop cover packets per second (0 disables them).
    pub loop_rate: f64,
    /// Longest delay honoured; longer requested delays are cut to this (bounds memory and stops a
    /// sender from parking packets at a mix).
    pub max_delay: Duration,
    /// Most packets held at once; beyond it new packets are dropped and counted.
    pub max_queue: usize,
    /// Tags each epoch key's replay filter is sized for.
    pub replay_capacity: u64,
    /// The replay filter's false-positive rate.
    pub replay_false_positive_rate: f64,
}

impl MixConfig {
    /// Defaults for `id`: mean delay 50 ms, λ_M = 40/s (so λ_M/μ = 2 from loops alone), delays cut
    /// at 20× the mean, 100,000 queued packets, replay filters of 4 million tags at 10⁻⁶.
    pub fn new(id: NodeId, loop_recipient: MailboxId) -> Self {
        Self {
            id,
            loop_recipient,
            mean_delay: Duration::from_millis(50),
            loop_rate: 40.0,
            max_delay: Duration::from_secs(1),
            max_queue: 100_000,
            replay_capacity: crate::replay::DEFAULT_CAPACITY,
            replay_false_positive_rate: crate::replay::DEFAULT_FALSE_POSITIVE_RATE,
        }
    }
}

/// Why a packet was dropped. Every case is counted in [`MixMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Dropped {
    /// The packet did not unwrap under any live key (garbage, forged, or for another node).
    #[error("packet rejected: {0}")]
    Malformed(UnwrapError),
    /// Its replay tag was seen before under a live key.
    #[error("replayed packet")]
    Replay,
    /// No packet key is live at this time.
    #[error("no live packet key")]
    NoKey,
    /// The delay queue is full.
    #[error("delay queue full")]
    QueueFull,
    /// The packet ends at this mix but is not one of its loops (mixes deliver nothing).
    #[error("packet ends at a mix")]
    Terminal,
}

/// What happened to an accepted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Queued for forwarding at the given time.
    Queued {
        /// When it leaves.
        until: UnixMicros,
    },
    /// One of this node's loop packets came back.
    LoopReturned,
}

/// Counters a node exports as metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MixMetrics {
    /// Packets received.
    pub received: u64,
    /// Packets forwarded (including own loops).
    pub forwarded: u64,
    /// Dropped: no valid unwrap.
    pub dropped_malformed: u64,
    /// Dropped: replay.
    pub dropped_replay: u64,
    /// Dropped: no live key.
    pub dropped_no_key: u64,
    /// Dropped: queue full.
    pub dropped_queue_full: u64,
    /// Dropped: terminal packet that is not an own loop.
    pub dropped_terminal: u64,
    /// Own loop packets sent.
    pub loops_sent: u64,
    /// Own loop packets that came back.
    pub loops_returned: u64,
    /// Integral over time of the number of packets held, in packet·seconds; divided by the
    /// elapsed time it is the mean pool size, which estimates λ/μ at this mix.
    pub pool_packet_seconds: f64,
    /// Replay tags read back from the replay log into the filters (after a restart).
    pub replay_tags_restored: u64,
    /// Replay tags not logged because their key's log had reached the filter's capacity (those
    /// packets are still checked in memory, but a restart forgets them).
    pub replay_log_full: u64,
}

/// A mix node's state.
pub struct Mix {
    config: MixConfig,
    sphinx: Sphinx,
    keys: KeyRing,
    topologies: Vec<Topology>,
    queue: DelayQueue,
    next_loop: Option<UnixMicros>,
    metrics: MixMetrics,
    /// Scratch space of [`Mix::handle_packets`], kept to reuse its allocation.
    batch: Vec<Batched>,
}

/// A packet of [`Mix::handle_packets`], its replay tag and whether that tag was seen.
type Batched = (Vec<u8>, Result<ReplayTag, RingError>, Result<bool, RingError>);

impl core::fmt::Debug for Mix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mix")
            .field("queued", &self.queue.len())
            .field("key_epochs", &self.keys.epochs())
            .finish()
    }
}

impl Mix {
    /// A mix for packets of `geometry`.
    pub fn new(config: MixConfig, geometry: Geometry) -> Self {
        Self {
            sphinx: Sphinx::new(geometry),
            keys: KeyRing::new(config.replay_capacity, config.replay_false_positive_rate),
            topologies: Vec::new(),
            queue: DelayQueue::default(),
            next_loop: None,
            metrics: MixMetrics::default(),
            batch: Vec::new(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MixConfig {
        &self.config
    }

    /// Counters.
    pub fn metrics(&self) -> MixMetrics {
        MixMetrics {
            pool_packet_seconds: self.queue.packet_seconds,
            replay_log_full: self.keys.log_full(),
            ..self.metrics.clone()
        }
    }

    /// Packets currently held.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Sets the mean per-hop delay and the loop rate λ_M of the node's own loop packets (from the
    /// directory's parameters), and cuts requested delays at 20 means (a fraction e⁻²⁰ ≈ 2·10⁻⁹ of
    /// honest delays is longer). The next loop is drawn afresh at the new rate.
    pub fn set_cover(&mut self, mean_delay: Duration, loop_rate: f64) {
        let rate = if loop_rate.is_finite() && loop_rate > 0.0 { loop_rate } else { 0.0 };
        self.config.max_delay = mean_delay.saturating_mul(20);
        if self.config.mean_delay != mean_delay || self.config.loop_rate != rate {
            self.config.mean_delay = mean_delay;
            self.config.loop_rate = rate;
            self.next_loop = None;
        }
    }

    /// Installs the packet key of `epoch` with its window (replacing one already installed for
    /// that epoch).
    pub fn add_epoch_key(&mut self, epoch: u64, key: SecretKey, window: EpochWindow) {
        self.keys.add(epoch, key, window);
    }

    /// Epochs whose keys are installed.
    pub fn key_epochs(&self) -> Vec<u64> {
        self.keys.epochs()
    }

    /// From now on every replay tag the filters accept is handed out by
    /// [`Mix::poll_replay_log`], and a packet accepted from now on leaves only once the batch
    /// holding its tag was reported durable with [`Mix::handle_replay_logged`]. Own loop
    /// packets are not held (they were never received).
    pub fn enable_replay_log(&mut self) {
        self.keys.enable_log();
    }

    /// Inserts tags read back from the replay log of `epoch` into that key's filter (the key
    /// must be installed); returns how many.
    pub fn restore_replay_tags(&mut self, epoch: u64, tags: &[ReplayTag]) -> usize {
        let n = self.keys.restore(epoch, tags);
        self.metrics.replay_tags_restored += n as u64;
        n
    }

    /// The replay tags accepted since the last call, to append to the log; `None` when there is
    /// nothing new. Batches must be made durable in the order they are handed out.
    pub fn poll_replay_log(&mut self) -> Option<ReplayBatch> {
        self.keys.poll_log()
    }

    /// Batches up to `id` are durable: the packets waiting for them may leave.
    pub fn handle_replay_logged(&mut self, id: u64) {
        self.queue.release(id);
    }

    /// Memory held by replay filters.
    pub fn replay_filter_bytes(&self) -> usize {
        self.keys.filter_bytes()
    }

    /// Adds the topology of an epoch, used for the node's own loop packets during that epoch.
    /// Topologies of epochs whose keys have expired are dropped with the keys.
    pub fn add_topology(&mut self, topology: Topology) {
        self.topologies.retain(|t| t.epoch != topology.epoch);
        self.topologies.push(topology);
    }

    fn current_topology(&self, now: UnixMicros) -> Option<&Topology> {
        let epoch = self.keys.current_epoch(now)?;
        self.topologies.iter().find(|t| t.epoch == epoch)
    }

    fn drop_packet(&mut self, why: Dropped) -> Dropped {
        let m = &mut self.metrics;
        match why {
            Dropped::Malformed(_) => m.dropped_malformed += 1,
            Dropped::Replay => m.dropped_replay += 1,
            Dropped::NoKey => m.dropped_no_key += 1,
            Dropped::QueueFull => m.dropped_queue_full += 1,
            Dropped::Terminal => m.dropped_terminal += 1,
        }
        why
    }

    /// Handles a packet that arrived at `now`.
    pub fn handle_packet(&mut self, now: UnixMicros, packet: Vec<u8>) -> Result<Received, Dropped> {
        self.metrics.received += 1;
        if self.queue.len() >= self.config.max_queue {
            return Err(self.drop_packet(Dropped::QueueFull));
        }
        match self.keys.unwrap(&self.sphinx, now, packet, true) {
            Ok((out, packet, _)) => self.accept(now, &out, packet),
            Err(e) => Err(self.ring_error(e)),
        }
    }

    /// Handles packets that arrived together at `now`, in order, with the same outcome as
    /// [`Mix::handle_packet`] on each (counted in [`MixMetrics`]), faster: the replay tags of
    /// the whole batch are computed first and then checked against the replay filters one after
    /// the other, so that the filters' memory accesses (one cache line of a 19.5 MB array per
    /// packet, nearly always a cache miss) overlap instead of each stalling its own packet. A
    /// replay of an earlier packet of the same batch passes that first check; it is caught by a
    /// second one after its (wasted) unwrap and counted as a replay, as it would have been alone.
    pub fn handle_packets(&mut self, now: UnixMicros, packets: impl IntoIterator<Item = Vec<u8>>) {
        let mut batch = core::mem::take(&mut self.batch);
        batch.clear();
        // First every tag (hashing), then every check (memory accesses independent of one another).
        batch.extend(packets.into_iter().map(|p| {
            let tag = self.sphinx.replay_tag(&p).map_err(RingError::Malformed);
            (p, tag, Ok(false))
        }));
        for (_, tag, seen) in &mut batch {
            *seen = tag.as_ref().map_err(|e| *e).and_then(|t| self.keys.seen(now, t));
        }
        for (packet, tag, seen) in batch.drain(..) {
            self.metrics.received += 1;
            if self.queue.len() >= self.config.max_queue {
                self.drop_packet(Dropped::QueueFull);
                continue;
            }
            let unwrapped = match (tag, seen) {
                (Err(e), _) | (_, Err(e)) => Err(e),
                (_, Ok(true)) => Err(RingError::Replay),
                (Ok(tag), Ok(false)) => self.keys.unwrap_tagged(&self.sphinx, now, packet, tag, true),
            };
            let _ = match unwrapped {
                Ok((out, packet, _)) => self.accept(now, &out, packet),
                Err(e) => Err(self.ring_error(e)),
            };
        }
        self.batch = batch;
    }

    fn ring_error(&mut self, e: RingError) -> Dropped {
        self.drop_packet(match e {
            RingError::NoKey => Dropped::NoKey,
            RingError::Replay => Dropped::Replay,
            RingError::Malformed(e) => Dropped::Malformed(e),
        })
    }

    /// Queues an unwrapped packet for its next hop, or takes back an own loop.
    fn accept(&mut self, now: UnixMicros, out: &Unwrapped, packet: Vec<u8>) -> Result<Received, Dropped> {
        match out.commands.next_hop {
            Some(next) => {
                let at = now + requested_delay(out, self.config.max_delay);
                let hold = self.keys.hold();
                self.queue.push(now, at, next.id, packet, hold);
                Ok(Received::Queued { until: at })
            }
            None if out.commands.recipient == Some(self.config.loop_recipient) => {
                self.metrics.loops_returned += 1;
                Ok(Received::LoopReturned)
            }
            None => Err(self.drop_packet(Dropped::Terminal)),
        }
    }

    /// The next packet due at `now`, if any.
    pub fn poll_transmit(&mut self, now: UnixMicros) -> Option<Transmit> {
        let t = self.queue.pop_due(now)?;
        self.metrics.forwarded += 1;
        Some(t)
    }

    /// When [`Mix::handle_timeout`] or [`Mix::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        let q = earliest(self.queue.next_due(), self.keys.next_expiry());
        // With loops enabled but not yet scheduled, ask to be called at once to schedule them.
        let l =
            if self.config.loop_rate > 0.0 { Some(self.next_loop.unwrap_or(UnixMicros::ZERO)) } else { None };
        earliest(q, l)
    }

    /// Advances timers: erases expired keys (and their replay filters) and emits due loop packets.
    pub fn handle_timeout<R: CryptoRng + ?Sized>(&mut self, now: UnixMicros, rng: &mut R) {
        self.queue.account(now);
        self.keys.expire(now);
        let epochs = self.keys.epochs();
        self.topologies.retain(|t| epochs.contains(&t.epoch));
        if self.config.loop_rate <= 0.0 {
            self.next_loop = None;
            return;
        }
        let mean_gap = Duration::from_secs_f64(1.0 / self.config.loop_rate);
        let mut next = *self.next_loop.get_or_insert_with(|| now + exponential(rng, mean_gap));
        // Emit every loop that fell due (at most a bounded burst after a long pause).
        let mut burst = 0;
        while next <= now && burst < 64 {
            if let Some((to, packet)) = self.make_loop(now, rng) {
                self.metrics.loops_sent += 1;
                self.queue.push(now, now, to, packet, 0);
            }
            next = next + exponential(rng, mean_gap);
            burst += 1;
        }
        if next <= now {
            next = now + exponential(rng, mean_gap);
        }
        self.next_loop = Some(next);
    }

    /// A loop packet through the following layers, a gateway and the preceding layers, back to
    /// this node.
    fn make_loop<R: CryptoRng + ?Sized>(&self, now: UnixMicros, rng: &mut R) -> Option<(NodeId, Vec<u8>)> {
        let topo = self.current_topology(now)?;
        let Position::Mix { layer } = topo.position(&self.config.id)? else { return None };
        let layer = usize::from(layer);
        let me = topo.hop(&self.config.id)?;
        let mut hops: Vec<&Hop> = Vec::new();
        for l in layer + 1..topo.layers.len() {
            hops.push(topo.random_mix(l, rng)?);
        }
        hops.push(topo.random_gateway(rng)?);
        for l in 0..layer {
            hops.push(topo.random_mix(l, rng)?);
        }
        hops.push(me);
        if hops.len() > self.sphinx.geometry().nr_hops() {
            return None;
        }
        let is_gw = |id: &NodeId| topo.gateways.iter().any(|g| g.id == *id);
        let path = path_hops(
            &hops,
            is_gw,
            self.config.mean_delay,
            Destination::Recipient(self.config.loop_recipient),
            rng,
        );
        let mut payload = vec![0u8; self.sphinx.geometry().forward_payload_len()];
        rng.fill_bytes(&mut payload);
        let first = hops.first()?.id;
        self.sphinx.new_packet(rng, &path, &payload).ok().map(|p| (first, p))
    }
}
