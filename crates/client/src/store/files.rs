//! The file system under a profile: its directory (0700), the lock, files made 0600 and
//! replaced atomically, the OS random number generator, and a reader of bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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

/// Writes `path` through a temporary file, `fsync`, rename and `fsync` of the directory.
pub(super) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(io_error(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_error(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_error(path))?;
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

pub(super) fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    SysRng.try_fill_bytes(&mut out).map_err(|_| StoreError::Rng)?;
    Ok(out)
}

/// A cursor over bytes whose reads fail (never panic) past the end.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(u8::from_be_bytes(self.array()?))
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
}
