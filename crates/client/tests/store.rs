//! The encrypted profile: create/open, passphrase, lock, corruption, transactions, scans.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use qanat_client::store::{
    DATABASE_FILE, HEADER_FILE, HEADER_LEN, KdfParams, Passphrase, Profile, StoreError, danger,
};

fn fast() -> KdfParams {
    danger::weak_kdf_params(8, 1, 1).unwrap()
}

fn pass() -> Passphrase {
    Passphrase::new("correct horse battery staple")
}

fn new_profile() -> (tempfile::TempDir, PathBuf, Profile) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("profile");
    let p = Profile::create_with(&dir, &pass(), fast()).unwrap();
    (tmp, dir, p)
}

/// Every file of the directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn create_put_close_open_get() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("contacts", b"alice", b"state 1").unwrap();
    p.put("contacts", b"bob", b"state 2").unwrap();
    p.put("queue", b"\x00\x01", &[9; 5000]).unwrap();
    drop(p);
    let p = Profile::open(&dir, &pass()).unwrap();
    assert_eq!(p.get("contacts", b"alice").unwrap().unwrap().as_slice(), b"state 1");
    assert_eq!(p.get("queue", b"\x00\x01").unwrap().unwrap().as_slice(), &[9; 5000][..]);
    assert!(p.get("contacts", b"carol").unwrap().is_none());
    assert!(p.get("queue", b"alice").unwrap().is_none());
}

#[test]
fn default_parameters_are_the_documented_ones() {
    let d = KdfParams::default();
    assert_eq!((d.memory_kib(), d.iterations(), d.parallelism()), (64 * 1024, 3, 1));
}

#[test]
fn creating_over_an_existing_profile_fails_and_changes_nothing() {
    let (_tmp, dir, p) = new_profile();
    drop(p);
    let before = snapshot(&dir);
    assert!(matches!(Profile::create_with(&dir, &pass(), fast()), Err(StoreError::AlreadyExists { .. })));
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn wrong_passphrase_is_refused_and_changes_nothing() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("a", b"k", b"v").unwrap();
    drop(p);
    let before = snapshot(&dir);
    let err = Profile::open(&dir, &Passphrase::new("wrong")).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase { .. }), "{err}");
    assert!(err.to_string().contains("wrong passphrase"));
    assert!(err.to_string().contains(&dir.display().to_string()));
    assert_eq!(snapshot(&dir), before);
    // And the right one still works.
    assert!(Profile::open(&dir, &pass()).unwrap().get("a", b"k").unwrap().is_some());
}

#[test]
fn empty_passphrase_is_refused_at_create() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Profile::create_with(tmp.path().join("p"), &Passphrase::new(""), fast());
    assert!(matches!(r, Err(StoreError::EmptyPassphrase)));
}

#[test]
fn a_second_open_in_the_same_process_is_refused_while_the_first_lives() {
    let (_tmp, dir, p) = new_profile();
    let err = Profile::open(&dir, &pass()).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(err.to_string().contains(&dir.display().to_string()));
    // Even with a wrong passphrase: the lock comes first.
    assert!(matches!(Profile::open(&dir, &Passphrase::new("x")), Err(StoreError::InUse { .. })));
    drop(p);
    Profile::open(&dir, &pass()).unwrap();
}

#[test]
fn an_open_profile_refused_to_another_process() {
    // `flock` is per open file description, so a child process is refused like a second open
    // here; the child is this test binary re-run with a filter and an environment variable.
    if let Ok(dir) = std::env::var("QANAT_STORE_TEST_CHILD_DIR") {
        let r = Profile::open(&dir, &pass());
        std::process::exit(if matches!(r, Err(StoreError::InUse { .. })) { 0 } else { 1 });
    }
    let (_tmp, dir, _p) = new_profile();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "an_open_profile_refused_to_another_process", "--test-threads=1"])
        .env("QANAT_STORE_TEST_CHILD_DIR", &dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn no_profile_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(Profile::open(tmp.path().join("none"), &pass()), Err(StoreError::NotFound { .. })));
    assert!(matches!(Profile::open(tmp.path(), &pass()), Err(StoreError::NotFound { .. })));
}

#[test]
fn a_corrupt_header_names_the_file() {
    let (_tmp, dir, p) = new_profile();
    drop(p);
    let path = dir.join(HEADER_FILE);
    let good = fs::read(&path).unwrap();
    assert_eq!(good.len(), HEADER_LEN);
    for bad in [vec![], b"garbage".to_vec(), good[..50].to_vec(), [&good[..], b"x"].concat()] {
        fs::write(&path, &bad).unwrap();
        let err = Profile::open(&dir, &pass()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(HEADER_FILE), "{err}");
    }
    // A flipped bit in each slot (the real one is at a random position): neither authenticates.
    // Regression: flipping only the last slot's bit opened the profile whenever the real slot
    // was the first one (half the runs).
    let mut flipped = good.clone();
    flipped[HEADER_LEN - 1] ^= 1;
    flipped[HEADER_LEN - 1 - 104] ^= 1;
    fs::write(&path, &flipped).unwrap();
    assert!(matches!(Profile::open(&dir, &pass()), Err(StoreError::WrongPassphrase { .. })));
    // An unknown version.
    let mut v3 = good.clone();
    v3[9] = 3;
    fs::write(&path, &v3).unwrap();
    let err = Profile::open(&dir, &pass()).unwrap_err();
    assert!(matches!(err, StoreError::UnknownVersion { found: 3, known: 2, .. }), "{err}");
    fs::write(&path, &good).unwrap();
    Profile::open(&dir, &pass()).unwrap();
}

#[test]
fn a_corrupt_database_names_the_file() {
    let (_tmp, dir, p) = new_profile();
    drop(p);
    fs::write(dir.join(DATABASE_FILE), vec![0x5a; 8192]).unwrap();
    let err = Profile::open(&dir, &pass()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(DATABASE_FILE), "{err}");
    fs::remove_file(dir.join(DATABASE_FILE)).unwrap();
    assert!(matches!(Profile::open(&dir, &pass()), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_tampered_row_is_reported_not_returned() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("a", b"k", b"a value long enough to find").unwrap();
    drop(p);
    assert!(flip_a_byte_of_the_rows_page(&dir));
    let err = Profile::open(&dir, &pass()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

/// Flips a byte near the end of page 2, the table's only page: inside the row's ciphertext.
fn flip_a_byte_of_the_rows_page(dir: &Path) -> bool {
    let path = dir.join(DATABASE_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let page = 4096;
    if bytes.len() < 2 * page {
        return false;
    }
    bytes[2 * page - 40] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    true
}

#[test]
fn the_file_shows_no_namespace_key_or_value() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("contacts-namespace", b"alice-the-key", b"secret-plaintext-value").unwrap();
    drop(p);
    for (_, bytes) in snapshot(&dir) {
        for needle in [&b"contacts-namespace"[..], b"alice-the-key", b"secret-plaintext-value"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
}

#[test]
fn scan_returns_a_namespace_in_key_order() {
    let (_tmp, dir, mut p) = new_profile();
    for k in [b"c", b"a", b"b"] {
        p.put("ns1", k, k).unwrap();
    }
    p.put("ns2", b"z", b"other").unwrap();
    p.put("ns10", b"y", b"prefix-like").unwrap();
    assert!(p.delete("ns1", b"b").unwrap());
    assert!(!p.delete("ns1", b"b").unwrap());
    let scan =
        |p: &Profile, ns| p.scan(ns).unwrap().into_iter().map(|(k, v)| (k, v.to_vec())).collect::<Vec<_>>();
    let expected = vec![(b"a".to_vec(), b"a".to_vec()), (b"c".to_vec(), b"c".to_vec())];
    assert_eq!(scan(&p, "ns1"), expected);
    assert_eq!(p.keys("ns2"), vec![b"z".to_vec()]);
    assert!(scan(&p, "empty").is_empty());
    drop(p);
    // The index is rebuilt from the file.
    let p = Profile::open(&dir, &pass()).unwrap();
    assert_eq!(scan(&p, "ns1"), expected);
    assert_eq!(scan(&p, "ns10"), vec![(b"y".to_vec(), b"prefix-like".to_vec())]);
}

#[derive(Debug)]
struct Abort;
impl From<StoreError> for Abort {
    fn from(_: StoreError) -> Self {
        Abort
    }
}

#[test]
fn a_transaction_commits_all_or_nothing() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("q", b"keep", b"1").unwrap();
    let r: Result<(), Abort> = p.transaction(|tx| {
        tx.put("q", b"new", b"2")?;
        tx.delete("q", b"keep")?;
        // The transaction sees its own writes.
        assert_eq!(tx.keys("q"), vec![b"new".to_vec()]);
        assert_eq!(tx.get("q", b"new")?.unwrap().as_slice(), b"2");
        Err(Abort)
    });
    assert!(r.is_err());
    assert_eq!(p.keys("q"), vec![b"keep".to_vec()]);
    assert!(p.get("q", b"new").unwrap().is_none());

    p.transaction(|tx| {
        tx.put("q", b"new", b"2")?;
        tx.put("r", b"x", b"3")?;
        tx.delete("q", b"keep").map(|_| ())
    })
    .unwrap();
    drop(p);
    let p = Profile::open(&dir, &pass()).unwrap();
    assert_eq!(p.keys("q"), vec![b"new".to_vec()]);
    assert_eq!(p.get("r", b"x").unwrap().unwrap().as_slice(), b"3");
}

#[test]
fn a_panicking_transaction_writes_nothing() {
    let (_tmp, _dir, mut p) = new_profile();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), StoreError> = p.transaction(|tx| {
            tx.put("q", b"k", b"v")?;
            panic!("bug in the caller");
        });
    }));
    assert!(r.is_err());
    assert!(p.get("q", b"k").unwrap().is_none());
    assert!(p.keys("q").is_empty());
}

#[test]
fn changing_the_passphrase_keeps_the_data() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("a", b"k", b"v").unwrap();
    let new = Passphrase::new("new passphrase");
    p.change_passphrase(&new, fast(), None).unwrap();
    drop(p);
    assert!(matches!(Profile::open(&dir, &pass()), Err(StoreError::WrongPassphrase { .. })));
    let p = Profile::open(&dir, &new).unwrap();
    assert_eq!(p.get("a", b"k").unwrap().unwrap().as_slice(), b"v");
}

#[test]
fn invalid_names_are_errors() {
    let (_tmp, _dir, mut p) = new_profile();
    assert!(matches!(p.put("", b"k", b"v"), Err(StoreError::InvalidName(_))));
    assert!(matches!(p.put(&"n".repeat(256), b"k", b"v"), Err(StoreError::InvalidName(_))));
    assert!(matches!(p.put("n", &vec![0; 65536], b"v"), Err(StoreError::InvalidName(_))));
    p.put(&"n".repeat(255), &vec![0; 65535], b"").unwrap();
}

#[cfg(unix)]
#[test]
fn files_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, dir, _p) = new_profile();
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for f in [HEADER_FILE, DATABASE_FILE, "lock"] {
        assert_eq!(fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o077, 0, "{f}");
    }
}

/// The profile's database and its two companions, each file's bytes (empty when missing).
fn database_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let name = format!("{DATABASE_FILE}{suffix}");
            let bytes = match fs::read(dir.join(&name)) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => panic!("{name}: {e}"),
            };
            (name, bytes)
        })
        .collect()
}

/// The files of the profile's database that hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    database_files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(name, _)| name)
        .collect()
}

/// Every row's stored value (`nonce ‖ ciphertext`), read with a second connection.
fn sealed_rows(dir: &Path) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join(DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = conn.prepare("SELECT value FROM kv").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Deleting a row, or replacing its value, leaves none of its old ciphertext in the database, the
/// write-ahead log or the shared-memory file once the call returns; before, it is there (so the
/// scan can fail).
#[test]
fn deleted_and_replaced_rows_leave_the_files() {
    let (_tmp, dir, mut p) = new_profile();
    p.put("keep", b"k", &[1; 3000]).unwrap();
    let keep = sealed_rows(&dir);
    p.put("gone", b"d", &[2; 3000]).unwrap();
    p.put("gone", b"r", &[3; 3000]).unwrap();
    let rows = sealed_rows(&dir);
    let new: Vec<&Vec<u8>> = rows.iter().filter(|r| !keep.contains(r)).collect();
    assert_eq!(new.len(), 2);
    // 64 bytes of each row's ciphertext (past the nonce) are its fingerprint.
    let print = |row: &[u8]| row[100..164].to_vec();
    let old: Vec<Vec<u8>> = new.iter().map(|r| print(r)).collect();
    for o in &old {
        assert!(!files_holding(&dir, o).is_empty(), "a stored row is not on disk: the scan is broken");
    }

    assert!(p.delete("gone", b"d").unwrap());
    p.put("gone", b"r", &[4; 3000]).unwrap();
    for o in &old {
        assert_eq!(files_holding(&dir, o), Vec::<String>::new(), "a deleted or replaced row is on disk");
    }
    let wal = fs::metadata(dir.join(format!("{DATABASE_FILE}-wal"))).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the write-ahead log is truncated");
    assert!(!files_holding(&dir, &print(&keep[0])).is_empty());
    assert_eq!(p.get("gone", b"r").unwrap().unwrap().as_slice(), &[4; 3000][..]);
    assert_eq!(p.get("keep", b"k").unwrap().unwrap().as_slice(), &[1; 3000][..]);
    drop(p);
    let p = Profile::open(&dir, &pass()).unwrap();
    assert!(p.get("gone", b"d").unwrap().is_none());
    for o in &old {
        assert_eq!(files_holding(&dir, o), Vec::<String>::new());
    }
}
