//! The distributed backend, for gateways that outgrow one machine: a Redis Cluster of masters
//! with replicas.
//!
//! # Durability before acknowledgement
//!
//! Each operation on a mailbox is one Lua script (`redis/scripts.rs`) that runs atomically on the master
//! owning the mailbox's hash slot: an append checks the mailbox, de-duplicates by item id,
//! applies the quotas and stores, all at once. The script is sent in a pipeline followed by
//! `WAIT 1 <wait_timeout>` on the same connection, and the store reports success only when
//! `WAIT` answers that at least one replica holds the write. With the masters configured
//! `appendonly yes` and `appendfsync always` (see `docs/OPERATING.md`), Redis also answers only
//! after the write is fsynced to the master's append-only file. So an `Ok` from
//! [`append`](crate::MailboxStore::append) means the messages are on the master's disk and in a
//! replica's memory, and a failover (the replica taking over) loses none of them. A script error,
//! an unreachable node, a cluster not serving the slot or a `WAIT` that times out come back as
//! `Err`: the gateway acknowledges nothing and the previous hop retransmits; the retransmission
//! is reported `Duplicate` if the first attempt did store.
//!
//! A script that wrote nothing but reports something that must be durable (a duplicate's
//! original, messages it fetched) issues one no-op write so that its `WAIT` covers the earlier
//! writes too: a fetch never hands out a message that a failover could still take back.
//!
//! # Batches
//!
//! An append batch is split by mailbox (one script call each, in batch order) and the calls of
//! one bucket — the 1,024 buckets of `redis/keys.rs`, each one hash slot — go in one pipeline with one
//! `WAIT`; the pipelines of different buckets run concurrently, over a small pool of cluster
//! connections ([`RedisConfig::connections`]).
//!
//! # Stats and expiry
//!
//! Every bucket keeps its totals and an index of its mailboxes by oldest `stored_at`, updated by
//! the same scripts. [`stats`](crate::MailboxStore::stats) sums the buckets' totals;
//! [`expire`](crate::MailboxStore::expire) reads each bucket's index and runs the expiry script on
//! the mailboxes that have something to expire.
//!
//! # Persistence that makes an acknowledgement true
//!
//! The store refuses a cluster whose nodes do not all run `appendonly yes` with
//! `appendfsync always` ([`StoreError::UnsafePersistence`], naming the node and the fix): at
//! connect, when it sees a master it has not checked, and at every `expire`. See
//! `redis/persistence.rs`.
//!
//! # What is stored
//!
//! The same as in SQLite: mailbox ids, the [`CredentialHash`], item ids, sequence numbers,
//! payloads and whole-second timestamps (see `redis/scripts.rs` for the layout). Times must be below
//! 2^53 seconds (Lua numbers are doubles).
//!
//! # The code, in the order an operation runs
//!
//! [`RedisConfig`] (`config.rs`) says how to reach the cluster; [`RedisStore::connect`]
//! (`connect.rs`) checks it, the cluster and the stored format. Each [`MailboxStore`] method
//! (`operations.rs`) becomes script calls (`scripts.rs`) on the keys of `keys.rs`, run in pipelines
//! with their `WAIT` (`pipeline.rs`) grouped per master by the slot map (`slots.rs`), and their
//! replies decoded (`reply.rs`); `persistence.rs` checks every node's settings.

mod config;
mod connect;
mod keys;
mod operations;
mod persistence;
mod pipeline;
mod reply;
mod scripts;
mod slots;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;

pub use self::config::RedisConfig;
use self::keys::{Bucket, Keys};
use self::scripts::Scripts;
use self::slots::SlotMap;
#[cfg(doc)]
use crate::{CredentialHash, MailboxStore};
use crate::{Limits, MailboxId, StoreError};

/// The version of the stored layout (keys, scripts' data structures, records), kept in
/// `<prefix>:format`. A store refuses a prefix written by another version.
pub const FORMAT_VERSION: u32 = 1;

/// The Redis Cluster mailbox store. Needs a Tokio runtime (with the time driver).
pub struct RedisStore {
    limits: Limits,
    keys: Keys,
    scripts: Scripts,
    /// The first of `conns` (so that picking one never fails).
    first: ClusterConnection,
    conns: Vec<ClusterConnection>,
    next: AtomicUsize,
    slots: RwLock<SlotMap>,
    wait_ms: u64,
    target: String,
    /// For the persistence checks' own connections to each node.
    seeds: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    connect_timeout: Duration,
    trust_unverified: bool,
    /// Masters (`host:port`) whose persistence was checked.
    checked_masters: Mutex<BTreeSet<String>>,
    /// Set when a re-check found a node that would make acknowledgements lie: appends fail with
    /// it until a re-check passes.
    refused: Mutex<Option<StoreError>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("target", &self.target).field("limits", &self.limits).finish()
    }
}

impl RedisStore {
    /// The names of the keys that hold `mailbox` (its four keys; the first always exists while it
    /// is registered, the others once it holds or remembers messages), for operators' tools such
    /// as `MEMORY USAGE`. All are in the slot [`mailbox_slot`] names.
    pub fn mailbox_keys(&self, mailbox: &MailboxId) -> Vec<Vec<u8>> {
        self.keys.mailbox(mailbox).into_iter().take(4).collect()
    }

    /// The seed nodes this store was connected through.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// The hash slot that holds every key of `mailbox` (all of a mailbox's keys share one slot): which
/// master serves it is what `CLUSTER SHARDS` says of that slot.
pub fn mailbox_slot(mailbox: &MailboxId) -> u16 {
    Bucket::of(mailbox).slot()
}
