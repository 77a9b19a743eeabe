//! The check that makes an acknowledgement true: every node of the cluster, masters and replicas,
//! must run `appendonly yes` with `appendfsync always`.
//!
//! `WAIT 1` proves that a replica *received* a write, not that anything is on a disk: with
//! `appendfsync everysec` a master acknowledges writes it has not fsynced, and a power loss of the
//! master and its replica (one rack, one hypervisor) loses up to a second of them; with
//! `appendonly no` a restart loses everything since the last snapshot. A replica matters as much
//! as its master, since a failover makes it the master. So the store asks each node
//! (`CONFIG GET appendonly`, `CONFIG GET appendfsync`, over a connection of its own) and refuses to
//! serve with [`StoreError::UnsafePersistence`], which names the node and the fix, when a node says
//! anything else.
//!
//! When it cannot ask (`CONFIG` renamed or disabled, or an ACL without `+config|get`) it refuses
//! too, unless the operator has checked the nodes and set
//! [`RedisConfig::trust_persistence_unverified`](super::RedisConfig::trust_persistence_unverified)
//! (`trust_persistence_unverified = true` in the gateway's `[gateway.redis]` table).
//!
//! When: at [`connect`](super::RedisStore::connect) (every node listed by `CLUSTER NODES` must
//! answer), whenever the store's slot map shows a master it has not checked (after a failover or
//! a resharding), and at every [`expire`](crate::MailboxStore::expire) (every five minutes on a
//! gateway), which re-checks all nodes: a node whose settings were changed at run time is caught
//! there. After a failed re-check the store answers every write with the error until a re-check
//! passes; a node that cannot be reached during a re-check is skipped (it serves nothing while
//! unreachable and is checked once it is back).

use std::collections::BTreeSet;
use std::time::Duration;

use redis::{AsyncConnectionConfig, IntoConnectionInfo, RedisConnectionInfo, Value};

use crate::StoreError;

/// A node of the cluster as `CLUSTER NODES` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) master: bool,
}

impl Node {
    /// `host:port`, for messages to the operator.
    pub(super) fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The nodes of a `CLUSTER NODES` answer that serve (not failed, not without an address, not in
/// a handshake). `asked` is the host the answer came from: a node that has never met another
/// lists itself without an address, and is that host.
pub(super) fn parse_cluster_nodes(text: &str, asked: Option<&str>) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
            return Err("CLUSTER NODES gave a line without address and flags".into());
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if flags.iter().any(|f| matches!(*f, "fail" | "fail?" | "noaddr" | "handshake")) {
            continue;
        }
        // ip:port@cport[,hostname]
        let host_port = addr.split(['@', ',']).next().unwrap_or("");
        let Some((host, port)) = host_port.rsplit_once(':') else {
            return Err(format!("CLUSTER NODES gave an address {addr:?} without a port"));
        };
        let port = port.parse::<u16>().map_err(|_| format!("CLUSTER NODES gave a bad port in {addr:?}"))?;
        let host = match (host, asked) {
            ("", Some(asked)) if flags.contains(&"myself") => asked,
            (host, _) => host,
        };
        if host.is_empty() || port == 0 {
            continue;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        nodes.push(Node { host, port, master: flags.contains(&"master") });
    }
    if nodes.is_empty() {
        return Err("CLUSTER NODES listed no node that serves".into());
    }
    Ok(nodes)
}

/// What a node's answers say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// `appendonly yes`, `appendfsync always`.
    Durable,
    /// The node answered with settings that lose acknowledged writes: what is wrong.
    Unsafe(String),
    /// The node would not say (`CONFIG` renamed, disabled or not permitted): what it answered.
    Unverified(String),
}

/// Judges the answers to `CONFIG GET appendonly` and `CONFIG GET appendfsync` (each the value, or
/// the error the node gave).
pub(super) fn judge(
    appendonly: Result<Option<String>, String>,
    appendfsync: Result<Option<String>, String>,
) -> Verdict {
    let (appendonly, appendfsync) = match (appendonly, appendfsync) {
        (Ok(a), Ok(f)) => (a, f),
        (Err(e), _) | (_, Err(e)) => return Verdict::Unverified(e),
    };
    let (Some(appendonly), Some(appendfsync)) = (appendonly, appendfsync) else {
        return Verdict::Unverified("CONFIG GET returned no value".into());
    };
    let mut wrong = Vec::new();
    if !appendonly.eq_ignore_ascii_case("yes") {
        wrong.push(format!("appendonly is {appendonly:?}"));
    }
    if !appendfsync.eq_ignore_ascii_case("always") {
        wrong.push(format!("appendfsync is {appendfsync:?}"));
    }
    if wrong.is_empty() { Verdict::Durable } else { Verdict::Unsafe(wrong.join(" and ")) }
}

/// The fix, for the operator.
const FIX: &str = "set `appendonly yes` and `appendfsync always` in the node's redis.conf (at run time: \
                   CONFIG SET appendonly yes, CONFIG SET appendfsync always, CONFIG REWRITE) on every \
                   master and replica";

/// The error for a node's verdict, or `None` when it may serve.
pub(super) fn refusal(node: &str, verdict: Verdict, trust_unverified: bool) -> Option<StoreError> {
    match verdict {
        Verdict::Durable => None,
        Verdict::Unverified(_) if trust_unverified => None,
        Verdict::Unsafe(what) => Some(StoreError::UnsafePersistence {
            node: node.to_owned(),
            detail: format!("{what}, so an acknowledged write can be lost: {FIX}"),
        }),
        Verdict::Unverified(answer) => Some(StoreError::UnsafePersistence {
            node: node.to_owned(),
            detail: format!(
                "its persistence settings cannot be read (CONFIG GET answered: {answer}): allow the \
                 gateway's Redis user `CONFIG GET` (ACL +config|get), or, once you have checked that \
                 every node runs appendonly yes and appendfsync always, set \
                 trust_persistence_unverified = true in [gateway.redis]"
            ),
        }),
    }
}

/// How to log in to a node.
pub(super) struct Login<'a> {
    pub(super) username: Option<&'a str>,
    pub(super) password: Option<&'a str>,
    pub(super) timeout: Duration,
}

/// Why a node could not be judged.
pub(super) enum Unreached {
    /// No connection (down, unreachable, login refused).
    Connect(String),
}

/// A connection of its own to one node.
pub(super) async fn connect(
    host: &str,
    port: u16,
    login: &Login<'_>,
) -> Result<redis::aio::MultiplexedConnection, Unreached> {
    let mut settings = RedisConnectionInfo::default();
    if let Some(u) = login.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = login.password {
        settings = settings.set_password(p);
    }
    let info = (host.to_owned(), port)
        .into_connection_info()
        .map_err(|e| Unreached::Connect(e.to_string()))?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(|e| Unreached::Connect(e.to_string()))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(login.timeout))
        .set_response_timeout(Some(login.timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| Unreached::Connect(e.to_string()))
}

/// The nodes that serve, as `host:port` (a seed) says.
pub(super) async fn list_nodes(seed: &str, login: &Login<'_>) -> Result<Vec<Node>, String> {
    let (host, port) = seed.rsplit_once(':').ok_or_else(|| format!("seed {seed:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().map_err(|_| format!("seed {seed:?} has no valid port"))?;
    let Unreached::Connect(e) = match connect(host, port, login).await {
        Ok(mut conn) => {
            let v: Value = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.map_err(|e| {
                format!("CLUSTER NODES failed on {seed} (allow the ACL user +cluster|nodes): {e}")
            })?;
            let text = match v {
                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::VerbatimString { text, .. } => text,
                _ => return Err(format!("{seed} gave an unexpected answer to CLUSTER NODES")),
            };
            return parse_cluster_nodes(&text, Some(host));
        }
        Err(e) => e,
    };
    Err(format!("cannot reach {seed}: {e}"))
}

/// Asks one node for its settings, over a connection of its own.
pub(super) async fn ask(node: &Node, login: &Login<'_>) -> Result<Verdict, Unreached> {
    let mut conn = connect(&node.host, node.port, login).await?;
    let mut get = async |name: &str| -> Result<Option<String>, String> {
        let v: Value =
            redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await.map_err(|e| {
                // The node's own words (e.g. "ERR unknown command 'CONFIG'" or "NOPERM …").
                match e.code() {
                    Some(code) => format!("{code} {}", e.detail().unwrap_or_default()).trim().to_owned(),
                    None => e.to_string(),
                }
            })?;
        Ok(config_value(&v, name))
    };
    let appendonly = get("appendonly").await;
    let appendfsync = get("appendfsync").await;
    Ok(judge(appendonly, appendfsync))
}

/// The value of `name` in a `CONFIG GET` answer (an array of name, value pairs, or a map).
fn config_value(v: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.first().and_then(text).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|pair| pair.get(1).and_then(text)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

impl super::RedisStore {
    /// Asks every node that serves (as `CLUSTER NODES` lists them) for its persistence settings
    /// (see the module's doc). `strict` (at connect): a node that cannot be reached is an error;
    /// otherwise it is skipped. Records the outcome: a refusal makes appends fail until a later
    /// check passes.
    pub(super) async fn check_persistence(&self, strict: bool) -> Result<(), StoreError> {
        let outcome = self.persistence_verdict(strict).await;
        if let Ok(mut refused) = self.refused.lock() {
            *refused =
                outcome.as_ref().err().filter(|e| matches!(e, StoreError::UnsafePersistence { .. })).cloned();
        }
        outcome
    }

    async fn persistence_verdict(&self, strict: bool) -> Result<(), StoreError> {
        let fail = |detail: String| StoreError::Connect { target: self.target.clone(), detail };
        let login = Login {
            username: self.username.as_deref(),
            password: self.password.as_deref(),
            timeout: self.connect_timeout,
        };
        // The node list from the first seed that answers.
        let mut nodes = Err(String::new());
        for seed in &self.seeds {
            nodes = list_nodes(seed, &login).await;
            if nodes.is_ok() {
                break;
            }
        }
        let nodes = nodes.map_err(fail)?;
        let answers = futures_util::future::join_all(nodes.iter().map(|n| ask(n, &login))).await;
        let mut checked = BTreeSet::new();
        for (node, answer) in nodes.iter().zip(answers) {
            match answer {
                Ok(verdict) => {
                    if let Some(e) = refusal(&node.name(), verdict, self.trust_unverified) {
                        return Err(e);
                    }
                    if node.master {
                        checked.insert(node.name());
                    }
                }
                Err(Unreached::Connect(e)) if strict => {
                    return Err(fail(format!(
                        "cannot reach {} to check its persistence settings: {e}",
                        node.name()
                    )));
                }
                Err(Unreached::Connect(_)) => {}
            }
        }
        if let Ok(mut masters) = self.checked_masters.lock() {
            *masters = checked;
        }
        Ok(())
    }

    /// The error a re-check left, if any.
    pub(super) fn refused(&self) -> Option<StoreError> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_parsed() {
        let text = "\
07c37 127.0.0.1:30004@31004 slave e7d1e 0 1426238317239 4 connected
67ed2 127.0.0.1:30002@31002,host-b master - 0 1426238316232 2 connected 5461-10922
292f8 127.0.0.1:30003@31003 myself,master - 0 0 3 connected 10923-16383
6ec23 127.0.0.1:30005@31005 slave,fail 67ed2 0 1426238316232 5 disconnected
824fe :0@0 master,noaddr - 1 1 0 disconnected
e7d1e ::1:30001@31001 master - 0 1426238316232 1 connected 0-5460
";
        let nodes = parse_cluster_nodes(text, None).unwrap();
        let names: Vec<(String, bool)> = nodes.iter().map(|n| (n.name(), n.master)).collect();
        assert_eq!(
            names,
            vec![
                ("127.0.0.1:30004".to_owned(), false),
                ("127.0.0.1:30002".to_owned(), true),
                ("127.0.0.1:30003".to_owned(), true),
                ("[::1]:30001".to_owned(), true),
            ]
        );
        assert!(parse_cluster_nodes("", None).is_err());
        assert!(parse_cluster_nodes("abc", None).is_err());
        assert!(parse_cluster_nodes("abc 127.0.0.1@1 master", None).is_err());
        // A lone node does not know its address: it is the one asked.
        let lone = "e051b :7399@17399 myself,master - 0 0 0 connected 0-16383\n";
        assert!(parse_cluster_nodes(lone, None).is_err());
        let nodes = parse_cluster_nodes(lone, Some("127.0.0.1")).unwrap();
        assert_eq!(nodes, vec![Node { host: "127.0.0.1".into(), port: 7399, master: true }]);
    }

    #[test]
    fn only_appendonly_with_fsync_always_is_durable() {
        let s = |v: &str| Ok(Some(v.to_owned()));
        assert_eq!(judge(s("yes"), s("always")), Verdict::Durable);
        assert!(matches!(judge(s("yes"), s("everysec")), Verdict::Unsafe(w) if w.contains("everysec")));
        assert!(matches!(judge(s("no"), s("always")), Verdict::Unsafe(w) if w.contains("appendonly")));
        assert!(matches!(judge(s("no"), s("no")), Verdict::Unsafe(w) if w.contains(" and ")));
        assert!(matches!(judge(Err("ERR unknown command".into()), s("always")), Verdict::Unverified(_)));
        assert!(matches!(judge(s("yes"), Ok(None)), Verdict::Unverified(_)));
    }

    #[test]
    fn refusals_name_the_node_and_the_fix() {
        let e =
            refusal("10.0.0.1:7000", Verdict::Unsafe("appendfsync is \"everysec\"".into()), true).unwrap();
        let msg = e.to_string();
        assert!(msg.contains("10.0.0.1:7000") && msg.contains("appendfsync always"), "{msg}");
        let e = refusal("10.0.0.1:7000", Verdict::Unverified("ERR unknown command".into()), false).unwrap();
        assert!(e.to_string().contains("trust_persistence_unverified = true"), "{e}");
        assert!(refusal("n", Verdict::Unverified("x".into()), true).is_none());
        assert!(refusal("n", Verdict::Durable, false).is_none());
    }

    #[test]
    fn config_get_answers_are_read() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            config_value(&Value::Array(vec![b("appendonly"), b("yes")]), "appendonly"),
            Some("yes".into())
        );
        assert_eq!(
            config_value(&Value::Map(vec![(b("appendfsync"), b("always"))]), "appendfsync"),
            Some("always".into())
        );
        assert_eq!(config_value(&Value::Array(vec![]), "appendonly"), None);
        assert_eq!(config_value(&Value::Nil, "appendonly"), None);
    }
}
