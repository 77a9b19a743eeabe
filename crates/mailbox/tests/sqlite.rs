//! The SQLite backend: the conformance suite, the state machine against the model, and what only
//! SQLite has (full disk, reopening, the pinned schema, group commit, open errors).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use qanat_mailbox::conformance::{self, Factory, T0, credential, item, item_id, mailbox, payload};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mailbox::{Append, AppendOutcome, Limits, MailboxStore, Seq, StoreError, StoreStats};
use tempfile::TempDir;

/// Fresh stores, each a new file in one temporary directory (removed when the factory drops).
struct Sqlite {
    dir: TempDir,
    next: AtomicUsize,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite { dir: tempfile::tempdir().expect("temp dir"), next: AtomicUsize::new(0) }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(format!("mailbox-{}.db", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    fn open(&self, config: SqliteConfig) -> SqliteStore {
        SqliteStore::open(self.path(), config).expect("open")
    }
}

impl Factory for Sqlite {
    type Store = SqliteStore;
    fn make(&self, limits: Limits) -> impl Future<Output = SqliteStore> {
        let store = self.open(SqliteConfig { limits, ..SqliteConfig::default() });
        async move { store }
    }
}

qanat_mailbox::conformance_tests!(Sqlite::new());

#[tokio::test]
async fn run_all_passes() {
    conformance::run_all(&Sqlite::new()).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_behaves_like_the_model(ops in conformance::ops(40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let factory = Sqlite::new();
        let store = factory.open(SqliteConfig { limits: conformance::model_limits(), ..SqliteConfig::default() });
        rt.block_on(conformance::check_against_model(&store, &ops));
    }
}

fn big(to: u8, i: u16) -> Append {
    Append { mailbox: mailbox(to), item_id: item_id(1, i), payload: payload(i, 2048) }
}

/// The disk (here: the store's size cap) fills up: the append fails with `Full`, everything
/// acknowledged before is intact, and once there is room again the same batch goes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_append_and_loses_nothing() {
    let factory = Sqlite::new();
    let store = factory.open(SqliteConfig { max_database_bytes: Some(200 << 10), ..SqliteConfig::default() });
    store.register(mailbox(1), &credential(1), T0).await.unwrap();

    let mut acked = Vec::new();
    let mut i = 0u16;
    let failed = loop {
        let batch: Vec<Append> = (i..i + 4).map(|j| big(1, j)).collect();
        match store.append(batch.clone(), T0).await {
            Ok(out) => {
                assert!(out.iter().all(AppendOutcome::is_durable), "{out:?}");
                acked.extend(batch);
                i += 4;
            }
            Err(e) => break (e, batch),
        }
        assert!(i < 1000, "the size cap never bit");
    };
    assert!(matches!(failed.0, StoreError::Full { .. }), "{:?}", failed.0);
    assert!(failed.0.to_string().contains("raise the store's size limit"), "{}", failed.0);
    assert!(acked.len() >= 40, "only {} messages fit", acked.len());

    let check = |got: Vec<qanat_mailbox::StoredMessage>, want: &[Append]| {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.item_id, &g.payload), (w.item_id, &w.payload));
        }
    };
    check(store.fetch(mailbox(1), &credential(1), None, usize::MAX).await.unwrap(), &acked);
    // Reads and owner operations still work while full.
    assert_eq!(store.stats().await.unwrap().messages, acked.len() as u64);

    store.set_max_database_bytes(None).await.unwrap();
    let out = store.append(failed.1.clone(), T0).await.unwrap();
    assert!(out.iter().all(|o| matches!(o, AppendOutcome::Stored(_))), "{out:?}");
    acked.extend(failed.1);
    check(store.fetch(mailbox(1), &credential(1), None, usize::MAX).await.unwrap(), &acked);
}

/// Whatever was acknowledged is there after the store is dropped and opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything_acknowledged() {
    let factory = Sqlite::new();
    let path = factory.path();
    let config = SqliteConfig::default();
    let acked = {
        let store = SqliteStore::open(&path, config.clone()).unwrap();
        store.register(mailbox(1), &credential(1), T0).await.unwrap();
        store.register(mailbox(2), &credential(2), T0).await.unwrap();
        let out = store.append((0..20).map(|i| item(1 + (i % 2) as u8, 0, i)).collect(), T0).await.unwrap();
        assert!(out.iter().all(AppendOutcome::is_durable));
        store.delete(mailbox(1), &credential(1), &[Seq(1)]).await.unwrap();
        store.fetch(mailbox(1), &credential(1), None, 100).await.unwrap()
    };
    let store = SqliteStore::open(&path, config).unwrap();
    assert_eq!(store.fetch(mailbox(1), &credential(1), None, 100).await.unwrap(), acked);
    assert_eq!(
        store.stats().await.unwrap(),
        StoreStats { mailboxes: 2, messages: 19, payload_bytes: 19 * 16 }
    );
    // Seqs and de-duplication carry over.
    let out = store.append(vec![item(1, 0, 0), item(1, 0, 100)], T0).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Duplicate(Seq(1)), AppendOutcome::Stored(Seq(11))]);
}

/// Many concurrent appends share commits: fewer fsyncs than appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_appends() {
    let factory = Sqlite::new();
    let store = Arc::new(factory.open(SqliteConfig::default()));
    store.register(mailbox(1), &credential(1), T0).await.unwrap();
    let before = store.commit_stats();
    let tasks: Vec<_> = (0..64u16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let out = store.append(vec![item(1, t, i)], T0).await.unwrap();
                    assert!(matches!(out[0], AppendOutcome::Stored(_)));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = store.commit_stats();
    let (commits, appends) = (after.commits - before.commits, after.appends - before.appends);
    println!("group commit: {appends} appends in {commits} commits");
    assert_eq!(appends, 640);
    assert!(commits < appends, "{commits} commits for {appends} appends: no grouping");
    assert_eq!(store.stats().await.unwrap().messages, 640);
}

fn schema_dump(path: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    let mut out = format!("-- user_version = {version}\n");
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY type, name")
        .unwrap();
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)));
    for row in rows.unwrap() {
        let (kind, name, sql) = row.unwrap();
        out.push_str(&format!("\n-- {kind} {name}\n{sql};\n"));
    }
    out
}

/// The on-disk schema is pinned: a change to it must come as a new migration together with an
/// update of `tests/data/schema.sql` (and keep `v1_fixture` readable).
#[test]
fn schema_known_answer() {
    let factory = Sqlite::new();
    let path = factory.path();
    drop(SqliteStore::open(&path, SqliteConfig::default()).unwrap());
    let got = schema_dump(&path);
    let want = include_str!("data/schema.sql");
    assert_eq!(got, want, "the on-disk schema changed; this is what it is now:\n{got}");
}

/// A database written by schema version 1 (`tests/data/v1_fixture.sql`, made by hand from the v1
/// migration with credential hashes computed independently) opens and reads as it did, and is
/// migrated to the current version.
#[tokio::test]
async fn v1_database_still_reads() {
    let factory = Sqlite::new();
    let path = factory.path();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("data/v1_fixture.sql")).unwrap();
    }
    let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    let got = store.fetch(mailbox(1), &credential(1), None, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].seq, got[0].item_id, &got[0].payload[..], got[0].stored_at),
        (Seq(2), item_id(0, 2), &b"second"[..], T0)
    );
    assert_eq!((got[1].seq, got[1].item_id, &got[1].payload[..]), (Seq(3), item_id(0, 3), &b"third!"[..]));
    assert_eq!(store.fetch(mailbox(1), &credential(2), None, 10).await, Err(StoreError::Unauthorized));
    assert_eq!(store.stats().await.unwrap(), StoreStats { mailboxes: 2, messages: 2, payload_bytes: 12 });
    let out = store.append(vec![item(1, 0, 1), item(1, 0, 4), item(2, 0, 1)], T0).await.unwrap();
    assert_eq!(
        out,
        vec![AppendOutcome::Duplicate(Seq(1)), AppendOutcome::Stored(Seq(4)), AppendOutcome::Stored(Seq(1))]
    );
    store.register(mailbox(2), &credential(2), T0).await.unwrap();
    // Migrated to the current version: its tombstone is forgotten after the de-duplication window.
    drop(store);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let store = SqliteStore::open(&path, SqliteConfig::default()).unwrap();
    assert_eq!(store.expire(T0.plus(Limits::DEFAULT_REMEMBER_DELETED_IDS)).await, Ok(0));
    let out = store.append(vec![item(1, 0, 1), item(1, 0, 2)], T0).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Stored(Seq(5)), AppendOutcome::Duplicate(Seq(2))]);
}

fn open_error(path: &std::path::Path) -> String {
    let e = SqliteStore::open(path, SqliteConfig::default()).expect_err("open must fail");
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn open_errors_name_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let msg = open_error(&dir.path().join("no-such-dir/mailbox.db"));
    assert!(msg.contains("directory exists"), "{msg}");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let msg = open_error(&junk);
    assert!(msg.contains("not a SQLite database"), "{msg}");

    let msg = open_error(dir.path());
    assert!(msg.contains("cannot open"), "{msg}");

    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let msg = open_error(&newer);
    assert!(msg.contains("schema version is 99") && msg.contains("newer qanat"), "{msg}");
}
