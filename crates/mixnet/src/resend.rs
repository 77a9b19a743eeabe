//! The last mix's packets to gateways, kept until the gateway acknowledges them: the ids they
//! carry on the link, when each is sent again, when the mix gives up, and how many may wait.
//!
//! Driven like the other cores: [`Resends::send`] for every packet the mix puts on a link,
//! [`Resends::handle_acks`] for what comes back on the link to a gateway, [`Resends::poll_resend`]
//! for what is due again and [`Resends::poll_timeout`] for when that is.
//!
//! What a hostile peer (or an outage) cannot do to it:
//!
//! - **Ids do not repeat across restarts.** They count up from a random 64-bit base drawn when the
//!   table is made (once per process run), so an acknowledgement that was in flight when the mix
//!   restarted names no packet of the new run (the chance that two runs' ranges overlap is about
//!   `packets per run / 2^64`).
//! - **An acknowledgement clears only what was sent to its sender.** Packets are keyed by
//!   `(gateway, id)` and acknowledgements are taken with the gateway they came from (the node
//!   reads them off the link it dialled to that gateway), so one gateway cannot clear another's.
//! - **Nothing waits forever.** A packet not acknowledged within
//!   [`ResendConfig::give_up_after`] is dropped and counted (`gave_up`): past its key's grace the
//!   gateway could not unwrap it anyway, and the sender's end-to-end retransmission covers it.
//! - **One gateway cannot take every slot.** The table holds at most
//!   [`ResendConfig::max_packets`] packets and at most [`ResendConfig::max_per_gateway`] for any
//!   one gateway, so a gateway that is down, or a client flooding packets towards one gateway,
//!   leaves room for the others' packets. A packet beyond a bound is still sent once, just not
//!   kept (counted).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use qanat_packet::NodeId;

use crate::time::UnixMicros;

/// When packets are sent again and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendConfig {
    /// How long after a send an unacknowledged packet is sent again.
    pub resend_after: Duration,
    /// How long after its first send a packet is given up.
    pub give_up_after: Duration,
    /// Most packets kept, for all gateways together.
    pub max_packets: usize,
    /// Most packets kept for any one gateway.
    pub max_per_gateway: usize,
}

impl ResendConfig {
    /// Most packets kept by default (about 44 MB of 2.2 KB packets).
    pub const DEFAULT_MAX_PACKETS: usize = 20_000;
    /// Most packets kept for one gateway by default: a quarter of the whole.
    pub const DEFAULT_MAX_PER_GATEWAY: usize = 5_000;

    /// The default bounds with these times.
    pub fn new(resend_after: Duration, give_up_after: Duration) -> Self {
        Self {
            resend_after,
            give_up_after,
            max_packets: Self::DEFAULT_MAX_PACKETS,
            max_per_gateway: Self::DEFAULT_MAX_PER_GATEWAY,
        }
    }
}

/// Counters of a [`Resends`] table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendMetrics {
    /// Packets kept for resending.
    pub kept: u64,
    /// Kept packets acknowledged by their gateway.
    pub acked: u64,
    /// Packets sent again.
    pub resent: u64,
    /// Packets given up after [`ResendConfig::give_up_after`] without an acknowledgement.
    pub gave_up: u64,
    /// Packets not kept because [`ResendConfig::max_packets`] were waiting.
    pub full: u64,
    /// Packets not kept because [`ResendConfig::max_per_gateway`] were waiting for their gateway.
    pub gateway_full: u64,
    /// Acknowledged ids that named no packet kept for the gateway that sent them (late, repeated,
    /// from before a restart, or from another gateway).
    pub stray_acks: u64,
}

/// A packet due to be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// The gateway.
    pub to: NodeId,
    /// The id it was first sent with (kept across resends, so that the gateway de-duplicates).
    pub id: u64,
    /// The packet.
    pub packet: Vec<u8>,
}

struct Entry {
    packet: Vec<u8>,
    /// When the packet is given up.
    deadline: UnixMicros,
    /// When the timer entry of this packet fires (the next resend, or the deadline).
    wake: UnixMicros,
}

/// The table of packets sent to gateways and not yet acknowledged.
pub struct Resends {
    config: ResendConfig,
    next_id: u64,
    entries: HashMap<(NodeId, u64), Entry>,
    per_gateway: HashMap<NodeId, usize>,
    /// `(wake, gateway, id)` of every entry, earliest first.
    timers: BTreeSet<(UnixMicros, NodeId, u64)>,
    metrics: ResendMetrics,
}

impl core::fmt::Debug for Resends {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Resends").field("kept", &self.entries.len()).finish()
    }
}

impl Resends {
    /// An empty table whose ids start at a base drawn from `rng` (make one per process run).
    pub fn new<R: rand_core::Rng + ?Sized>(config: ResendConfig, rng: &mut R) -> Self {
        Self::with_id_base(config, rng.next_u64())
    }

    /// An empty table whose first id is `base + 1` (tests; [`Resends::new`] draws the base).
    pub fn with_id_base(mut config: ResendConfig, base: u64) -> Self {
        // A packet is never due again at the instant it was sent.
        config.resend_after = config.resend_after.max(Duration::from_millis(1));
        Self {
            config,
            next_id: base,
            entries: HashMap::new(),
            per_gateway: HashMap::new(),
            timers: BTreeSet::new(),
            metrics: ResendMetrics::default(),
        }
    }

    /// The id for a packet sent to `to` now, which is kept for resending if `to` is a gateway
    /// and the bounds allow (otherwise it is sent once; a gateway's is counted as not kept).
    pub fn send(&mut self, now: UnixMicros, to: NodeId, gateway: bool, packet: &[u8]) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        if !gateway {
            return id;
        }
        let mine = self.per_gateway.get(&to).copied().unwrap_or(0);
        if self.entries.len() >= self.config.max_packets {
            self.metrics.full += 1;
            return id;
        }
        if mine >= self.config.max_per_gateway {
            self.metrics.gateway_full += 1;
            return id;
        }
        let deadline = now + self.config.give_up_after;
        let wake = (now + self.config.resend_after).min(deadline);
        self.entries.insert((to, id), Entry { packet: packet.to_vec(), deadline, wake });
        self.timers.insert((wake, to, id));
        *self.per_gateway.entry(to).or_insert(0) += 1;
        self.metrics.kept += 1;
        id
    }

    /// Acknowledgements that came back on the link to gateway `from`: the packets kept for `from`
    /// under these ids are forgotten. Returns how many were.
    pub fn handle_acks(&mut self, from: NodeId, ids: impl IntoIterator<Item = u64>) -> usize {
        let mut n = 0;
        for id in ids {
            if self.remove(from, id) {
                n += 1;
            } else {
                self.metrics.stray_acks += 1;
            }
        }
        self.metrics.acked += n as u64;
        n
    }

    fn remove(&mut self, to: NodeId, id: u64) -> bool {
        let Some(e) = self.entries.remove(&(to, id)) else { return false };
        self.timers.remove(&(e.wake, to, id));
        if let Some(c) = self.per_gateway.get_mut(&to) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_gateway.remove(&to);
            }
        }
        true
    }

    /// The next packet due to be sent again; packets past their deadline are given up on the way.
    pub fn poll_resend(&mut self, now: UnixMicros) -> Option<Resend> {
        while let Some(&(wake, to, id)) = self.timers.first() {
            if wake > now {
                return None;
            }
            let Some(e) = self.entries.get_mut(&(to, id)) else {
                // Every timer has its entry (both are removed together); drop a stray one.
                self.timers.pop_first();
                continue;
            };
            if now >= e.deadline {
                self.remove(to, id);
                self.metrics.gave_up += 1;
                continue;
            }
            self.timers.pop_first();
            e.wake = (now + self.config.resend_after).min(e.deadline);
            let packet = e.packet.clone();
            self.timers.insert((e.wake, to, id));
            self.metrics.resent += 1;
            return Some(Resend { to, id, packet });
        }
        None
    }

    /// When [`Resends::poll_resend`] next has work.
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        self.timers.first().map(|t| t.0)
    }

    /// Packets kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no packet is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Packets kept for `gateway`.
    pub fn len_for(&self, gateway: &NodeId) -> usize {
        self.per_gateway.get(gateway).copied().unwrap_or(0)
    }

    /// Counters.
    pub fn metrics(&self) -> &ResendMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use chacha20::rand_core::SeedableRng;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn gw(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn config() -> ResendConfig {
        ResendConfig { resend_after: 2 * S, give_up_after: 10 * S, max_packets: 100, max_per_gateway: 40 }
    }

    fn at(secs: u64) -> UnixMicros {
        UnixMicros::ZERO + Duration::from_secs(secs)
    }

    fn drain(r: &mut Resends, now: UnixMicros) -> Vec<Resend> {
        std::iter::from_fn(|| r.poll_resend(now)).collect()
    }

    #[test]
    fn resent_until_acknowledged_with_the_same_id() {
        let mut r = Resends::with_id_base(config(), 7);
        let id = r.send(at(0), gw(1), true, b"p");
        assert_eq!(id, 8);
        assert!(drain(&mut r, at(1)).is_empty());
        assert_eq!(r.poll_timeout(), Some(at(2)));
        assert_eq!(drain(&mut r, at(2)), vec![Resend { to: gw(1), id, packet: b"p".to_vec() }]);
        assert_eq!(r.poll_timeout(), Some(at(4)));
        assert_eq!(r.handle_acks(gw(1), [id]), 1);
        assert!(r.is_empty());
        assert_eq!(r.poll_timeout(), None);
        assert!(drain(&mut r, at(100)).is_empty());
        assert_eq!(r.metrics().acked, 1);
        assert_eq!(r.metrics().resent, 1);
    }

    #[test]
    fn packets_to_mixes_get_ids_but_are_not_kept() {
        let mut r = Resends::with_id_base(config(), 0);
        let a = r.send(at(0), gw(1), false, b"p");
        let b = r.send(at(0), gw(1), false, b"p");
        assert_ne!(a, b);
        assert!(r.is_empty());
        assert_eq!(r.metrics().kept, 0);
    }

    // Finding: ids restarted at 0 after a restart, so an acknowledgement from before the
    // restart cleared a packet of the new run that was not yet durable.
    #[test]
    fn ids_unique_across_a_simulated_restart() {
        let mut first = Resends::new(config(), &mut ChaCha20Rng::seed_from_u64(1));
        let before: Vec<u64> = (0..50).map(|_| first.send(at(0), gw(1), true, b"old")).collect();
        // The process restarts: a new table, with a base drawn from the new run's RNG.
        let mut second = Resends::new(config(), &mut ChaCha20Rng::seed_from_u64(2));
        let after: Vec<u64> = (0..40).map(|_| second.send(at(0), gw(1), true, b"new")).collect();
        assert!(before.iter().all(|id| !after.contains(id)));
        // The gateway acknowledges what the first run sent: nothing of the second run goes.
        assert_eq!(second.handle_acks(gw(1), before), 0);
        assert_eq!(second.len(), 40);
        assert_eq!(second.metrics().stray_acks, 50);
    }

    // Finding: an acknowledgement from any gateway cleared any id.
    #[test]
    fn ack_from_the_wrong_gateway_is_ignored() {
        let mut r = Resends::with_id_base(config(), 0);
        let id = r.send(at(0), gw(1), true, b"p");
        assert_eq!(r.handle_acks(gw(2), [id]), 0);
        assert_eq!(r.len_for(&gw(1)), 1);
        assert_eq!(drain(&mut r, at(2)).len(), 1);
        assert_eq!(r.handle_acks(gw(1), [id]), 1);
        assert!(r.is_empty());
    }

    // Finding: a packet the gateway never acknowledged (undecryptable, or the gateway down for
    // longer than the key grace) was resent forever and held its slot forever.
    #[test]
    fn given_up_after_the_bound() {
        let mut r = Resends::with_id_base(config(), 0);
        r.send(at(0), gw(1), true, b"p");
        let mut resends = 0;
        for s in 1..=20 {
            resends += drain(&mut r, at(s)).len();
        }
        // Sent again at 2, 4, 6 and 8 s; given up at 10 s (not sent a fifth time).
        assert_eq!(resends, 4);
        assert!(r.is_empty());
        assert_eq!(r.metrics().gave_up, 1);
        assert_eq!(r.poll_timeout(), None);
    }

    // Finding: packets towards one gateway (a flood of undecryptable ones, or an outage) could
    // take the whole table, after which honest packets to every gateway lost their retries.
    #[test]
    fn one_gateway_cannot_take_every_slot() {
        let mut r = Resends::with_id_base(config(), 0);
        for _ in 0..1000 {
            r.send(at(0), gw(1), true, b"flood");
        }
        assert_eq!(r.len_for(&gw(1)), 40);
        assert_eq!(r.metrics().gateway_full, 960);
        let honest = r.send(at(0), gw(2), true, b"honest");
        assert_eq!(r.len_for(&gw(2)), 1);
        assert!(drain(&mut r, at(2)).iter().any(|x| x.to == gw(2) && x.id == honest));
        // The global bound holds too: three gateways at their bound of 40 fill 100.
        for _ in 0..100 {
            r.send(at(2), gw(3), true, b"x");
            r.send(at(2), gw(4), true, b"x");
        }
        assert_eq!(r.len(), 100);
        assert!(r.metrics().full > 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(u8, bool),
        Ack(u8, usize),
        Advance(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                (0u8..4, any::<bool>()).prop_map(|(g, k)| Op::Send(g, k)),
                (0u8..4, 0usize..64).prop_map(|(g, i)| Op::Ack(g, i)),
                (0u64..3_000).prop_map(Op::Advance),
            ],
            0..300,
        )
    }

    proptest! {
        /// Against a model: the bounds always hold, every resend is of a packet kept for that
        /// gateway and not past its deadline, nothing is resent sooner than `resend_after` after
        /// its last send, and each kept packet ends acknowledged, given up or still kept.
        #[test]
        fn table_matches_its_model(ops in ops(), base in any::<u64>()) {
            let c = ResendConfig {
                resend_after: Duration::from_millis(500),
                give_up_after: Duration::from_secs(3),
                max_packets: 20,
                max_per_gateway: 8,
            };
            let mut r = Resends::with_id_base(c, base);
            // (gateway, id) -> (first send, last send) of what the model says is kept.
            let mut model: HashMap<(NodeId, u64), (UnixMicros, UnixMicros)> = HashMap::new();
            let mut sent: Vec<(NodeId, u64)> = Vec::new();
            let mut now = UnixMicros::ZERO;
            for op in ops {
                match op {
                    Op::Send(g, gateway) => {
                        let before = r.len();
                        let id = r.send(now, gw(g), gateway, &[g]);
                        sent.push((gw(g), id));
                        if r.len() > before {
                            model.insert((gw(g), id), (now, now));
                        }
                    }
                    Op::Ack(g, i) => {
                        let Some(&(to, id)) = sent.get(i) else { continue };
                        let cleared = r.handle_acks(gw(g), [id]);
                        let expect = usize::from(to == gw(g) && model.remove(&(to, id)).is_some());
                        prop_assert_eq!(cleared, expect);
                    }
                    Op::Advance(ms) => {
                        now = now + Duration::from_millis(ms);
                        while let Some(x) = r.poll_resend(now) {
                            let (first, last) = model.get_mut(&(x.to, x.id)).copied()
                                .map(|v| (v.0, v.1)).ok_or_else(|| TestCaseError::fail("resent unknown"))?;
                            prop_assert!(now < first + c.give_up_after);
                            prop_assert!(now >= last + c.resend_after);
                            prop_assert_eq!(&x.packet, &vec![x.to.0[0]]);
                            model.insert((x.to, x.id), (first, now));
                        }
                        model.retain(|_, (first, _)| now < *first + c.give_up_after);
                    }
                }
                prop_assert_eq!(r.len(), model.len());
                prop_assert!(r.len() <= c.max_packets);
                for g in 0..4 {
                    prop_assert!(r.len_for(&gw(g)) <= c.max_per_gateway);
                }
            }
            let m = r.metrics();
            prop_assert_eq!(m.kept, m.acked + m.gave_up + r.len() as u64);
        }
    }
}
