//! The store trait every backend implements.

use std::future::Future;

use crate::{
    Append, AppendOutcome, Credential, Limits, MailboxId, Seq, StoreError, StoreStats, StoredMessage,
    UnixSeconds,
};

/// A gateway's mailbox store.
///
/// Every method's contract is pinned by the conformance suite (the `conformance`
/// feature; every backend passes it); the summary:
///
/// - A mailbox exists once registered; only the holder of its [`Credential`] can fetch, delete
///   or unregister. Unknown mailbox and wrong credential are the same
///   [`StoreError::Unauthorized`].
/// - [`append`](Self::append) returns `Ok` only once every `Stored` item is durable; on `Err`
///   the caller must acknowledge nothing.
/// - Time is always passed in: a store never reads a clock.
///
/// Methods take `&self`: a store is shared between tasks (for example in an `Arc`), and
/// concurrent calls are safe.
pub trait MailboxStore: Send + Sync + 'static {
    /// The limits this store applies.
    fn limits(&self) -> &Limits;

    /// Registers `mailbox` with `credential`. Registering again with the same credential
    /// succeeds and changes nothing; with a different one it fails with
    /// [`StoreError::Unauthorized`].
    fn register(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        now: UnixSeconds,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes `mailbox` and every message in it (and forgets its item ids).
    fn unregister(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a batch of messages, returning one outcome per item, in order.
    ///
    /// `Ok` means every `Stored` item is durable (committed to stable storage) and every
    /// `Duplicate` refers to a durable message. `Err` (a full disk, an I/O error…) means the
    /// caller must acknowledge none of the batch; items may or may not have been stored, and a
    /// retry reports them `Duplicate` if they were.
    fn append(
        &self,
        batch: Vec<Append>,
        now: UnixSeconds,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, StoreError>> + Send;

    /// Up to `limit` messages of `mailbox` with a sequence number greater than `after` (all when
    /// `None`), in increasing sequence order.
    fn fetch(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        after: Option<Seq>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredMessage>, StoreError>> + Send;

    /// Deletes every message of `mailbox` with a sequence number at most `up_to`; returns how many
    /// were deleted (deleting again deletes nothing and succeeds).
    fn delete_up_to(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        up_to: Seq,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes the listed messages of `mailbox` (unknown sequence numbers are ignored); returns how
    /// many were deleted.
    fn delete(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        seqs: &[Seq],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Removes every message stored at or before `now - retention` (and forgets those message
    /// ids); returns how many messages that their owner had not yet deleted were removed.
    fn expire(&self, now: UnixSeconds) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Totals over the whole store.
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send;
}
