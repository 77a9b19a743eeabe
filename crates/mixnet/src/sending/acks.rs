//! The acknowledgements a client owes: bounded, packed, and never more than their share of the
//! sending slots.
//!
//! Every DATA packet that arrives is acknowledged through the SURB it carried. Sending one reply
//! per fragment let a contact who writes steadily (or a busy group) take every payload slot, so
//! the user could no longer speak. Instead the acknowledgements wait here, grouped by who will
//! read them ([`AckGroup`]: the mailbox a contact writes to, or one message in a group, where
//! members share the mailbox), and one reply carries every pending fragment of its group that
//! fits ([`AckEntry`]: a bitmap per message). The engine gives them at most every
//! other payload slot when its own messages wait.
//!
//! What others can make this queue hold is bounded ([`MAX_PENDING`] fragments, [`MAX_SURBS`]
//! SURBs a group) and expires ([`ACK_TTL`]): what falls out is counted, and is never lost, because
//! its sender resends every fragment it has no acknowledgement for and a duplicate is acknowledged
//! again.
//!
//! # What others learn
//!
//! A reply leaves in a payload slot like any packet, through the SURB its sender made, and lands
//! in the sender's own mailbox as an item like any other (see [`super::packets`]): no observer or
//! gateway tells it from a message or a loop. The sender learns which fragments arrived, and
//! only for what it sent to the mailbox the SURB's message went to.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use qanat_packet::{MailboxId, Sphinx};
use rand_core::CryptoRng;

use super::packets::acks_packet;
use super::payload::{AckEntry, MessageId, ack_capacity};
use crate::UnixMicros;

/// At most this many fragments wait for an acknowledgement (beyond it, the oldest group's are
/// dropped: their senders resend).
pub const MAX_PENDING: usize = 4096;

/// At most this many SURBs are kept for a group (the newest: their keys are the freshest).
pub const MAX_SURBS: usize = 4;

/// How long an acknowledgement may wait: past it the SURBs it would travel in have lost their
/// keys at the mixes (an epoch and its grace), and the sender has resent anyway.
pub const ACK_TTL: Duration = Duration::from_secs(3600);

/// Who reads the acknowledgements of a fragment: they may share a reply only if they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AckGroup {
    /// Fragments that arrived in a mailbox only one contact writes to (a contact's thread).
    Mailbox(MailboxId),
    /// The fragments of one message (a group's mailbox, where every member writes).
    Message(MessageId),
}

struct Pending {
    since: UnixMicros,
    surbs: Vec<Vec<u8>>,
    entries: BTreeMap<MessageId, BTreeSet<u16>>,
}

impl Pending {
    fn fragments(&self) -> usize {
        self.entries.values().map(BTreeSet::len).sum()
    }
}

/// What the queue has done, for the engine's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AckStats {
    /// Reply packets built.
    pub replies: u64,
    /// Fragments acknowledged in them.
    pub fragments: u64,
    /// Fragments dropped from the queue (full, expired, or no SURB left): their senders resend.
    pub dropped: u64,
}

/// The acknowledgements waiting for a payload slot.
#[derive(Default)]
pub struct AckQueue {
    order: VecDeque<AckGroup>,
    groups: HashMap<AckGroup, Pending>,
    fragments: usize,
    stats: AckStats,
}

impl std::fmt::Debug for AckQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckQueue")
            .field("groups", &self.groups.len())
            .field("fragments", &self.fragments)
            .finish()
    }
}

impl AckQueue {
    /// Owes an acknowledgement of fragment `index` of `message_id`, which came with `surb`.
    pub fn add(
        &mut self,
        now: UnixMicros,
        group: AckGroup,
        surb: Vec<u8>,
        message_id: MessageId,
        index: u16,
    ) {
        let p = self.groups.entry(group).or_insert_with(|| {
            self.order.push_back(group);
            Pending { since: now, surbs: Vec::new(), entries: BTreeMap::new() }
        });
        p.surbs.push(surb);
        if p.surbs.len() > MAX_SURBS {
            p.surbs.remove(0);
        }
        if p.entries.entry(message_id).or_default().insert(index) {
            self.fragments += 1;
        }
        while self.fragments > MAX_PENDING {
            let Some(oldest) = self.order.pop_front() else { break };
            self.forget(oldest);
        }
    }

    /// Whether any acknowledgement is waiting.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How many fragments wait.
    pub fn len(&self) -> usize {
        self.fragments
    }

    /// What the queue has done.
    pub fn stats(&self) -> AckStats {
        self.stats
    }

    fn forget(&mut self, group: AckGroup) {
        if let Some(p) = self.groups.remove(&group) {
            let n = p.fragments();
            self.fragments -= n;
            self.stats.dropped += n as u64;
        }
    }

    /// The reply for the next group: every fragment of it that fits, in its newest SURB. A group
    /// with more goes to the back of the line (with its other SURBs); one whose SURBs ran out
    /// is dropped (its sender resends). `None` when nothing waits.
    pub fn next_packet<R: CryptoRng + ?Sized>(
        &mut self,
        now: UnixMicros,
        sphinx: &Sphinx,
        rng: &mut R,
    ) -> Option<Vec<u8>> {
        let expired: Vec<AckGroup> =
            self.groups.iter().filter(|(_, p)| p.since + ACK_TTL <= now).map(|(g, _)| *g).collect();
        for g in expired {
            self.forget(g);
        }
        self.order.retain(|g| self.groups.contains_key(g));
        let group = self.order.pop_front()?;
        let p = self.groups.get_mut(&group)?;
        let Some(surb) = p.surbs.pop() else {
            self.forget(group);
            return None;
        };
        let room = ack_capacity(sphinx.geometry());
        let mut used = 0;
        let mut entries = Vec::new();
        for (&id, indices) in &p.entries {
            // An entry is the id, a u16 and a bitmap up to its highest index: take as many of
            // the message's lowest indices as the room left allows.
            let Some(max_bits) = room.checked_sub(used + 18).map(|b| b * 8).filter(|b| *b > 0) else { break };
            if entries.len() == usize::from(u8::MAX) {
                break;
            }
            let take: Vec<u16> = indices.iter().copied().take_while(|i| usize::from(*i) < max_bits).collect();
            if take.is_empty() {
                break;
            }
            let e = AckEntry { message_id: id, indices: take };
            used += e.encoded_len();
            entries.push(e);
        }
        for e in &entries {
            if let Some(indices) = p.entries.get_mut(&e.message_id) {
                for i in &e.indices {
                    indices.remove(i);
                }
                if indices.is_empty() {
                    p.entries.remove(&e.message_id);
                }
            }
        }
        let n: usize = entries.iter().map(|e| e.indices.len()).sum();
        self.fragments -= n;
        self.stats.replies += 1;
        self.stats.fragments += n as u64;
        if p.entries.is_empty() {
            self.groups.remove(&group);
        } else {
            self.order.push_back(group);
        }
        match acks_packet(sphinx, &surb, entries, rng) {
            Ok(packet) => Some(packet.packet),
            Err(_) => {
                // A SURB that cannot carry a reply (it came from the contact): what it was to
                // acknowledge is dropped, and its sender sends it again.
                self.stats.replies -= 1;
                self.stats.fragments -= n as u64;
                self.stats.dropped += n as u64;
                None
            }
        }
    }
}
