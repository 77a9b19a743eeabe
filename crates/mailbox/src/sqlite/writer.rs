//! The writer thread: the one write connection, the jobs callers queue to it (`write`), group
//! commit (one `BEGIN IMMEDIATE … COMMIT` for every job waiting, each job in its own savepoint),
//! and the checkpoints that truncate the write-ahead log after a commit that deleted something
//! (why, in the store's module doc).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::errors::{OpError, db_error};
use super::{Counters, MAX_GROUP, SqliteStore, closed};
use crate::StoreError;

impl SqliteStore {
    /// Sends one job to the writer and waits for its answer (which comes after its commit).
    pub(super) async fn write<T, F>(&self, kind: Kind, op: F) -> Result<T, StoreError>
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
}

/// A write queued for the writer thread.
pub(super) trait WriteJob: Send {
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
pub(super) enum Kind {
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

pub(super) fn writer_loop(
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
