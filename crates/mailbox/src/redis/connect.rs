//! Connecting: the configuration checked, [`RedisConfig::connections`] cluster connections
//! opened, every master's `cluster_state:ok`, every node's persistence (`persistence.rs`), the slot
//! map, and the stored layout's version. The one key this module writes, `<prefix>:format`, holds
//! [`FORMAT_VERSION`]: the first store on a prefix writes it, every later one checks it.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, RwLock};

use redis::Value;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};

use super::config::parse_seed;
use super::keys::Keys;
use super::scripts::Scripts;
use super::slots::SlotMap;
use super::{FORMAT_VERSION, RedisConfig, RedisStore};
use crate::StoreError;

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
