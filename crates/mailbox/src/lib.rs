//! A gateway's mailbox store: one async trait ([`MailboxStore`]), one conformance suite that
//! every backend passes, the embedded default backend on SQLite ([`sqlite::SqliteStore`]), and,
//! for gateways that outgrow one machine, a Redis Cluster backend (`redis::RedisStore`, feature
//! `redis`, on by default).
//!
//! # The durability rule
//!
//! A gateway acknowledges a packet to the previous hop only after the packet's payload is
//! durably stored. [`MailboxStore::append`] is the point where that happens: it returns `Ok`
//! only once every item it reports [`AppendOutcome::Stored`] is on stable storage (for SQLite:
//! the transaction has committed and its write-ahead log is fsynced), and any error — a full
//! disk, a quota-free I/O failure, an unavailable backend — comes back as `Err`, so that the
//! gateway acknowledges nothing and the previous hop retransmits. A retransmission carries the
//! same [`ItemId`] and is then reported [`AppendOutcome::Duplicate`]: stored once, safe to
//! acknowledge again. (The Redis backend's `Ok` means the write is fsynced to the master's
//! append-only file and a replica confirmed it: see its module.)
//!
//! # Group commit
//!
//! An fsync costs milliseconds, so a store that committed each packet alone would be limited to
//! a few hundred packets per second. The SQLite backend gathers every append (and every other
//! write) waiting at the moment it starts a transaction into that one transaction, and answers
//! each caller after the commit returns: one fsync for the group (see [`sqlite`]).
//!
//! # What is on disk
//!
//! Mailbox ids (random 256-bit values), a hash of each mailbox's credential bound to that mailbox
//! ([`CredentialHash`]), item ids, per-mailbox sequence numbers, opaque payloads and whole-second
//! timestamps. Nothing links two mailboxes to each other or to a person, and `Debug` of the
//! identifiers prints no bytes, so logs never name a mailbox.
//!
//! # Conformance
//!
//! With the `conformance` feature, the module `conformance` exposes the backend-independent test
//! suite (one async function per case, and the macro `conformance_tests!` that turns them into
//! `#[tokio::test]`s), an in-memory reference model (`ModelStore`), and a state-machine property
//! test (`ops`, `check_against_model`) that checks a backend against the model. Every backend's
//! tests run the same suite unchanged (`tests/sqlite.rs` for SQLite, `tests/redis.rs` for Redis).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sqlite;
mod store;
mod types;

pub use error::{StoreError, StoreErrorKind};
pub use store::MailboxStore;
pub use types::{
    Append, AppendOutcome, Credential, CredentialHash, ItemId, Limits, MailboxId, Seq, StoreStats,
    StoredMessage, UnixSeconds,
};
