//! Running the scripts: the calls on one master's slots go in one pipeline followed by `WAIT 1`,
//! and nothing counts as done before a replica confirms it; `EVALSHA`, or `EVAL` on a node that has
//! not cached the scripts yet; the calls of many buckets grouped per master by the slot map
//! (`slots.rs`), each bucket alone again when a grouped pipeline fails; the errors Redis reports
//! classified into [`StoreError`]s.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisError, ServerError, ServerErrorKind, Value};

use super::keys::Bucket;
use super::scripts::Lua;
use super::{RedisStore, reply};
use crate::{MailboxId, StoreError};

/// One script call in a pipeline.
#[derive(Clone)]
pub(super) struct Call<'a> {
    pub(super) lua: &'a Lua,
    pub(super) keys: [Vec<u8>; 6],
    pub(super) args: Vec<Vec<u8>>,
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

impl RedisStore {
    pub(super) fn conn(&self) -> ClusterConnection {
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
    pub(super) async fn run_buckets(
        &self,
        work: &[(Bucket, Vec<Call<'_>>)],
    ) -> Result<Vec<Vec<Value>>, StoreError> {
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

    /// Runs one script call on `mailbox` and returns its reply.
    pub(super) async fn run_one(
        &self,
        lua: &Lua,
        mailbox: &MailboxId,
        args: Vec<Vec<u8>>,
    ) -> Result<Value, StoreError> {
        let call = Call { lua, keys: self.keys.mailbox(mailbox), args };
        let mut replies = self
            .run(Bucket::of(mailbox).slot(), std::slice::from_ref(&call))
            .await
            .map_err(Failure::into_store)?;
        replies.pop().ok_or_else(|| StoreError::internal("a pipeline reply of the wrong length"))
    }
}

/// Classifies an error the client reports.
pub(super) fn redis_error(e: &RedisError) -> StoreError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        assert!(matches!(by_code("OOM", String::new()), StoreError::Full { .. }));
        assert!(matches!(by_code("MISCONF", String::new()), StoreError::Io { .. }));
        assert!(matches!(by_code("CLUSTERDOWN", String::new()), StoreError::Unavailable { .. }));
        assert!(matches!(by_code("NOREPLICAS", String::new()), StoreError::Unavailable { .. }));
        assert!(matches!(by_code("ERR", String::new()), StoreError::Internal { .. }));
    }
}
