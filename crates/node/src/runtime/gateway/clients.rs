//! A client session: its state (the mailboxes it registered, in a [`PullServer`], and its budgets:
//! see `runtime::budget`) and its control requests served on the mailbox store: register,
//! unregister, fetch, delete, and the fixed-length pull (its operation slots carried out, then
//! exactly `1 + limit` frames).

use std::sync::atomic::Ordering;
use std::time::Duration;

use qanat_mailbox::{Credential, MailboxId, MailboxStore, Seq, StoreError};
use qanat_mixnet::client_proto::{ErrorCode, Op, OpResult, PULL_OPS, ProtoError, Request, Response, Want};
use qanat_mixnet::pull::{PullServer, PulledItem};
use tokio::time::Instant;

use super::{ClientBudgets, DocumentCache, GatewayRuntimeMetrics, store_now};
use crate::runtime::budget::TokenBucket;

/// One client connection's state: its mailboxes and its budgets.
pub(super) struct Session {
    pull: PullServer,
    origin: Instant,
    packets: TokenBucket,
    packet_slack: f64,
    registrations: TokenBucket,
    registration_rate: f64,
}

impl Session {
    pub(super) fn new(b: &ClientBudgets) -> Self {
        Self {
            pull: PullServer::new(b.max_mailboxes),
            origin: Instant::now(),
            packets: TokenBucket::new(b.packet_burst, Duration::ZERO),
            packet_slack: b.packet_slack,
            registrations: TokenBucket::new(b.registration_burst, Duration::ZERO),
            registration_rate: b.registrations_per_second,
        }
    }

    /// Whether a packet is within the session's budget at the directory's client `rate` (none
    /// known: every packet is).
    pub(super) fn take_packet(&mut self, rate: Option<f64>) -> bool {
        match rate {
            Some(r) => self.packets.try_take(self.origin.elapsed(), r * self.packet_slack),
            None => true,
        }
    }

    /// Whether the store should carry `op` out (the session's bound of mailboxes, then its
    /// registration rate); `Err` is the operation's result, counted.
    fn admit(&mut self, op: &Op, metrics: &GatewayRuntimeMetrics) -> Result<(), ErrorCode> {
        if let Err(code) = self.pull.admit(op) {
            metrics.registrations_refused.fetch_add(1, Ordering::Relaxed);
            return Err(code);
        }
        if matches!(op, Op::Register { .. })
            && !self.registrations.try_take(self.origin.elapsed(), self.registration_rate)
        {
            metrics.registrations_rate_limited.fetch_add(1, Ordering::Relaxed);
            // Like a store that cannot serve now: the client retries in a later pull.
            return Err(ErrorCode::Unavailable);
        }
        Ok(())
    }
}

/// What a client session's requests need besides the store.
pub(super) struct ServeContext<'a> {
    pub(super) docs: &'a DocumentCache,
    pub(super) chunk_len: usize,
    pub(super) metrics: &'a GatewayRuntimeMetrics,
}

fn store_code(e: StoreError) -> ErrorCode {
    match e {
        StoreError::Unauthorized => ErrorCode::Unauthorized,
        StoreError::Full { .. } | StoreError::Unavailable { .. } | StoreError::Io { .. } => {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    }
}

/// Answers a pull: its operations in order, then exactly `1 + limit` frames.
async fn pull<S: MailboxStore>(
    store: &S,
    session: &mut Session,
    (id, limit, want, ops): (u32, u16, Want, Vec<Op>),
    ctx: &ServeContext<'_>,
) -> Vec<Response> {
    let now = store_now();
    let mut results = [OpResult::Done; PULL_OPS];
    for (op, result) in ops.iter().zip(results.iter_mut()) {
        *result = match session.admit(op, ctx.metrics) {
            Err(code) => OpResult::Failed(code),
            Ok(()) => {
                let r = match *op {
                    Op::Register { mailbox, credential } => {
                        store.register(MailboxId(mailbox), &Credential::from_bytes(credential), now).await
                    }
                    Op::Unregister { mailbox, credential } => {
                        store.unregister(MailboxId(mailbox), &Credential::from_bytes(credential)).await
                    }
                    Op::Delete { mailbox, credential, up_to } => store
                        .delete_up_to(MailboxId(mailbox), &Credential::from_bytes(credential), Seq(up_to))
                        .await
                        .map(|_| ()),
                };
                r.map_or_else(|e| OpResult::Failed(store_code(e)), |()| OpResult::Done)
            }
        };
        session.pull.handle_op_result(op, *result);
    }
    let session = &mut session.pull;
    let doc = if want.epoch == 0 { None } else { ctx.docs.get(want.epoch) };
    let epoch = ctx.docs.epoch();
    let room = PullServer::item_room(limit, want, doc.as_deref(), ctx.chunk_len, epoch);
    let mut items = Vec::new();
    let mut more = false;
    for (mailbox, c) in session.fetch_order() {
        let left = room - items.len();
        if left == 0 && more {
            break;
        }
        // With no room left, one item is asked for only to learn whether any wait.
        match store.fetch(MailboxId(mailbox), &Credential::from_bytes(c), None, left + 1).await {
            Ok(msgs) => {
                more |= msgs.len() > left;
                items.extend(msgs.into_iter().take(left).map(|m| PulledItem {
                    mailbox,
                    seq: m.seq.0,
                    item: m.payload,
                }));
            }
            Err(_) => more = true,
        }
    }
    let out = session.answer(id, limit, more, results, items, want, doc.as_deref(), ctx.chunk_len, epoch);
    ctx.metrics.client_pulls.fetch_add(1, Ordering::Relaxed);
    let chunks = out.iter().filter(|r| matches!(r, Response::DocChunk { .. })).count();
    ctx.metrics.document_chunks.fetch_add(chunks as u64, Ordering::Relaxed);
    out
}

/// Answers one client control request.
pub(super) async fn serve<S: MailboxStore>(
    store: &S,
    session: &mut Session,
    bytes: &[u8],
    ctx: &ServeContext<'_>,
) -> Vec<Response> {
    let req = match Request::decode(bytes) {
        Ok(req) => req,
        Err(ProtoError::Version(_)) => {
            ctx.metrics.version_mismatches.fetch_add(1, Ordering::Relaxed);
            return vec![Response::Error { id: 0, code: ErrorCode::Version }];
        }
        Err(_) => return vec![Response::Error { id: 0, code: ErrorCode::BadRequest }],
    };
    let now = store_now();
    let err = |id: u32, e: StoreError| Response::Error { id, code: store_code(e) };
    match req {
        Request::Register { id, mailbox, credential } => {
            let op = Op::Register { mailbox, credential };
            if let Err(code) = session.admit(&op, ctx.metrics) {
                return vec![Response::Error { id, code }];
            }
            match store.register(MailboxId(mailbox), &Credential::from_bytes(credential), now).await {
                Ok(()) => {
                    session.pull.handle_op_result(&op, OpResult::Done);
                    vec![Response::Ok { id }]
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Unregister { id, mailbox, credential } => {
            match store.unregister(MailboxId(mailbox), &Credential::from_bytes(credential)).await {
                Ok(()) => {
                    session.pull.handle_op_result(&Op::Unregister { mailbox, credential }, OpResult::Done);
                    vec![Response::Ok { id }]
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Pull { id, limit, want, ops } => pull(store, session, (id, limit, want, ops), ctx).await,
        Request::Fetch { id, mailbox, credential, after, limit } => {
            let limit = usize::from(limit.clamp(1, 256));
            let after = (after > 0).then_some(Seq(after));
            match store.fetch(MailboxId(mailbox), &Credential::from_bytes(credential), after, limit + 1).await
            {
                Ok(msgs) => {
                    let more = msgs.len() > limit;
                    let mut out: Vec<Response> = msgs
                        .into_iter()
                        .take(limit)
                        .map(|m| Response::Message { id, seq: m.seq.0, item: m.payload })
                        .collect();
                    out.push(Response::FetchDone { id, more });
                    out
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Delete { id, mailbox, credential, up_to } => {
            match store
                .delete_up_to(MailboxId(mailbox), &Credential::from_bytes(credential), Seq(up_to))
                .await
            {
                Ok(_) => vec![Response::Ok { id }],
                Err(e) => vec![err(id, e)],
            }
        }
    }
}
