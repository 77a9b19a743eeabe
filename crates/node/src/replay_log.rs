//! The replay log: what makes a mix's or gateway's replay protection survive a restart.
//!
//! A node's replay filters (one per packet key, in `qanat-mixnet`) live in memory. The core hands
//! out every tag a filter accepts ([`qanat_mixnet::Mix::poll_replay_log`]) and holds the packet
//! until the node reports the tag durable; this module is the node's side: one append-only file
//! per packet key, written by one thread that commits every batch waiting in one write and one
//! `fdatasync` per file (group commit), then reports the batches durable. At start,
//! [`ReplayLog::open`] reads every log back so that each key's filter is rebuilt when the key is
//! installed. A log is deleted with its key (when the core erases the key, and when the key store
//! deletes the key file), so nothing about past traffic stays on disk longer than the key that
//! could unwrap it.
//!
//! ```text
//! DATA_DIR/replay/             mode 0700
//!   epoch-<N>.tags             mode 0600, the tags accepted under the packet key of epoch N
//! ```
//!
//! Format (all integers big-endian):
//!
//! ```text
//! header:  magic "QNATRPL\0" (8) | version 1 (1) | reserved 0 (7) | epoch u64 (8)
//! batches: count u32 (4) | count × tag (32 each) | first 8 bytes of SHA-256(epoch ‖ count ‖ tags)
//! ```
//!
//! A batch is fsynced before the next is written, so only the last batch of a file can be torn
//! by a crash; its packets never left (they wait for the fsync), so a torn last batch is cut off
//! at start. A bad batch with data after it, a bad header, or an unknown version is damage: the
//! node refuses to start with an error naming the file and what to do, never a panic.
//!
//! What a seized disk shows: for each live packet key, how many packets the node accepted and in
//! which order (not when: batches carry no time, though a file's modification time is the last
//! write). Tags are hashes of per-hop group elements; they do not link to the node's input or
//! output packets without the packet key, which is erased with the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qanat_codec::Reader;
use qanat_mixnet::ReplayBatch;
use qanat_packet::ReplayTag;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::data_files::{FileError, create_dir, entries, epoch_file, epoch_of, io_err, sync_dir};

const MAGIC: &[u8; 8] = b"QNATRPL\0";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = 24;
const TAG_LEN: usize = 32;
const SUM_LEN: usize = 8;
const FILE_MODE: u32 = 0o600;
/// Most tags in one batch record (a larger group is split).
const MAX_BATCH_TAGS: usize = 1 << 16;
/// How long the writer waits before retrying a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// An error of the replay log. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayLogError {
    /// A file or directory could not be read, written or removed.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A log is damaged: the node cannot tell which packets it forwarded under that key.
    #[error(
        "{}: damaged replay log: {problem}; the node cannot tell which packets it forwarded under the packet key of epoch {epoch}. Delete this file together with keys/packet/epoch-{epoch}.key (packets still in flight to that key are lost), or this file alone (packets the node forwarded under that key could then be replayed through it)",
        path.display()
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The epoch its name gives.
        epoch: u64,
        /// What is wrong.
        problem: String,
    },
    /// A log written in another format version.
    #[error(
        "{}: replay log in format version {version}, this version of Qanat reads version {VERSION}; run the version that wrote it until the packet key of epoch {epoch} expires, or delete the file (packets the node forwarded under that key could then be replayed through it)",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The epoch its name gives.
        epoch: u64,
        /// The version it holds.
        version: u8,
    },
}

/// Counters of the replay log, shared with the runtime's metrics.
#[derive(Debug, Default)]
pub struct ReplayLogMetrics {
    /// Tags appended.
    pub tags: AtomicU64,
    /// Bytes appended (headers, batch framing and tags).
    pub bytes: AtomicU64,
    /// `fdatasync` calls (one per file per group commit).
    pub fsyncs: AtomicU64,
    /// Time spent writing and syncing, in microseconds.
    pub write_micros: AtomicU64,
    /// Group commits (each releases every batch it holds).
    pub commits: AtomicU64,
    /// Writes that failed (retried; the packets wait meanwhile).
    pub errors: AtomicU64,
    /// Tags read back at start.
    pub recovered: AtomicU64,
    /// Logs deleted with their key.
    pub deleted: AtomicU64,
}

fn log_path(dir: &Path, epoch: u64) -> PathBuf {
    epoch_file(dir, epoch, ".tags")
}

/// The replay directory of a data directory.
pub fn replay_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("replay")
}

/// Deletes the log of `epoch` in `data_dir` if there is one (the key store calls this when it
/// deletes the key).
pub fn delete_log(data_dir: &Path, epoch: u64) -> io::Result<()> {
    match fs::remove_file(log_path(&replay_dir(data_dir), epoch)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn checksum(epoch: u64, tags: &[u8]) -> [u8; SUM_LEN] {
    let mut h = Sha256::new();
    h.update(epoch.to_be_bytes());
    h.update(((tags.len() / TAG_LEN) as u32).to_be_bytes());
    h.update(tags);
    let d = h.finalize();
    let mut out = [0u8; SUM_LEN];
    out.copy_from_slice(d.get(..SUM_LEN).unwrap_or(&[0; SUM_LEN]));
    out
}

fn header(epoch: u64) -> Vec<u8> {
    let mut w = qanat_codec::Writer::with_capacity(HEADER_LEN);
    w.raw(MAGIC);
    w.u8(VERSION);
    w.raw(&[0; 7]);
    w.u64(epoch);
    // Fixed fields only: the writer cannot fail.
    w.finish().unwrap_or_default()
}

/// Appends the batch records of `tags` (split at [`MAX_BATCH_TAGS`]) to `out`.
fn encode_batches(epoch: u64, tags: &[ReplayTag], out: &mut Vec<u8>) {
    let mut w = qanat_codec::Writer::with_capacity(
        tags.len() * TAG_LEN + tags.len().div_ceil(MAX_BATCH_TAGS) * (4 + SUM_LEN),
    );
    for chunk in tags.chunks(MAX_BATCH_TAGS) {
        w.count32(chunk.len());
        let start = w.len();
        for t in chunk {
            w.raw(&t.0);
        }
        let sum = checksum(epoch, w.as_slice().get(start..).unwrap_or(&[]));
        w.raw(&sum);
    }
    // A batch has at most `MAX_BATCH_TAGS` tags: its count always fits.
    out.extend_from_slice(&w.finish().unwrap_or_default());
}

/// A log read back: its tags and the length of its good prefix (a torn last batch cut off).
#[derive(Debug)]
struct Parsed {
    tags: Vec<ReplayTag>,
    good_len: usize,
}

/// What [`batch_at`] found.
enum Batch<'a> {
    /// A good batch: its tags, and where the next one starts.
    Good(&'a [u8], usize),
    /// The end of the file, or a torn last batch: the good prefix ends here.
    End,
}

/// The batch record at `off` of a log of `epoch`, or why it is damage.
fn batch_at(b: &[u8], off: usize, epoch: u64) -> Result<Batch<'_>, String> {
    let tail = b.get(off..).unwrap_or(&[]);
    let mut r = Reader::new(tail);
    let Ok(count) = r.u32() else { return Ok(Batch::End) };
    if count == 0 {
        // An extension of the file that was never written (a crash before its sync).
        if tail.iter().all(|x| *x == 0) {
            return Ok(Batch::End);
        }
        return Err(format!("a batch of no tags at byte {off}"));
    }
    let len = usize::try_from(count).ok().and_then(|n| n.checked_mul(TAG_LEN)).unwrap_or(usize::MAX);
    let (Ok(body), Ok(sum)) = (r.raw(len), r.array::<SUM_LEN>()) else {
        return Ok(Batch::End); // cut off by a crash
    };
    if checksum(epoch, body) == sum {
        Ok(Batch::Good(body, off + r.offset()))
    } else if r.remaining() == 0 {
        Ok(Batch::End) // the last write, not synced before the crash
    } else {
        Err(format!("checksum mismatch in the batch at byte {off}"))
    }
}

/// Parses a log of `epoch`; `Ok(None)` for a file cut off inside its header (created, never
/// written to: nothing in it was durable).
fn parse(path: &Path, epoch: u64, b: &[u8]) -> Result<Option<Parsed>, ReplayLogError> {
    let damaged = |problem: String| ReplayLogError::Damaged { path: path.to_owned(), epoch, problem };
    if b.len() < HEADER_LEN {
        // A crash while the file was being created leaves a prefix of its header (or zeros).
        if header(epoch).starts_with(b) || b.iter().all(|x| *x == 0) {
            return Ok(None);
        }
        return Err(damaged(format!("{} bytes, shorter than its {HEADER_LEN}-byte header", b.len())));
    }
    let mut r = Reader::new(b);
    let (Ok(magic), Ok(version), Ok(reserved), Ok(file_epoch)) =
        (r.array::<8>(), r.u8(), r.array::<7>(), r.u64())
    else {
        return Err(damaged("truncated header".into()));
    };
    if magic != *MAGIC {
        return Err(damaged("not a Qanat replay log (bad magic)".into()));
    }
    if version != VERSION {
        return Err(ReplayLogError::Version { path: path.to_owned(), epoch, version });
    }
    if reserved != [0; 7] {
        return Err(damaged("reserved header bytes are not zero".into()));
    }
    if file_epoch != epoch {
        return Err(damaged(format!("holds the tags of epoch {file_epoch}, not {epoch}")));
    }
    let mut tags = Vec::new();
    let mut off = HEADER_LEN;
    while let Batch::Good(body, next) = batch_at(b, off, epoch).map_err(damaged)? {
        tags.extend(body.chunks_exact(TAG_LEN).map(|c| {
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(c);
            ReplayTag(t)
        }));
        off = next;
    }
    Ok(Some(Parsed { tags, good_len: off }))
}

/// The logs of one data directory, read back at start, and the writer that appends to them.
pub struct ReplayLog {
    dir: PathBuf,
    /// Tags read back, per epoch, until the runtime installs the key.
    recovered: BTreeMap<u64, Vec<ReplayTag>>,
    /// Length of each existing log's good prefix.
    lens: HashMap<u64, u64>,
    /// Epochs whose key the runtime installed (their log is deleted when the key expires).
    installed: BTreeSet<u64>,
    metrics: Arc<ReplayLogMetrics>,
    writer: Option<Writer>,
}

impl std::fmt::Debug for ReplayLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayLog").field("recovered_epochs", &self.recovered.keys()).finish_non_exhaustive()
    }
}

struct Writer {
    commands: std::sync::mpsc::Sender<Command>,
    durable: mpsc::UnboundedReceiver<u64>,
}

enum Command {
    Append(ReplayBatch),
    Delete(u64),
}

impl ReplayLog {
    /// Opens `DATA_DIR/replay` (creating it), reads every log back and cuts off a torn last batch;
    /// deletes the logs of epochs for which `has_key` is false (their key is gone). Fails on a
    /// damaged log or one of another format version, naming the file.
    pub fn open(data_dir: &Path, has_key: impl Fn(u64) -> bool) -> Result<Self, ReplayLogError> {
        let dir = replay_dir(data_dir);
        create_dir(&dir)?;
        let metrics = Arc::new(ReplayLogMetrics::default());
        let mut recovered = BTreeMap::new();
        let mut lens = HashMap::new();
        for entry in entries(&dir)? {
            let entry = entry?;
            let Some(epoch) = epoch_of(&entry.file_name(), ".tags") else {
                continue; // Not ours; leave it alone.
            };
            let path = entry.path();
            if !has_key(epoch) {
                fs::remove_file(&path).map_err(io_err(&path, "delete the log of an erased key"))?;
                metrics.deleted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path, "read the replay log"))?;
            match parse(&path, epoch, &bytes)? {
                None => fs::remove_file(&path).map_err(io_err(&path, "delete the unfinished log"))?,
                Some(p) => {
                    if p.good_len < bytes.len() {
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io_err(&path, "open the replay log"))?;
                        f.set_len(p.good_len as u64)
                            .and_then(|()| f.sync_all())
                            .map_err(io_err(&path, "cut off the torn last batch"))?;
                        tracing::info!(epoch, "replay log: a batch torn by a crash was cut off");
                    }
                    metrics.recovered.fetch_add(p.tags.len() as u64, Ordering::Relaxed);
                    lens.insert(epoch, p.good_len as u64);
                    recovered.insert(epoch, p.tags);
                }
            }
        }
        Ok(Self { dir, recovered, lens, installed: BTreeSet::new(), metrics, writer: None })
    }

    /// The counters.
    pub fn metrics(&self) -> Arc<ReplayLogMetrics> {
        self.metrics.clone()
    }

    /// Epochs with a log read back.
    pub fn recovered_epochs(&self) -> Vec<u64> {
        self.recovered.keys().copied().collect()
    }

    /// The runtime installed the key of `epoch`: the tags read back for it (once).
    pub fn installed(&mut self, epoch: u64) -> Vec<ReplayTag> {
        self.installed.insert(epoch);
        self.recovered.remove(&epoch).unwrap_or_default()
    }

    /// Deletes the logs of installed keys that are no longer in `live` (the core erased them),
    /// and forgets tags read back for epochs that can no longer be installed: more than two
    /// before the oldest live key (documents may arrive out of order, so the key of the epoch
    /// before a live one may still come, and must find its tags).
    pub fn retain(&mut self, live: &[u64]) {
        let gone: Vec<u64> = self.installed.iter().copied().filter(|e| !live.contains(e)).collect();
        for e in gone {
            self.installed.remove(&e);
            self.send(Command::Delete(e));
        }
        if let Some(&oldest) = live.iter().min() {
            self.recovered.retain(|e, _| e.saturating_add(2) >= oldest);
        }
    }

    /// Hands a batch to the writer.
    pub fn append(&mut self, batch: ReplayBatch) {
        self.send(Command::Append(batch));
    }

    fn send(&mut self, c: Command) {
        if self.writer.is_none() {
            self.writer = Some(self.start_writer());
        }
        if let Some(w) = &self.writer {
            // The writer ends only with this sender; a send error cannot happen while it lives.
            let _ = w.commands.send(c);
        }
    }

    /// The next batch number reported durable (`None` once the writer has stopped).
    pub async fn durable(&mut self) -> Option<u64> {
        match &mut self.writer {
            Some(w) => w.durable.recv().await,
            None => std::future::pending().await,
        }
    }

    fn start_writer(&self) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel();
        let (durable_tx, durable) = mpsc::unbounded_channel();
        let state = WriterState {
            dir: self.dir.clone(),
            files: HashMap::new(),
            lens: self.lens.clone(),
            metrics: self.metrics.clone(),
        };
        std::thread::Builder::new()
            .name("replay-log".into())
            .spawn(move || state.run(rx, durable_tx))
            .map_or_else(
                |e| {
                    tracing::error!("cannot start the replay log's writer: {e}; packets will wait");
                    Writer { commands: std::sync::mpsc::channel().0, durable: mpsc::unbounded_channel().1 }
                },
                |_| Writer { commands: tx, durable },
            )
    }
}

/// The writer thread's state: one open file per epoch, and each file's good length.
struct WriterState {
    dir: PathBuf,
    files: HashMap<u64, File>,
    lens: HashMap<u64, u64>,
    metrics: Arc<ReplayLogMetrics>,
}

impl WriterState {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Command>, durable: mpsc::UnboundedSender<u64>) {
        let mut pending: BTreeMap<u64, Vec<ReplayTag>> = BTreeMap::new();
        let mut last: Option<u64> = None;
        while let Ok(first) = rx.recv() {
            // Group commit: everything already waiting goes into this write.
            for c in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match c {
                    Command::Append(b) => {
                        for (e, t) in b.tags {
                            pending.entry(e).or_default().push(t);
                        }
                        last = Some(last.map_or(b.id, |l| l.max(b.id)));
                    }
                    Command::Delete(e) => {
                        pending.remove(&e);
                        self.delete(e);
                    }
                }
            }
            while let Err(e) = self.commit(&mut pending) {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("replay log: {e}; packets wait until it can be written");
                std::thread::sleep(RETRY_AFTER);
            }
            if let Some(id) = last.take()
                && durable.send(id).is_err()
            {
                break;
            }
        }
    }

    fn delete(&mut self, epoch: u64) {
        self.files.remove(&epoch);
        self.lens.remove(&epoch);
        let path = log_path(&self.dir, epoch);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.metrics.deleted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(epoch, "replay log: cannot delete the log of an expired key: {e}"),
        }
    }

    /// Appends each epoch's tags as one batch record and syncs each file once; what is durable
    /// leaves `pending`.
    fn commit(&mut self, pending: &mut BTreeMap<u64, Vec<ReplayTag>>) -> Result<(), ReplayLogError> {
        let mut buf = Vec::new();
        while let Some((epoch, tags)) = pending.pop_first() {
            if tags.is_empty() {
                continue;
            }
            let path = log_path(&self.dir, epoch);
            self.open_file(epoch, &path)?;
            buf.clear();
            encode_batches(epoch, &tags, &mut buf);
            let good = self.lens.get(&epoch).copied().unwrap_or(HEADER_LEN as u64);
            let Some(file) = self.files.get_mut(&epoch) else {
                pending.insert(epoch, tags);
                return Err(io_err(&path, "open the replay log")(io::Error::other("not open")).into());
            };
            let started = std::time::Instant::now();
            let written = file.write_all(&buf).and_then(|()| file.sync_data());
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.metrics.write_micros.fetch_add(took, Ordering::Relaxed);
            if let Err(e) = written {
                // Cut off what may have been written, so that the retry appends after a good
                // prefix (a torn batch in the middle would read back as damage).
                let _ = file.set_len(good);
                pending.insert(epoch, tags);
                return Err(io_err(&path, "append to the replay log")(e).into());
            }
            self.lens.insert(epoch, good + buf.len() as u64);
            let m = &self.metrics;
            m.tags.fetch_add(tags.len() as u64, Ordering::Relaxed);
            m.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
            m.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Opens the log of `epoch`, creating it (header written and synced, directory synced) if new.
    fn open_file(&mut self, epoch: u64, path: &Path) -> Result<(), ReplayLogError> {
        if self.files.contains_key(&epoch) {
            return Ok(());
        }
        let f = if self.lens.contains_key(&epoch) {
            OpenOptions::new().append(true).open(path).map_err(io_err(path, "open the replay log"))?
        } else {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(path)
                .map_err(io_err(path, "create the replay log"))?;
            f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .and_then(|()| f.set_len(0))
                .and_then(|()| f.write_all(&header(epoch)))
                .and_then(|()| f.sync_all())
                .map_err(io_err(path, "write the replay log's header"))?;
            sync_dir(&self.dir)?;
            self.metrics.bytes.fetch_add(HEADER_LEN as u64, Ordering::Relaxed);
            self.lens.insert(epoch, HEADER_LEN as u64);
            f
        };
        self.files.insert(epoch, f);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
