//! What mixes and gateways share: the per-epoch packet keys with their replay filters, and the
//! delay queue.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use qanat_packet::{NodeId, ReplayTag, SecretKey, Sphinx, UnwrapError, Unwrapped};

use crate::replay::ReplayFilter;
use crate::time::Time;

/// When an epoch's key is used: packets are accepted from `start - grace` until `end + grace`,
/// and the node's own packets use the epoch from `start` until `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochWindow {
    /// Start of the epoch.
    pub start: Time,
    /// End of the epoch.
    pub end: Time,
    /// Grace period on both sides.
    pub grace: Duration,
}

impl EpochWindow {
    fn accepts(&self, now: Time) -> bool {
        self.start - self.grace <= now && now < self.end + self.grace
    }
    fn current(&self, now: Time) -> bool {
        self.start <= now && now < self.end
    }
}

struct EpochKey {
    epoch: u64,
    key: SecretKey,
    window: EpochWindow,
    filter: ReplayFilter,
}

/// Why the key ring could not unwrap a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingError {
    NoKey,
    Replay,
    Malformed(UnwrapError),
}

/// The node's live packet keys, one replay filter each.
pub(crate) struct KeyRing {
    keys: Vec<EpochKey>,
    capacity: u64,
    false_positive_rate: f64,
}

impl KeyRing {
    pub(crate) fn new(capacity: u64, false_positive_rate: f64) -> Self {
        Self { keys: Vec::new(), capacity, false_positive_rate }
    }

    pub(crate) fn add(&mut self, epoch: u64, key: SecretKey, window: EpochWindow) {
        self.keys.retain(|k| k.epoch != epoch);
        let filter = ReplayFilter::new(self.capacity, self.false_positive_rate);
        self.keys.push(EpochKey { epoch, key, window, filter });
        self.keys.sort_by_key(|k| Reverse(k.epoch));
    }

    pub(crate) fn epochs(&self) -> Vec<u64> {
        self.keys.iter().map(|k| k.epoch).collect()
    }

    pub(crate) fn filter_bytes(&self) -> usize {
        self.keys.iter().map(|k| k.filter.memory_bytes()).sum()
    }

    /// Erases keys (and their filters) whose window has passed.
    pub(crate) fn expire(&mut self, now: Time) {
        self.keys.retain(|k| now < k.window.end + k.window.grace);
    }

    /// The epoch whose window (without grace) contains `now`.
    pub(crate) fn current_epoch(&self, now: Time) -> Option<u64> {
        self.keys.iter().find(|k| k.window.current(now)).map(|k| k.epoch)
    }

    /// Unwraps `packet` under the live keys, newest first. With `drop_replays`, a packet whose tag
    /// was accepted before under a live key is refused before any public-key work; the tag of a
    /// packet that unwraps is recorded either way.
    pub(crate) fn unwrap(
        &mut self,
        sphinx: &Sphinx,
        now: Time,
        packet: Vec<u8>,
        drop_replays: bool,
    ) -> Result<(Unwrapped, Vec<u8>), RingError> {
        let tag = sphinx.replay_tag(&packet).map_err(RingError::Malformed)?;
        if drop_replays && self.seen(now, &tag)? {
            return Err(RingError::Replay);
        }
        self.unwrap_tagged(sphinx, now, packet, tag, drop_replays)
    }

    /// Whether `tag` was accepted before under a live key (with the filters' false positives);
    /// `NoKey` when no key is live. The replay check of [`KeyRing::unwrap`], apart so that a
    /// batch of packets can be checked before any of them is unwrapped: the checks' memory
    /// accesses (one cache line of a large filter each, almost always a cache miss) then overlap
    /// instead of each waiting for its own.
    pub(crate) fn seen(&self, now: Time, tag: &ReplayTag) -> Result<bool, RingError> {
        let mut live = self.keys.iter().filter(|k| k.window.accepts(now)).peekable();
        if live.peek().is_none() {
            return Err(RingError::NoKey);
        }
        Ok(live.any(|k| k.filter.contains(tag)))
    }

    /// Unwraps `packet`, whose replay tag is `tag` (from [`Sphinx::replay_tag`]), under the live
    /// keys, newest first, and records the tag in the filter of the key that unwrapped it.
    ///
    /// With `drop_replays`, the tag is checked again once the unwrap is done, so that a packet
    /// checked with [`KeyRing::seen`] together with others (before any of them was unwrapped)
    /// is refused exactly as if it had been checked alone after them: a replay of an earlier
    /// packet of its batch (even one whose other bytes were changed, so that it does not
    /// unwrap) is a `Replay`. The second check reads the cache line the first one brought in.
    pub(crate) fn unwrap_tagged(
        &mut self,
        sphinx: &Sphinx,
        now: Time,
        mut packet: Vec<u8>,
        tag: ReplayTag,
        drop_replays: bool,
    ) -> Result<(Unwrapped, Vec<u8>), RingError> {
        let live = |k: &&EpochKey| k.window.accepts(now);
        let n_live = self.keys.iter().filter(live).count();
        if n_live == 0 {
            return Err(RingError::NoKey);
        }
        let mut last = UnwrapError::Mac;
        let live_idx = (0..self.keys.len()).filter(|&i| self.keys[i].window.accepts(now));
        for (n, i) in live_idx.enumerate() {
            // Unwrap transforms in place; keep the original only if another key is left to try.
            let mut attempt = if n + 1 < n_live { packet.clone() } else { core::mem::take(&mut packet) };
            match sphinx.unwrap_with_tag(&self.keys[i].key, &mut attempt, tag) {
                Ok(out) => {
                    if drop_replays && self.seen(now, &tag)? {
                        return Err(RingError::Replay);
                    }
                    self.keys[i].filter.insert(&out.replay_tag);
                    return Ok((out, attempt));
                }
                Err(e) => last = e,
            }
        }
        if drop_replays && self.seen(now, &tag)? {
            return Err(RingError::Replay);
        }
        Err(RingError::Malformed(last))
    }
}

/// A packet due to leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The next node.
    pub to: NodeId,
    /// The packet.
    pub packet: Vec<u8>,
}

struct Queued {
    at: Time,
    seq: u64,
    to: NodeId,
    packet: Vec<u8>,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Packets held until their delay has passed, and the time integral of how many are held.
#[derive(Default)]
pub(crate) struct DelayQueue {
    heap: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    last_update: Option<Time>,
    pub(crate) packet_seconds: f64,
}

impl DelayQueue {
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds the pool size since the last update to the integral.
    pub(crate) fn account(&mut self, now: Time) {
        if let Some(last) = self.last_update {
            self.packet_seconds += self.heap.len() as f64 * now.saturating_since(last).as_secs_f64();
        }
        self.last_update = Some(self.last_update.map_or(now, |l| l.max(now)));
    }

    pub(crate) fn push(&mut self, now: Time, at: Time, to: NodeId, packet: Vec<u8>) {
        self.account(now);
        self.seq += 1;
        self.heap.push(Reverse(Queued { at, seq: self.seq, to, packet }));
    }

    pub(crate) fn pop_due(&mut self, now: Time) -> Option<Transmit> {
        if self.heap.peek().is_some_and(|Reverse(q)| q.at <= now) {
            self.account(now);
            let Reverse(q) = self.heap.pop()?;
            return Some(Transmit { to: q.to, packet: q.packet });
        }
        None
    }

    pub(crate) fn next_due(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse(q)| q.at)
    }
}

/// The delay a hop's commands ask for, cut at `max`.
pub(crate) fn requested_delay(out: &Unwrapped, max: Duration) -> Duration {
    out.commands.delay.map_or(Duration::ZERO, |d| Duration::from_millis(u64::from(d.delay_ms))).min(max)
}
