//! What mixes and gateways share: the per-epoch packet keys with their replay filters, the
//! replay log's bookkeeping, and the delay queue.
//!
//! # Replay protection across restarts
//!
//! A filter lives in memory, so a node restarted in the middle of an epoch would forget the
//! packets it already forwarded under the keys it still holds, and a replay of one of them would
//! go through again (and be traced by its output). With the replay log enabled
//! ([`KeyRing::enable_log`]), every tag a filter accepts is also handed to the node
//! ([`KeyRing::poll_log`], in numbered batches) to append to a log on disk, and a packet queued
//! after its tag was accepted carries the number of the batch its tag went into
//! ([`KeyRing::hold`]): the [`DelayQueue`] releases it only once the node has reported that batch
//! durable. So no packet leaves before its tag is on disk, and a crash between the two cannot
//! reopen the hole. At start the node rebuilds each key's filter from its log
//! ([`KeyRing::restore`]).
//!
//! The log of a key holds at most the filter's capacity: beyond it tags are still checked and
//! recorded in memory but no longer logged (counted as `replay_log_full`), so a peer flooding
//! the node can make the log no bigger than its bound and cannot make the node stop forwarding.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use qanat_packet::{NodeId, ReplayTag, SecretKey, Sphinx, UnwrapError, Unwrapped};

use crate::replay::ReplayFilter;
use crate::time::UnixMicros;

/// When an epoch's key is used: packets are accepted from `start - grace` until `end + grace`,
/// and the node's own packets use the epoch from `start` until `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochWindow {
    /// Start of the epoch.
    pub start: UnixMicros,
    /// End of the epoch.
    pub end: UnixMicros,
    /// Grace period on both sides.
    pub grace: Duration,
}

impl EpochWindow {
    fn accepts(&self, now: UnixMicros) -> bool {
        self.start - self.grace <= now && now < self.end + self.grace
    }
    fn current(&self, now: UnixMicros) -> bool {
        self.start <= now && now < self.end
    }
}

struct EpochKey {
    epoch: u64,
    key: SecretKey,
    window: EpochWindow,
    filter: ReplayFilter,
    /// Tags of this key handed to the log (restored ones included).
    logged: u64,
}

/// Tags the replay filters accepted since the last batch, to be made durable by the node
/// before the packets they belong to may leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayBatch {
    /// Batch number, increasing by one from 1; reported back once durable.
    pub id: u64,
    /// The new tags, each with the epoch of the key whose filter accepted it.
    pub tags: Vec<(u64, ReplayTag)>,
}

/// The replay log's bookkeeping in the core.
#[derive(Debug)]
struct TagLog {
    /// Tags of the batch being filled.
    open: Vec<(u64, ReplayTag)>,
    /// Number of the batch being filled.
    open_id: u64,
    /// Whether a packet waits for the batch being filled (it must be handed out even if empty).
    open_used: bool,
    /// Tags not logged because their key's log had reached the filter's capacity.
    full: u64,
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
    log: Option<TagLog>,
}

impl KeyRing {
    pub(crate) fn new(capacity: u64, false_positive_rate: f64) -> Self {
        Self { keys: Vec::new(), capacity, false_positive_rate, log: None }
    }

    /// Installs the key of `epoch`. A key already installed for that epoch gets the new key and
    /// window but keeps its filter: installing the same epoch twice must not forget its tags.
    pub(crate) fn add(&mut self, epoch: u64, key: SecretKey, window: EpochWindow) {
        if let Some(k) = self.keys.iter_mut().find(|k| k.epoch == epoch) {
            k.key = key;
            k.window = window;
            return;
        }
        let filter = ReplayFilter::new(self.capacity, self.false_positive_rate);
        self.keys.push(EpochKey { epoch, key, window, filter, logged: 0 });
        self.keys.sort_by_key(|k| Reverse(k.epoch));
    }

    /// From now on, accepted tags are handed out by [`KeyRing::poll_log`].
    pub(crate) fn enable_log(&mut self) {
        if self.log.is_none() {
            self.log = Some(TagLog { open: Vec::new(), open_id: 1, open_used: false, full: 0 });
        }
    }

    /// Inserts tags read back from the replay log of `epoch` into that key's filter, without
    /// logging them again; returns how many went in (0 when no key of `epoch` is installed).
    pub(crate) fn restore(&mut self, epoch: u64, tags: &[ReplayTag]) -> usize {
        let Some(k) = self.keys.iter_mut().find(|k| k.epoch == epoch) else { return 0 };
        for t in tags {
            k.filter.insert(t);
        }
        k.logged = k.logged.saturating_add(tags.len() as u64);
        tags.len()
    }

    /// The batch a packet queued now must wait for (0: none, it may leave when due).
    pub(crate) fn hold(&mut self) -> u64 {
        match &mut self.log {
            Some(l) => {
                l.open_used = true;
                l.open_id
            }
            None => 0,
        }
    }

    /// The tags accepted since the last call, if a packet waits for them or there are any.
    pub(crate) fn poll_log(&mut self) -> Option<ReplayBatch> {
        let l = self.log.as_mut()?;
        if !l.open_used && l.open.is_empty() {
            return None;
        }
        let batch = ReplayBatch { id: l.open_id, tags: core::mem::take(&mut l.open) };
        l.open_id += 1;
        l.open_used = false;
        Some(batch)
    }

    /// Tags not logged because their key's log was full.
    pub(crate) fn log_full(&self) -> u64 {
        self.log.as_ref().map_or(0, |l| l.full)
    }

    /// Records an accepted tag in the filter of key `i`; `false` if it was (probably) there.
    fn insert(&mut self, i: usize, tag: &ReplayTag) -> bool {
        let Some(k) = self.keys.get_mut(i) else { return false };
        let fresh = k.filter.insert(tag);
        if fresh && let Some(l) = &mut self.log {
            if k.logged < self.capacity {
                k.logged += 1;
                l.open.push((k.epoch, *tag));
            } else {
                l.full += 1;
            }
        }
        fresh
    }

    pub(crate) fn epochs(&self) -> Vec<u64> {
        self.keys.iter().map(|k| k.epoch).collect()
    }

    pub(crate) fn filter_bytes(&self) -> usize {
        self.keys.iter().map(|k| k.filter.memory_bytes()).sum()
    }

    /// Erases keys (and their filters) whose window has passed.
    pub(crate) fn expire(&mut self, now: UnixMicros) {
        self.keys.retain(|k| now < k.window.end + k.window.grace);
    }

    /// When [`KeyRing::expire`] next erases a key: the node must be woken then even if nothing
    /// else is due, or an idle node keeps every key (and its filter) it ever installed.
    pub(crate) fn next_expiry(&self) -> Option<UnixMicros> {
        self.keys.iter().map(|k| k.window.end + k.window.grace).min()
    }

    /// The epoch whose window (without grace) contains `now`.
    pub(crate) fn current_epoch(&self, now: UnixMicros) -> Option<u64> {
        self.keys.iter().find(|k| k.window.current(now)).map(|k| k.epoch)
    }

    /// Unwraps `packet` under the live keys, newest first. With `drop_replays`, a packet whose tag
    /// was accepted before under a live key is refused before any public-key work; the tag of a
    /// packet that unwraps is recorded either way, and the flag returned says whether it was new.
    pub(crate) fn unwrap(
        &mut self,
        sphinx: &Sphinx,
        now: UnixMicros,
        packet: Vec<u8>,
        drop_replays: bool,
    ) -> Result<(Unwrapped, Vec<u8>, bool), RingError> {
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
    pub(crate) fn seen(&self, now: UnixMicros, tag: &ReplayTag) -> Result<bool, RingError> {
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
        now: UnixMicros,
        mut packet: Vec<u8>,
        tag: ReplayTag,
        drop_replays: bool,
    ) -> Result<(Unwrapped, Vec<u8>, bool), RingError> {
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
                    let fresh = self.insert(i, &out.replay_tag);
                    return Ok((out, attempt, fresh));
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
    at: UnixMicros,
    seq: u64,
    /// The replay-log batch that must be durable before the packet leaves (0: none).
    hold: u64,
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

/// Packets held until their delay has passed (and their replay-log batch is durable), and the
/// time integral of how many are held.
#[derive(Default)]
pub(crate) struct DelayQueue {
    heap: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// The highest replay-log batch reported durable.
    released: u64,
    last_update: Option<UnixMicros>,
    pub(crate) packet_seconds: f64,
}

impl DelayQueue {
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds the pool size since the last update to the integral.
    pub(crate) fn account(&mut self, now: UnixMicros) {
        if let Some(last) = self.last_update {
            self.packet_seconds += self.heap.len() as f64 * now.saturating_since(last).as_secs_f64();
        }
        self.last_update = Some(self.last_update.map_or(now, |l| l.max(now)));
    }

    /// Queues `packet` to leave at `at`, once replay-log batch `hold` is durable.
    pub(crate) fn push(&mut self, now: UnixMicros, at: UnixMicros, to: NodeId, packet: Vec<u8>, hold: u64) {
        self.account(now);
        self.seq += 1;
        self.heap.push(Reverse(Queued { at, seq: self.seq, hold, to, packet }));
    }

    /// Replay-log batches up to `id` are durable: their packets may leave.
    pub(crate) fn release(&mut self, id: u64) {
        self.released = self.released.max(id);
    }

    /// Packets whose delay has passed but whose replay-log batch is not durable yet wait (the
    /// earliest holds back the ones due after it, for at most one log write).
    pub(crate) fn pop_due(&mut self, now: UnixMicros) -> Option<Transmit> {
        if self.heap.peek().is_some_and(|Reverse(q)| q.at <= now && q.hold <= self.released) {
            self.account(now);
            let Reverse(q) = self.heap.pop()?;
            return Some(Transmit { to: q.to, packet: q.packet });
        }
        None
    }

    /// When the next packet is due; `None` also while the first one waits for its replay-log
    /// batch (the report that it is durable is the next event, not a time).
    pub(crate) fn next_due(&self) -> Option<UnixMicros> {
        self.heap.peek().filter(|Reverse(q)| q.hold <= self.released).map(|Reverse(q)| q.at)
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<UnixMicros>, b: Option<UnixMicros>) -> Option<UnixMicros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The delay a hop's commands ask for, cut at `max`.
pub(crate) fn requested_delay(out: &Unwrapped, max: Duration) -> Duration {
    out.commands.delay.map_or(Duration::ZERO, |d| Duration::from_millis(u64::from(d.delay_ms))).min(max)
}
