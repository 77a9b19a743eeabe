//! The distributed backend, for gateways that outgrow one machine: a Redis Cluster of masters
//! with replicas.
//!
//! # Durability before acknowledgement
//!
//! Each operation on a mailbox is one Lua script (`redis/scripts.rs`) that runs atomically on the master
//! owning the mailbox's hash slot: an append checks the mailbox, de-duplicates by message id,
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
//! The same as in SQLite: mailbox ids, the [`CredentialHash`], message ids, sequence numbers,
//! payloads and whole-second timestamps (see `redis/scripts.rs` for the layout). Times must be below
//! 2^53 seconds (Lua numbers are doubles).

mod keys;
mod persistence;
mod reply;
mod scripts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisError, ServerError, ServerErrorKind, Value};

use self::keys::{Bucket, Keys};
use self::scripts::{Lua, Scripts};
use crate::{
    Append, AppendOutcome, Credential, CredentialHash, Limits, MailboxId, MailboxStore, Seq, StoreError,
    StoreStats, StoredMessage, UnixTime,
};

/// The version of the stored layout (keys, scripts' data structures, records), kept in
/// `<prefix>:format`. A store refuses a prefix written by another version.
pub const FORMAT_VERSION: u32 = 1;

/// Largest time the store accepts (Lua numbers and sorted-set scores are exact below 2^53).
const MAX_TIME: u64 = 1 << 53;

/// How to reach a Redis Cluster, and what to apply.
#[derive(Clone)]
pub struct RedisConfig {
    /// Some of the cluster's nodes, as `host:port`; the rest are discovered.
    pub seed_nodes: Vec<String>,
    /// Quotas and retention.
    pub limits: Limits,
    /// Prefix of every key (no `{`, `}` or whitespace). Stores with different prefixes share a
    /// cluster without seeing each other.
    pub key_prefix: String,
    /// How long an operation waits for a replica to confirm its write (`WAIT 1 <ms>`) before
    /// failing.
    pub wait_timeout: Duration,
    /// Longest an operation waits for its answer, retries included; more than `wait_timeout`.
    pub response_timeout: Duration,
    /// Longest a connection attempt to one node takes.
    pub connect_timeout: Duration,
    /// Cluster connections kept open (each one TCP connection per node); concurrent operations
    /// are spread over them, and each may have one `WAIT` outstanding per master.
    pub connections: usize,
    /// ACL user name, if the cluster requires one.
    pub username: Option<String>,
    /// ACL password, if the cluster requires one.
    pub password: Option<String>,
    /// Serve even when a node's persistence settings cannot be read (`CONFIG GET` renamed,
    /// disabled or not permitted). Only for an operator who has checked every node's
    /// `appendonly yes` and `appendfsync always` by other means: the store then cannot notice a
    /// node that would acknowledge writes it can lose. Nodes that do answer are still checked.
    pub trust_persistence_unverified: bool,
}

impl RedisConfig {
    /// The defaults for a cluster reached through `seed_nodes`: default limits, prefix `qanat`,
    /// `WAIT` timeout 1 s, response timeout 5 s, connect timeout 2 s, 4 connections, no login.
    pub fn new(seed_nodes: Vec<String>) -> Self {
        RedisConfig {
            seed_nodes,
            limits: Limits::default(),
            key_prefix: "qanat".into(),
            wait_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            connections: 4,
            username: None,
            password: None,
            trust_persistence_unverified: false,
        }
    }
}

impl RedisConfig {
    /// Sets the `WAIT` timeout, and raises the response timeout to at least 4 s more than it
    /// (what a gateway's `wait_timeout_ms` setting maps to).
    pub fn with_wait_timeout(mut self, wait: Duration) -> Self {
        self.wait_timeout = wait;
        self.response_timeout = self.response_timeout.max(wait.saturating_add(Duration::from_secs(4)));
        self
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("seed_nodes", &self.seed_nodes)
            .field("limits", &self.limits)
            .field("key_prefix", &self.key_prefix)
            .field("wait_timeout", &self.wait_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("connections", &self.connections)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("trust_persistence_unverified", &self.trust_persistence_unverified)
            .finish()
    }
}

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

/// One script call in a pipeline.
#[derive(Clone)]
struct Call<'a> {
    lua: &'a Lua,
    keys: [Vec<u8>; 6],
    args: Vec<Vec<u8>>,
}

/// Why a pipeline failed: no replica confirmed it (retrying elsewhere would not help), or anything
/// else.
enum Failure {
    NoReplica(StoreError),
    Other(StoreError),
}

impl Failure {
    fn into_store(self) -> StoreError {
        match self {
            Failure::NoReplica(e) | Failure::Other(e) => e,
        }
    }
}

/// Which master serves each hash slot, as far as the store knows; used only to group work into
/// one pipeline per master (the client routes, and follows redirections, by itself).
#[derive(Default)]
struct SlotMap {
    /// Per slot: an index into the masters, or `u16::MAX` when no master serves it.
    master: Vec<u16>,
    /// The masters, as `host:port`.
    masters: Vec<String>,
}

impl SlotMap {
    fn master(&self, slot: u16) -> Option<u16> {
        self.master.get(usize::from(slot)).copied().filter(|&m| m != u16::MAX)
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, …], replica…], …]`.
    fn parse(v: &Value) -> Result<SlotMap, StoreError> {
        let bad = || StoreError::internal("unexpected reply to CLUSTER SLOTS");
        let Value::Array(ranges) = v else { return Err(bad()) };
        let mut masters: Vec<Vec<u8>> = Vec::new();
        let mut map = vec![u16::MAX; 16_384];
        for range in ranges {
            let Value::Array(fields) = range else { return Err(bad()) };
            let [Value::Int(start), Value::Int(end), Value::Array(node), ..] = fields.as_slice() else {
                return Err(bad());
            };
            let [Value::BulkString(host), Value::Int(port), ..] = node.as_slice() else { return Err(bad()) };
            let mut addr = host.clone();
            addr.extend_from_slice(format!(":{port}").as_bytes());
            let index = match masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr);
                    masters.len() - 1
                }
            };
            let index = u16::try_from(index).map_err(|_| bad())?;
            let (start, end) =
                (usize::try_from(*start).map_err(|_| bad())?, usize::try_from(*end).map_err(|_| bad())?);
            for slot in map.get_mut(start..=end).ok_or_else(bad)? {
                *slot = index;
            }
        }
        let masters = masters.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
        Ok(SlotMap { master: map, masters })
    }
}

fn num(v: u64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn check_time(now: UnixTime) -> Result<(), StoreError> {
    if now.0 > MAX_TIME {
        return Err(StoreError::internal(format!("time {} is out of range", now.0)));
    }
    Ok(())
}

/// Classifies an error the client reports.
fn redis_error(e: &RedisError) -> StoreError {
    let detail = e.to_string();
    if let Some(code) = e.code() {
        return by_code(code, detail);
    }
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(e.kind(), redis::ErrorKind::ClusterConnectionNotFound)
    {
        return StoreError::Unavailable { detail };
    }
    StoreError::Internal { detail }
}

/// Classifies an error a node answered.
fn server_error(e: &ServerError) -> StoreError {
    let detail = match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_owned(),
    };
    by_code(e.code(), detail)
}

fn by_code(code: &str, detail: String) -> StoreError {
    match code {
        "OOM" => StoreError::Full { detail },
        "MISCONF" => StoreError::Io { detail },
        "NOREPLICAS" | "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "LOADING" | "READONLY" | "MOVED"
        | "ASK" | "BUSY" => StoreError::Unavailable { detail },
        "NOAUTH" | "WRONGPASS" | "NOPERM" => StoreError::Unavailable {
            detail: format!("{detail} (check the Redis user name, password and ACL permissions)"),
        },
        _ => StoreError::Internal { detail },
    }
}

/// Checks `host:port`.
fn parse_seed(seed: &str) -> Result<(), String> {
    let Some((host, port)) = seed.rsplit_once(':') else {
        return Err(format!("seed node {seed:?} is not host:port"));
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        return Err(format!("seed node {seed:?} has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("seed node {seed:?} has no valid port")),
    }
}

impl RedisStore {
    /// Connects to the cluster through `config.seed_nodes` and checks that every master reports
    /// `cluster_state:ok`. Fails with [`StoreError::Connect`] naming the seeds and the fix when a
    /// node cannot be reached, the login is refused, or the cluster is not serving every slot.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let target = config.seed_nodes.join(",");
        let fail = |detail: String| StoreError::Connect { target: target.clone(), detail };
        if config.seed_nodes.is_empty() {
            return Err(fail("no seed nodes given: list at least one node as host:port".into()));
        }
        for seed in &config.seed_nodes {
            parse_seed(seed).map_err(&fail)?;
        }
        let prefix = &config.key_prefix;
        if prefix.is_empty() || prefix.chars().any(|c| c == '{' || c == '}' || c.is_whitespace()) {
            return Err(fail(format!("key prefix {prefix:?} must be non-empty, without braces or spaces")));
        }
        if config.connections == 0 {
            return Err(fail("connections is 0: keep at least one connection".into()));
        }
        if config.wait_timeout.is_zero() || config.wait_timeout >= config.response_timeout {
            return Err(fail(
                "the WAIT timeout must be positive and shorter than the response timeout".into(),
            ));
        }
        let urls: Vec<String> = config.seed_nodes.iter().map(|s| format!("redis://{s}")).collect();
        let mut builder = ClusterClientBuilder::new(urls)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.response_timeout);
        if let Some(user) = &config.username {
            builder = builder.username(user);
        }
        if let Some(password) = &config.password {
            builder = builder.password(password);
        }
        let client = builder.build().map_err(|e| fail(format!("invalid client settings: {e}")))?;
        let mut conns = Vec::with_capacity(config.connections);
        for _ in 0..config.connections {
            let conn = client.get_async_connection().await.map_err(|e| {
                fail(format!(
                    "{e}; check that the nodes run with cluster-enabled yes, are reachable from this host, \
                     and that the login (if any) is right"
                ))
            })?;
            conns.push(conn);
        }
        let Some(mut first) = conns.first().cloned() else {
            return Err(fail("connections is 0: keep at least one connection".into()));
        };
        let info = first
            .route_command(
                redis::cmd("CLUSTER").arg("INFO").clone(),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            )
            .await
            .map_err(|e| fail(format!("CLUSTER INFO failed: {e}")))?;
        check_cluster_state(&info).map_err(&fail)?;
        let connect_timeout = config.connect_timeout;
        let wait_ms = u64::try_from(config.wait_timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let store = RedisStore {
            limits: config.limits,
            keys: Keys::new(prefix),
            scripts: Scripts::new(),
            first,
            conns,
            next: AtomicUsize::new(0),
            slots: RwLock::new(SlotMap::default()),
            wait_ms,
            target,
            seeds: config.seed_nodes,
            username: config.username,
            password: config.password,
            connect_timeout,
            trust_unverified: config.trust_persistence_unverified,
            checked_masters: Mutex::new(BTreeSet::new()),
            refused: Mutex::new(None),
        };
        store.check_persistence(true).await?;
        store.refresh_slots().await;
        if let Err(detail) = store.check_format().await {
            return Err(StoreError::Connect { target: store.target.clone(), detail });
        }
        Ok(store)
    }

    /// Records [`FORMAT_VERSION`] under the prefix, or checks the one recorded.
    async fn check_format(&self) -> Result<(), String> {
        let mut conn = self.conn();
        let key = format!("{}:format", self.keys.prefix());
        let old: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(FORMAT_VERSION)
            .arg("NX")
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("cannot read the store's format version ({key}): {e}"))?;
        match old {
            None => Ok(()),
            Some(v) if v == FORMAT_VERSION.to_string() => Ok(()),
            Some(v) => Err(format!(
                "the keys under this prefix were written in format {v:?}, this build knows format \
                 {FORMAT_VERSION}: run a matching qanat, or use another key_prefix"
            )),
        }
    }

    /// The names of the keys that hold `mailbox` (its four keys; the first always exists while it
    /// is registered, the others once it holds or remembers messages), for operators' tools such
    /// as `MEMORY USAGE`. All are in the slot [`mailbox_slot`] names.
    pub fn mailbox_keys(&self, mailbox: &MailboxId) -> Vec<Vec<u8>> {
        self.keys.mailbox(mailbox).into_iter().take(4).collect()
    }

    /// How much earlier than a live message's a deleted message's expiry entry is (seconds), so
    /// that `EXPIRE` forgets its id `remember_deleted_ids` after it was stored.
    fn forget_shift(&self) -> u64 {
        self.limits.retention.as_secs().saturating_sub(self.limits.deleted_id_lifetime())
    }

    /// The seed nodes this store was connected through.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn conn(&self) -> ClusterConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len().max(1);
        self.conns.get(i).unwrap_or(&self.first).clone()
    }

    /// Runs `calls` (all in slots of one master, `slot` among them) in one pipeline followed by
    /// `WAIT 1`, on the slot's master; returns the scripts' replies once a replica confirmed the
    /// writes.
    async fn run(&self, slot: u16, calls: &[Call<'_>]) -> Result<Vec<Value>, Failure> {
        let mut conn = self.conn();
        let mut eval = false;
        loop {
            let mut pipe = redis::pipe();
            for c in calls {
                let mut cmd = if eval {
                    redis::cmd("EVAL").arg(&c.lua.body).clone()
                } else {
                    redis::cmd("EVALSHA").arg(&c.lua.sha).clone()
                };
                cmd.arg(c.keys.len()).arg(&c.keys[..]).arg(&c.args[..]);
                pipe.add_command(cmd);
            }
            pipe.cmd("WAIT").arg(1).arg(self.wait_ms);
            let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
            let values = conn
                .route_pipeline(pipe, 0, calls.len() + 1, route)
                .await
                .map_err(|e| Failure::Other(redis_error(&e)))?;
            let no_script =
                |v: &Value| matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript));
            if !eval && values.iter().any(no_script) {
                // This node has not seen the scripts yet (a new master, a restart): EVAL caches them.
                eval = true;
                continue;
            }
            if let Some(e) = values.iter().find_map(|v| match v {
                Value::ServerError(e) => Some(e),
                _ => None,
            }) {
                return Err(Failure::Other(server_error(e)));
            }
            let Some((wait, replies)) = values.split_last() else {
                return Err(Failure::Other(StoreError::internal("an empty pipeline reply")));
            };
            if replies.len() != calls.len() {
                return Err(Failure::Other(StoreError::internal("a pipeline reply of the wrong length")));
            }
            let replicas = reply::int("WAIT", wait).map_err(Failure::Other)?;
            if replicas < 1 {
                return Err(Failure::NoReplica(StoreError::Unavailable {
                    detail: format!(
                        "no replica confirmed the write within {} ms (WAIT 1): is the master's replica \
                         down or lagging?",
                        self.wait_ms
                    ),
                }));
            }
            return Ok(replies.to_vec());
        }
    }

    /// Runs the calls of several buckets: those whose buckets the same master serves (by the
    /// store's slot map) in one pipeline with one `WAIT`, the masters' pipelines concurrently.
    /// When a pipeline of several buckets fails for another reason than a missing replica (the
    /// slot map is stale after a failover or resharding), the slot map is refreshed and each of
    /// its buckets is run alone, the client then following redirections. Returns each bucket's
    /// replies, in the order of `work`.
    async fn run_buckets(&self, work: &[(Bucket, Vec<Call<'_>>)]) -> Result<Vec<Vec<Value>>, StoreError> {
        let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        {
            let map = self.slots.read().map_err(|_| StoreError::internal("slot map lock poisoned"))?;
            for (i, (bucket, _)) in work.iter().enumerate() {
                // Buckets in slots the map does not know go alone (keyed past every master).
                let master = map.master(bucket.slot()).unwrap_or(u16::MAX - (i % 1024) as u16);
                groups.entry(master).or_default().push(i);
            }
        }
        let runs = groups.into_values().map(|members| async move {
            let (slot, calls): (u16, Vec<&Call<'_>>) = match members.as_slice() {
                [] => return Ok(Vec::new()),
                [first, ..] => (work[*first].0.slot(), members.iter().flat_map(|&i| &work[i].1).collect()),
            };
            let owned: Vec<Call<'_>> = calls.iter().map(|c| (*c).clone()).collect();
            match self.run(slot, &owned).await {
                Ok(replies) => {
                    let mut replies = replies.into_iter();
                    Ok(members
                        .iter()
                        .map(|&i| (i, replies.by_ref().take(work[i].1.len()).collect()))
                        .collect())
                }
                Err(Failure::Other(_)) if members.len() > 1 => {
                    self.refresh_slots().await;
                    let alone = members.iter().map(|&i| async move {
                        let (bucket, calls) = &work[i];
                        self.run(bucket.slot(), calls).await.map(|r| (i, r)).map_err(Failure::into_store)
                    });
                    futures_util::future::join_all(alone).await.into_iter().collect::<Result<Vec<_>, _>>()
                }
                Err(e) => Err(e.into_store()),
            }
        });
        let mut out: Vec<Vec<Value>> = vec![Vec::new(); work.len()];
        for result in futures_util::future::join_all(runs).await {
            for (i, replies) in result? {
                out[i] = replies;
            }
        }
        Ok(out)
    }

    /// Asks every node that serves (as `CLUSTER NODES` lists them) for its persistence settings
    /// (see `persistence.rs`). `strict` (at connect): a node that cannot be reached is an error;
    /// otherwise it is skipped. Records the outcome: a refusal makes appends fail until a later
    /// check passes.
    async fn check_persistence(&self, strict: bool) -> Result<(), StoreError> {
        let outcome = self.persistence_verdict(strict).await;
        if let Ok(mut refused) = self.refused.lock() {
            *refused =
                outcome.as_ref().err().filter(|e| matches!(e, StoreError::UnsafePersistence { .. })).cloned();
        }
        outcome
    }

    async fn persistence_verdict(&self, strict: bool) -> Result<(), StoreError> {
        let fail = |detail: String| StoreError::Connect { target: self.target.clone(), detail };
        let login = persistence::Login {
            username: self.username.as_deref(),
            password: self.password.as_deref(),
            timeout: self.connect_timeout,
        };
        // The node list from the first seed that answers.
        let mut nodes = Err(String::new());
        for seed in &self.seeds {
            nodes = persistence::list_nodes(seed, &login).await;
            if nodes.is_ok() {
                break;
            }
        }
        let nodes = nodes.map_err(fail)?;
        let answers = futures_util::future::join_all(nodes.iter().map(|n| persistence::ask(n, &login))).await;
        let mut checked = BTreeSet::new();
        for (node, answer) in nodes.iter().zip(answers) {
            match answer {
                Ok(verdict) => {
                    if let Some(e) = persistence::refusal(&node.name(), verdict, self.trust_unverified) {
                        return Err(e);
                    }
                    if node.master {
                        checked.insert(node.name());
                    }
                }
                Err(persistence::Unreached::Connect(e)) if strict => {
                    return Err(fail(format!(
                        "cannot reach {} to check its persistence settings: {e}",
                        node.name()
                    )));
                }
                Err(persistence::Unreached::Connect(_)) => {}
            }
        }
        if let Ok(mut masters) = self.checked_masters.lock() {
            *masters = checked;
        }
        Ok(())
    }

    /// The error a re-check left, if any.
    fn refused(&self) -> Option<StoreError> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    /// Reads the cluster's slot map again (`CLUSTER SLOTS`); keeps the old one if that fails.
    /// A master it has not checked (a failover, a new node) has its persistence checked.
    async fn refresh_slots(&self) {
        let mut conn = self.conn();
        let reply = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await;
        let Ok(map) = reply.map_err(|_| ()).and_then(|v| SlotMap::parse(&v).map_err(|_| ())) else { return };
        let unchecked = match self.checked_masters.lock() {
            Ok(checked) => map.masters.iter().any(|m| !checked.contains(m)),
            Err(_) => true,
        };
        if let Ok(mut slots) = self.slots.write() {
            *slots = map;
        }
        if unchecked {
            // The outcome is recorded for `append`; a failed listing leaves the last one.
            let _ = self.check_persistence(false).await;
        }
    }

    /// Runs one script call on `mailbox` and returns its reply.
    async fn run_one(&self, lua: &Lua, mailbox: &MailboxId, args: Vec<Vec<u8>>) -> Result<Value, StoreError> {
        let call = Call { lua, keys: self.keys.mailbox(mailbox), args };
        let mut replies = self
            .run(Bucket::of(mailbox).slot(), std::slice::from_ref(&call))
            .await
            .map_err(Failure::into_store)?;
        replies.pop().ok_or_else(|| StoreError::internal("a pipeline reply of the wrong length"))
    }
}

/// The hash slot that holds every key of `mailbox` (all of a mailbox's keys share one slot): which
/// master serves it is what `CLUSTER SHARDS` says of that slot.
pub fn mailbox_slot(mailbox: &MailboxId) -> u16 {
    Bucket::of(mailbox).slot()
}

/// Every master's `CLUSTER INFO` must say `cluster_state:ok`.
fn check_cluster_state(info: &Value) -> Result<(), String> {
    let Value::Map(nodes) = info else {
        return Err("CLUSTER INFO gave an unexpected answer".into());
    };
    if nodes.is_empty() {
        return Err("the cluster has no masters".into());
    }
    for (node, answer) in nodes {
        let node = match node {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "a node".into(),
        };
        let text = match answer {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::VerbatimString { text, .. } => text.clone(),
            Value::ServerError(e) => return Err(format!("{node} answered CLUSTER INFO with {}", e.code())),
            _ => return Err(format!("{node} gave an unexpected answer to CLUSTER INFO")),
        };
        if !text.lines().any(|l| l.trim() == "cluster_state:ok") {
            return Err(format!(
                "{node} is not in cluster_state:ok (some hash slots are not served): repair the cluster \
                 (redis-cli --cluster check / fix) and start the gateway again"
            ));
        }
    }
    Ok(())
}

impl MailboxStore for RedisStore {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn register(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        check_time(now)?;
        let hash = CredentialHash::derive(&mailbox, credential);
        let v = self.run_one(&self.scripts.register, &mailbox, vec![hash.0.to_vec(), num(now.0)]).await?;
        match reply::int("register", &v)? {
            1 => Ok(()),
            _ => Err(StoreError::Unauthorized),
        }
    }

    async fn unregister(&self, mailbox: MailboxId, credential: &Credential) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let v = self
            .run_one(&self.scripts.unregister, &mailbox, vec![hash.0.to_vec(), mailbox.0.to_vec()])
            .await?;
        match reply::int("unregister", &v)? {
            1 => Ok(()),
            _ => Err(StoreError::Unauthorized),
        }
    }

    async fn append(&self, batch: Vec<Append>, now: UnixTime) -> Result<Vec<AppendOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        check_time(now)?;
        if let Some(e) = self.refused() {
            return Err(e);
        }
        let mut out: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
        // Bucket → mailbox → the batch positions of its items, in order.
        let mut buckets: BTreeMap<Bucket, BTreeMap<MailboxId, Vec<usize>>> = BTreeMap::new();
        for (i, item) in batch.iter().enumerate() {
            if item.payload.len() > self.limits.max_payload_len {
                out[i] = Some(AppendOutcome::TooLarge);
            } else {
                buckets
                    .entry(Bucket::of(&item.mailbox))
                    .or_default()
                    .entry(item.mailbox)
                    .or_default()
                    .push(i);
            }
        }
        let header = |mailbox: &MailboxId| {
            vec![
                num(now.0),
                num(self.limits.max_messages_per_mailbox),
                num(self.limits.max_bytes_per_mailbox),
                mailbox.0.to_vec(),
            ]
        };
        let mut work = Vec::with_capacity(buckets.len());
        let mut positions = Vec::with_capacity(buckets.len());
        for (bucket, mailboxes) in buckets {
            let mut calls = Vec::with_capacity(mailboxes.len());
            let mut items_of = Vec::with_capacity(mailboxes.len());
            for (mailbox, items) in mailboxes {
                let mut args = header(&mailbox);
                for &i in &items {
                    let a = &batch[i];
                    args.push(a.message_id.0.to_vec());
                    args.push(reply::record(&a.message_id, now, &a.payload));
                }
                calls.push(Call { lua: &self.scripts.append, keys: self.keys.mailbox(&mailbox), args });
                items_of.push(items);
            }
            work.push((bucket, calls));
            positions.push(items_of);
        }
        let replies = self.run_buckets(&work).await?;
        for (bucket_replies, items_of) in replies.iter().zip(positions) {
            if bucket_replies.len() != items_of.len() {
                return Err(StoreError::internal("a pipeline reply of the wrong length"));
            }
            for (v, items) in bucket_replies.iter().zip(items_of) {
                let outcomes = reply::append_outcomes(v, items.len())?;
                for (i, o) in items.into_iter().zip(outcomes) {
                    out[i] = Some(o);
                }
            }
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| StoreError::internal("an append item got no outcome")))
            .collect()
    }

    async fn fetch(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let limit = u64::try_from(limit).unwrap_or(u64::MAX).min(i64::MAX as u64);
        let args = vec![hash.0.to_vec(), num(after.map_or(0, |s| s.0)), num(limit)];
        let v = self.run_one(&self.scripts.fetch, &mailbox, args).await?;
        reply::fetched(&v)?.ok_or(StoreError::Unauthorized)
    }

    async fn delete_up_to(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        up_to: Seq,
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let args = vec![hash.0.to_vec(), num(up_to.0), num(self.forget_shift()), mailbox.0.to_vec()];
        let v = self.run_one(&self.scripts.delete_up_to, &mailbox, args).await?;
        reply::count("delete", &v)?.ok_or(StoreError::Unauthorized)
    }

    async fn delete(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        seqs: &[Seq],
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let mut args = vec![hash.0.to_vec(), num(self.forget_shift()), mailbox.0.to_vec()];
        args.extend(seqs.iter().map(|s| num(s.0)));
        let v = self.run_one(&self.scripts.delete, &mailbox, args).await?;
        reply::count("delete", &v)?.ok_or(StoreError::Unauthorized)
    }

    async fn expire(&self, now: UnixTime) -> Result<u64, StoreError> {
        check_time(now)?;
        // Negative before the epoch's first retention period: deleted messages' entries are moved
        // earlier than their stored_at (see `forget_shift`), so some may be due even then.
        let retention = i64::try_from(self.limits.retention.as_secs()).unwrap_or(i64::MAX);
        let cutoff = i64::try_from(now.0).unwrap_or(i64::MAX).saturating_sub(retention);
        // Which mailboxes of which bucket hold something stored at or before the cutoff.
        let due = Bucket::all().map(|bucket| async move {
            let mut conn = self.conn();
            let v: Value = redis::cmd("ZRANGE")
                .arg(self.keys.due(bucket))
                .arg("-inf")
                .arg(cutoff)
                .arg("BYSCORE")
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&e))?;
            Ok::<_, StoreError>((bucket, reply::mailbox_ids(&v)?))
        });
        let mut work = Vec::new();
        for result in futures_util::future::join_all(due).await {
            let (bucket, mailboxes) = result?;
            if !mailboxes.is_empty() {
                work.push((bucket, mailboxes));
            }
        }
        let work: Vec<(Bucket, Vec<Call<'_>>)> = work
            .into_iter()
            .map(|(bucket, mailboxes)| {
                let calls = mailboxes
                    .iter()
                    .map(|m| Call {
                        lua: &self.scripts.expire,
                        keys: self.keys.mailbox(m),
                        args: vec![cutoff.to_string().into_bytes(), m.0.to_vec()],
                    })
                    .collect();
                (bucket, calls)
            })
            .collect();
        let mut total = 0u64;
        for v in self.run_buckets(&work).await?.iter().flatten() {
            let live = reply::int("expire", v)?;
            total += u64::try_from(live).map_err(|_| StoreError::internal("a negative expiry count"))?;
        }
        // The periodic re-check of every node's persistence (see `persistence.rs`).
        self.check_persistence(false).await?;
        Ok(total)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let buckets = Bucket::all().map(|bucket| async move {
            let mut conn = self.conn();
            let v: Value = redis::cmd("HMGET")
                .arg(self.keys.stats(bucket))
                .arg("m")
                .arg("k")
                .arg("b")
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&e))?;
            reply::totals(&v)
        });
        let mut stats = StoreStats::default();
        for result in futures_util::future::join_all(buckets).await {
            let [m, k, b] = result?;
            stats.mailboxes += m;
            stats.messages += k;
            stats.payload_bytes += b;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, master: Value) -> Value {
        Value::Array(vec![Value::Int(start), Value::Int(end), master, node("127.0.0.1", 9)])
    }

    #[test]
    fn slot_map_from_cluster_slots() {
        let reply = Value::Array(vec![
            range(0, 5460, node("127.0.0.1", 7301)),
            range(5461, 10922, node("127.0.0.1", 7302)),
            range(10923, 16000, node("127.0.0.1", 7301)),
        ]);
        let map = SlotMap::parse(&reply).unwrap();
        assert_eq!(map.master(0), Some(0));
        assert_eq!(map.master(5461), Some(1));
        assert_eq!(map.master(16000), Some(0));
        assert_eq!(map.master(16001), None);
        assert_eq!(SlotMap::default().master(0), None);
    }

    #[test]
    fn malformed_cluster_slots_are_errors() {
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![range(0, 16384, node("h", 1))]),
            Value::Array(vec![range(-1, 3, node("h", 1))]),
            Value::Array(vec![range(5, 3, node("h", 1))]),
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1), Value::Nil])]),
            Value::Array(vec![range(0, 1, Value::Array(vec![Value::Int(1)]))]),
        ] {
            assert!(SlotMap::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(by_code("OOM", String::new()), StoreError::Full { .. }));
        assert!(matches!(by_code("MISCONF", String::new()), StoreError::Io { .. }));
        assert!(matches!(by_code("CLUSTERDOWN", String::new()), StoreError::Unavailable { .. }));
        assert!(matches!(by_code("NOREPLICAS", String::new()), StoreError::Unavailable { .. }));
        assert!(matches!(by_code("ERR", String::new()), StoreError::Internal { .. }));
    }

    #[test]
    fn wait_timeout_keeps_the_response_timeout_longer() {
        let c = RedisConfig::new(vec![]).with_wait_timeout(Duration::from_secs(30));
        assert_eq!((c.wait_timeout, c.response_timeout), (Duration::from_secs(30), Duration::from_secs(34)));
        let c = RedisConfig::new(vec![]).with_wait_timeout(Duration::from_millis(200));
        assert_eq!(c.response_timeout, Duration::from_secs(5));
    }

    #[test]
    fn seeds_are_checked() {
        assert!(parse_seed("127.0.0.1:7000").is_ok());
        assert!(parse_seed("[::1]:7000").is_ok());
        assert!(parse_seed("redis.internal:7000").is_ok());
        for bad in ["", "host", ":7000", "host:", "host:0", "host:70000", "a b:1", "u@h:1"] {
            assert!(parse_seed(bad).is_err(), "{bad}");
        }
    }
}
