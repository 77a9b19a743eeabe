//! A client session's control requests served on the mailbox store: register, unregister, fetch,
//! delete, and the fixed-length pull (its operation slots carried out, then exactly `1 + limit`
//! frames). What the store carries out, what a pull reads and what is answered are decided
//! without IO, by the session (`session.rs`: its mailboxes and budgets) and
//! [`qanat_mixnet::pull`]; here are the store calls and the counters.

use std::sync::atomic::Ordering;

use qanat_mailbox::{Credential, MailboxStore, Seq, StoreError, StoreErrorKind, StoredMessage};
use qanat_mixnet::client_proto::{ErrorCode, Op, OpResult, PULL_OPS, ProtoError, Request, Response, Want};
use qanat_mixnet::pull::{PullServer, ReadFailed, fetch_answer, fetch_reads};
use tokio::time::Instant;

use super::session::{Refused, Session};
use super::{DocumentCache, GatewayRuntimeMetrics, store_now};

/// What a client session's requests need besides the store.
pub(super) struct ServeContext<'a> {
    pub(super) docs: &'a DocumentCache,
    pub(super) chunk_len: usize,
    pub(super) metrics: &'a GatewayRuntimeMetrics,
    /// When the session began: its budgets' clock reads the time since.
    pub(super) origin: Instant,
}

/// Whether the session admits `op` now; a refusal is counted, and its code is the operation's
/// result.
fn admit(session: &mut Session, op: &Op, ctx: &ServeContext<'_>) -> Result<(), ErrorCode> {
    session.admit(op, ctx.origin.elapsed()).map_err(|refused| {
        let counter = match refused {
            Refused::Mailboxes => &ctx.metrics.registrations_refused,
            Refused::RegistrationRate => &ctx.metrics.registrations_rate_limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        refused.code()
    })
}

/// A fetch's messages as `(seq, item)`s.
fn stored_items(msgs: Vec<StoredMessage>) -> Vec<(u64, Vec<u8>)> {
    msgs.into_iter().map(|m| (m.seq.0, m.payload)).collect()
}

/// What a client hears of a store error: the store sorts every error into a kind, so a new
/// error is sorted there rather than falling into a default here.
fn store_code(e: StoreError) -> ErrorCode {
    match e.kind() {
        StoreErrorKind::Unauthorized => ErrorCode::Unauthorized,
        StoreErrorKind::Transient => ErrorCode::Unavailable,
        StoreErrorKind::NeedsOperator => ErrorCode::Internal,
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
        *result = match admit(session, op, ctx) {
            Err(code) => OpResult::Failed(code),
            Ok(()) => {
                let r = match *op {
                    Op::Register { mailbox, credential } => {
                        store.register(mailbox, &Credential::from_bytes(credential), now).await
                    }
                    Op::Unregister { mailbox, credential } => {
                        store.unregister(mailbox, &Credential::from_bytes(credential)).await
                    }
                    Op::Delete { mailbox, credential, up_to } => store
                        .delete_up_to(mailbox, &Credential::from_bytes(credential), Seq(up_to))
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
    let mut reads = session.reads(room);
    while let Some(read) = reads.next_read() {
        let stored = store
            .fetch(read.mailbox, &Credential::from_bytes(read.credential), None, read.max)
            .await
            .map(stored_items)
            .map_err(|_| ReadFailed);
        reads.handle_read(&read, stored);
    }
    let (items, more) = reads.finish();
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
            if let Err(code) = admit(session, &op, ctx) {
                return vec![Response::Error { id, code }];
            }
            match store.register(mailbox, &Credential::from_bytes(credential), now).await {
                Ok(()) => {
                    session.pull.handle_op_result(&op, OpResult::Done);
                    vec![Response::Ok { id }]
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Unregister { id, mailbox, credential } => {
            match store.unregister(mailbox, &Credential::from_bytes(credential)).await {
                Ok(()) => {
                    session.pull.handle_op_result(&Op::Unregister { mailbox, credential }, OpResult::Done);
                    vec![Response::Ok { id }]
                }
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Pull { id, limit, want, ops } => pull(store, session, (id, limit, want, ops), ctx).await,
        Request::Fetch { id, mailbox, credential, after, limit } => {
            let after = (after > 0).then_some(Seq(after));
            let credential = Credential::from_bytes(credential);
            match store.fetch(mailbox, &credential, after, fetch_reads(limit)).await {
                Ok(msgs) => fetch_answer(id, limit, stored_items(msgs)),
                Err(e) => vec![err(id, e)],
            }
        }
        Request::Delete { id, mailbox, credential, up_to } => {
            match store.delete_up_to(mailbox, &Credential::from_bytes(credential), Seq(up_to)).await {
                Ok(_) => vec![Response::Ok { id }],
                Err(e) => vec![err(id, e)],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_reach_clients_as_unauthorized_retry_later_or_internal() {
        let d = || String::from("d");
        let cases = [
            (StoreError::Unauthorized, ErrorCode::Unauthorized),
            (StoreError::Full { detail: d() }, ErrorCode::Unavailable),
            (StoreError::Io { detail: d() }, ErrorCode::Unavailable),
            (StoreError::Unavailable { detail: d() }, ErrorCode::Unavailable),
            (StoreError::Corrupt { detail: d() }, ErrorCode::Internal),
            (StoreError::Connect { target: d(), detail: d() }, ErrorCode::Internal),
            (StoreError::UnsafePersistence { node: d(), detail: d() }, ErrorCode::Internal),
            (StoreError::Internal { detail: d() }, ErrorCode::Internal),
        ];
        for (e, code) in cases {
            assert_eq!(store_code(e), code);
        }
    }
}
