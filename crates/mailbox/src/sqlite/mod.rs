//! The embedded backend: one SQLite database file.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`: a commit returns only after the
//! write-ahead log is fsynced. Every write (register, append, delete, expire) runs on one
//! dedicated writer thread that owns the only write connection, and each caller is answered only
//! after the transaction holding its write has committed. So an `Ok` from
//! [`append`](crate::MailboxStore::append) means the messages survive a crash or power loss,
//! and an `Err` means the gateway must not acknowledge.
//!
//! # Group commit
//!
//! Writers send their job over a channel. The writer thread takes the first job waiting, then
//! drains whatever else has queued (up to [`MAX_GROUP`] jobs), runs them all inside one
//! `BEGIN IMMEDIATE … COMMIT` and pays one fsync for the lot. Each job runs inside its own
//! savepoint, so one job's failure (a full quota is not a failure, but a full disk is) rolls
//! back only that job; if SQLite abandons the whole transaction, every job in the group fails
//! and nothing of it was stored. Under load, the next group gathers while the current one's
//! fsync is in flight: the more concurrent senders, the more appends per fsync.
//! [`SqliteStore::commit_stats`] counts both.
//!
//! Reads (fetch, stats) run on separate read-only connections in Tokio's blocking pool and see
//! only committed data.
//!
//! # On disk, and what a delete leaves
//!
//! See [`schema`] (the numbered migrations). A delete (by the owner, by unregistering, by
//! expiry) leaves no payload byte in the database file or its write-ahead log:
//!
//! - `secure_delete=ON`: SQLite overwrites deleted content with zeros in the page, so the page
//!   version written by the delete holds no payload;
//! - the older page versions still in the write-ahead log are removed by a
//!   `wal_checkpoint(TRUNCATE)`, which the writer runs after a commit that deleted something, at
//!   most once per [`SqliteConfig::checkpoint_interval`] (default 1 s) and never later than one
//!   interval after that commit (a checkpoint a reader holds up is retried an interval later);
//!   the copy into the database file overwrites the old page versions there, and the log is cut
//!   to zero bytes. The store runs a last one when it closes;
//! - `temp_store=MEMORY`: the statement journals of the per-job savepoints, which hold old page
//!   images, stay in memory instead of unnamed temporary files.
//!
//! A message its owner deleted keeps its row without the payload (mailbox, sequence number,
//! item id, storage time) only until [`expire`](crate::MailboxStore::expire) at
//! `stored_at + Limits::remember_deleted_ids`, so that a late retransmission of the packet is
//! reported as a duplicate while one can still arrive. `tests/sqlite_hygiene.rs` scans the files
//! byte for byte for deleted payloads. What stays beyond the files (file-system journals, flash
//! blocks) is in `docs/STORAGE.md`.
//!
//! # Disk budget
//!
//! [`SqliteConfig::max_database_bytes`] caps the database file (SQLite's `max_page_count`);
//! reaching it, like reaching the end of the disk, fails appends with [`StoreError::Full`]
//! and loses nothing already acknowledged.
//!
//! # The code
//!
//! [`SqliteStore::open`] (here) opens the file, migrates it ([`schema`]) and starts the writer
//! thread (`writer.rs`: jobs, group commit, the checkpoints after deletes); each
//! [`MailboxStore`](crate::MailboxStore) method (`operations.rs`) is one write job or one read on a
//! pooled read connection; `errors.rs` turns SQLite's errors into [`StoreError`]s.

mod errors;
mod operations;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use self::errors::{OpError, db_error, open_detail};
use self::writer::{Kind, WriteJob, writer_loop};
use crate::{Limits, StoreError};

/// Most write jobs committed in one transaction.
pub const MAX_GROUP: usize = 256;

/// Jobs that may wait for the writer before callers wait to enqueue (back-pressure).
const QUEUE: usize = 4 * MAX_GROUP;

/// Read connections kept open between reads.
const READERS_KEPT: usize = 4;

/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's largest `max_page_count`, which means "no limit".
const NO_PAGE_LIMIT: u64 = 0xffff_fffe;

/// How to open a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Quotas and retention.
    pub limits: Limits,
    /// Cap on the database's size in bytes (rounded down to whole pages; never below the current
    /// size); `None` for no cap but the disk's.
    pub max_database_bytes: Option<u64>,
    /// Longest a deleted payload stays in the write-ahead log: after a commit that deleted
    /// something the writer checkpoints and truncates the log within this time (and not more
    /// often). Zero checkpoints after every such commit.
    pub checkpoint_interval: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            limits: Limits::default(),
            max_database_bytes: None,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// The default [`SqliteConfig::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Commits and writes since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Write jobs (calls of register, append, delete…) that took part in a committed transaction.
    pub jobs: u64,
    /// Append calls among them.
    pub appends: u64,
    /// Checkpoints that truncated the write-ahead log after deletes.
    pub checkpoints: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
    appends: AtomicU64,
    checkpoints: AtomicU64,
}

/// The SQLite mailbox store. Needs a Tokio runtime for its methods (reads run in the blocking
/// pool); dropping it waits for the writer to finish the jobs already queued.
pub struct SqliteStore {
    path: PathBuf,
    limits: Limits,
    jobs: Option<mpsc::Sender<Box<dyn WriteJob>>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    counters: Arc<Counters>,
    page_size: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).field("limits", &self.limits).finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    ///
    /// Blocks while it opens the file and migrates; call it at start-up.
    pub fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |e: rusqlite::Error| StoreError::Open { path: path.clone(), detail: open_detail(&e) };
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path,
                detail: format!(
                    "SQLite refused write-ahead logging (journal mode stays {mode:?}); the store needs a \
                     local file system that supports shared memory"
                ),
            });
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(open_err)?;
        schema::migrate(&mut conn).map_err(|e| match e {
            schema::MigrateError::Db(e) => open_err(e),
            schema::MigrateError::TooNew { found } => StoreError::Open {
                path: path.clone(),
                detail: format!(
                    "its schema version is {found} but this build knows versions up to {}: run a newer qanat",
                    schema::MIGRATIONS.len()
                ),
            },
        })?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(open_err)?;
        let page_size = u64::try_from(page_size).unwrap_or(4096).max(512);
        set_max_pages(&conn, page_size, config.max_database_bytes).map_err(open_err)?;

        let reader = open_reader(&path).map_err(open_err)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer_counters = counters.clone();
        let interval = config.checkpoint_interval;
        let writer = std::thread::Builder::new()
            .name("mailbox-writer".into())
            .spawn(move || writer_loop(conn, rx, &writer_counters, interval))
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                detail: format!("cannot start writer thread: {e}"),
            })?;
        Ok(SqliteStore {
            path,
            limits: config.limits,
            jobs: Some(tx),
            writer: Some(writer),
            readers: Arc::new(Mutex::new(vec![reader])),
            counters,
            page_size,
        })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits and write jobs so far (group commit makes `commits` smaller than `jobs` under load).
    pub fn commit_stats(&self) -> CommitStats {
        CommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            jobs: self.counters.jobs.load(Ordering::Relaxed),
            appends: self.counters.appends.load(Ordering::Relaxed),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
        }
    }

    /// Changes the cap on the database's size (see [`SqliteConfig::max_database_bytes`]), for
    /// example after an operator freed disk space.
    pub async fn set_max_database_bytes(&self, max: Option<u64>) -> Result<(), StoreError> {
        let page_size = self.page_size;
        self.write(Kind::Other, move |conn| Ok(set_max_pages(conn, page_size, max)?)).await
    }

    /// Runs `f` on a read connection in the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map_err(|_| StoreError::internal("reader pool poisoned"))?.pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&path).map_err(db_error)?,
            };
            let result = f(&conn).map_err(OpError::into_store);
            if let Ok(mut pool) = readers.lock()
                && pool.len() < READERS_KEPT
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::internal(format!("read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered every queued job.
        drop(self.jobs.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable { detail: "the store's writer has stopped".into() }
}

fn open_reader(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

fn set_max_pages(conn: &Connection, page_size: u64, max: Option<u64>) -> Result<(), rusqlite::Error> {
    let pages = max.map_or(NO_PAGE_LIMIT, |b| (b / page_size).clamp(1, NO_PAGE_LIMIT));
    // The pragma answers with the limit it set; SQLite never sets it below the current size.
    let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| r.get(0))?;
    Ok(())
}
