//! The recipient's side of reliable delivery: fragments reassembled into messages, each delivered
//! once.
//!
//! The recipient opens each item of its mailboxes ([`super::seal::open`]), decodes its payload
//! ([`super::payload`]) and hands a DATA fragment to the [`Inbox`]. Taking a message is in two
//! phases: [`Inbox::handle`] says when a message is complete ([`Received::Message`]); the caller
//! keeps it, then calls [`Inbox::commit`] (the fragment may now be acknowledged) or
//! [`Inbox::refuse`] (it is not, and its sender sends it again). Every fragment taken is
//! acknowledged ([`super::acks`]), a duplicate again (the first acknowledgement may have been
//! lost); a delivered message's id is remembered for [`REMEMBER_DELIVERED`], so that its copies
//! are only acknowledged.
//!
//! # What others can make it hold
//!
//! A contact, or a group member, chooses everything a DATA packet says (message id, index,
//! claimed count, data), and none of it can be checked before reassembly. So what the inbox holds
//! is bounded per [`Source`] (the conversation whose mailbox a fragment arrived in) and in all,
//! and expires; a claimed count costs nothing until fragments arrive (see [`Inbox`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::payload::{MAX_FRAGMENTS, MessageId};
use crate::UnixMicros;

/// What the inbox did with a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A message is complete. The caller takes it and then calls [`Inbox::commit`] (it is
    /// delivered: acknowledge the fragment) or [`Inbox::refuse`] (it cannot be taken now: do not
    /// acknowledge the fragment, its sender will send it again).
    Message(MessageId, Vec<u8>),
    /// A fragment was stored; the message is not complete yet.
    Partial,
    /// A fragment of a message already delivered (acknowledge it again, deliver nothing).
    Duplicate,
    /// Not stored: the partial messages are at their bound, or the fragment contradicts the
    /// ones before (do not acknowledge it).
    Refused,
}

struct PartialMessage {
    since: UnixMicros,
    /// Where it came from: the conversation whose mailbox it arrived in.
    source: Source,
    count: u16,
    fragments: BTreeMap<u16, Vec<u8>>,
}

/// Where a fragment came from, for the inbox's bounds per source: the conversation (contact or
/// group) whose mailbox it arrived in. Only those who know that mailbox and its seal key can put
/// anything there.
pub type Source = [u8; 16];

/// At most this many messages are partly received at once.
pub const MAX_PARTIAL_MESSAGES: usize = 10_000;

/// At most this many bytes of partly received messages are held.
pub const MAX_PARTIAL_BYTES: usize = 64 << 20;

/// At most this many messages from one source are partly received at once.
pub const MAX_PARTIAL_MESSAGES_PER_SOURCE: usize = 1_000;

/// At most this many bytes of partly received messages from one source are held (room for the
/// largest message, [`MAX_FRAGMENTS`] fragments).
pub const MAX_PARTIAL_BYTES_PER_SOURCE: usize = 8 << 20;

/// The receiver's side: reassembly and de-duplication by message id. What others can make it
/// hold is bounded, per source ([`MAX_PARTIAL_MESSAGES_PER_SOURCE`],
/// [`MAX_PARTIAL_BYTES_PER_SOURCE`]: one contact filling its share does not stop the others) and
/// in all ([`MAX_PARTIAL_MESSAGES`], [`MAX_PARTIAL_BYTES`]); a fragment beyond them is refused,
/// not acknowledged, and so sent again later; a fragment that completes its message is never
/// held, so it is always taken. Partial messages expire ([`REMEMBER_DELIVERED`]). A message's
/// claimed fragment count costs nothing until its fragments arrive.
#[derive(Default)]
pub struct Inbox {
    partial: HashMap<MessageId, PartialMessage>,
    partial_bytes: usize,
    /// Messages and bytes held per source.
    per_source: HashMap<Source, (usize, usize)>,
    delivered: BTreeMap<MessageId, UnixMicros>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("partial", &self.partial.len())
            .field("partial_bytes", &self.partial_bytes)
            .field("delivered", &self.delivered.len())
            .finish()
    }
}

/// How long a delivered message's id is remembered (its fragments may be resent until then):
/// the mailbox retention. A partly received message is kept as long.
pub const REMEMBER_DELIVERED: Duration = Duration::from_secs(30 * 86_400);

impl Inbox {
    /// Takes fragment `index` of `count` of message `id` from `source` at `now` (for a fragment
    /// read back from storage, `now` is when the message's first fragment arrived).
    pub fn handle(
        &mut self,
        now: UnixMicros,
        source: Source,
        id: MessageId,
        index: u16,
        count: u16,
        data: Vec<u8>,
    ) -> Received {
        self.take(now, source, id, index, count, data, true)
    }

    /// Puts back a fragment read from storage, as [`Inbox::handle`] but whatever the bounds: it
    /// was taken (and acknowledged) within them, perhaps smaller ones.
    pub fn restore(
        &mut self,
        since: UnixMicros,
        source: Source,
        id: MessageId,
        index: u16,
        count: u16,
        data: Vec<u8>,
    ) {
        let _ = self.take(since, source, id, index, count, data, false);
    }

    // `handle` and `restore` are two doors to this one function, which holds the logic; that
    // their parameter lists repeat it is on purpose (each door documents its own).
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        now: UnixMicros,
        source: Source,
        id: MessageId,
        index: u16,
        count: u16,
        data: Vec<u8>,
        bounded: bool,
    ) -> Received {
        if self.delivered.contains_key(&id) {
            return Received::Duplicate;
        }
        if index >= count || usize::from(count) > MAX_FRAGMENTS {
            return Received::Refused;
        }
        let held = match self.partial.get(&id) {
            // A sender that changes its fragment count, or whose message moves to another
            // conversation, is broken or hostile.
            Some(m) if m.count != count || m.source != source => return Received::Refused,
            Some(m) if m.fragments.contains_key(&index) => {
                return if m.fragments.len() == usize::from(count) {
                    Received::Message(id, Self::join(m))
                } else {
                    Received::Partial
                };
            }
            Some(m) => m.fragments.len(),
            None => 0,
        };
        // What completes its message is not held: it is taken whatever the bounds.
        let completes = held + 1 == usize::from(count);
        if bounded && !completes {
            let (n, bytes) = self.per_source.get(&source).copied().unwrap_or_default();
            let new = held == 0;
            if new && (self.partial.len() >= MAX_PARTIAL_MESSAGES || n >= MAX_PARTIAL_MESSAGES_PER_SOURCE) {
                return Received::Refused;
            }
            if self.partial_bytes + data.len() > MAX_PARTIAL_BYTES
                || bytes + data.len() > MAX_PARTIAL_BYTES_PER_SOURCE
            {
                return Received::Refused;
            }
        }
        self.partial_bytes += data.len();
        let share = self.per_source.entry(source).or_default();
        share.1 += data.len();
        if held == 0 {
            share.0 += 1;
        }
        let m = self.partial.entry(id).or_insert_with(|| PartialMessage {
            since: now,
            source,
            count,
            fragments: BTreeMap::new(),
        });
        m.fragments.insert(index, data);
        if m.fragments.len() == usize::from(count) {
            return Received::Message(id, Self::join(m));
        }
        Received::Partial
    }

    /// Takes `bytes` (and the message itself, if `whole`) off `source`'s share.
    fn release(&mut self, source: Source, bytes: usize, whole: bool) {
        self.partial_bytes -= bytes;
        if let Some(share) = self.per_source.get_mut(&source) {
            share.1 -= bytes;
            if whole {
                share.0 -= 1;
            }
            if share.0 == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    fn join(m: &PartialMessage) -> Vec<u8> {
        m.fragments.values().flatten().copied().collect()
    }

    /// Message `id` (complete) was taken: it is delivered, its fragments are dropped, and its
    /// id is remembered so that copies are only acknowledged.
    pub fn commit(&mut self, id: MessageId, now: UnixMicros) {
        if let Some(m) = self.partial.remove(&id) {
            self.release(m.source, m.fragments.values().map(Vec::len).sum::<usize>(), true);
        }
        self.delivered.insert(id, now);
    }

    /// Message `id` (complete) could not be taken: its fragment `index` is dropped again, so
    /// the message completes when that fragment is sent again.
    pub fn refuse(&mut self, id: MessageId, index: u16) {
        if let Some(m) = self.partial.get_mut(&id)
            && let Some(d) = m.fragments.remove(&index)
        {
            let (source, whole) = (m.source, m.fragments.is_empty());
            if whole {
                self.partial.remove(&id);
            }
            self.release(source, d.len(), whole);
        }
    }

    /// Forgets delivered ids older than [`REMEMBER_DELIVERED`] and partial messages started
    /// before that; returns those partial messages (id and fragment count), whose stored
    /// fragments the caller deletes.
    pub fn expire(&mut self, now: UnixMicros) -> Vec<(MessageId, u16)> {
        let cutoff = now - REMEMBER_DELIVERED;
        self.delivered.retain(|_, t| *t > cutoff);
        let old: Vec<(MessageId, u16)> =
            self.partial.iter().filter(|(_, m)| m.since <= cutoff).map(|(id, m)| (*id, m.count)).collect();
        for (id, _) in &old {
            if let Some(m) = self.partial.remove(id) {
                self.release(m.source, m.fragments.values().map(Vec::len).sum::<usize>(), true);
            }
        }
        old
    }

    /// When the first fragment of partly received message `id` arrived.
    pub fn partial_since(&self, id: &MessageId) -> Option<UnixMicros> {
        self.partial.get(id).map(|m| m.since)
    }

    /// How many messages are partly received, and their bytes.
    pub fn partial(&self) -> (usize, usize) {
        (self.partial.len(), self.partial_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one source of the tests that have one.
    const SRC: Source = [9; 16];

    /// Sixteen bytes numbered `i`: its big-endian value, then zeros.
    fn numbered(i: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.to_be_bytes());
        b
    }

    /// Message `i`.
    fn id(i: u64) -> MessageId {
        MessageId(numbered(i))
    }

    /// Source `i`.
    fn src(i: u64) -> Source {
        numbered(i)
    }

    #[test]
    fn the_inbox_delivers_once_and_ignores_inconsistent_counts() {
        let mut inbox = Inbox::default();
        let id = MessageId([1; 16]);
        let t = UnixMicros::ZERO;
        assert_eq!(inbox.handle(t, SRC, id, 1, 2, b"world".to_vec()), Received::Partial);
        assert_eq!(inbox.handle(t, SRC, id, 1, 3, b"x".to_vec()), Received::Refused);
        assert_eq!(inbox.handle(t, SRC, id, 2, 2, b"x".to_vec()), Received::Refused);
        // Complete, but not taken: the last fragment is dropped again and comes back.
        assert_eq!(
            inbox.handle(t, SRC, id, 0, 2, b"hello ".to_vec()),
            Received::Message(id, b"hello world".to_vec())
        );
        inbox.refuse(id, 0);
        assert_eq!(inbox.partial(), (1, 5));
        assert_eq!(
            inbox.handle(t, SRC, id, 0, 2, b"hello ".to_vec()),
            Received::Message(id, b"hello world".to_vec())
        );
        inbox.commit(id, t);
        assert_eq!(inbox.partial(), (0, 0));
        assert_eq!(inbox.handle(t, SRC, id, 0, 2, b"hello ".to_vec()), Received::Duplicate);
        assert!(inbox.expire(t + REMEMBER_DELIVERED + Duration::from_secs(1)).is_empty());
        assert!(inbox.delivered.is_empty());
    }

    #[test]
    fn what_others_can_make_the_inbox_hold_is_bounded_and_expires() {
        let mut inbox = Inbox::default();
        let t = UnixMicros::ZERO;
        // A claimed count costs nothing; fragments that never complete fill the bounds, then are
        // refused (not acknowledged), then expire.
        let per = MAX_PARTIAL_MESSAGES_PER_SOURCE as u64;
        for i in 0..MAX_PARTIAL_MESSAGES as u64 {
            assert_eq!(inbox.handle(t, src(i / per), id(i), 0, 4096, vec![1]), Received::Partial);
        }
        // Full in all: a new message from a fresh source is refused, unless its fragment completes it
        // (it is never held).
        let fresh = src(MAX_PARTIAL_MESSAGES as u64);
        assert_eq!(inbox.handle(t, fresh, id(u64::MAX), 0, 2, vec![1]), Received::Refused);
        assert_eq!(
            inbox.handle(t, fresh, id(u64::MAX), 0, 1, vec![7]),
            Received::Message(id(u64::MAX), vec![7])
        );
        inbox.commit(id(u64::MAX), t);
        // Fragments of a message already started still fit.
        assert_eq!(inbox.handle(t, src(0), id(0), 1, 4096, vec![1]), Received::Partial);
        assert_eq!(inbox.partial(), (MAX_PARTIAL_MESSAGES, MAX_PARTIAL_MESSAGES + 1));
        // A fragment of that message arriving through another conversation is refused.
        assert_eq!(inbox.handle(t, src(1), id(0), 2, 4096, vec![1]), Received::Refused);
        let gone = inbox.expire(t + REMEMBER_DELIVERED);
        assert_eq!(gone.len(), MAX_PARTIAL_MESSAGES);
        assert_eq!(inbox.partial(), (0, 0));
        assert!(inbox.per_source.is_empty());
        // Bytes are bounded too, per source and in all.
        let big = vec![0u8; 1 << 20];
        let per_bytes = (MAX_PARTIAL_BYTES_PER_SOURCE >> 20) as u64;
        for i in 0..(MAX_PARTIAL_BYTES >> 20) as u64 {
            assert_eq!(inbox.handle(t, src(i / per_bytes), id(i), 0, 3, big.clone()), Received::Partial);
        }
        assert_eq!(inbox.handle(t, src(0), id(0), 1, 3, big.clone()), Received::Refused);
        assert_eq!(inbox.handle(t, src(1000), id(1000), 0, 3, big.clone()), Received::Refused);
    }

    // Found by the incomplete-fragments attack on a devnet: the inbox's bounds were for everything
    // the user receives, so one contact sending one fragment each of 10,000 messages (about ten
    // minutes of what a user pulls) silenced every other contact for the 30 days those fragments are
    // kept. Now each conversation has its share, and a message that completes is always taken.
    #[test]
    fn one_source_filling_its_share_does_not_stop_the_others() {
        let mut inbox = Inbox::default();
        let t = UnixMicros::ZERO;
        let (mallory, bob) = ([1u8; 16], [2u8; 16]);
        for i in 0..MAX_PARTIAL_MESSAGES_PER_SOURCE as u64 {
            assert_eq!(inbox.handle(t, mallory, id(i), 0, 4096, vec![1]), Received::Partial);
        }
        assert_eq!(inbox.handle(t, mallory, id(u64::MAX), 0, 4096, vec![1]), Received::Refused);
        // Bob's two-fragment message is held and completed; his one-fragment message is taken.
        assert_eq!(inbox.handle(t, bob, id(1 << 40), 0, 2, b"hel".to_vec()), Received::Partial);
        assert_eq!(
            inbox.handle(t, bob, id(1 << 40), 1, 2, b"lo".to_vec()),
            Received::Message(id(1 << 40), b"hello".to_vec())
        );
        assert_eq!(
            inbox.handle(t, bob, id(1 << 41), 0, 1, b"hi".to_vec()),
            Received::Message(id(1 << 41), b"hi".to_vec())
        );
        // Restoring after a restart ignores the bounds (what was taken stays taken).
        let mut again = Inbox::default();
        for i in 0..(MAX_PARTIAL_MESSAGES_PER_SOURCE as u64 + 5) {
            again.restore(t, mallory, id(i), 0, 4096, vec![1]);
        }
        assert_eq!(again.partial().0, MAX_PARTIAL_MESSAGES_PER_SOURCE + 5);
    }
}
