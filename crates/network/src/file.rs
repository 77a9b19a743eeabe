//! Durable atomic file writes: the one way Qanat replaces a file.
//!
//! [`write_atomically`] writes the new contents to a temporary file in the target's directory
//! (`<name>.tmp`, created afresh: with mode 0600 when the contents are [`Access::OwnerOnly`]),
//! `fsync`s it, renames it over the target and `fsync`s the directory. A crash at any point
//! leaves either the old file or the new one, never a mix or an empty file, and once the call
//! returns the new file survives a power cut. On an error the temporary file is removed; one
//! left by a crash is replaced by the next write (and may be removed by whoever owns the
//! directory at start).
//!
//! Node key files, the client's profile header and network file and the devnet and testbed
//! manifests are written this way. (Append-only logs, the replay log and SQLite, sync their own
//! writes.)

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Who may read a file [`write_atomically`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only its owner (mode 0600 on Unix, whatever the umask): keys, profiles, anything
    /// secret or private to one user.
    OwnerOnly,
    /// As the process's umask allows (mode 0666 less the umask on Unix): public contents.
    Default,
}

/// A step of [`write_atomically`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {step}: {source}", path.display())]
pub struct WriteError {
    /// The file the step was about (the temporary file, the target or its directory).
    pub path: PathBuf,
    /// What was being done.
    pub step: &'static str,
    /// The cause.
    #[source]
    pub source: io::Error,
}

/// The suffix of the temporary file beside the target.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path`'s contents with `bytes`, durably and atomically (see the module
/// documentation).
pub fn write_atomically(path: &Path, bytes: &[u8], access: Access) -> Result<(), WriteError> {
    let Some(name) = path.file_name() else {
        return Err(fail(path, "write a file without a name")(io::ErrorKind::InvalidInput.into()));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(TEMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    // A temporary file left by a crash: created afresh below, so that it has our mode.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(fail(&tmp, "remove the leftover temporary file")(e));
        }
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if access == Access::OwnerOnly {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut file = options.open(&tmp).map_err(fail(&tmp, "create the temporary file"))?;
    let result = (|| {
        #[cfg(unix)]
        if access == Access::OwnerOnly {
            // The umask cannot widen 0600, but make the mode explicit in case the file system
            // ignored it.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(fail(&tmp, "set the temporary file's permissions"))?;
        }
        file.write_all(bytes).map_err(fail(&tmp, "write the temporary file"))?;
        file.sync_all().map_err(fail(&tmp, "sync the temporary file"))?;
        fs::rename(&tmp, path).map_err(fail(path, "rename the temporary file into place"))
    })();
    drop(file);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir).map_err(fail(dir, "sync the directory"))
}

fn fail(path: &Path, step: &'static str) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError { path, step, source }
}

/// `fsync`s a directory, so that a rename or a creation in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    // Elsewhere a directory cannot be opened to be synced (Windows makes renames durable itself).
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_contents_are_replaced_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, b"first", Access::OwnerOnly).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_atomically(&path, b"second, longer", Access::OwnerOnly).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        write_atomically(&path, b"", Access::Default).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_is_mode_0600_even_over_a_readable_one() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        // A leftover temporary file, readable by all, from a crash.
        let tmp = dir.path().join("key.tmp");
        fs::write(&tmp, b"half").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"secret", Access::OwnerOnly).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(names(dir.path()), ["key"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        let e = write_atomically(&path, b"new", Access::OwnerOnly).unwrap_err();
        assert_eq!(e.step, "rename the temporary file into place");
        assert!(e.to_string().contains("taken"), "{e}");
        assert_eq!(names(dir.path()), ["taken"]);
        // A missing directory fails at the first step and creates nothing.
        let e = write_atomically(&dir.path().join("no/such"), b"new", Access::Default).unwrap_err();
        assert_eq!(e.step, "create the temporary file");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        for p in ["", "/", "a/.."] {
            let e = write_atomically(Path::new(p), b"x", Access::Default).unwrap_err();
            assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput, "{p}");
        }
    }
}
