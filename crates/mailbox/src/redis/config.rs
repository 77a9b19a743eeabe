//! How to reach the cluster and what to apply: [`RedisConfig`], its defaults, and the check of
//! its seed nodes (`host:port`). Nothing here is stored.

use std::time::Duration;

use crate::Limits;

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

/// Checks `host:port`.
pub(super) fn parse_seed(seed: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
