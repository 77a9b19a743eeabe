//! Storage hygiene of the SQLite backend: what a delete leaves in the files. Each test stores
//! payloads that carry a random 32-byte marker, deletes them (by the owner, by unregistering, by
//! expiry) and scans the database, its `-wal` and its `-shm` byte for byte: the marker must be
//! gone. Each also checks that the marker is there before the delete, and
//! `without_a_checkpoint_the_log_keeps_the_payload` that it stays in the log when the store does
//! not checkpoint, so that the scan can fail.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use qanat_mailbox::conformance::{T0, credential, mailbox};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mailbox::{Append, AppendOutcome, ItemId, Limits, MailboxId, MailboxStore, Seq};
use sha2::{Digest, Sha256};

/// 32 bytes no test writes twice: SHA-256 of the time, the process id and `tag`.
fn marker(tag: &str) -> [u8; 32] {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    let mut h = Sha256::new();
    h.update(now.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(tag.as_bytes());
    h.finalize().into()
}

/// A 2 KiB payload that holds `marker` twice (at the start and in the middle) among filler.
fn payload_with(marker: &[u8; 32]) -> Vec<u8> {
    let mut p = vec![0x5a; 2048];
    p[..32].copy_from_slice(marker);
    p[1000..1032].copy_from_slice(marker);
    p
}

fn append_of(to: MailboxId, marker: &[u8; 32]) -> Append {
    Append { mailbox: to, item_id: ItemId(Sha256::digest(marker).into()), payload: payload_with(marker) }
}

/// The database file and its two companions.
fn files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// The files (of `db`, `-wal`, `-shm`) that hold `needle` anywhere.
fn holding(db: &Path, needle: &[u8]) -> Vec<String> {
    files(db)
        .iter()
        .filter(|f| match std::fs::read(f) {
            Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => panic!("reading {}: {e}", f.display()),
        })
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Polls until no file of `db` holds any of `needles`, failing after a deadline.
async fn gone_within(db: &Path, needles: &[&[u8]], deadline: Duration) {
    let until = Instant::now() + deadline;
    loop {
        let left: Vec<(usize, Vec<String>)> = needles
            .iter()
            .enumerate()
            .map(|(i, n)| (i, holding(db, n)))
            .filter(|(_, files)| !files.is_empty())
            .collect();
        if left.is_empty() {
            let took = deadline.saturating_sub(until.saturating_duration_since(Instant::now()));
            eprintln!("clean after {} ms", took.as_millis());
            return;
        }
        assert!(Instant::now() < until, "still on disk after {deadline:?}: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailbox.db");
    Fixture { _dir: dir, db }
}

fn open(db: &Path, limits: Limits, checkpoint_interval: Duration) -> SqliteStore {
    SqliteStore::open(db, SqliteConfig { limits, checkpoint_interval, ..SqliteConfig::default() }).unwrap()
}

/// How long a test waits for the files to be clean: the checkpoint interval (1 s) and a margin
/// for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_payloads_leave_the_files() {
    let f = fixture();
    let store = open(&f.db, Limits::default(), Duration::from_secs(1));
    let (m, c) = (mailbox(1), credential(1));
    store.register(m, &c, T0).await.unwrap();
    let [a, b, keep] = [marker("a"), marker("b"), marker("keep")];
    let out = store.append(vec![append_of(m, &a), append_of(m, &b), append_of(m, &keep)], T0).await.unwrap();
    assert_eq!(
        out,
        vec![AppendOutcome::Stored(Seq(1)), AppendOutcome::Stored(Seq(2)), AppendOutcome::Stored(Seq(3))]
    );
    // The control: before the delete, every marker is on disk.
    for x in [&a, &b, &keep] {
        assert!(!holding(&f.db, x).is_empty(), "a stored payload is not on disk: the scan is broken");
    }

    assert_eq!(store.delete_up_to(m, &c, Seq(1)).await, Ok(1));
    assert_eq!(store.delete(m, &c, &[Seq(2)]).await, Ok(1));
    gone_within(&f.db, &[&a, &b], DEADLINE).await;
    // The live message is intact, and a resend of a deleted one is still a duplicate.
    let got = store.fetch(m, &c, None, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, payload_with(&keep));
    assert!(!holding(&f.db, &keep).is_empty());
    let out = store.append(vec![append_of(m, &a)], T0).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Duplicate(Seq(1))]);

    // And after the store is closed and opened again.
    drop(store);
    gone_within(&f.db, &[&a, &b], Duration::ZERO).await;
    let store = open(&f.db, Limits::default(), Duration::from_secs(1));
    assert_eq!(store.fetch(m, &c, None, 10).await.unwrap().len(), 1);
    gone_within(&f.db, &[&a, &b], Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_mailbox_leaves_the_files() {
    let f = fixture();
    let store = open(&f.db, Limits::default(), Duration::from_secs(1));
    // A mailbox id of its own, so that the scan can look for it too.
    let gone = MailboxId(marker("mailbox"));
    let c = credential(1);
    store.register(gone, &c, T0).await.unwrap();
    store.register(mailbox(2), &credential(2), T0).await.unwrap();
    let [a, b, keep] = [marker("a"), marker("b"), marker("keep")];
    let ids = [append_of(gone, &a).item_id, append_of(gone, &b).item_id];
    let out = store
        .append(vec![append_of(gone, &a), append_of(gone, &b), append_of(mailbox(2), &keep)], T0)
        .await
        .unwrap();
    assert!(out.iter().all(|o| matches!(o, AppendOutcome::Stored(_))), "{out:?}");
    // Message a deleted first (a tombstone), b still live when the mailbox goes.
    assert_eq!(store.delete(gone, &c, &[Seq(1)]).await, Ok(1));
    for x in [&b[..], &gone.0[..], &ids[0].0[..], &ids[1].0[..]] {
        assert!(!holding(&f.db, x).is_empty(), "not on disk before unregister: the scan is broken");
    }

    store.unregister(gone, &c).await.unwrap();
    // Payloads, the mailbox id and the item ids: nothing of the mailbox stays.
    gone_within(&f.db, &[&a, &b, &gone.0, &ids[0].0, &ids[1].0], DEADLINE).await;
    assert!(!holding(&f.db, &keep).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_payloads_and_forgotten_ids_leave_the_files() {
    let f = fixture();
    let limits = Limits {
        retention: Duration::from_secs(100),
        remember_deleted_ids: Duration::from_secs(30),
        ..Limits::default()
    };
    let store = open(&f.db, limits, Duration::from_secs(1));
    let (m, c) = (mailbox(1), credential(1));
    store.register(m, &c, T0).await.unwrap();
    let [old, deleted, young] = [marker("old"), marker("deleted"), marker("young")];
    let deleted_id = append_of(m, &deleted).item_id;
    store.append(vec![append_of(m, &old), append_of(m, &deleted)], T0).await.unwrap();
    store.append(vec![append_of(m, &young)], T0.plus(Duration::from_secs(90))).await.unwrap();
    assert_eq!(store.delete(m, &c, &[Seq(2)]).await, Ok(1));
    gone_within(&f.db, &[&deleted], DEADLINE).await;
    // The deleted message's id stays for de-duplication, inside its window.
    assert!(!holding(&f.db, &deleted_id.0).is_empty(), "the tombstone's id is not on disk");
    assert!(!holding(&f.db, &old).is_empty());

    // Past the window, the tombstone goes (with its id); the old message is still live.
    assert_eq!(store.expire(T0.plus(Duration::from_secs(30))).await, Ok(0));
    gone_within(&f.db, &[&deleted_id.0], DEADLINE).await;
    assert!(!holding(&f.db, &old).is_empty());
    // Past retention, the old message goes too (its payload and its id).
    let old_id = append_of(m, &old).item_id;
    assert_eq!(store.expire(T0.plus(Duration::from_secs(100))).await, Ok(1));
    gone_within(&f.db, &[&old, &old_id.0], DEADLINE).await;
    assert!(!holding(&f.db, &young).is_empty());
}

/// The control for the tests above: with no checkpoint due (an interval of an hour), the payload
/// of a deleted message is still in the write-ahead log, as SQLite's log keeps old page versions
/// until a checkpoint; `secure_delete` alone does not remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_checkpoint_the_log_keeps_the_payload() {
    let f = fixture();
    let store = open(&f.db, Limits::default(), Duration::from_secs(3600));
    let (m, c) = (mailbox(1), credential(1));
    store.register(m, &c, T0).await.unwrap();
    let a = marker("a");
    store.append(vec![append_of(m, &a)], T0).await.unwrap();
    assert_eq!(store.delete(m, &c, &[Seq(1)]).await, Ok(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(holding(&f.db, &a), vec!["mailbox.db-wal".to_owned()]);
    assert_eq!(store.commit_stats().checkpoints, 0);
    // Closing the store runs the checkpoint it owed.
    drop(store);
    gone_within(&f.db, &[&a], Duration::ZERO).await;
}
