//! The Redis backend refuses a cluster whose persistence would make an acknowledgement a lie
//! (`src/redis/persistence.rs`). Each test starts its own one-node cluster (all 16,384 slots on
//! one master) on 127.0.0.1, on a free port, stopped by its PID when the test ends; the shared
//! test cluster (`QANAT_REDIS_SEEDS`, `appendfsync always` on every node) is accepted.
//!
//! Needs `redis-server` and `redis-cli` (skipped with a message when missing, except under
//! `CI=true`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qanat_mailbox::conformance::{T0, credential, item, mailbox};
use qanat_mailbox::redis::{RedisConfig, RedisStore};
use qanat_mailbox::{MailboxStore, StoreError};

fn installed() -> bool {
    let ok = Command::new("redis-server").arg("--version").output().is_ok()
        && Command::new("redis-cli").arg("--version").output().is_ok();
    if !ok {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true but redis-server is not installed");
        eprintln!("skipped: redis-server is not installed (apt-get install redis-server redis-tools)");
    }
    ok
}

/// A port free on 127.0.0.1 whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 && port != 6379 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

/// One `redis-server` in cluster mode serving every slot, killed (by its PID) on drop.
struct OneNode {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl OneNode {
    /// Starts a node with `extra` lines in its config, and assigns it every slot.
    fn start(extra: &str) -> OneNode {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\ndir {}\n\
                 logfile {}/redis.log\ncluster-enabled yes\ncluster-config-file nodes.conf\n\
                 save \"\"\n{extra}\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = OneNode { child, port, _dir: dir };
        node.wait_for(|n| n.cli(&["ping"]).is_some_and(|o| o.trim() == "PONG"), "to answer PING");
        node.cli(&["cluster", "addslotsrange", "0", "16383"]).expect("CLUSTER ADDSLOTSRANGE");
        node.wait_for(
            |n| n.cli(&["cluster", "info"]).is_some_and(|o| o.contains("cluster_state:ok")),
            "to reach cluster_state:ok",
        );
        node
    }

    /// `redis-cli -p PORT args…` (as the default user), its output if it succeeded. A node whose
    /// `CONFIG` is renamed takes `CONFIG` commands only under the new name.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("ERR")).then_some(text)
    }

    fn wait_for(&self, ok: impl Fn(&OneNode) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok(self) {
            assert!(Instant::now() < deadline, "redis-server on port {} did not come {what}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn seed(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn config(&self) -> RedisConfig {
        RedisConfig { key_prefix: format!("persist-{}", self.port), ..RedisConfig::new(vec![self.seed()]) }
    }
}

impl Drop for OneNode {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn refused_naming(e: &StoreError, node: &OneNode, want: &str) {
    let StoreError::UnsafePersistence { node: named, .. } = e else {
        panic!("expected a refusal, got {e:?}")
    };
    assert_eq!(named, &node.seed());
    let msg = e.to_string();
    assert!(msg.contains(&node.seed()) && msg.contains(want), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_everysec_is_refused_and_always_accepted() {
    if !installed() {
        return;
    }
    let node = OneNode::start("appendonly yes\nappendfsync everysec");
    let e = RedisStore::connect(node.config()).await.expect_err("everysec must be refused");
    refused_naming(&e, &node, "appendfsync is \"everysec\"");
    assert!(e.to_string().contains("appendfsync always"), "the fix: {e}");

    node.cli(&["config", "set", "appendfsync", "always"]).unwrap();
    let store = RedisStore::connect(node.config()).await.expect("appendfsync always is accepted");

    // Changed at run time: the next re-check (every expire) refuses, and appends fail with it.
    node.cli(&["config", "set", "appendfsync", "everysec"]).unwrap();
    let e = store.expire(T0).await.expect_err("the re-check must refuse");
    refused_naming(&e, &node, "everysec");
    let e = store.append(vec![item(1, 0, 0)], T0).await.expect_err("appends are refused");
    refused_naming(&e, &node, "everysec");
    // Fixed: the next re-check passes, and appends go on (this node has no replica, so they
    // fail for that reason now, not for persistence).
    node.cli(&["config", "set", "appendfsync", "always"]).unwrap();
    store.expire(T0).await.expect("the re-check passes");
    store.register(mailbox(1), &credential(1), T0).await.expect_err("no replica for WAIT 1");
    let after = store.append(vec![item(1, 0, 0)], T0).await;
    assert!(
        !matches!(after, Err(StoreError::UnsafePersistence { .. })),
        "still refused after the fix: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appendonly_no_is_refused() {
    if !installed() {
        return;
    }
    let node = OneNode::start("appendonly no\nappendfsync always");
    let e = RedisStore::connect(node.config()).await.expect_err("appendonly no must be refused");
    refused_naming(&e, &node, "appendonly is \"no\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_settings_are_refused_unless_trusted() {
    if !installed() {
        return;
    }
    // CONFIG disabled (renamed to nothing).
    let node = OneNode::start("appendonly yes\nappendfsync always\nrename-command CONFIG \"\"");
    let e = RedisStore::connect(node.config()).await.expect_err("unverifiable must be refused");
    refused_naming(&e, &node, "trust_persistence_unverified = true");
    let trusted = RedisConfig { trust_persistence_unverified: true, ..node.config() };
    RedisStore::connect(trusted).await.expect("the operator's opt-in is honoured");

    // An ACL user without +config|get: the same.
    let node = OneNode::start("appendonly yes\nappendfsync always");
    node.cli(&["acl", "setuser", "gw", "on", ">pw", "~*", "+@all", "-config"]).unwrap();
    let login = |trust| RedisConfig {
        username: Some("gw".into()),
        password: Some("pw".into()),
        trust_persistence_unverified: trust,
        ..node.config()
    };
    let e = RedisStore::connect(login(false)).await.expect_err("unverifiable must be refused");
    refused_naming(&e, &node, "+config|get");
    RedisStore::connect(login(true)).await.expect("the operator's opt-in is honoured");
    // The opt-in does not cover a node that does answer, with unsafe settings.
    node.cli(&["config", "set", "appendfsync", "everysec"]).unwrap();
    let everysec = RedisConfig { trust_persistence_unverified: true, ..node.config() };
    let e = RedisStore::connect(everysec).await.expect_err("a node that answers everysec is refused");
    refused_naming(&e, &node, "everysec");
}

/// The shared test cluster (every node `appendonly yes`, `appendfsync always`) is accepted, its
/// replicas included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_cluster_is_accepted() {
    let Ok(seeds) = std::env::var("QANAT_REDIS_SEEDS") else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true but QANAT_REDIS_SEEDS is not set");
        eprintln!("skipped: QANAT_REDIS_SEEDS is not set");
        return;
    };
    let seeds: Vec<String> = seeds.split(',').map(|s| s.trim().to_owned()).collect();
    let config = RedisConfig { key_prefix: "persist-shared".into(), ..RedisConfig::new(seeds) };
    let store = RedisStore::connect(config).await.expect("the test cluster is durable");
    store.expire(T0).await.expect("the re-check passes");
}
