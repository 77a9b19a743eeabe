//! The header's two slots, the duress passphrase and the wipe: unlock outcomes, what a wrong
//! passphrase changes (nothing), what a wipe leaves (nothing of the old header or the database's
//! ciphertext), the duress opening, and the upgrade of a version-1 header.
//!
//! The fixture `tests/data/profile-header2/` (passphrase "fixture passphrase", duress passphrase
//! "fixture duress", the test-only weak KDF parameters) is a profile with a version-2 header
//! holding a duress slot, written by [`write_header_v2_fixture`].
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng as _;
use qanat_client::engine::{Engine, EngineConfig};
use qanat_client::open::{open_profile, traffic_code};
use qanat_client::store::{
    DATABASE_FILE, DuressSettings, HEADER_FILE, HEADER_LEN, KdfParams, LOCK_FILE, Passphrase, Profile,
    StoreError, Unlocked, WIPE_PREFIX, danger, wipe,
};
use qanat_mixnet::sending::TrafficProfile;
use qanat_packet::NodeId;

const REAL: &str = "correct horse battery staple";
const DURESS: &str = "tr0ub4dor";
const FIXTURE_PASSPHRASE: &str = "fixture passphrase";
const FIXTURE_DURESS: &str = "fixture duress";

fn fast() -> KdfParams {
    danger::weak_kdf_params(8, 1, 1).unwrap()
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s)
}

fn settings() -> DuressSettings {
    DuressSettings {
        gateway_index: 1,
        traffic: traffic_code(TrafficProfile::Metered),
        language: 2,
        lock_timeout_secs: 900,
    }
}

fn new_profile() -> (tempfile::TempDir, PathBuf, Profile) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("profile");
    let p = Profile::create_with(&dir, &pass(REAL), fast()).unwrap();
    (tmp, dir, p)
}

/// A profile with rows and a duress passphrase, closed.
fn profile_with_duress() -> (tempfile::TempDir, PathBuf) {
    let (tmp, dir, mut p) = new_profile();
    p.put("contacts", b"alice", &[0xa1; 3000]).unwrap();
    p.put("queue", b"1", b"a message to alice").unwrap();
    p.set_duress(&pass(DURESS), settings()).unwrap();
    drop(p);
    (tmp, dir)
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

fn gateways() -> Vec<NodeId> {
    vec![NodeId([1; 32]), NodeId([2; 32])]
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

#[test]
fn unlock_answers_real_duress_or_wrong() {
    let (_tmp, dir) = profile_with_duress();
    match Profile::unlock(&dir, &pass(REAL)).unwrap() {
        Unlocked::Real(p) => {
            assert_eq!(p.get("queue", b"1").unwrap().unwrap().as_slice(), b"a message to alice")
        }
        Unlocked::Duress(_) => panic!("the real passphrase opened the duress slot"),
    }
    match Profile::unlock(&dir, &pass(DURESS)).unwrap() {
        Unlocked::Duress(d) => assert_eq!(d.settings(), settings()),
        Unlocked::Real(_) => panic!("the duress passphrase opened the real slot"),
    }
    let err = Profile::unlock(&dir, &pass("wrong")).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase { .. }), "{err}");
    // `Profile::open` takes the duress passphrase for a wrong one, and touches nothing.
    let before = snapshot(&dir);
    assert!(matches!(Profile::open(&dir, &pass(DURESS)), Err(StoreError::WrongPassphrase { .. })));
    assert!(snapshot(&dir) == before, "a file changed");
}

#[test]
fn a_wrong_passphrase_changes_no_byte_of_any_file() {
    let (_tmp, dir) = profile_with_duress();
    let before = snapshot(&dir);
    for wrong in ["wrong", "", "correct horse battery stapl", "tr0ub4dor "] {
        assert!(matches!(Profile::unlock(&dir, &pass(wrong)), Err(StoreError::WrongPassphrase { .. })));
        assert!(snapshot(&dir) == before, "{wrong:?} changed a file");
    }
    // Nor does opening with the duress passphrase and dropping what it gives.
    drop(Profile::unlock(&dir, &pass(DURESS)).unwrap());
    assert!(snapshot(&dir) == before, "a file changed");
}

/// Someone who holds the locked device cannot tell from the header whether a duress passphrase
/// exists: same length, and the slot not in use is random bytes like a sealed one. Unlock times
/// are reported (one Argon2id run and two slot trials whatever is typed).
#[test]
fn the_header_looks_the_same_with_or_without_a_duress_passphrase() {
    let (_tmp, dir, mut p) = new_profile();
    let without = fs::read(dir.join(HEADER_FILE)).unwrap();
    p.set_duress(&pass(DURESS), settings()).unwrap();
    let with = fs::read(dir.join(HEADER_FILE)).unwrap();
    assert_eq!(without.len(), HEADER_LEN);
    assert_eq!(with.len(), HEADER_LEN);
    assert_eq!(with[..39], without[..39], "the prefix (parameters, salt) is unchanged");
    assert_ne!(with, without);
    p.remove_duress().unwrap();
    let removed = fs::read(dir.join(HEADER_FILE)).unwrap();
    assert_eq!(removed.len(), HEADER_LEN);
    drop(p);
    assert!(matches!(Profile::unlock(&dir, &pass(DURESS)), Err(StoreError::WrongPassphrase { .. })));
    let (_tmp2, dir2) = profile_with_duress();
    let time = |p: &str| {
        let t = Instant::now();
        drop(Profile::unlock(&dir2, &pass(p)));
        t.elapsed()
    };
    let (real, duress, wrong) = (time(REAL), time(DURESS), time("wrong"));
    eprintln!("unlock times (8 KiB, t=1): real {real:?}, duress {duress:?}, wrong {wrong:?}");
}

#[test]
fn set_and_remove_give_the_same_answer_whether_one_existed() {
    let (_tmp, dir, mut p) = new_profile();
    p.remove_duress().unwrap();
    p.remove_duress().unwrap();
    p.set_duress(&pass(DURESS), settings()).unwrap();
    p.set_duress(&pass("another"), DuressSettings::default()).unwrap();
    drop(p);
    // The second replaced the first.
    assert!(matches!(Profile::unlock(&dir, &pass(DURESS)), Err(StoreError::WrongPassphrase { .. })));
    assert!(
        matches!(Profile::unlock(&dir, &pass("another")).unwrap(), Unlocked::Duress(d) if d.settings() == DuressSettings::default())
    );
}

#[test]
fn a_duress_passphrase_equal_to_the_real_one_is_refused() {
    let (_tmp, dir, mut p) = new_profile();
    p.set_duress(&pass(DURESS), settings()).unwrap();
    let before = snapshot(&dir);
    let err = p.set_duress(&pass(REAL), settings()).unwrap_err();
    assert!(matches!(err, StoreError::DuressIsReal), "{err}");
    let err = p.change_passphrase(&pass("new"), fast(), Some((&pass("new"), settings()))).unwrap_err();
    assert!(matches!(err, StoreError::DuressIsReal), "{err}");
    assert!(matches!(p.set_duress(&pass(""), settings()), Err(StoreError::EmptyPassphrase)));
    assert!(snapshot(&dir) == before, "nothing changed");
    drop(p);
    assert!(matches!(Profile::unlock(&dir, &pass(REAL)).unwrap(), Unlocked::Real(_)));
    assert!(matches!(Profile::unlock(&dir, &pass(DURESS)).unwrap(), Unlocked::Duress(_)));
}

#[test]
fn a_new_passphrase_drops_the_duress_one_unless_it_is_given_again() {
    let (_tmp, dir) = profile_with_duress();
    let mut p = Profile::open(&dir, &pass(REAL)).unwrap();
    let salt = |dir: &Path| fs::read(dir.join(HEADER_FILE)).unwrap()[23..39].to_vec();
    let old_salt = salt(&dir);
    p.change_passphrase(&pass("second"), fast(), None).unwrap();
    assert_ne!(salt(&dir), old_salt, "a new salt");
    drop(p);
    assert!(matches!(Profile::unlock(&dir, &pass(DURESS)), Err(StoreError::WrongPassphrase { .. })));
    assert!(matches!(Profile::unlock(&dir, &pass(REAL)), Err(StoreError::WrongPassphrase { .. })));
    let mut p = Profile::open(&dir, &pass("second")).unwrap();
    p.change_passphrase(&pass("third"), fast(), Some((&pass(DURESS), settings()))).unwrap();
    drop(p);
    assert!(
        matches!(Profile::unlock(&dir, &pass(DURESS)).unwrap(), Unlocked::Duress(d) if d.settings() == settings())
    );
    let p = Profile::open(&dir, &pass("third")).unwrap();
    assert_eq!(p.get("contacts", b"alice").unwrap().unwrap().as_slice(), &[0xa1; 3000][..]);
}

/// `needle` appears in no file of `dir`.
fn in_no_file(dir: &Path, needle: &[u8]) -> bool {
    snapshot(dir).values().all(|bytes| !bytes.windows(needle.len()).any(|w| w == needle))
}

/// After a wipe, neither the old header's bytes nor the database's ciphertext are in any file of
/// the directory, no header there opens with the real passphrase, and `lock` and `network.toml`
/// stay while `control.sock` goes.
#[test]
fn a_wipe_leaves_nothing_of_the_header_or_the_database() {
    let (_tmp, dir) = profile_with_duress();
    fs::write(dir.join("network.toml"), b"network file").unwrap();
    fs::write(dir.join("control.sock"), b"").unwrap();
    let header = fs::read(dir.join(HEADER_FILE)).unwrap();
    let db = fs::read(dir.join(DATABASE_FILE)).unwrap();
    // The sealed rows: long runs of the database's bytes that are not zero (its pages hold them).
    let rows: Vec<Vec<u8>> = {
        let conn = rusqlite::Connection::open_with_flags(
            dir.join(DATABASE_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn.prepare("SELECT value FROM kv").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(db.windows(32).any(|w| w == &r[24..56]), "the scan sees the rows");
    }

    wipe(&dir).unwrap();
    let after = snapshot(&dir);
    let names: Vec<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(names, [LOCK_FILE, "network.toml"]);
    assert_eq!(after["network.toml"], b"network file");
    assert!(in_no_file(&dir, &header[39..]), "the header's slots");
    assert!(in_no_file(&dir, &header[23..39]), "the header's salt");
    for r in &rows {
        assert!(in_no_file(&dir, &r[24..56]), "a row's ciphertext");
    }
    assert!(matches!(Profile::open(&dir, &pass(REAL)), Err(StoreError::NotFound { .. })));
    assert!(matches!(Profile::unlock(&dir, &pass(DURESS)), Err(StoreError::NotFound { .. })));
    // The directory takes a new profile.
    drop(Profile::create_with(&dir, &pass(REAL), fast()).unwrap());
}

#[test]
fn a_wipe_is_refused_while_the_profile_is_open_and_changes_nothing() {
    let (_tmp, dir, p) = new_profile();
    let before = snapshot(&dir);
    let err = wipe(&dir).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(snapshot(&dir) == before, "a file changed");
    drop(p);
    wipe(&dir).unwrap();
}

/// A wipe interrupted after the rename leaves `wipe-*` files: the next opening finishes them.
#[test]
fn files_left_by_an_interrupted_wipe_are_finished_at_the_next_opening() {
    let (_tmp, dir, p) = new_profile();
    drop(p);
    let leftover = dir.join(format!("{WIPE_PREFIX}0123456789abcdef"));
    fs::write(&leftover, vec![0x5a; 3 << 20]).unwrap();
    assert!(matches!(Profile::unlock(&dir, &pass("wrong")), Err(StoreError::WrongPassphrase { .. })));
    assert!(!leftover.exists());
    fs::write(&leftover, b"x").unwrap();
    wipe(&dir).unwrap();
    assert!(!leftover.exists());
}

/// The duress opening: the old profile destroyed, a fresh one under the duress passphrase with
/// the slot's gateway and traffic, no threads, the old passphrase refused.
#[test]
fn a_duress_opening_gives_an_empty_profile_with_the_slots_settings() {
    let (_tmp, dir) = profile_with_duress();
    let old_header = fs::read(dir.join(HEADER_FILE)).unwrap();
    let t = Instant::now();
    let opened = open_profile(&dir, &pass(DURESS), &gateways(), &mut rng()).unwrap();
    eprintln!("duress opening (8 KiB, t=1): {:?}", t.elapsed());
    assert_eq!(opened.duress, Some(settings()));
    assert!(opened.profile.get("contacts", b"alice").unwrap().is_none());
    assert_eq!(Engine::gateway_of(&opened.profile).unwrap(), NodeId([2; 32]));
    let now = SystemTime::now();
    let engine = Engine::open(opened.profile, EngineConfig::default(), now).unwrap();
    assert_eq!(engine.traffic(), TrafficProfile::Metered);
    assert!(engine.threads().unwrap().is_empty());
    drop(engine);
    assert!(in_no_file(&dir, &old_header[39..]));
    assert_eq!(fs::read(dir.join(HEADER_FILE)).unwrap().len(), HEADER_LEN);
    // Same salt and parameters (one Argon2id run), a new header.
    assert_eq!(fs::read(dir.join(HEADER_FILE)).unwrap()[..39], old_header[..39]);
    assert!(matches!(Profile::unlock(&dir, &pass(REAL)), Err(StoreError::WrongPassphrase { .. })));
    // The duress passphrase is now the profile's passphrase, and no duress slot remains.
    let again = open_profile(&dir, &pass(DURESS), &gateways(), &mut rng()).unwrap();
    assert_eq!(again.duress, None);
    assert!(Engine::is_initialized(&again.profile).unwrap());
}

#[test]
fn the_real_passphrase_opens_as_usual_through_open_profile() {
    let (_tmp, dir) = profile_with_duress();
    let opened = open_profile(&dir, &pass(REAL), &[], &mut rng()).unwrap();
    assert_eq!(opened.duress, None);
    assert!(opened.profile.get("contacts", b"alice").unwrap().is_some());
    drop(opened);
    // A duress opening with no gateway to give changes nothing.
    let before = snapshot(&dir);
    assert!(open_profile(&dir, &pass(DURESS), &[], &mut rng()).is_err());
    assert!(snapshot(&dir) == before, "a file changed");
}

/// `tests/data/profile-format1/` has a version-1 header: the real passphrase opens it and
/// rewrites it as version 2 with the same salt and parameters; a wrong one changes nothing.
#[test]
fn a_version_1_header_is_rewritten_as_version_2() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/profile-format1");
    let tmp = tempfile::tempdir().unwrap();
    for f in [HEADER_FILE, DATABASE_FILE] {
        fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let v1 = fs::read(tmp.path().join(HEADER_FILE)).unwrap();
    assert_eq!((v1.len(), &v1[8..10]), (111, &[0, 1][..]));
    assert!(matches!(Profile::unlock(tmp.path(), &pass("wrong")), Err(StoreError::WrongPassphrase { .. })));
    let before = snapshot(tmp.path());
    assert!(matches!(Profile::unlock(tmp.path(), &pass("wrong")), Err(StoreError::WrongPassphrase { .. })));
    assert!(snapshot(tmp.path()) == before, "a wrong passphrase changed a file");
    let p = Profile::open(tmp.path(), &pass(FIXTURE_PASSPHRASE)).unwrap();
    let rows = p.keys("engine.settings").len();
    drop(p);
    let v2 = fs::read(tmp.path().join(HEADER_FILE)).unwrap();
    assert_eq!(v2.len(), HEADER_LEN);
    assert_eq!(&v2[8..10], &[0, 2]);
    assert_eq!(v2[..8], v1[..8]);
    assert_eq!(v2[10..39], v1[10..39], "same parameters and salt");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(tmp.path().join(HEADER_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
    let p = Profile::open(tmp.path(), &pass(FIXTURE_PASSPHRASE)).unwrap();
    assert_eq!(p.keys("engine.settings").len(), rows);
    drop(p);
    assert_eq!(fs::read(tmp.path().join(HEADER_FILE)).unwrap(), v2, "rewritten once");
}

/// The committed version-2 fixture opens with its passphrase, and its duress passphrase finds
/// its slot.
#[test]
fn the_version_2_fixture_opens() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/profile-header2");
    let tmp = tempfile::tempdir().unwrap();
    for f in [HEADER_FILE, DATABASE_FILE] {
        fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    assert_eq!(fs::read(tmp.path().join(HEADER_FILE)).unwrap().len(), HEADER_LEN);
    let before = snapshot(tmp.path());
    let p = Profile::open(tmp.path(), &pass(FIXTURE_PASSPHRASE)).unwrap();
    assert_eq!(p.get("fixture", b"row").unwrap().unwrap().as_slice(), b"written by write_header_v2_fixture");
    drop(p);
    match Profile::unlock(tmp.path(), &pass(FIXTURE_DURESS)).unwrap() {
        Unlocked::Duress(d) => assert_eq!(d.settings(), fixture_settings()),
        Unlocked::Real(_) => panic!("the duress passphrase opened the real slot"),
    }
    assert_eq!(snapshot(tmp.path())[HEADER_FILE], before[HEADER_FILE], "the header is unchanged");
}

fn fixture_settings() -> DuressSettings {
    DuressSettings { gateway_index: 1, traffic: 1, language: 2, lock_timeout_secs: 300 }
}

/// Writes `tests/data/profile-header2/` into `$QANAT_PROFILE_FIXTURE`: a profile with a
/// version-2 header holding a duress slot ([`fixture_settings`]), one row, the weak parameters.
///
/// ```text
/// QANAT_PROFILE_FIXTURE=/tmp/fx cargo test -p qanat-client --test duress write_header_v2_fixture -- --ignored
/// ```
#[test]
#[ignore = "writes a fixture: run by hand on the commit before the header format changes"]
fn write_header_v2_fixture() {
    let out = PathBuf::from(std::env::var_os("QANAT_PROFILE_FIXTURE").expect("QANAT_PROFILE_FIXTURE"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let mut p = Profile::create_with(&dir, &pass(FIXTURE_PASSPHRASE), fast()).unwrap();
    p.put("fixture", b"row", b"written by write_header_v2_fixture").unwrap();
    p.set_duress(&pass(FIXTURE_DURESS), fixture_settings()).unwrap();
    drop(p);
    fs::create_dir_all(&out).unwrap();
    for f in [HEADER_FILE, DATABASE_FILE] {
        fs::copy(dir.join(f), out.join(f)).unwrap();
    }
}
