//! The file system under a profile: its directory (0700), the lock, the database made 0600, and
//! the OS random number generator. (The header is replaced through
//! [`qanat_network::file::write_atomically`], as every file Qanat replaces.)

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use rand::rngs::SysRng;
use rand_core::TryRng;

use super::{LOCK_FILE, StoreError};

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

pub(super) fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists().map_err(io_error(path))
}

pub(super) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io_error(dir))
}

/// Opens `dir/lock` and takes an exclusive `flock` on it, without waiting.
pub(super) fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(&path).map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse { dir: dir.to_owned() }),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
    }
}

pub(super) fn restrict_permissions(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_error(path))?;
    }
    Ok(())
}

pub(super) fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    SysRng.try_fill_bytes(&mut out).map_err(|_| StoreError::Rng)?;
    Ok(out)
}

pub(super) fn fill_random(out: &mut [u8]) -> Result<(), StoreError> {
    SysRng.try_fill_bytes(out).map_err(|_| StoreError::Rng)
}
