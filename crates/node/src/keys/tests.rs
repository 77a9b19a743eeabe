use std::os::unix::fs::PermissionsExt as _;

use super::*;
use chacha20::ChaCha20Rng;
use rand_core::SeedableRng as _;

const PERIOD_SECS: u64 = 60;

fn period() -> EpochPeriod {
    EpochPeriod::from_secs(PERIOD_SECS).unwrap()
}

/// The start of epoch `e` plus one second.
fn at(e: u64) -> UnixMillis {
    Epoch(e).start(period()).plus_millis(1000)
}

fn open(dir: &Path, now: UnixMillis, seed: u64) -> Result<NodeKeys, KeyStoreError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    NodeKeys::open(dir, KeyWindow::default(), now, period(), Scheme::X25519Kem, &mut rng)
}

fn epochs(k: &NodeKeys) -> Vec<u64> {
    k.packet_keys().map(|(e, _)| e.0).collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("keys/packet"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn first_start_creates_and_second_start_loads_the_same_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), at(100), 1).unwrap();
    assert_eq!(epochs(&a), [100, 101, 102]);
    // A different RNG: anything it made would differ.
    let b = open(tmp.path(), at(100), 2).unwrap();
    assert_eq!(a.identity().public(), b.identity().public());
    assert_eq!(a.link().public_key(), b.link().public_key());
    for (e, k) in a.packet_keys() {
        let other = b.packet_key(e).unwrap();
        assert_eq!(k.public_key(), other.public_key());
        assert_eq!(*k.to_bytes(), *other.to_bytes());
    }
    assert_eq!(epochs(&b), [100, 101, 102]);
}

#[test]
fn rotation_keeps_exactly_the_window_and_published_keys_survive_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut k = open(tmp.path(), at(100), 3).unwrap();
    let published = k.packet_key(Epoch(102)).unwrap().public_key();

    let r = k.rotate(at(101), period(), Scheme::X25519Kem, &mut rng).unwrap();
    assert_eq!(r.created, [Epoch(103)]);
    assert!(r.deleted.is_empty(), "epoch 100 is within the grace window");
    assert_eq!(epochs(&k), [100, 101, 102, 103]);

    let r = k.rotate(at(102), period(), Scheme::X25519Kem, &mut rng).unwrap();
    assert_eq!(r.created, [Epoch(104)]);
    assert_eq!(r.deleted, [Epoch(100)]);
    assert_eq!(epochs(&k), [101, 102, 103, 104]);
    assert_eq!(files(tmp.path()), ["epoch-101.key", "epoch-102.key", "epoch-103.key", "epoch-104.key"]);

    // A restart (even after a long pause) keeps the key it published for epoch 102 while
    // it is inside the window, and never regenerates it.
    let k2 = open(tmp.path(), at(102), 4).unwrap();
    assert_eq!(k2.packet_key(Epoch(102)).unwrap().public_key(), published);

    // After a long pause every old key is gone; keys are created from the current epoch on,
    // never for epochs already past.
    let k3 = open(tmp.path(), at(110), 5).unwrap();
    assert_eq!(epochs(&k3), [110, 111, 112]);
    assert_eq!(files(tmp.path()), ["epoch-110.key", "epoch-111.key", "epoch-112.key"]);
}

#[test]
fn key_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(7), 6).unwrap();
    let keys = tmp.path().join("keys");
    for p in [keys.join("identity.key"), keys.join("link.key"), keys.join("packet/epoch-7.key")] {
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    for d in [keys.clone(), keys.join("packet")] {
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

fn assert_corrupt(err: KeyStoreError, file: &Path, words: &str) {
    let msg = err.to_string();
    assert!(matches!(err, KeyStoreError::Corrupt { .. }), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains(words), "{msg}");
}

#[test]
fn corrupt_and_truncated_files_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(5), 7).unwrap();
    let id = tmp.path().join("keys/identity.key");
    let good = fs::read(&id).unwrap();

    fs::write(&id, &good[..good.len() - 1]).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &id, "truncated");

    fs::write(&id, &good[..10]).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &id, "truncated");

    fs::write(&id, b"").unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &id, "truncated");

    let mut flipped = good.clone();
    flipped[HEADER_LEN + 3] ^= 1;
    fs::write(&id, &flipped).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &id, "checksum");

    let mut magic = good.clone();
    magic[0] = b'X';
    fs::write(&id, &magic).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &id, "magic");

    // A link key where the identity key belongs.
    fs::copy(tmp.path().join("keys/link.key"), &id).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &id, "kind");

    fs::write(&id, &good).unwrap();
    let pk = tmp.path().join("keys/packet/epoch-6.key");
    fs::copy(tmp.path().join("keys/packet/epoch-5.key"), &pk).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &pk, "epoch 5");

    fs::write(&pk, vec![0u8; 100_000]).unwrap();
    assert_corrupt(open(tmp.path(), at(5), 7).unwrap_err(), &pk, "longer");
}

#[test]
fn every_truncation_of_every_file_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(5), 8).unwrap();
    for name in ["identity.key", "link.key", "packet/epoch-6.key"] {
        let p = tmp.path().join("keys").join(name);
        let good = fs::read(&p).unwrap();
        for len in 0..good.len() {
            fs::write(&p, &good[..len]).unwrap();
            assert!(open(tmp.path(), at(5), 8).is_err(), "{name} cut to {len} bytes");
        }
        fs::write(&p, &good).unwrap();
    }
    open(tmp.path(), at(5), 8).unwrap();
}

#[test]
fn a_lost_identity_key_is_not_silently_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(5), 9).unwrap();
    fs::remove_file(tmp.path().join("keys/identity.key")).unwrap();
    let err = open(tmp.path(), at(5), 9).unwrap_err();
    assert!(matches!(err, KeyStoreError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("identity.key"), "{err}");
}

#[test]
fn a_first_start_cut_short_after_the_link_key_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(5), 13).unwrap();
    let keys = tmp.path().join("keys");
    fs::remove_file(keys.join("identity.key")).unwrap();
    for e in 5..=7 {
        fs::remove_file(keys.join(format!("packet/epoch-{e}.key"))).unwrap();
    }
    let k = open(tmp.path(), at(5), 14).unwrap();
    assert_eq!(epochs(&k), [5, 6, 7]);
    assert!(keys.join("identity.key").exists());
}

#[test]
fn leftover_temporary_files_are_removed_and_foreign_files_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(5), 10).unwrap();
    let packet = tmp.path().join("keys/packet");
    fs::write(packet.join("epoch-9.key.tmp"), b"half").unwrap();
    fs::write(packet.join("README"), b"operator notes").unwrap();
    open(tmp.path(), at(5), 10).unwrap();
    assert!(!packet.join("epoch-9.key.tmp").exists());
    assert!(packet.join("README").exists());
}

#[test]
fn keys_of_another_scheme_are_kept_until_they_expire() {
    let tmp = tempfile::tempdir().unwrap();
    open(tmp.path(), at(5), 11).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let k =
        NodeKeys::open(tmp.path(), KeyWindow::default(), at(6), period(), Scheme::XWing, &mut rng).unwrap();
    assert_eq!(k.packet_key(Epoch(6)).unwrap().scheme(), Scheme::X25519Kem);
    assert_eq!(k.packet_key(Epoch(8)).unwrap().scheme(), Scheme::XWing);
}

/// Pins the file format: a known key encodes to known bytes.
#[test]
fn file_format_is_stable() {
    let bytes = encode(KIND_PACKET, 2, 0x0102, &[0xAB; 32]);
    let expected_header = "514e41544b4559000103020000000000000001020020";
    assert_eq!(hex::encode(&bytes[..HEADER_LEN]), expected_header);
    assert_eq!(bytes.len(), HEADER_LEN + 32 + CHECKSUM_LEN);
    let d = decode(Path::new("x"), &bytes, KIND_PACKET).unwrap();
    assert_eq!((d.scheme, d.epoch, d.body.as_slice()), (2, 0x0102, [0xAB; 32].as_slice()));
}

#[test]
fn deleting_a_packet_key_deletes_its_replay_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut k = open(tmp.path(), at(100), 3).unwrap();
    let logs = crate::replay_log::replay_dir(tmp.path());
    fs::create_dir_all(&logs).unwrap();
    for e in [100, 101] {
        fs::write(logs.join(format!("epoch-{e}.tags")), b"tags").unwrap();
    }
    let r = k.rotate(at(102), period(), Scheme::X25519Kem, &mut rng).unwrap();
    assert_eq!(r.deleted, [Epoch(100)]);
    assert!(!logs.join("epoch-100.tags").exists());
    assert!(logs.join("epoch-101.tags").exists());
}
