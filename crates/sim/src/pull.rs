//! The pull exchange between a client and its gateway, on the simulated [`Store`]: the
//! gateway's side ([`serve`]) makes the same IO-free calls, in the same order, as the gateway
//! runtime's (`qanat-node`'s `runtime/gateway/clients.rs`): the request decoded with
//! [`Request::decode`], each operation slot admitted by the session's [`PullServer`], carried
//! out on the store and reported back, the store reads planned by [`PullServer::reads`], and the
//! answer built by [`PullServer::answer`]: always one head and `limit` slots. A `Fetch` is
//! answered with [`fetch_reads`] and [`fetch_answer`].
//!
//! The client's side is the real one, `qanat-client`'s pull core
//! ([`PullClient`](qanat_mixnet::pull::PullClient), IO-free in `qanat-mixnet`): registrations
//! first, then deletions, in the [`PULL_OPS`] slots of each pull; a registration that failed for
//! now is sent again; items pulled are deleted in a later pull; a new session registers every
//! mailbox again. The simulation has no directory to serve: its clients never want a document
//! (`want_epoch` 0), so answers carry items and padding only. Not simulated: the session's
//! registration rate and packet budgets (`qanat-node`'s `Session`).

use qanat_mixnet::client_proto::{ErrorCode, Op, OpResult, PULL_OPS, ProtoError, Request, Response, Want};
use qanat_mixnet::pull::{PullServer, ReadFailed, fetch_answer, fetch_reads};

use crate::store::{Store, StoreFailure};

fn code(e: StoreFailure) -> ErrorCode {
    match e {
        StoreFailure::Unauthorized => ErrorCode::Unauthorized,
        StoreFailure::Unavailable => ErrorCode::Unavailable,
    }
}

fn op_on(store: &mut Store, op: &Op) -> Result<(), StoreFailure> {
    match *op {
        Op::Register { mailbox, credential } => store.register(mailbox, credential),
        Op::Unregister { mailbox, credential } => store.unregister(mailbox, credential),
        Op::Delete { mailbox, credential, up_to } => {
            store.delete_up_to(mailbox, credential, up_to).map(|_| ())
        }
    }
}

/// The gateway's answer to one request of a client session, served on `store`.
pub(crate) fn serve(
    store: &mut Store,
    session: &mut PullServer,
    bytes: &[u8],
    chunk_len: usize,
) -> Vec<Response> {
    let req = match Request::decode(bytes) {
        Ok(req) => req,
        Err(ProtoError::Version(_)) => return vec![Response::Error { id: 0, code: ErrorCode::Version }],
        Err(_) => return vec![Response::Error { id: 0, code: ErrorCode::BadRequest }],
    };
    let done = |id, r: Result<(), StoreFailure>| match r {
        Ok(()) => vec![Response::Ok { id }],
        Err(e) => vec![Response::Error { id, code: code(e) }],
    };
    match req {
        Request::Pull { id, limit, want, ops } => pull(store, session, (id, limit, want, ops), chunk_len),
        Request::Register { id, mailbox, credential } => {
            let op = Op::Register { mailbox, credential };
            if let Err(c) = session.admit(&op) {
                return vec![Response::Error { id, code: c }];
            }
            let r = store.register(mailbox, credential);
            if r.is_ok() {
                session.handle_op_result(&op, OpResult::Done);
            }
            done(id, r)
        }
        Request::Unregister { id, mailbox, credential } => {
            let r = store.unregister(mailbox, credential);
            if r.is_ok() {
                session.handle_op_result(&Op::Unregister { mailbox, credential }, OpResult::Done);
            }
            done(id, r)
        }
        Request::Fetch { id, mailbox, credential, after, limit } => {
            let after = (after > 0).then_some(after);
            match store.fetch(mailbox, credential, after, fetch_reads(limit)) {
                Ok(items) => fetch_answer(id, limit, items),
                Err(e) => vec![Response::Error { id, code: code(e) }],
            }
        }
        Request::Delete { id, mailbox, credential, up_to } => {
            done(id, store.delete_up_to(mailbox, credential, up_to).map(|_| ()))
        }
    }
}

/// A pull: its operations in order, then exactly `1 + limit` frames.
fn pull(
    store: &mut Store,
    session: &mut PullServer,
    (id, limit, want, ops): (u32, u16, Want, Vec<Op>),
    chunk_len: usize,
) -> Vec<Response> {
    let mut results = [OpResult::Done; PULL_OPS];
    for (op, result) in ops.iter().zip(results.iter_mut()) {
        *result = match session.admit(op) {
            Err(c) => OpResult::Failed(c),
            Ok(()) => op_on(store, op).map_or_else(|e| OpResult::Failed(code(e)), |()| OpResult::Done),
        };
        session.handle_op_result(op, *result);
    }
    // The simulation serves no directory documents (the epoch in progress is not known: 0).
    let room = PullServer::item_room(limit, want, None, chunk_len, 0);
    let mut reads = session.reads(room);
    while let Some(read) = reads.next_read() {
        let stored = store.fetch(read.mailbox, read.credential, None, read.max).map_err(|_| ReadFailed);
        reads.handle_read(&read, stored);
    }
    let (items, more) = reads.finish();
    session.answer(id, limit, more, results, items, want, None, chunk_len, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qanat_mixnet::pull::{MailboxAccess, PullClient, PullOutcome};
    use qanat_packet::MailboxId;

    /// A client of the simulation: it never wants a document.
    fn sim_client() -> PullClient {
        PullClient::new(0)
    }

    fn access(mailbox: MailboxId, credential: [u8; 32]) -> MailboxAccess {
        MailboxAccess { mailbox, credential }
    }

    /// A pull over the wire: encoded by the client, served, each answer frame encoded and decoded.
    fn exchange(
        store: &mut Store,
        session: &mut PullServer,
        client: &mut PullClient,
        limit: u16,
    ) -> PullOutcome {
        let req = client.poll_pull(limit, 0).encode().unwrap();
        let frames: Vec<Response> = serve(store, session, &req, 1000)
            .into_iter()
            .map(|r| Response::decode(&r.encode().unwrap()).unwrap())
            .collect();
        assert_eq!(frames.len(), 1 + usize::from(limit), "always 1 + limit frames");
        client.handle_answer(frames).unwrap()
    }

    #[test]
    fn items_are_pulled_once_then_deleted_and_answers_keep_their_length() {
        let mut store = Store::default();
        let (m, c) = (MailboxId([1; 32]), [2; 32]);
        store.register(m, c).unwrap();
        for i in 0..5u8 {
            store.append(m, [i; 32], vec![i; 40]);
        }
        let mut session = PullServer::new(16);
        let mut client = sim_client();
        client.start_session([access(m, c)]);
        let mut got = Vec::new();
        for _ in 0..6 {
            let out = exchange(&mut store, &mut session, &mut client, 2);
            for (mailbox, seq, _) in &out.items {
                client.delete(access(*mailbox, c), *seq);
            }
            got.extend(out.items.into_iter().map(|(_, seq, _)| seq));
        }
        assert_eq!(got, [1, 2, 3, 4, 5], "each item once, in order");
        assert!(store.is_empty(), "deleted by the later pulls");
    }

    #[test]
    fn a_failing_store_fails_the_registration_which_is_sent_again() {
        let mut store = Store::default();
        store.set_failing(true);
        let mut session = PullServer::new(16);
        let mut client = sim_client();
        client.start_session([access(MailboxId([1; 32]), [2; 32])]);
        assert!(exchange(&mut store, &mut session, &mut client, 2).items.is_empty());
        assert!(session.is_empty());
        store.set_failing(false);
        assert!(exchange(&mut store, &mut session, &mut client, 2).items.is_empty(), "registered now");
        assert_eq!(session.len(), 1);
        store.append(MailboxId([1; 32]), [9; 32], vec![1; 40]);
        assert_eq!(exchange(&mut store, &mut session, &mut client, 2).items.len(), 1);
    }

    #[test]
    fn a_fetch_is_served_as_the_runtime_serves_it() {
        let mut store = Store::default();
        store.register(MailboxId([1; 32]), [2; 32]).unwrap();
        for i in 0..3u8 {
            store.append(MailboxId([1; 32]), [i; 32], vec![i; 10]);
        }
        let mut session = PullServer::new(1);
        let fetch =
            Request::Fetch { id: 7, mailbox: MailboxId([1; 32]), credential: [2; 32], after: 1, limit: 1 };
        let a = serve(&mut store, &mut session, &fetch.encode().unwrap(), 1000);
        assert!(matches!(a[0], Response::Message { id: 7, seq: 2, .. }));
        assert_eq!(a[1], Response::FetchDone { id: 7, more: true });
        let wrong =
            Request::Fetch { id: 8, mailbox: MailboxId([1; 32]), credential: [3; 32], after: 0, limit: 1 };
        let a = serve(&mut store, &mut session, &wrong.encode().unwrap(), 1000);
        assert_eq!(a, [Response::Error { id: 8, code: ErrorCode::Unauthorized }]);
        assert_eq!(
            serve(&mut store, &mut session, b"\xff", 1000)[0],
            Response::Error { id: 0, code: ErrorCode::BadRequest }
        );
    }
}
