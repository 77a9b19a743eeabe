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
//! message id, storage time) only until [`expire`](crate::MailboxStore::expire) at
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

pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Append, AppendOutcome, Credential, CredentialHash, Limits, MailboxId, MailboxStore, MessageId, Seq,
    StoreError, StoreStats, StoredMessage, UnixTime,
};

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

    /// Sends one job to the writer and waits for its answer (which comes after its commit).
    async fn write<T, F>(&self, kind: Kind, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job { op: Some(op), result: None, reply, kind });
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        jobs.send(job).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
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

/// What an operation can fail with: a database error (which may have aborted the transaction)
/// or an outcome of its own (unauthorized, corrupt data).
enum OpError {
    Db(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Db(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl OpError {
    fn into_store(self) -> StoreError {
        match self {
            OpError::Db(e) => db_error(e),
            OpError::Store(e) => e,
        }
    }
}

/// Classifies a SQLite error.
fn db_error(e: rusqlite::Error) -> StoreError {
    let detail = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full { detail },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt { detail },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable { detail },
        Some(
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::OutOfMemory,
        ) => StoreError::Io { detail },
        _ => StoreError::Internal { detail },
    }
}

/// Explains an error met while opening, with the fix where there is one.
fn open_detail(e: &rusqlite::Error) -> String {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::CannotOpen) => {
            "cannot open the file: check that its directory exists and that this user may read and write it"
        }
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            "permission denied: the file and its directory must be writable by this user"
        }
        Some(ErrorCode::NotADatabase) => "the file is not a SQLite database: check the path",
        Some(ErrorCode::DatabaseCorrupt) => "the database is corrupt: restore it from a backup",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the database is locked: is another process using it?"
        }
        Some(ErrorCode::DiskFull) => "the disk is full: free some space",
        _ => return e.to_string(),
    };
    format!("{hint} ({e})")
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::internal(format!("{what} {v} is out of range")))
}

/// For comparisons: a bound beyond `i64::MAX` means the same as `i64::MAX` (no stored value is
/// larger).
fn bound_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt(format!("negative {what} {v} in the database")))
}

fn blob32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v).map_err(|_| StoreError::corrupt(format!("{what} is not 32 bytes")))
}

// ---- the writer ------------------------------------------------------------------------------

/// A write queued for the writer thread.
trait WriteJob: Send {
    /// Runs the operation; `Ok(true)` if it succeeded (keep its writes), `Ok(false)` if it ended
    /// with its own error (undo its writes), `Err` on a database error.
    fn run(&mut self, conn: &Connection) -> Result<bool, rusqlite::Error>;
    /// Answers the caller with the result of `run` (after the commit).
    fn finish(self: Box<Self>);
    /// Answers the caller with `e` instead.
    fn fail(self: Box<Self>, e: StoreError);
    fn kind(&self) -> Kind;
}

/// What a write job does, for the counters and for checkpoints after deletes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Append,
    /// Deletes payloads or rows (delete, unregister, expire): the log must be truncated after it.
    Delete,
    Other,
}

struct Job<T, F> {
    op: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    kind: Kind,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, OpError> + Send,
{
    fn run(&mut self, conn: &Connection) -> Result<bool, rusqlite::Error> {
        let Some(op) = self.op.take() else {
            self.result = Some(Err(StoreError::internal("write job ran twice")));
            return Ok(false);
        };
        match op(conn) {
            Ok(v) => {
                self.result = Some(Ok(v));
                Ok(true)
            }
            Err(OpError::Store(e)) => {
                self.result = Some(Err(e));
                Ok(false)
            }
            Err(OpError::Db(e)) => Err(e),
        }
    }

    fn finish(self: Box<Self>) {
        let result = self.result.unwrap_or_else(|| Err(StoreError::internal("write job never ran")));
        // The caller may have gone away (its future dropped); nothing to do then.
        let _ = self.reply.send(result);
    }

    fn fail(self: Box<Self>, e: StoreError) {
        let _ = self.reply.send(Err(e));
    }

    fn kind(&self) -> Kind {
        self.kind
    }
}

fn writer_loop(
    conn: Connection,
    mut jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    counters: &Counters,
    interval: Duration,
) {
    // A runtime of this thread alone, for waiting on the queue with a deadline.
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
    let mut scrub = Scrub { due: None, last: Instant::now(), interval };
    loop {
        let first = match (scrub.due, &rt) {
            (Some(due), Some(rt)) => {
                let deadline = tokio::time::Instant::from_std(due);
                match rt.block_on(async { tokio::time::timeout_at(deadline, jobs.recv()).await }) {
                    Ok(job) => job,
                    Err(_elapsed) => {
                        scrub.checkpoint(&conn, counters);
                        continue;
                    }
                }
            }
            _ => jobs.blocking_recv(),
        };
        let Some(first) = first else { break };
        let mut group = Vec::with_capacity(16);
        group.push(first);
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if run_group(&conn, group, counters) {
            scrub.deleted();
        }
        if rt.is_none() || scrub.due.is_some_and(|due| due <= Instant::now()) {
            scrub.checkpoint(&conn, counters);
        }
    }
    if scrub.due.is_some() {
        scrub.checkpoint(&conn, counters);
    }
}

/// When the writer next truncates the write-ahead log to scrub deleted payloads out of it.
struct Scrub {
    /// When, if a commit deleted something since the last checkpoint.
    due: Option<Instant>,
    /// The last checkpoint (or the store's opening).
    last: Instant,
    interval: Duration,
}

impl Scrub {
    /// A commit deleted something: checkpoint an interval after the last checkpoint (now if that
    /// is past).
    fn deleted(&mut self) {
        if self.due.is_none() {
            let now = Instant::now();
            self.due = Some((self.last + self.interval).max(now));
        }
    }

    /// Copies the log into the database and truncates it. If a reader holds it up, tries again
    /// an interval later.
    fn checkpoint(&mut self, conn: &Connection, counters: &Counters) {
        let now = Instant::now();
        self.last = now;
        match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)) {
            Ok(0) => {
                self.due = None;
                counters.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            // Busy (a reader's snapshot still needs the log), or an error: again later.
            _ => self.due = Some(now + self.interval.max(Duration::from_millis(10))),
        }
    }
}

/// Runs a group of jobs in one transaction and answers each after the commit; whether a job
/// that deletes committed.
fn run_group(conn: &Connection, group: Vec<Box<dyn WriteJob>>, counters: &Counters) -> bool {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = db_error(e);
        group.into_iter().for_each(|j| j.fail(e.clone()));
        return false;
    }
    let mut done: Vec<Box<dyn WriteJob>> = Vec::with_capacity(group.len());
    let mut pending = group.into_iter();
    while let Some(mut job) = pending.next() {
        let outcome = conn.execute_batch("SAVEPOINT job").and_then(|()| job.run(conn));
        let undo = match outcome {
            Ok(true) => conn.execute_batch("RELEASE job").err(),
            Ok(false) => conn.execute_batch("ROLLBACK TO job; RELEASE job").err(),
            Err(e) => Some(e),
        };
        match undo {
            None => done.push(job),
            Some(e) if conn.is_autocommit() => {
                // SQLite abandoned the whole transaction (it may, on a full disk or an I/O
                // error): nothing of this group is stored, so every job in it fails.
                let e = db_error(e);
                done.into_iter().chain(std::iter::once(job)).chain(pending).for_each(|j| j.fail(e.clone()));
                return false;
            }
            Some(e) => {
                // Only this job failed: undo its writes and carry on with the others.
                if conn.execute_batch("ROLLBACK TO job; RELEASE job").is_err() {
                    let e = db_error(e);
                    let _ = conn.execute_batch("ROLLBACK");
                    done.into_iter()
                        .chain(std::iter::once(job))
                        .chain(pending)
                        .for_each(|j| j.fail(e.clone()));
                    return false;
                }
                job.fail(db_error(e));
            }
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.jobs.fetch_add(done.len() as u64, Ordering::Relaxed);
            let appends = done.iter().filter(|j| j.kind() == Kind::Append).count() as u64;
            counters.appends.fetch_add(appends, Ordering::Relaxed);
            let deleted = done.iter().any(|j| j.kind() == Kind::Delete);
            done.into_iter().for_each(|j| j.finish());
            deleted
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let e = db_error(e);
            done.into_iter().for_each(|j| j.fail(e.clone()));
            false
        }
    }
}

// ---- operations ------------------------------------------------------------------------------

/// The mailbox's row id, after checking the credential.
fn authorize(conn: &Connection, mailbox: &MailboxId, hash: &CredentialHash) -> Result<i64, OpError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT id, credential_hash FROM mailboxes WHERE mailbox_id = ?1")?
        .query_row([&mailbox.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((id, stored)) if hash.matches(&stored) => Ok(id),
        _ => Err(StoreError::Unauthorized.into()),
    }
}

fn register_op(
    conn: &Connection,
    mailbox: &MailboxId,
    hash: &CredentialHash,
    now: UnixTime,
) -> Result<(), OpError> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT credential_hash FROM mailboxes WHERE mailbox_id = ?1")?
        .query_row([&mailbox.0[..]], |r| r.get(0))
        .optional()?;
    match stored {
        Some(stored) if hash.matches(&stored) => Ok(()),
        Some(_) => Err(StoreError::Unauthorized.into()),
        None => {
            conn.prepare_cached(
                "INSERT INTO mailboxes (mailbox_id, credential_hash, registered_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&mailbox.0[..], &hash.0[..], to_i64(now.0, "time")?])?;
            Ok(())
        }
    }
}

fn append_op(
    conn: &Connection,
    batch: &[Append],
    now: UnixTime,
    limits: &Limits,
) -> Result<Vec<AppendOutcome>, OpError> {
    let now = to_i64(now.0, "time")?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        outcomes.push(append_one(conn, item, now, limits)?);
    }
    Ok(outcomes)
}

fn append_one(conn: &Connection, item: &Append, now: i64, limits: &Limits) -> Result<AppendOutcome, OpError> {
    if item.payload.len() > limits.max_payload_len {
        return Ok(AppendOutcome::TooLarge);
    }
    let row: Option<(i64, i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT id, next_seq, message_count, payload_bytes FROM mailboxes WHERE mailbox_id = ?1",
        )?
        .query_row([&item.mailbox.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((id, next_seq, count, bytes)) = row else {
        return Ok(AppendOutcome::UnknownMailbox);
    };
    let existing: Option<i64> = conn
        .prepare_cached("SELECT seq FROM messages WHERE mailbox = ?1 AND message_id = ?2")?
        .query_row(params![id, &item.message_id.0[..]], |r| r.get(0))
        .optional()?;
    if let Some(seq) = existing {
        return Ok(AppendOutcome::Duplicate(Seq(to_u64(seq, "sequence number")?)));
    }
    let count = to_u64(count, "message count")?;
    let bytes = to_u64(bytes, "byte count")?;
    let len = item.payload.len() as u64;
    if count >= limits.max_messages_per_mailbox || bytes.saturating_add(len) > limits.max_bytes_per_mailbox {
        return Ok(AppendOutcome::QuotaExceeded);
    }
    conn.prepare_cached(
        "INSERT INTO messages (mailbox, seq, message_id, stored_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, next_seq, &item.message_id.0[..], now, &item.payload[..]])?;
    conn.prepare_cached("UPDATE mailboxes SET next_seq = next_seq + 1 WHERE id = ?1")?.execute([id])?;
    Ok(AppendOutcome::Stored(Seq(to_u64(next_seq, "sequence number")?)))
}

fn fetch_op(
    conn: &Connection,
    mailbox: &MailboxId,
    hash: &CredentialHash,
    after: Option<Seq>,
    limit: usize,
) -> Result<Vec<StoredMessage>, OpError> {
    let id = authorize(conn, mailbox, hash)?;
    let after = bound_i64(after.map_or(0, |s| s.0));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, message_id, payload, stored_at FROM messages
         WHERE mailbox = ?1 AND seq > ?2 AND payload IS NOT NULL ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![id, after, limit], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, i64>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, message_id, payload, stored_at) = row?;
        out.push(StoredMessage {
            seq: Seq(to_u64(seq, "sequence number")?),
            message_id: MessageId(blob32(message_id, "message id")?),
            payload,
            stored_at: UnixTime(to_u64(stored_at, "time")?),
        });
    }
    Ok(out)
}

fn stats_op(conn: &Connection) -> Result<StoreStats, OpError> {
    let (mailboxes, messages, bytes): (i64, i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(message_count), 0), coalesce(sum(payload_bytes), 0) FROM mailboxes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(StoreStats {
        mailboxes: to_u64(mailboxes, "count")?,
        messages: to_u64(messages, "count")?,
        payload_bytes: to_u64(bytes, "count")?,
    })
}

impl MailboxStore for SqliteStore {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn register(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.write(Kind::Other, move |conn| register_op(conn, &mailbox, &hash, now)).await
    }

    async fn unregister(&self, mailbox: MailboxId, credential: &Credential) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.write(Kind::Delete, move |conn| {
            let id = authorize(conn, &mailbox, &hash)?;
            conn.prepare_cached("DELETE FROM mailboxes WHERE id = ?1")?.execute([id])?;
            Ok(())
        })
        .await
    }

    async fn append(&self, batch: Vec<Append>, now: UnixTime) -> Result<Vec<AppendOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let limits = self.limits.clone();
        self.write(Kind::Append, move |conn| append_op(conn, &batch, now, &limits)).await
    }

    async fn fetch(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.read(move |conn| fetch_op(conn, &mailbox, &hash, after, limit)).await
    }

    async fn delete_up_to(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        up_to: Seq,
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.write(Kind::Delete, move |conn| {
            let id = authorize(conn, &mailbox, &hash)?;
            let n = conn
                .prepare_cached(
                    "UPDATE messages SET payload = NULL WHERE mailbox = ?1 AND seq <= ?2 AND payload IS NOT NULL",
                )?
                .execute(params![id, bound_i64(up_to.0)])?;
            Ok(n as u64)
        })
        .await
    }

    async fn delete(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        seqs: &[Seq],
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let seqs = seqs.to_vec();
        self.write(Kind::Delete, move |conn| {
            let id = authorize(conn, &mailbox, &hash)?;
            let mut stmt = conn.prepare_cached(
                "UPDATE messages SET payload = NULL WHERE mailbox = ?1 AND seq = ?2 AND payload IS NOT NULL",
            )?;
            let mut n = 0u64;
            for seq in seqs {
                // A sequence number beyond i64 cannot be in the database.
                if let Ok(seq) = i64::try_from(seq.0) {
                    n += stmt.execute(params![id, seq])? as u64;
                }
            }
            Ok(n)
        })
        .await
    }

    async fn expire(&self, now: UnixTime) -> Result<u64, StoreError> {
        let retention = now.0.checked_sub(self.limits.retention.as_secs());
        let Some(deleted) = now.0.checked_sub(self.limits.deleted_id_lifetime()) else {
            return Ok(0);
        };
        self.write(Kind::Delete, move |conn| {
            // Ids of deleted messages, past the de-duplication window.
            conn.prepare_cached("DELETE FROM messages WHERE payload IS NULL AND stored_at <= ?1")?
                .execute([bound_i64(deleted)])?;
            let Some(cutoff) = retention else { return Ok(0) };
            let cutoff = bound_i64(cutoff);
            let live: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM messages WHERE stored_at <= ?1 AND payload IS NOT NULL",
                )?
                .query_row([cutoff], |r| r.get(0))?;
            conn.prepare_cached("DELETE FROM messages WHERE stored_at <= ?1")?.execute([cutoff])?;
            Ok(to_u64(live, "count")?)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(stats_op).await
    }
}
