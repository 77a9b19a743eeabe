//! The conformance suite every [`MailboxStore`] backend passes, unchanged.
//!
//! Each case is an async function taking a [`Factory`] that makes a fresh, empty store with the
//! given [`Limits`]; it panics (like a test) when the backend breaks the contract.
//! [`run_all`] runs every case in turn; [`conformance_tests!`](crate::conformance_tests) expands
//! to one `#[tokio::test]` per case (multi-threaded runtime, so the concurrency case really runs
//! in parallel), which is what a backend's test file uses:
//!
//! ```text
//! qanat_mailbox::conformance_tests!(MyFactory::new());
//! ```
//!
//! [`check_against_model`] replays a sequence of [`Op`]s against a backend and the in-memory
//! [`ModelStore`] and asserts they answer alike; [`ops`] is the proptest strategy that generates
//! those sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod model;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

pub use model::ModelStore;

use crate::{
    Append, AppendOutcome, Credential, ItemId, Limits, MailboxId, MailboxStore, Seq, StoreError, StoreStats,
    UnixSeconds,
};

/// Makes fresh, empty stores for the suite.
pub trait Factory {
    /// The backend under test.
    type Store: MailboxStore;
    /// A new empty store applying `limits`.
    fn make(&self, limits: Limits) -> impl Future<Output = Self::Store>;
}

impl<S, F, Fut> Factory for F
where
    S: MailboxStore,
    F: Fn(Limits) -> Fut,
    Fut: Future<Output = S>,
{
    type Store = S;
    fn make(&self, limits: Limits) -> impl Future<Output = S> {
        self(limits)
    }
}

// ---- helpers that drive every case ---------------------------------------------------------

/// The time the cases start at.
pub const T0: UnixSeconds = UnixSeconds(1_700_000_000);

/// Mailbox number `i`.
pub fn mailbox(i: u8) -> MailboxId {
    let mut b = [0x4d; 32];
    b[0] = i;
    MailboxId(b)
}

/// Credential number `i`.
pub fn credential(i: u8) -> Credential {
    let mut b = [0xc5; 32];
    b[0] = i;
    Credential::from_bytes(b)
}

/// Item id number `i` (of a sender `sender`).
pub fn item_id(sender: u16, i: u16) -> ItemId {
    let mut b = [0x1d; 32];
    b[..2].copy_from_slice(&sender.to_be_bytes());
    b[2..4].copy_from_slice(&i.to_be_bytes());
    ItemId(b)
}

/// A payload of `len` bytes that encodes `tag`.
pub fn payload(tag: u16, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
}

/// An append of message `(sender, i)` with a 16-byte payload.
pub fn item(to: u8, sender: u16, i: u16) -> Append {
    Append { mailbox: mailbox(to), item_id: item_id(sender, i), payload: payload(i, 16) }
}

/// Limits small enough to reach in a test.
pub fn small_limits() -> Limits {
    Limits {
        max_messages_per_mailbox: 5,
        max_bytes_per_mailbox: 100,
        retention: Duration::from_secs(100),
        remember_deleted_ids: Duration::from_secs(100),
        max_payload_len: 40,
    }
}

async fn registered<F: Factory>(f: &F, limits: Limits, mailboxes: &[u8]) -> F::Store {
    let store = f.make(limits).await;
    for &m in mailboxes {
        store.register(mailbox(m), &credential(m), T0).await.expect("register");
    }
    store
}

async fn append_ok<S: MailboxStore>(store: &S, batch: Vec<Append>, now: UnixSeconds) -> Vec<AppendOutcome> {
    let n = batch.len();
    let out = store.append(batch, now).await.expect("append");
    assert_eq!(out.len(), n, "one outcome per item");
    out
}

async fn fetch_all<S: MailboxStore>(store: &S, m: u8) -> Vec<crate::StoredMessage> {
    store.fetch(mailbox(m), &credential(m), None, usize::MAX).await.expect("fetch")
}

fn seqs(msgs: &[crate::StoredMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.seq.0).collect()
}

fn stored(o: &AppendOutcome) -> Seq {
    match o {
        AppendOutcome::Stored(s) => *s,
        other => panic!("expected Stored, got {other:?}"),
    }
}

// ---- the cases -----------------------------------------------------------------------------

/// Registration is idempotent for the same credential, refused for another; every owner-only
/// operation refuses a wrong credential and an unknown mailbox alike.
pub async fn register_and_auth<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1]).await;
    store.register(mailbox(1), &credential(1), T0.plus(Duration::from_secs(5))).await.expect("idempotent");
    assert_eq!(store.register(mailbox(1), &credential(2), T0).await, Err(StoreError::Unauthorized));
    append_ok(&store, vec![item(1, 0, 0)], T0).await;

    let wrong = credential(2);
    for (m, c) in [(mailbox(1), &wrong), (mailbox(9), &credential(9))] {
        assert_eq!(store.fetch(m, c, None, 10).await, Err(StoreError::Unauthorized));
        assert_eq!(store.delete_up_to(m, c, Seq(10)).await, Err(StoreError::Unauthorized));
        assert_eq!(store.delete(m, c, &[Seq(1)]).await, Err(StoreError::Unauthorized));
        assert_eq!(store.unregister(m, c).await, Err(StoreError::Unauthorized));
    }
    // The refused calls changed nothing.
    assert_eq!(fetch_all(&store, 1).await.len(), 1);
    assert_eq!(store.stats().await.expect("stats").mailboxes, 1);
}

/// Appended messages come back complete, in order, with strictly increasing sequence numbers
/// starting at 1 and without gaps.
pub async fn append_then_fetch_in_order<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1]).await;
    let mut expected = Vec::new();
    for round in 0..3u16 {
        let batch: Vec<Append> = (0..4).map(|i| item(1, round, i)).collect();
        let out = append_ok(&store, batch.clone(), T0.plus(Duration::from_secs(round.into()))).await;
        for (a, o) in batch.into_iter().zip(out) {
            expected.push((stored(&o), a, T0.plus(Duration::from_secs(round.into()))));
        }
    }
    let got = fetch_all(&store, 1).await;
    assert_eq!(seqs(&got), (1..=12).collect::<Vec<_>>());
    for (m, (seq, a, at)) in got.iter().zip(&expected) {
        assert_eq!(m.seq, *seq);
        assert_eq!(m.item_id, a.item_id);
        assert_eq!(m.payload, a.payload);
        assert_eq!(m.stored_at, *at);
    }
    // An empty payload is a message too; an empty batch is a no-op.
    let out = append_ok(
        &store,
        vec![Append { mailbox: mailbox(1), item_id: item_id(9, 9), payload: Vec::new() }],
        T0,
    )
    .await;
    assert_eq!(out, vec![AppendOutcome::Stored(Seq(13))]);
    assert_eq!(append_ok(&store, Vec::new(), T0).await, Vec::new());
    let last = fetch_all(&store, 1).await.pop().expect("one message");
    assert!(last.payload.is_empty());
}

/// A item id already in the mailbox — in the same batch or an earlier one, or deleted by
/// its owner but not yet expired — is reported `Duplicate` with the original's sequence number
/// and stored once. The same id in another mailbox is a different message.
pub async fn duplicates_stored_once<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1, 2]).await;
    let out = append_ok(&store, vec![item(1, 0, 0), item(1, 0, 1), item(1, 0, 0), item(2, 0, 0)], T0).await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(Seq(1)),
            AppendOutcome::Stored(Seq(2)),
            AppendOutcome::Duplicate(Seq(1)),
            AppendOutcome::Stored(Seq(1)),
        ]
    );
    // A retransmission with a different payload is still the same message.
    let mut again = item(1, 0, 1);
    again.payload = payload(77, 20);
    let out = append_ok(&store, vec![again, item(1, 0, 0)], T0).await;
    assert_eq!(out, vec![AppendOutcome::Duplicate(Seq(2)), AppendOutcome::Duplicate(Seq(1))]);
    let got = fetch_all(&store, 1).await;
    assert_eq!(seqs(&got), vec![1, 2]);
    assert_eq!(got[1].payload, item(1, 0, 1).payload);
    assert_eq!(fetch_all(&store, 2).await.len(), 1);

    // After the owner deleted it, a late retransmission is still recognised.
    assert_eq!(store.delete_up_to(mailbox(1), &credential(1), Seq(1)).await, Ok(1));
    let out = append_ok(&store, vec![item(1, 0, 0)], T0).await;
    assert_eq!(out, vec![AppendOutcome::Duplicate(Seq(1))]);
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![2]);
}

/// A message for a mailbox nobody registered is `UnknownMailbox`, and the rest of its batch is
/// unaffected.
pub async fn unknown_mailbox<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1]).await;
    let out = append_ok(&store, vec![item(7, 0, 0), item(1, 0, 1), item(8, 0, 2)], T0).await;
    assert_eq!(
        out,
        vec![AppendOutcome::UnknownMailbox, AppendOutcome::Stored(Seq(1)), AppendOutcome::UnknownMailbox]
    );
    assert_eq!(
        store.stats().await.expect("stats"),
        StoreStats { mailboxes: 1, messages: 1, payload_bytes: 16 }
    );
}

/// The message and byte quotas, and the payload size limit; deleting frees quota.
pub async fn quotas_and_too_large<F: Factory>(f: &F) {
    let limits = small_limits(); // 5 messages, 100 bytes, payloads up to 40
    let store = registered(f, limits, &[1, 2]).await;
    let big =
        |i: u16, len: usize| Append { mailbox: mailbox(2), item_id: item_id(2, i), payload: payload(i, len) };

    // Count: 16-byte payloads, the sixth is refused.
    let out = append_ok(&store, (0..6).map(|i| item(1, 0, i)).collect(), T0).await;
    assert_eq!(out[..5].iter().filter(|o| matches!(o, AppendOutcome::Stored(_))).count(), 5);
    assert_eq!(out[5], AppendOutcome::QuotaExceeded);
    // A duplicate of a stored message is still a duplicate when the mailbox is full.
    assert_eq!(append_ok(&store, vec![item(1, 0, 4)], T0).await, vec![AppendOutcome::Duplicate(Seq(5))]);

    // Bytes: 40 + 40 = 80, then 21 would make 101 > 100; 20 makes exactly 100.
    let out = append_ok(&store, vec![big(0, 40), big(1, 40), big(2, 21), big(3, 20), big(4, 41)], T0).await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(Seq(1)),
            AppendOutcome::Stored(Seq(2)),
            AppendOutcome::QuotaExceeded,
            AppendOutcome::Stored(Seq(3)),
            AppendOutcome::TooLarge,
        ]
    );
    // Too large wins over unknown mailbox.
    let out = append_ok(
        &store,
        vec![Append { mailbox: mailbox(9), item_id: item_id(9, 0), payload: payload(0, 41) }],
        T0,
    )
    .await;
    assert_eq!(out, vec![AppendOutcome::TooLarge]);

    // Deleting frees quota; sequence numbers go on.
    assert_eq!(store.delete(mailbox(1), &credential(1), &[Seq(2)]).await, Ok(1));
    assert_eq!(append_ok(&store, vec![item(1, 0, 5)], T0).await, vec![AppendOutcome::Stored(Seq(6))]);
    assert_eq!(append_ok(&store, vec![item(1, 0, 6)], T0).await, vec![AppendOutcome::QuotaExceeded]);
    assert_eq!(store.delete_up_to(mailbox(2), &credential(2), Seq(1)).await, Ok(1));
    assert_eq!(append_ok(&store, vec![big(5, 40)], T0).await, vec![AppendOutcome::Stored(Seq(4))]);
    assert_eq!(
        store.stats().await.expect("stats"),
        StoreStats { mailboxes: 2, messages: 8, payload_bytes: 5 * 16 + 40 + 20 + 40 }
    );
}

/// `after` and `limit` page through a mailbox, also across deleted messages.
pub async fn fetch_pagination<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1]).await;
    append_ok(&store, (0..10).map(|i| item(1, 0, i)).collect(), T0).await;
    let (m, c) = (mailbox(1), credential(1));
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store.fetch(m, &c, after, 3).await.expect("fetch");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|p| p.seq);
        pages.push(seqs(&page));
    }
    assert_eq!(pages, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]);
    assert_eq!(store.fetch(m, &c, None, 0).await, Ok(Vec::new()));
    assert_eq!(store.fetch(m, &c, Some(Seq(10)), 5).await, Ok(Vec::new()));
    assert_eq!(store.fetch(m, &c, Some(Seq(u64::MAX)), 5).await, Ok(Vec::new()));
    assert_eq!(store.delete(m, &c, &[Seq(2), Seq(3), Seq(5)]).await, Ok(3));
    assert_eq!(seqs(&store.fetch(m, &c, Some(Seq(1)), 3).await.expect("fetch")), vec![4, 6, 7]);
}

/// `delete_up_to` and `delete` remove exactly what they name, count it, and are idempotent.
pub async fn delete_and_idempotent_delete<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1]).await;
    append_ok(&store, (0..8).map(|i| item(1, 0, i)).collect(), T0).await;
    let (m, c) = (mailbox(1), credential(1));
    assert_eq!(store.delete_up_to(m, &c, Seq(3)).await, Ok(3));
    assert_eq!(store.delete_up_to(m, &c, Seq(3)).await, Ok(0));
    assert_eq!(store.delete_up_to(m, &c, Seq(0)).await, Ok(0));
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![4, 5, 6, 7, 8]);
    assert_eq!(store.delete(m, &c, &[Seq(5), Seq(7), Seq(7), Seq(99), Seq(1)]).await, Ok(2));
    assert_eq!(store.delete(m, &c, &[Seq(5), Seq(7)]).await, Ok(0));
    assert_eq!(store.delete(m, &c, &[]).await, Ok(0));
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![4, 6, 8]);
    assert_eq!(store.delete_up_to(m, &c, Seq(u64::MAX)).await, Ok(3));
    assert!(fetch_all(&store, 1).await.is_empty());
    assert_eq!(
        store.stats().await.expect("stats"),
        StoreStats { mailboxes: 1, messages: 0, payload_bytes: 0 }
    );
    // Sequence numbers are never reused.
    assert_eq!(append_ok(&store, vec![item(1, 1, 0)], T0).await, vec![AppendOutcome::Stored(Seq(9))]);
}

/// `expire` removes messages once `retention` has passed since they were stored (by the `now`
/// passed in), counts those not yet deleted, and forgets their ids.
pub async fn expire_by_retention<F: Factory>(f: &F) {
    let limits = Limits { retention: Duration::from_secs(100), ..Limits::default() };
    let store = registered(f, limits, &[1, 2]).await;
    let secs = |s: u64| T0.plus(Duration::from_secs(s));
    append_ok(&store, vec![item(1, 0, 0), item(2, 0, 1), item(1, 0, 2)], secs(0)).await;
    append_ok(&store, vec![item(1, 0, 3)], secs(50)).await;
    assert_eq!(store.delete(mailbox(1), &credential(1), &[Seq(2)]).await, Ok(1));

    assert_eq!(store.expire(secs(99)).await, Ok(0));
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![1, 3]);
    // At exactly stored_at + retention the first three are gone (one of them already deleted).
    assert_eq!(store.expire(secs(100)).await, Ok(2));
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![3]);
    assert!(fetch_all(&store, 2).await.is_empty());
    assert_eq!(store.expire(secs(100)).await, Ok(0));
    // Expired ids are forgotten: the same id is a new message now.
    assert_eq!(append_ok(&store, vec![item(1, 0, 0)], secs(120)).await, vec![AppendOutcome::Stored(Seq(4))]);
    assert_eq!(store.expire(secs(150)).await, Ok(1));
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![4]);
    // Retention longer than the clock's value: nothing expires.
    assert_eq!(store.expire(UnixSeconds(5)).await, Ok(0));
    assert_eq!(
        store.stats().await.expect("stats"),
        StoreStats { mailboxes: 2, messages: 1, payload_bytes: 16 }
    );
}

/// A deleted message's id is remembered (a resend is `Duplicate`) until
/// `stored_at + remember_deleted_ids`, then forgotten by `expire`; a live message's id stays
/// until retention, and a window longer than retention is retention.
pub async fn deleted_ids_forgotten_after_window<F: Factory>(f: &F) {
    let limits = Limits {
        retention: Duration::from_secs(100),
        remember_deleted_ids: Duration::from_secs(30),
        ..Limits::default()
    };
    let store = registered(f, limits, &[1]).await;
    let secs = |s: u64| T0.plus(Duration::from_secs(s));
    append_ok(&store, vec![item(1, 0, 0), item(1, 0, 1)], secs(0)).await;
    append_ok(&store, vec![item(1, 0, 2)], secs(10)).await;
    assert_eq!(store.delete(mailbox(1), &credential(1), &[Seq(1), Seq(3)]).await, Ok(2));
    assert_eq!(store.expire(secs(29)).await, Ok(0));
    let out = append_ok(&store, vec![item(1, 0, 0), item(1, 0, 2)], secs(29)).await;
    assert_eq!(out, vec![AppendOutcome::Duplicate(Seq(1)), AppendOutcome::Duplicate(Seq(3))]);
    // At stored_at + 30 s the first deleted id is forgotten (the count is of live messages: 0).
    assert_eq!(store.expire(secs(30)).await, Ok(0));
    let out = append_ok(&store, vec![item(1, 0, 0), item(1, 0, 2), item(1, 0, 1)], secs(31)).await;
    assert_eq!(
        out,
        vec![
            AppendOutcome::Stored(Seq(4)),
            AppendOutcome::Duplicate(Seq(3)),
            AppendOutcome::Duplicate(Seq(2))
        ]
    );
    assert_eq!(store.expire(secs(40)).await, Ok(0));
    assert_eq!(append_ok(&store, vec![item(1, 0, 2)], secs(40)).await, vec![AppendOutcome::Stored(Seq(5))]);
    // The live message (seq 2) stays, its id with it, until retention.
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![2, 4, 5]);
    assert_eq!(store.expire(secs(99)).await, Ok(0));
    assert_eq!(
        append_ok(&store, vec![item(1, 0, 1)], secs(99)).await,
        vec![AppendOutcome::Duplicate(Seq(2))]
    );
    assert_eq!(store.expire(secs(100)).await, Ok(1));
    assert_eq!(seqs(&fetch_all(&store, 1).await), vec![4, 5]);

    // A window longer than retention is retention.
    let limits = Limits {
        retention: Duration::from_secs(50),
        remember_deleted_ids: Duration::from_secs(500),
        ..Limits::default()
    };
    let store = registered(f, limits, &[1]).await;
    append_ok(&store, vec![item(1, 0, 0)], secs(0)).await;
    assert_eq!(store.delete_up_to(mailbox(1), &credential(1), Seq(1)).await, Ok(1));
    assert_eq!(store.expire(secs(49)).await, Ok(0));
    assert_eq!(
        append_ok(&store, vec![item(1, 0, 0)], secs(49)).await,
        vec![AppendOutcome::Duplicate(Seq(1))]
    );
    assert_eq!(store.expire(secs(50)).await, Ok(0));
    assert_eq!(append_ok(&store, vec![item(1, 0, 0)], secs(50)).await, vec![AppendOutcome::Stored(Seq(2))]);
}

/// Unregistering deletes the mailbox and all it held; the id can then be registered afresh, with
/// any credential, and starts empty.
pub async fn unregister_removes_everything<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1, 2]).await;
    append_ok(&store, vec![item(1, 0, 0), item(1, 0, 1), item(2, 0, 0)], T0).await;
    store.unregister(mailbox(1), &credential(1)).await.expect("unregister");
    assert_eq!(store.fetch(mailbox(1), &credential(1), None, 10).await, Err(StoreError::Unauthorized));
    assert_eq!(store.unregister(mailbox(1), &credential(1)).await, Err(StoreError::Unauthorized));
    assert_eq!(append_ok(&store, vec![item(1, 0, 2)], T0).await, vec![AppendOutcome::UnknownMailbox]);
    assert_eq!(
        store.stats().await.expect("stats"),
        StoreStats { mailboxes: 1, messages: 1, payload_bytes: 16 }
    );

    store.register(mailbox(1), &credential(3), T0).await.expect("register again");
    assert_eq!(store.fetch(mailbox(1), &credential(3), None, 10).await, Ok(Vec::new()));
    // Its old item ids are forgotten too.
    let out = append_ok(&store, vec![item(1, 0, 0)], T0).await;
    assert!(matches!(out[0], AppendOutcome::Stored(_)), "{out:?}");
    assert_eq!(fetch_all(&store, 2).await.len(), 1);
}

/// 32 tasks append 50 messages each (in batches of 1 to 5, some sent twice) to four shared
/// mailboxes at once: every item gets an outcome, every stored message is fetchable exactly once
/// with the sequence number it was given, each mailbox's sequence numbers are 1..=n, and the
/// totals are right.
pub async fn concurrent_appends<F: Factory>(f: &F) {
    const TASKS: u16 = 32;
    const PER_TASK: u16 = 50;
    const MAILBOXES: u8 = 4;
    let store = Arc::new(registered(f, Limits::default(), &(1..=MAILBOXES).collect::<Vec<_>>()).await);
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0;
            while i < PER_TASK {
                let n = (1 + (task + i) % 5).min(PER_TASK - i);
                let mut batch: Vec<Append> =
                    (i..i + n).map(|j| item(1 + ((task + j) % MAILBOXES as u16) as u8, task, j)).collect();
                if i % 7 == 0 {
                    batch.push(batch[0].clone()); // a retransmission inside the batch
                }
                let out = store.append(batch.clone(), T0).await.expect("append");
                assert_eq!(out.len(), batch.len());
                results.extend(batch.into_iter().zip(out));
                i += n;
            }
            results
        }));
    }
    let mut stored: BTreeMap<(MailboxId, u64), ItemId> = BTreeMap::new();
    let mut by_id: BTreeMap<(MailboxId, ItemId), Seq> = BTreeMap::new();
    for h in handles {
        for (a, o) in h.await.expect("task") {
            match o {
                AppendOutcome::Stored(s) => {
                    assert!(stored.insert((a.mailbox, s.0), a.item_id).is_none(), "seq given twice");
                    assert!(by_id.insert((a.mailbox, a.item_id), s).is_none(), "stored twice");
                }
                AppendOutcome::Duplicate(s) => assert_eq!(by_id.get(&(a.mailbox, a.item_id)), Some(&s)),
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    assert_eq!(stored.len(), usize::from(TASKS) * usize::from(PER_TASK));
    let mut total = 0;
    for m in 1..=MAILBOXES {
        let got = fetch_all(&*store, m).await;
        assert_eq!(seqs(&got), (1..=got.len() as u64).collect::<Vec<_>>(), "gapless, ordered");
        for msg in &got {
            assert_eq!(stored.get(&(mailbox(m), msg.seq.0)), Some(&msg.item_id));
        }
        total += got.len();
    }
    assert_eq!(total, stored.len());
    assert_eq!(store.stats().await.expect("stats").messages, stored.len() as u64);
}

/// One mailbox's messages never show in another's fetch, and deletes touch only their mailbox.
pub async fn isolation<F: Factory>(f: &F) {
    let store = registered(f, Limits::default(), &[1, 2, 3]).await;
    let batch: Vec<Append> = (0..30).map(|i| item(1 + (i % 3) as u8, 0, i)).collect();
    append_ok(&store, batch, T0).await;
    assert_eq!(store.delete_up_to(mailbox(2), &credential(2), Seq(u64::MAX)).await, Ok(10));
    // Another owner's credential opens nothing.
    assert_eq!(store.fetch(mailbox(1), &credential(3), None, 100).await, Err(StoreError::Unauthorized));
    for m in 1..=3u8 {
        let got = fetch_all(&store, m).await;
        assert_eq!(got.len(), if m == 2 { 0 } else { 10 });
        for msg in got {
            let i = u16::from_be_bytes([msg.item_id.0[2], msg.item_id.0[3]]);
            assert_eq!(1 + (i % 3) as u8, m, "message of another mailbox");
        }
    }
}

/// Runs every case, each against fresh stores from `f`.
pub async fn run_all<F: Factory>(f: &F) {
    register_and_auth(f).await;
    append_then_fetch_in_order(f).await;
    duplicates_stored_once(f).await;
    unknown_mailbox(f).await;
    quotas_and_too_large(f).await;
    fetch_pagination(f).await;
    delete_and_idempotent_delete(f).await;
    expire_by_retention(f).await;
    deleted_ids_forgotten_after_window(f).await;
    unregister_removes_everything(f).await;
    concurrent_appends(f).await;
    isolation(f).await;
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the case with the factory
/// `$factory` (an expression evaluated afresh in each test). The calling crate needs `tokio`
/// with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            register_and_auth,
            append_then_fetch_in_order,
            duplicates_stored_once,
            unknown_mailbox,
            quotas_and_too_large,
            fetch_pagination,
            delete_and_idempotent_delete,
            expire_by_retention,
            deleted_ids_forgotten_after_window,
            unregister_removes_everything,
            concurrent_appends,
            isolation
        );
    };
    (@cases $factory:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                $crate::conformance::$case(&factory).await;
            }
        )*
    };
}

// ---- the state machine against the model --------------------------------------------------

/// One step of a state-machine run. Small indices name mailboxes, credentials and messages.
#[derive(Clone, Debug)]
pub enum Op {
    /// `register(mailbox(m), credential(c))`.
    Register {
        /// Mailbox index.
        m: u8,
        /// Credential index.
        c: u8,
    },
    /// `unregister(mailbox(m), credential(c))`.
    Unregister {
        /// Mailbox index.
        m: u8,
        /// Credential index.
        c: u8,
    },
    /// `append` of `(mailbox index, message index, payload length)` items.
    Append(Vec<(u8, u16, u8)>),
    /// `fetch(mailbox(m), credential(c), after, limit)`.
    Fetch {
        /// Mailbox index.
        m: u8,
        /// Credential index.
        c: u8,
        /// `after`, as a raw sequence number.
        after: Option<u64>,
        /// `limit`.
        limit: usize,
    },
    /// `delete_up_to(mailbox(m), credential(c), Seq(up_to))`.
    DeleteUpTo {
        /// Mailbox index.
        m: u8,
        /// Credential index.
        c: u8,
        /// Raw sequence number.
        up_to: u64,
    },
    /// `delete(mailbox(m), credential(c), seqs)`.
    Delete {
        /// Mailbox index.
        m: u8,
        /// Credential index.
        c: u8,
        /// Raw sequence numbers.
        seqs: Vec<u64>,
    },
    /// Moves the clock forward by this many seconds.
    Advance(u64),
    /// `expire(now)`.
    Expire,
    /// `stats()`.
    Stats,
}

/// Limits for state-machine runs: small enough that quotas and retention are hit often.
pub fn model_limits() -> Limits {
    Limits {
        max_messages_per_mailbox: 4,
        max_bytes_per_mailbox: 60,
        retention: Duration::from_secs(60),
        remember_deleted_ids: Duration::from_secs(20),
        max_payload_len: 24,
    }
}

/// Sequences of up to `max_len` operations over 3 mailboxes, 2 credentials and 8 item ids.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let m = 0u8..3;
    let c = 0u8..2;
    let op = prop_oneof![
        2 => (m.clone(), c.clone()).prop_map(|(m, c)| Op::Register { m, c }),
        1 => (m.clone(), c.clone()).prop_map(|(m, c)| Op::Unregister { m, c }),
        6 => prop::collection::vec((0u8..4, 0u16..8, 0u8..30), 0..6).prop_map(Op::Append),
        3 => (m.clone(), c.clone(), prop::option::of(0u64..12), 0usize..6)
            .prop_map(|(m, c, after, limit)| Op::Fetch { m, c, after, limit }),
        2 => (m.clone(), c.clone(), 0u64..12).prop_map(|(m, c, up_to)| Op::DeleteUpTo { m, c, up_to }),
        2 => (m, c, prop::collection::vec(0u64..12, 0..4)).prop_map(|(m, c, seqs)| Op::Delete { m, c, seqs }),
        2 => (0u64..40).prop_map(Op::Advance),
        2 => Just(Op::Expire),
        1 => Just(Op::Stats),
    ];
    prop::collection::vec(op, 1..max_len)
}

/// Replays `ops` against `store` (fresh, opened with [`model_limits`]) and a [`ModelStore`],
/// asserting every answer is the same.
pub async fn check_against_model<S: MailboxStore>(store: &S, ops: &[Op]) {
    assert_eq!(store.limits(), &model_limits(), "open the store with model_limits()");
    let model = ModelStore::new(model_limits());
    let mut now = T0;
    // Mailbox index 3 is never registered.
    let mb = |m: u8| mailbox(m + 1);
    let cred = |m: u8, c: u8| credential(10 * (m + 1) + c);
    for (step, op) in ops.iter().enumerate() {
        let ctx = || format!("step {step}: {op:?}");
        match op {
            Op::Register { m, c } => {
                let a = store.register(mb(*m), &cred(*m, *c), now).await;
                let b = model.register(mb(*m), &cred(*m, *c), now).await;
                assert_eq!(a, b, "{}", ctx());
            }
            Op::Unregister { m, c } => {
                let a = store.unregister(mb(*m), &cred(*m, *c)).await;
                let b = model.unregister(mb(*m), &cred(*m, *c)).await;
                assert_eq!(a, b, "{}", ctx());
            }
            Op::Append(items) => {
                let batch: Vec<Append> = items
                    .iter()
                    .map(|&(m, i, len)| Append {
                        mailbox: mb(m),
                        item_id: item_id(0, i),
                        payload: payload(i, len.into()),
                    })
                    .collect();
                let a = store.append(batch.clone(), now).await;
                let b = model.append(batch, now).await;
                assert_eq!(a, b, "{}", ctx());
            }
            Op::Fetch { m, c, after, limit } => {
                let a = store.fetch(mb(*m), &cred(*m, *c), after.map(Seq), *limit).await;
                let b = model.fetch(mb(*m), &cred(*m, *c), after.map(Seq), *limit).await;
                assert_eq!(a, b, "{}", ctx());
            }
            Op::DeleteUpTo { m, c, up_to } => {
                let a = store.delete_up_to(mb(*m), &cred(*m, *c), Seq(*up_to)).await;
                let b = model.delete_up_to(mb(*m), &cred(*m, *c), Seq(*up_to)).await;
                assert_eq!(a, b, "{}", ctx());
            }
            Op::Delete { m, c, seqs } => {
                let seqs: Vec<Seq> = seqs.iter().copied().map(Seq).collect();
                let a = store.delete(mb(*m), &cred(*m, *c), &seqs).await;
                let b = model.delete(mb(*m), &cred(*m, *c), &seqs).await;
                assert_eq!(a, b, "{}", ctx());
            }
            Op::Advance(s) => now = now.plus(Duration::from_secs(*s)),
            Op::Expire => assert_eq!(store.expire(now).await, model.expire(now).await, "{}", ctx()),
            Op::Stats => assert_eq!(store.stats().await, model.stats().await, "{}", ctx()),
        }
    }
    // Whatever happened, the final states agree.
    assert_eq!(store.stats().await, model.stats().await, "final stats");
    for m in 0..3 {
        for c in 0..2 {
            let a = store.fetch(mb(m), &cred(m, c), None, usize::MAX).await;
            let b = model.fetch(mb(m), &cred(m, c), None, usize::MAX).await;
            assert_eq!(a, b, "final fetch of mailbox {m}");
        }
    }
}
