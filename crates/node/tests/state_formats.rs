//! A node's state on disk, written by format 1 of the key store and of the replay log, is read
//! back by this code: the committed fixture `tests/data/node-format1/` (a data directory: identity,
//! link and three packet keys, and the replay log of one epoch) is opened as a restarted node opens
//! its data directory, and every key and tag comes back as it was written.
//!
//! When a format changes, keep this test on the old fixture (the new code must read it or refuse
//! it with its named error) and add a fixture of the new format with `write_node_state_fixture`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng as _;
use qanat_mixnet::ReplayBatch;
use qanat_node::{KeyWindow, NodeKeys, ReplayLog};
use qanat_packet::{ReplayTag, Scheme};
use qanat_pki::{Epoch, EpochPeriod, UnixMillis};

const PERIOD_SECS: u64 = 3600;
const EPOCH: u64 = 490_000;
const SCHEME: Scheme = Scheme::X25519Kem;
/// What the fixture's keys are, as written: the identity's public key, the SHA-256 of the link
/// public key and of each packet secret key.
const IDENTITY_PUBLIC: &str = "478b8e507e0bb2b18c0f9e0824769e8562d10df9abe2e774896f82b4b4405266";
const LINK_PUBLIC_SHA256: &str = "915c1649e11362d442ab103c09241d9ea21fdd5d6cd07979f8ddf8c3948b228a";
const PACKET_SECRETS_SHA256: [&str; 3] = [
    "31db98ee90bee76889ebcd89a7188ba239254d73361d4c1f3f68eef2b8c4d1a4",
    "95d08bd7cf716df7b35dc4cb657ee07e36ea81f2752355c0bce2df05a55a31f7",
    "6aed03286a3a7772146a3ec4d431833237418e106272c28bffcac9f2cb87e683",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/node-format1")
}

fn period() -> EpochPeriod {
    EpochPeriod::from_secs(PERIOD_SECS).expect("period")
}

/// One second into the fixture's epoch.
fn now() -> UnixMillis {
    Epoch(EPOCH).start(period()).plus_millis(1000)
}

fn tags() -> Vec<ReplayTag> {
    (1..=5u8).map(|i| ReplayTag([i; 32])).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Copies the fixture into a fresh directory with the modes a node gives its files (git keeps
/// none of them).
fn copy_fixture(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).expect("mkdir");
        fs::set_permissions(to, fs::Permissions::from_mode(0o700)).expect("chmod dir");
        for entry in fs::read_dir(from).expect("read fixture") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                fs::copy(entry.path(), &target).expect("copy");
                fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).expect("chmod");
            }
        }
    }
    copy(&fixture(), to);
}

#[test]
fn a_data_directory_of_format_1_opens_with_every_key_and_tag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_fixture(tmp.path());
    // An RNG the store must not need: every key is on disk, so nothing is generated.
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let keys = NodeKeys::open(tmp.path(), KeyWindow::default(), now(), period(), SCHEME, &mut rng)
        .expect("the format-1 key store opens");
    assert_eq!(hex::encode(keys.identity().public().to_bytes()), IDENTITY_PUBLIC);
    assert_eq!(sha256_hex(&keys.link().public_key().to_bytes()), LINK_PUBLIC_SHA256);
    let packet: Vec<(u64, String)> =
        keys.packet_keys().map(|(e, k)| (e.0, sha256_hex(k.to_bytes().as_ref()))).collect();
    let want: Vec<(u64, String)> =
        (0..3).map(|i| (EPOCH + i as u64, PACKET_SECRETS_SHA256[i].to_owned())).collect();
    assert_eq!(packet, want, "the packet keys of the window, each of the scheme it was written with");
    assert!(keys.packet_keys().all(|(_, k)| k.scheme() == SCHEME));

    let mut log = ReplayLog::open(tmp.path(), |e| keys.packet_key(Epoch(e)).is_some())
        .expect("the format-1 replay log opens");
    assert_eq!(log.recovered_epochs(), [EPOCH]);
    assert_eq!(log.installed(EPOCH), tags());
    // Opening read nothing it did not understand: the files are as committed.
    for name in ["keys/identity.key", "keys/link.key", &format!("replay/epoch-{EPOCH}.tags")] {
        assert_eq!(
            fs::read(tmp.path().join(name)).expect("read"),
            fs::read(fixture().join(name)).expect("read fixture"),
            "{name} is unchanged"
        );
    }
}

/// Writes `tests/data/node-format1/` with this code. Run by hand, on the last commit of a format,
/// before changing it: `cargo test -p qanat-node --test state_formats -- --ignored`.
#[test]
#[ignore = "writes the committed fixture; run by hand before a format change"]
fn write_node_state_fixture() {
    let dir = fixture();
    let _ = fs::remove_dir_all(&dir);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let keys = NodeKeys::open(&dir, KeyWindow::default(), now(), period(), SCHEME, &mut rng).expect("keys");
    let mut log = ReplayLog::open(&dir, |_| true).expect("log");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    log.append(ReplayBatch { id: 1, tags: tags().into_iter().map(|t| (EPOCH, t)).collect() });
    assert_eq!(runtime.block_on(log.durable()), Some(1));
    println!("IDENTITY_PUBLIC = {}", hex::encode(keys.identity().public().to_bytes()));
    println!("LINK_PUBLIC_SHA256 = {}", sha256_hex(&keys.link().public_key().to_bytes()));
    for (e, k) in keys.packet_keys() {
        println!("packet {} = {}", e.0, sha256_hex(k.to_bytes().as_ref()));
    }
}
