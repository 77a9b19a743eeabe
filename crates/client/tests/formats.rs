//! Profiles of earlier formats are refused with a message that says what to do, never a panic,
//! and opening one changes none of its bytes.
//!
//! `tests/data/profile-format1/` is a profile made by the client before mailbox items were
//! sealed (engine rows of format 1: no seal keys), passphrase "fixture passphrase", with the
//! test-only weak KDF parameters.

use std::path::Path;

use qanat_client::engine::{ENGINE_FORMAT, Engine, EngineConfig, EngineError};
use qanat_client::store::{DATABASE_FILE, HEADER_FILE, Passphrase, Profile};

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let dir = tempfile::tempdir().unwrap();
    for f in [HEADER_FILE, DATABASE_FILE] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn a_profile_of_format_1_is_refused_by_name() {
    let dir = copy_fixture("profile-format1");
    let before = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
    let profile = Profile::open(dir.path(), &Passphrase::new("fixture passphrase")).unwrap();
    assert!(Engine::is_initialized(&profile).unwrap());
    let err = Engine::open(profile, EngineConfig::default()).unwrap_err();
    assert!(matches!(err, EngineError::Format(1)), "{err}");
    let text = err.to_string();
    assert!(text.contains("format 1") && text.contains(&format!("format {ENGINE_FORMAT}")), "{text}");
    assert!(text.contains("qanat init"), "says what to do: {text}");
    assert_eq!(std::fs::read(dir.path().join(DATABASE_FILE)).unwrap(), before, "nothing changed");
}
