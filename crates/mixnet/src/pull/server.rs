//! The gateway's side of the pull exchange ([`PullServer`]): which operations of a pull to carry
//! out, which store reads to make, and the answer of one head and `limit` slots; and a single
//! [`Request::Fetch`](crate::client_proto::Request::Fetch), planned and answered
//! ([`fetch_reads`], [`fetch_answer`]). The design of the slots is in the [parent module](super).

use std::collections::BTreeMap;

use qanat_packet::MailboxId;

use crate::client_proto::{ErrorCode, MAX_CHUNK_LEN, MAX_PULL_LIMIT, Op, OpResult, PULL_OPS, Response, Want};

/// Most mailboxes one pull reads from the store (see [`PullServer::fetch_order`]).
pub const MAX_PULL_READS: usize = 64;

/// Most items a [`Request::Fetch`](crate::client_proto::Request::Fetch) is answered with.
pub const MAX_FETCH_LIMIT: u16 = 256;

/// How many items a fetch asking for `limit` reads from the store: `limit` clamped to
/// 1..=[`MAX_FETCH_LIMIT`], and one more to learn whether more wait.
pub fn fetch_reads(limit: u16) -> usize {
    usize::from(limit.clamp(1, MAX_FETCH_LIMIT)) + 1
}

/// The answer to fetch `id` of `limit` items, from the `(seq, item)`s the store gave (read with
/// [`fetch_reads`]): a [`Response::Message`] for each up to the clamped `limit`, then
/// [`Response::FetchDone`], saying whether more wait.
pub fn fetch_answer(id: u32, limit: u16, stored: Vec<(u64, Vec<u8>)>) -> Vec<Response> {
    let limit = usize::from(limit.clamp(1, MAX_FETCH_LIMIT));
    let more = stored.len() > limit;
    let mut out: Vec<Response> =
        stored.into_iter().take(limit).map(|(seq, item)| Response::Message { id, seq, item }).collect();
    out.push(Response::FetchDone { id, more });
    out
}

/// One store read of a pull (see [`PullReads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullRead {
    /// The mailbox to read.
    pub mailbox: MailboxId,
    /// Its credential, as registered on the session.
    pub credential: [u8; 32],
    /// Most items to read from the start of the mailbox: one more than the answer has room for,
    /// so that a full answer still learns whether items wait.
    pub max: usize,
}

/// A store read of a pull failed (the mailbox counts as holding items still).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailed;

/// One pull's store reads, planned without IO: the runtime carries out each
/// [`PullReads::next_read`] and reports what came back ([`PullReads::handle_read`]); then
/// [`PullReads::finish`] gives the items for [`PullServer::answer`] and whether more wait.
///
/// The mailboxes are those of [`PullServer::fetch_order`] (at most [`MAX_PULL_READS`], a busy
/// one unable to starve the others), read in that order until the answer's room for items is
/// full and it is known that more wait (with no room left, one more read of one item says
/// whether any wait). A failed read counts as items waiting, so the client pulls again.
#[derive(Debug)]
pub struct PullReads {
    order: std::vec::IntoIter<(MailboxId, [u8; 32])>,
    room: usize,
    items: Vec<PulledItem>,
    more: bool,
}

impl PullReads {
    fn left(&self) -> usize {
        self.room.saturating_sub(self.items.len())
    }

    /// The next read to carry out; `None`: the pull's reads are done.
    pub fn next_read(&mut self) -> Option<PullRead> {
        let left = self.left();
        if left == 0 && self.more {
            return None;
        }
        let (mailbox, credential) = self.order.next()?;
        Some(PullRead { mailbox, credential, max: left + 1 })
    }

    /// What the store gave for `read`: its `(seq, item)`s in order, or [`ReadFailed`]. Items
    /// beyond the answer's room are left in the store, and `more` set.
    pub fn handle_read(&mut self, read: &PullRead, stored: Result<Vec<(u64, Vec<u8>)>, ReadFailed>) {
        let left = self.left();
        match stored {
            Ok(stored) => {
                self.more |= stored.len() > left;
                let mailbox = read.mailbox;
                self.items.extend(stored.into_iter().take(left).map(|(seq, item)| PulledItem {
                    mailbox,
                    seq,
                    item,
                }));
            }
            Err(ReadFailed) => self.more = true,
        }
    }

    /// The items read (at most the room given to [`PullServer::reads`]) and whether more wait.
    pub fn finish(self) -> (Vec<PulledItem>, bool) {
        (self.items, self.more)
    }
}

/// One stored item for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledItem {
    /// Its mailbox.
    pub mailbox: MailboxId,
    /// Its sequence number there.
    pub seq: u64,
    /// The stored bytes.
    pub item: Vec<u8>,
}

/// Counters of one client session at the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullMetrics {
    /// Pulls answered.
    pub pulls: u64,
    /// Registrations refused because the session holds [`PullServer::max_mailboxes`] mailboxes.
    pub registrations_refused: u64,
    /// Document chunks sent.
    pub chunks_sent: u64,
}

/// The gateway's state for one client connection: the mailboxes registered on it.
#[derive(Debug)]
pub struct PullServer {
    mailboxes: BTreeMap<MailboxId, [u8; 32]>,
    max_mailboxes: usize,
    /// Which mailbox a pull starts with, so that a busy one cannot starve the others.
    turn: usize,
    metrics: PullMetrics,
}

/// How many chunks of `chunk_len` bytes `len` bytes make (at least one).
pub fn chunk_count(len: usize, chunk_len: usize) -> usize {
    len.div_ceil(chunk_len.max(1)).max(1)
}

impl PullServer {
    /// A session that holds at most `max_mailboxes` registrations.
    pub fn new(max_mailboxes: usize) -> Self {
        Self { mailboxes: BTreeMap::new(), max_mailboxes, turn: 0, metrics: PullMetrics::default() }
    }

    /// The bound on registrations.
    pub fn max_mailboxes(&self) -> usize {
        self.max_mailboxes
    }

    /// The counters.
    pub fn metrics(&self) -> &PullMetrics {
        &self.metrics
    }

    /// How many mailboxes are registered on the session.
    pub fn len(&self) -> usize {
        self.mailboxes.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty()
    }

    /// Whether the store should carry `op` out; `Err` is the slot's result without the store.
    pub fn admit(&mut self, op: &Op) -> Result<(), ErrorCode> {
        match op {
            Op::Register { mailbox, .. }
                if self.mailboxes.len() >= self.max_mailboxes && !self.mailboxes.contains_key(mailbox) =>
            {
                self.metrics.registrations_refused += 1;
                Err(ErrorCode::Unavailable)
            }
            _ => Ok(()),
        }
    }

    /// What the store did with `op`.
    pub fn handle_op_result(&mut self, op: &Op, result: OpResult) {
        match (op, result) {
            (Op::Register { mailbox, credential }, OpResult::Done) => {
                self.mailboxes.insert(*mailbox, *credential);
            }
            // Gone from the store, or never ours: either way not pulled from any more.
            (Op::Unregister { mailbox, .. }, OpResult::Done | OpResult::Failed(ErrorCode::Unauthorized)) => {
                self.mailboxes.remove(mailbox);
            }
            _ => {}
        }
    }

    /// The mailboxes to fetch from in this pull, with their credentials: at most
    /// [`MAX_PULL_READS`], so that a pull costs the store a bounded number of reads whatever a
    /// session registered (and the gateway's fixed answer delay always covers the work). With
    /// no more mailboxes than that, all of them, starting one further each pull so that a busy
    /// one cannot starve the others; with more, the next [`MAX_PULL_READS`] in turn, so that
    /// every mailbox is read once every `len / MAX_PULL_READS` pulls (rounded up).
    pub fn fetch_order(&mut self) -> Vec<(MailboxId, [u8; 32])> {
        let n = self.mailboxes.len();
        let start = if n == 0 { 0 } else { self.turn % n };
        let take = n.min(MAX_PULL_READS);
        self.turn = self.turn.wrapping_add(if n > MAX_PULL_READS { MAX_PULL_READS } else { 1 });
        self.mailboxes
            .iter()
            .skip(start)
            .chain(self.mailboxes.iter().take(start))
            .take(take)
            .map(|(m, c)| (*m, *c))
            .collect()
    }

    /// The store reads of this pull, for an answer with `room` slots for items (see
    /// [`PullServer::item_room`]); moves the session's turn on, as [`PullServer::fetch_order`].
    pub fn reads(&mut self, room: usize) -> PullReads {
        PullReads { order: self.fetch_order().into_iter(), room, items: Vec::new(), more: false }
    }

    /// How many slots of a `limit`-slot answer may carry items, when the client wants `want`,
    /// the gateway holds `doc` for it and `epoch` is the epoch in progress (0: not known): see
    /// the module documentation.
    pub fn item_room(limit: u16, want: Want, doc: Option<&[u8]>, chunk_len: usize, epoch: u64) -> usize {
        let limit = usize::from(limit.clamp(1, MAX_PULL_LIMIT));
        let chunks = Self::chunks_left(want, doc, chunk_len);
        let urgent = want.epoch != 0 && want.epoch <= epoch;
        limit - chunks.min(if urgent { limit } else { limit.div_ceil(2) })
    }

    fn chunks_left(want: Want, doc: Option<&[u8]>, chunk_len: usize) -> usize {
        match doc {
            Some(d) if want.epoch != 0 => {
                chunk_count(d.len(), chunk_len).saturating_sub(usize::from(want.from))
            }
            _ => 0,
        }
    }

    /// The answer to pull `id`: one [`Response::PullHead`] with `results`, then exactly `limit`
    /// slots (clamped to 1..=[`MAX_PULL_LIMIT`]): `items` (beyond [`PullServer::item_room`]
    /// they are left for the next pull, and `more` set), chunks of `doc` (the document of
    /// `want.epoch`, if the gateway holds it) from `want.from` on, then padding. `chunk_len` is
    /// at most [`MAX_CHUNK_LEN`]; `epoch` is the epoch in progress (0: not known).
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &mut self,
        id: u32,
        limit: u16,
        mut more: bool,
        results: [OpResult; PULL_OPS],
        mut items: Vec<PulledItem>,
        want: Want,
        doc: Option<&[u8]>,
        chunk_len: usize,
        epoch: u64,
    ) -> Vec<Response> {
        self.metrics.pulls += 1;
        let chunk_len = chunk_len.clamp(1, MAX_CHUNK_LEN);
        let slots = usize::from(limit.clamp(1, MAX_PULL_LIMIT));
        let room = Self::item_room(limit, want, doc, chunk_len, epoch);
        if items.len() > room {
            items.truncate(room);
            more = true;
        }
        let mut out = Vec::with_capacity(1 + slots);
        out.push(Response::PullHead { id, more, results });
        out.extend(items.into_iter().map(|p| Response::Pulled {
            id,
            more,
            mailbox: p.mailbox,
            seq: p.seq,
            item: p.item,
        }));
        if let Some(d) = doc.filter(|_| want.epoch != 0) {
            let count = chunk_count(d.len(), chunk_len);
            if let Ok(count16) = u16::try_from(count) {
                let mut index = usize::from(want.from);
                while out.len() < 1 + slots && index < count {
                    let start = index * chunk_len;
                    let bytes = d.get(start..(start + chunk_len).min(d.len())).unwrap_or_default().to_vec();
                    // `index < count <= u16::MAX`.
                    let index16 = u16::try_from(index).unwrap_or(u16::MAX);
                    out.push(Response::DocChunk {
                        id,
                        epoch: want.epoch,
                        index: index16,
                        count: count16,
                        bytes,
                    });
                    self.metrics.chunks_sent += 1;
                    index += 1;
                }
            }
        }
        while out.len() < 1 + slots {
            out.push(Response::PullPad { id, more });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(m: u8) -> Op {
        Op::Register { mailbox: MailboxId([m; 32]), credential: [m; 32] }
    }

    #[test]
    fn answers_have_one_shape_whatever_is_waiting() {
        let mut s = PullServer::new(4);
        let doc = vec![7u8; 2500];
        let item = |m: u8, seq| PulledItem { mailbox: MailboxId([m; 32]), seq, item: vec![m; 10] };
        for (items, want) in [
            (vec![], Want::default()),
            (vec![item(1, 1)], Want::default()),
            ((0..10).map(|i| item(1, i)).collect(), Want { epoch: 3, from: 0 }),
            (vec![], Want { epoch: 3, from: 1 }),
        ] {
            let a = s.answer(1, 4, false, [OpResult::Done; PULL_OPS], items, want, Some(&doc), 1000, 0);
            assert_eq!(a.len(), 5);
            assert!(matches!(a[0], Response::PullHead { .. }));
        }
    }

    #[test]
    fn a_backlog_leaves_room_for_the_document() {
        let doc = vec![7u8; 2500];
        let items: Vec<PulledItem> =
            (0..10).map(|i| PulledItem { mailbox: MailboxId([1; 32]), seq: i, item: vec![1] }).collect();
        let want = Want { epoch: 3, from: 0 };
        assert_eq!(PullServer::item_room(4, want, Some(&doc), 1000, 2), 2);
        let a = PullServer::new(4).answer(
            1,
            4,
            false,
            [OpResult::Done; PULL_OPS],
            items,
            want,
            Some(&doc),
            1000,
            2,
        );
        let chunks: Vec<_> = a.iter().filter(|r| matches!(r, Response::DocChunk { .. })).collect();
        assert_eq!(chunks.len(), 2);
        assert!(matches!(a[1], Response::Pulled { more: true, .. }));
    }

    // Regression (20-second epochs): with a backlog, the document of the epoch in progress came
    // one chunk per pull, so a client went without usable keys for several pulls.
    #[test]
    fn the_document_of_the_epoch_in_progress_goes_before_a_backlog() {
        let doc = vec![7u8; 4500];
        let items = || {
            (0..10)
                .map(|i| PulledItem { mailbox: MailboxId([1; 32]), seq: i, item: vec![1] })
                .collect::<Vec<_>>()
        };
        let chunks = |a: &[Response]| a.iter().filter(|r| matches!(r, Response::DocChunk { .. })).count();
        let ok = [OpResult::Done; PULL_OPS];
        let mut s = PullServer::new(4);
        // The next epoch's document (the gateway is in epoch 2): the backlog keeps half the slots.
        let next = Want { epoch: 3, from: 0 };
        assert_eq!(chunks(&s.answer(1, 2, false, ok, items(), next, Some(&doc), 1000, 2)), 1);
        // Epoch 3 has begun: the client's keys are on their way out; every slot carries chunks.
        let current = Want { epoch: 3, from: 1 };
        assert_eq!(PullServer::item_room(2, current, Some(&doc), 1000, 3), 0);
        let a = s.answer(2, 2, false, ok, items(), current, Some(&doc), 1000, 3);
        assert_eq!(chunks(&a), 2);
        assert!(matches!(a[0], Response::PullHead { more: true, .. }), "the backlog is announced");
        // The last chunk leaves the other slot to an item.
        let last = Want { epoch: 3, from: 4 };
        assert_eq!(PullServer::item_room(2, last, Some(&doc), 1000, 3), 1);
        // An epoch not known (0) keeps the old rule; a gateway without the document gives items.
        assert_eq!(PullServer::item_room(2, current, Some(&doc), 1000, 0), 1);
        assert_eq!(PullServer::item_room(2, current, None, 1000, 3), 2);
    }

    #[test]
    fn registrations_are_bounded_and_counted() {
        let mut s = PullServer::new(2);
        for m in 1..=3 {
            let op = reg(m);
            let r = match s.admit(&op) {
                Ok(()) => OpResult::Done,
                Err(c) => OpResult::Failed(c),
            };
            s.handle_op_result(&op, r);
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.metrics().registrations_refused, 1);
        s.handle_op_result(
            &Op::Unregister { mailbox: MailboxId([1; 32]), credential: [1; 32] },
            OpResult::Done,
        );
        assert_eq!(s.fetch_order().len(), 1);
    }

    type Store = BTreeMap<MailboxId, Vec<(u64, Vec<u8>)>>;

    /// Carries out a pull's reads on `store` (a mailbox in `failing` fails to read), checking
    /// what each read asks for; the reads made, the items and whether more wait.
    fn drive(
        s: &mut PullServer,
        room: usize,
        store: &Store,
        failing: &[MailboxId],
    ) -> (Vec<PullRead>, Vec<PulledItem>, bool) {
        let mut reads = s.reads(room);
        let mut made = Vec::new();
        let mut got = 0;
        while let Some(read) = reads.next_read() {
            assert_eq!(read.max, room.saturating_sub(got) + 1, "one more than the room left");
            assert_eq!(read.credential, read.mailbox.0, "the registered credential");
            let stored = if failing.contains(&read.mailbox) {
                Err(ReadFailed)
            } else {
                Ok(store.get(&read.mailbox).into_iter().flatten().take(read.max).cloned().collect())
            };
            reads.handle_read(&read, stored);
            made.push(read);
            got = reads.items.len();
        }
        let (items, more) = reads.finish();
        assert!(items.len() <= room);
        (made, items, more)
    }

    fn session_of(store: &Store) -> PullServer {
        let mut s = PullServer::new(store.len() + 1);
        for m in store.keys() {
            s.handle_op_result(&Op::Register { mailbox: *m, credential: m.0 }, OpResult::Done);
        }
        s
    }

    fn mailbox_of(items: &[u64]) -> Vec<(u64, Vec<u8>)> {
        items.iter().map(|s| (*s, vec![*s as u8; 3])).collect()
    }

    #[test]
    fn a_pulls_reads_stop_once_the_room_is_full_and_more_is_known() {
        let store: Store = (1..=5).map(|m| (MailboxId([m; 32]), mailbox_of(&[1, 2]))).collect();
        let mut s = session_of(&store);
        // Room for 3: the first mailbox gives 2, the second 1 and shows more waiting; no third read.
        let (made, items, more) = drive(&mut s, 3, &store, &[]);
        assert_eq!(made.iter().map(|r| r.max).collect::<Vec<_>>(), [4, 2]);
        assert_eq!((items.len(), more), (3, true));
        assert_eq!(items[2].mailbox, made[1].mailbox, "items keep their mailbox");

        // Room enough for all: every mailbox read once, nothing more waits.
        let (made, items, more) = drive(&mut s, 100, &store, &[]);
        assert_eq!((made.len(), items.len(), more), (5, 10, false));

        // No room (the document takes every slot): reads of one item until one is found.
        let mut sparse: Store = (1..=4).map(|m| (MailboxId([m; 32]), vec![])).collect();
        sparse.insert(MailboxId([3; 32]), mailbox_of(&[9]));
        let mut s = session_of(&sparse);
        let (made, items, more) = drive(&mut s, 0, &sparse, &[]);
        assert!(made.iter().all(|r| r.max == 1));
        assert!(items.is_empty() && more);
        assert_eq!(
            made.last().map(|r| r.mailbox),
            Some(MailboxId([3; 32])),
            "stops at the first that holds one"
        );

        // Nothing registered: no read, nothing waits.
        let (made, items, more) = drive(&mut PullServer::new(4), 4, &Store::new(), &[]);
        assert!(made.is_empty() && items.is_empty() && !more);
    }

    #[test]
    fn a_failed_read_counts_as_items_waiting_and_the_others_are_still_read() {
        let store: Store = (1..=3).map(|m| (MailboxId([m; 32]), mailbox_of(&[1]))).collect();
        let mut s = session_of(&store);
        let (made, items, more) = drive(&mut s, 8, &store, &[MailboxId([2; 32])]);
        assert_eq!((made.len(), items.len(), more), (3, 2, true));
        assert!(items.iter().all(|i| i.mailbox != MailboxId([2; 32])));
    }

    #[test]
    fn a_read_giving_more_than_asked_is_cut_to_the_room() {
        let mut s = session_of(&[(MailboxId([1; 32]), vec![])].into_iter().collect());
        let mut reads = s.reads(2);
        let read = reads.next_read().unwrap();
        reads.handle_read(&read, Ok(mailbox_of(&[1, 2, 3, 4, 5])));
        assert_eq!(reads.next_read(), None);
        let (items, more) = reads.finish();
        assert_eq!((items.len(), more), (2, true));
    }

    #[test]
    fn a_pull_costs_at_most_max_pull_reads_store_reads() {
        let store: Store =
            (0..MAX_PULL_READS as u64 + 10).map(|m| (mailbox_id(m), mailbox_of(&[1]))).collect();
        let mut s = session_of(&store);
        let (made, items, more) = drive(&mut s, usize::from(MAX_PULL_LIMIT), &store, &[]);
        assert_eq!((made.len(), items.len(), more), (MAX_PULL_READS, MAX_PULL_READS, false));
        // The next pull reads the next ones (the turn moved on).
        let (next, _, _) = drive(&mut s, usize::from(MAX_PULL_LIMIT), &store, &[]);
        assert_eq!(next[0].mailbox, mailbox_id(MAX_PULL_READS as u64));
    }

    #[test]
    fn a_fetch_reads_one_more_than_it_answers_within_bounds() {
        assert_eq!(fetch_reads(0), 2);
        assert_eq!(fetch_reads(10), 11);
        assert_eq!(fetch_reads(u16::MAX), usize::from(MAX_FETCH_LIMIT) + 1);
        let a = fetch_answer(7, 2, mailbox_of(&[1, 2, 3]));
        assert_eq!(a.len(), 3);
        assert!(matches!(a[0], Response::Message { id: 7, seq: 1, .. }));
        assert_eq!(a[2], Response::FetchDone { id: 7, more: true });
        assert_eq!(
            fetch_answer(7, 2, mailbox_of(&[1, 2])).last(),
            Some(&Response::FetchDone { id: 7, more: false })
        );
        assert_eq!(fetch_answer(7, 0, vec![]), [Response::FetchDone { id: 7, more: false }]);
        let big: Vec<u64> = (0..1000).collect();
        assert_eq!(fetch_answer(1, u16::MAX, mailbox_of(&big)).len(), usize::from(MAX_FETCH_LIMIT) + 1);
    }

    fn mailbox_id(m: u64) -> MailboxId {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&m.to_be_bytes());
        MailboxId(id)
    }

    #[test]
    fn a_pull_reads_a_bounded_number_of_mailboxes_and_every_one_in_turn() {
        let n = 3 * MAX_PULL_READS + 5;
        let mut s = PullServer::new(n);
        for m in 0..n {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(m as u64).to_be_bytes());
            s.handle_op_result(&Op::Register { mailbox: MailboxId(id), credential: id }, OpResult::Done);
        }
        let mut seen = std::collections::BTreeSet::new();
        let pulls = n.div_ceil(MAX_PULL_READS);
        for _ in 0..pulls {
            let order = s.fetch_order();
            assert_eq!(order.len(), MAX_PULL_READS);
            seen.extend(order.into_iter().map(|(m, _)| m));
        }
        assert_eq!(seen.len(), n, "every mailbox is read within {pulls} pulls");

        // Few mailboxes: all of them each pull, the first one moving on.
        let mut s = PullServer::new(8);
        for m in 1..=3 {
            s.handle_op_result(&reg(m), OpResult::Done);
        }
        let a = s.fetch_order();
        let b = s.fetch_order();
        assert_eq!((a.len(), b.len()), (3, 3));
        assert_ne!(a[0], b[0]);
    }
}
