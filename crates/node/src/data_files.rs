//! What the key store ([`crate::keys`]) and the replay log ([`crate::replay_log`]) do alike with
//! the files of the data directory: name a file per epoch, create directories owner-only, list
//! and sync them, and say which file could not be used and what to check.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

/// Mode of the directories the node creates in its data directory.
pub(crate) const DIR_MODE: u32 = 0o700;

/// A file or directory of the data directory could not be read, written, renamed or removed.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {op}: {source}; check the data directory's permissions and free space", path.display())]
pub struct FileError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl From<qanat_network::file::WriteError> for FileError {
    fn from(e: qanat_network::file::WriteError) -> Self {
        Self { path: e.path, op: e.step, source: e.source }
    }
}

/// For `map_err`: the error of doing `op` on `path`.
pub(crate) fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError { path, op, source }
}

/// Creates `path` and its missing parents with mode 0700 (nothing to do if it exists).
pub(crate) fn create_dir(path: &Path) -> Result<(), FileError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err(path, "create the directory"))
}

/// The entries of the directory `dir`, read as they are iterated.
pub(crate) fn entries(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<fs::DirEntry, FileError>>, FileError> {
    let read = fs::read_dir(dir).map_err(io_err(dir, "list the directory"))?;
    let dir = dir.to_owned();
    Ok(read.map(move |entry| entry.map_err(io_err(&dir, "list the directory"))))
}

/// Makes the directory `dir`'s entries durable (after a file in it was created, renamed or
/// removed).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileError> {
    qanat_network::file::sync_dir(dir).map_err(io_err(dir, "sync the directory"))
}

/// The file of `epoch` in `dir`: `epoch-<N><suffix>` (packet keys and their replay logs are named
/// so).
pub(crate) fn epoch_file(dir: &Path, epoch: u64, suffix: &str) -> PathBuf {
    dir.join(format!("epoch-{epoch}{suffix}"))
}

/// The epoch of a file named as [`epoch_file`] names one with `suffix`; `None` for any other
/// name.
pub(crate) fn epoch_of(name: &OsStr, suffix: &str) -> Option<u64> {
    name.to_str()?.strip_prefix("epoch-")?.strip_suffix(suffix)?.parse::<u64>().ok()
}
