//! Destroying a profile ([`wipe`]): the header first, then the database.
//!
//! 1. `profile.header` is overwritten in place with random bytes of its length, synced, and
//!    unlinked. This is the step that matters: the master key exists nowhere else, every row is
//!    sealed under keys derived from it, so from here on the database is random bytes to
//!    anyone, real passphrase or not.
//! 2. `profile.sqlite`, `-wal` and `-shm` are renamed to `wipe-RANDOM` names and the directory
//!    is synced, so that no profile is there any more; then each is overwritten with random
//!    bytes (1 MiB writes), synced, and unlinked. A crash part-way leaves `wipe-*` files, which
//!    the next [`Profile::unlock`](super::Profile::unlock) or create of the directory finishes.
//! 3. `lock` and `network.toml` stay, as every profile directory has them; `control.sock` goes.
//!
//! What this cannot reach (flash remapping, copy-on-write and journaling file systems, backups
//! and earlier disk images) is in docs/STORAGE.md "Wipe".

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use zeroize::Zeroizing;

use super::files::{exists, io_error, lock, random};
use super::{DATABASE_FILE, HEADER_FILE, StoreError};
use crate::control::SOCKET_FILE;

/// The prefix of a database file being wiped.
pub const WIPE_PREFIX: &str = "wipe-";

/// Size of one overwrite.
const CHUNK: usize = 1 << 20;

/// Destroys the profile in `dir` (see the module documentation), under the directory's lock:
/// [`StoreError::InUse`] while another process (a running client) holds the profile, and then
/// nothing is changed. Asks for no passphrase. A directory without a profile is left as it is,
/// but for the files of an earlier wipe, which are finished.
pub fn wipe(dir: impl AsRef<Path>) -> Result<(), StoreError> {
    let dir = dir.as_ref();
    if !exists(dir)? {
        return Err(StoreError::NotFound { dir: dir.to_owned() });
    }
    let _lock = lock(dir)?;
    wipe_locked(dir)
}

/// [`wipe`], the lock already held.
pub(super) fn wipe_locked(dir: &Path) -> Result<(), StoreError> {
    let header = dir.join(HEADER_FILE);
    if exists(&header)? {
        overwrite_and_unlink(&header)?;
    }
    for name in [DATABASE_FILE.to_owned(), format!("{DATABASE_FILE}-wal"), format!("{DATABASE_FILE}-shm")] {
        let from = dir.join(&name);
        if exists(&from)? {
            let to = dir.join(format!("{WIPE_PREFIX}{}", hex(&random::<8>()?)));
            fs::rename(&from, &to).map_err(io_error(&from))?;
        }
    }
    sync_dir(dir)?;
    let socket = dir.join(SOCKET_FILE);
    match fs::remove_file(&socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(StoreError::Io { path: socket, source: e });
        }
        _ => {}
    }
    finish_wipes(dir)
}

/// Overwrites and unlinks every `wipe-*` file of `dir` (those of a wipe that did not finish).
pub(super) fn finish_wipes(dir: &Path) -> Result<(), StoreError> {
    let mut any = false;
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let is_file = entry.file_type().map_err(io_error(&entry.path()))?.is_file();
        if is_file && entry.file_name().to_string_lossy().starts_with(WIPE_PREFIX) {
            overwrite_and_unlink(&entry.path())?;
            any = true;
        }
    }
    if any {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Overwrites the file at `path` in place with random bytes of its length (1 MiB writes),
/// syncs it, and unlinks it.
fn overwrite_and_unlink(path: &Path) -> Result<(), StoreError> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let chunk = buf.get_mut(..n).unwrap_or_default();
        super::files::fill_random(chunk)?;
        file.write_all(chunk).map_err(io_error(path))?;
        left -= n as u64;
    }
    file.sync_all().map_err(io_error(path))?;
    drop(file);
    fs::remove_file(path).map_err(io_error(path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
