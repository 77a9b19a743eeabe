//! The client's side of the pull exchange ([`PullClient`]), without IO: what each pull to the gateway carries and
//! what its answer means. The runtime sends one pull per interval, whatever the user does; this
//! core fills its [`PULL_OPS`] operation slots from bounded queues (registrations first, then
//! unregistrations, then deletions; the rest are dummies of the same size) and its [`Want`]
//! (the directory document the client lacks, from the first chunk it lacks), and reads the
//! answer: each slot's outcome, items, and document chunks put back together.
//!
//! A session starts with the same frames whatever the number of mailboxes: nothing but pulls;
//! [`PullClient::start_session`] queues a registration per mailbox and the first pulls carry
//! them, [`PULL_OPS`] per pull (so a client with many mailboxes reads its last ones a few
//! intervals later). The gateway keeps no registration across sessions.
//!
//! Documents are verified by the caller (against the authority keys of the network file); a
//! document that does not verify is counted and fetched again from its first chunk. A caller
//! that holds the current document, or never wants one (the simulation), passes `want_epoch` 0
//! to [`PullClient::poll_pull`]: the pull's [`Want`] is then empty and its answer carries no chunk.
//!
//! This is the one client pull core: `qanat-client`'s runtime drives it over the gateway link,
//! `qanat-sim` on its simulated network.

use std::collections::BTreeMap;

use qanat_packet::MailboxId;

use super::DocAssembler;
use crate::client_proto::{ErrorCode, Op, OpResult, PULL_OPS, Request, Response, Want};

/// A mailbox and the secret that lets its owner read it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MailboxAccess {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The owner's credential.
    pub credential: [u8; 32],
}

impl std::fmt::Debug for MailboxAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailboxAccess(..)")
    }
}

/// Most operations of each kind waiting for a slot (one per mailbox: a mailbox's later
/// deletion replaces its earlier one). Beyond it an operation is dropped and counted.
pub const MAX_QUEUED_OPS: usize = 4096;

/// Counters of the pull exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullClientMetrics {
    /// Pulls made.
    pub pulls: u64,
    /// Operations dropped because their queue was full.
    pub ops_dropped: u64,
    /// Operations the gateway refused for good (unknown mailbox or wrong credential).
    pub ops_refused: u64,
    /// Operations sent again after a transient failure.
    pub ops_retried: u64,
    /// Document chunks received.
    pub chunks: u64,
    /// Chunks that did not fit the document being assembled.
    pub chunks_refused: u64,
    /// Whole documents that did not verify.
    pub documents_refused: u64,
}

/// What one pull's answer brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PullOutcome {
    /// Items with their mailbox and sequence number, in the order they came.
    pub items: Vec<(MailboxId, u64, Vec<u8>)>,
    /// Whether more items wait at the gateway.
    pub more: bool,
    /// Mailboxes the gateway no longer holds (unregistered, or unknown to it).
    pub unregistered: Vec<MailboxId>,
    /// Mailboxes the gateway refused to register for good (another credential holds it, or the
    /// request was refused as bad): only that mailbox fails.
    pub refused: Vec<MailboxId>,
    /// A whole document (epoch, bytes), not yet verified.
    pub document: Option<(u64, Vec<u8>)>,
}

/// The answer broke the protocol: the session should be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway's pull answer is out of protocol")]
pub struct AnswerError;

/// The client's state of the pull exchange.
#[derive(Debug)]
pub struct PullClient {
    registers: BTreeMap<MailboxId, [u8; 32]>,
    unregisters: BTreeMap<MailboxId, [u8; 32]>,
    deletes: BTreeMap<MailboxId, ([u8; 32], u64)>,
    in_flight: Option<(u32, Vec<Op>)>,
    next_id: u32,
    assembler: Option<DocAssembler>,
    max_document_len: usize,
    metrics: PullClientMetrics,
}

fn bounded<V>(q: &mut BTreeMap<MailboxId, V>, k: MailboxId, v: V, dropped: &mut u64) {
    if q.len() >= MAX_QUEUED_OPS && !q.contains_key(&k) {
        *dropped += 1;
    } else {
        q.insert(k, v);
    }
}

impl PullClient {
    /// A client that accepts documents of at most `max_document_len` bytes.
    pub fn new(max_document_len: usize) -> Self {
        Self {
            registers: BTreeMap::new(),
            unregisters: BTreeMap::new(),
            deletes: BTreeMap::new(),
            in_flight: None,
            next_id: 1,
            assembler: None,
            max_document_len,
            metrics: PullClientMetrics::default(),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &PullClientMetrics {
        &self.metrics
    }

    /// The id of the pull whose answer is awaited, if any.
    pub fn in_flight(&self) -> Option<u32> {
        self.in_flight.as_ref().map(|(id, _)| *id)
    }

    /// Operations waiting for a slot.
    pub fn queued(&self) -> usize {
        self.registers.len() + self.unregisters.len() + self.deletes.len()
    }

    /// A new session: every mailbox must be registered again (through the pulls' slots); what
    /// was in flight on the old session is queued again.
    pub fn start_session(&mut self, mailboxes: impl IntoIterator<Item = MailboxAccess>) {
        self.requeue();
        for m in mailboxes {
            self.register(m);
        }
        if let Some(a) = &mut self.assembler {
            a.reset();
        }
    }

    fn requeue(&mut self) {
        if let Some((_, ops)) = self.in_flight.take() {
            for op in ops {
                self.queue(op);
            }
        }
    }

    fn queue(&mut self, op: Op) {
        let d = &mut self.metrics.ops_dropped;
        match op {
            Op::Register { mailbox, credential } => bounded(&mut self.registers, mailbox, credential, d),
            Op::Unregister { mailbox, credential } => bounded(&mut self.unregisters, mailbox, credential, d),
            Op::Delete { mailbox, credential, up_to } => {
                let up_to = self.deletes.get(&mailbox).map_or(up_to, |(_, u)| up_to.max(*u));
                bounded(&mut self.deletes, mailbox, (credential, up_to), d);
            }
        }
    }

    fn in_flight_has(&self, op: &Op) -> bool {
        self.in_flight.as_ref().is_some_and(|(_, ops)| ops.contains(op))
    }

    /// Registers `m` with the gateway in a coming pull.
    pub fn register(&mut self, m: MailboxAccess) {
        self.unregisters.remove(&m.mailbox);
        self.queue(Op::Register { mailbox: m.mailbox, credential: m.credential });
    }

    /// Unregisters `m` in a coming pull (once: asking again while one is in flight is a no-op).
    pub fn unregister(&mut self, m: MailboxAccess) {
        let op = Op::Unregister { mailbox: m.mailbox, credential: m.credential };
        if self.in_flight_has(&op) {
            return;
        }
        self.registers.remove(&m.mailbox);
        self.deletes.remove(&m.mailbox);
        self.queue(op);
    }

    /// Deletes `m`'s items up to `up_to` in a coming pull.
    pub fn delete(&mut self, m: MailboxAccess, up_to: u64) {
        self.queue(Op::Delete { mailbox: m.mailbox, credential: m.credential, up_to });
    }

    /// The next pull, of `limit` slots, wanting the document of epoch `want_epoch` (0: none).
    /// A pull whose answer never came is given up (its operations are queued again).
    pub fn poll_pull(&mut self, limit: u16, want_epoch: u64) -> Request {
        self.requeue();
        let mut ops = Vec::with_capacity(PULL_OPS);
        while ops.len() < PULL_OPS {
            let op = if let Some((m, c)) = self.registers.pop_first() {
                Op::Register { mailbox: m, credential: c }
            } else if let Some((m, c)) = self.unregisters.pop_first() {
                Op::Unregister { mailbox: m, credential: c }
            } else if let Some((m, (c, up_to))) = self.deletes.pop_first() {
                Op::Delete { mailbox: m, credential: c, up_to }
            } else {
                break;
            };
            ops.push(op);
        }
        let want = if want_epoch == 0 {
            self.assembler = None;
            Want::default()
        } else {
            let a = match self.assembler.take() {
                Some(a) if a.epoch() == want_epoch => a,
                _ => DocAssembler::new(want_epoch, self.max_document_len),
            };
            let w = a.want();
            self.assembler = Some(a);
            w
        };
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.in_flight = Some((id, ops.clone()));
        self.metrics.pulls += 1;
        Request::Pull { id, limit, want, ops }
    }

    /// The answer to the pull in flight: its head, then its slots.
    pub fn handle_answer(&mut self, frames: Vec<Response>) -> Result<PullOutcome, AnswerError> {
        let Some((id, ops)) = self.in_flight.take() else { return Err(AnswerError) };
        let mut frames = frames.into_iter();
        let Some(Response::PullHead { id: hid, more, results }) = frames.next() else {
            self.in_flight = Some((id, ops));
            return Err(AnswerError);
        };
        if hid != id {
            self.in_flight = Some((id, ops));
            return Err(AnswerError);
        }
        let mut out = PullOutcome { more, ..PullOutcome::default() };
        for (op, result) in ops.into_iter().zip(results) {
            match (op, result) {
                (
                    Op::Unregister { mailbox, .. },
                    OpResult::Done | OpResult::Failed(ErrorCode::Unauthorized),
                ) => {
                    out.unregistered.push(mailbox);
                }
                (_, OpResult::Done) => {}
                // Deletions need no retry: the items come again, and are deleted after.
                (Op::Delete { .. }, _) => {}
                (
                    Op::Register { mailbox, .. },
                    OpResult::Failed(ErrorCode::Unauthorized | ErrorCode::BadRequest),
                ) => {
                    self.metrics.ops_refused += 1;
                    out.refused.push(mailbox);
                }
                (_, OpResult::Failed(ErrorCode::BadRequest)) => {
                    self.metrics.ops_refused += 1;
                }
                (op, OpResult::Failed(_)) => {
                    self.metrics.ops_retried += 1;
                    self.queue(op);
                }
            }
        }
        for r in frames {
            match r {
                Response::Pulled { id: i, more: m, mailbox, seq, item } if i == id => {
                    out.more |= m;
                    out.items.push((mailbox, seq, item));
                }
                Response::PullPad { id: i, more: m } if i == id => out.more |= m,
                Response::DocChunk { id: i, epoch, index, count, bytes } if i == id => {
                    self.metrics.chunks += 1;
                    let Some(a) = &mut self.assembler else { continue };
                    match a.push(epoch, index, count, &bytes) {
                        Ok(Some(doc)) => out.document = Some((epoch, doc)),
                        Ok(None) => {}
                        Err(_) => self.metrics.chunks_refused += 1,
                    }
                }
                _ => return Err(AnswerError),
            }
        }
        Ok(out)
    }

    /// The document last handed out did not verify: it is fetched again from its first chunk.
    pub fn document_refused(&mut self) {
        self.metrics.documents_refused += 1;
        if let Some(a) = &mut self.assembler {
            a.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::{PullServer, PulledItem};

    fn access(i: u8) -> MailboxAccess {
        MailboxAccess { mailbox: MailboxId([i; 32]), credential: [i ^ 0xff; 32] }
    }

    /// A gateway with no store: every operation succeeds, items are given.
    fn serve(s: &mut PullServer, req: Request, items: Vec<PulledItem>, doc: Option<&[u8]>) -> Vec<Response> {
        let Request::Pull { id, limit, want, ops } = req else { panic!("not a pull") };
        let mut results = [OpResult::Done; PULL_OPS];
        for (op, r) in ops.iter().zip(results.iter_mut()) {
            *r = match s.admit(op) {
                Ok(()) => OpResult::Done,
                Err(c) => OpResult::Failed(c),
            };
            s.handle_op_result(op, *r);
        }
        s.answer(id, limit, false, results, items, want, doc, 1000, 0)
    }

    #[test]
    fn a_session_starts_with_the_same_frames_whatever_the_mailboxes() {
        let mut lens = Vec::new();
        for n in [1u8, 50] {
            let mut c = PullClient::new(10_000);
            c.start_session((0..n).map(access));
            let mut s = PullServer::new(100);
            let mut pulls = Vec::new();
            for _ in 0..10 {
                let req = c.poll_pull(2, 7);
                pulls.push(req.encode().unwrap().len());
                let answer = serve(&mut s, req, vec![], None);
                assert_eq!(answer.len(), 3);
                c.handle_answer(answer).unwrap();
            }
            assert_eq!(s.len(), usize::from(n), "every mailbox registered through the slots");
            lens.push(pulls);
        }
        assert_eq!(lens[0], lens[1]);
    }

    #[test]
    fn a_document_arrives_in_chunks_and_a_bad_one_is_fetched_again() {
        let doc: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut c = PullClient::new(10_000);
        let mut s = PullServer::new(4);
        let mut got = None;
        for _ in 0..3 {
            let a = serve(&mut s, c.poll_pull(2, 9), vec![], Some(&doc));
            if let Some(d) = c.handle_answer(a).unwrap().document {
                got = Some(d);
            }
        }
        assert_eq!(got, Some((9, doc.clone())));
        c.document_refused();
        let Request::Pull { want, .. } = c.poll_pull(2, 9) else { panic!("not a pull") };
        assert_eq!(want, Want { epoch: 9, from: 0 });
        assert_eq!(c.metrics().documents_refused, 1);
    }

    #[test]
    fn failed_operations_are_retried_and_unregistrations_reported() {
        let mut c = PullClient::new(10_000);
        c.register(access(1));
        c.unregister(access(2));
        let Request::Pull { id, ops, .. } = c.poll_pull(2, 0) else { panic!() };
        assert_eq!(ops.len(), 2);
        let mut results = [OpResult::Done; PULL_OPS];
        results[0] = OpResult::Failed(ErrorCode::Unavailable);
        let head = Response::PullHead { id, more: false, results };
        let out = c.handle_answer(vec![head, Response::PullPad { id, more: false }]).unwrap();
        assert_eq!(out.unregistered, vec![MailboxId([2; 32])]);
        assert_eq!(c.metrics().ops_retried, 1);
        assert_eq!(c.queued(), 1);
        // An answer to another pull is out of protocol.
        let _ = c.poll_pull(2, 0);
        let stray = Response::PullHead { id: 999, more: false, results: [OpResult::Done; PULL_OPS] };
        assert_eq!(c.handle_answer(vec![stray]), Err(AnswerError));
    }

    #[test]
    fn queues_are_bounded_and_counted() {
        let mut c = PullClient::new(10_000);
        for i in 0..=MAX_QUEUED_OPS {
            let mut m = [0u8; 32];
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            c.register(MailboxAccess { mailbox: MailboxId(m), credential: m });
        }
        assert_eq!(c.queued(), MAX_QUEUED_OPS);
        assert_eq!(c.metrics().ops_dropped, 1);
        // One deletion per mailbox: the latest cursor wins.
        c.delete(access(1), 5);
        c.delete(access(1), 3);
        assert_eq!(c.deletes.get(&MailboxId([1; 32])).map(|x| x.1), Some(5));
    }
}
