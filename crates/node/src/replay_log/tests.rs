use std::time::Duration;

use super::*;

fn tag(i: u8) -> ReplayTag {
    ReplayTag([i; 32])
}

fn batch(id: u64, epoch: u64, tags: &[u8]) -> ReplayBatch {
    ReplayBatch { id, tags: tags.iter().map(|i| (epoch, tag(*i))).collect() }
}

/// Appends batches and waits until the last is reported durable.
fn write(log: &mut ReplayLog, batches: Vec<ReplayBatch>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let last = batches.iter().map(|b| b.id).max().unwrap();
    for b in batches {
        log.append(b);
    }
    rt.block_on(async {
        loop {
            let id = tokio::time::timeout(Duration::from_secs(10), log.durable()).await.unwrap().unwrap();
            if id >= last {
                break;
            }
        }
    });
}

fn all_keys(_: u64) -> bool {
    true
}

#[test]
fn tags_written_are_read_back_and_logs_of_erased_keys_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = ReplayLog::open(dir.path(), all_keys).unwrap();
    write(&mut log, vec![batch(1, 7, &[1, 2]), batch(2, 8, &[3])]);
    write(&mut log, vec![batch(3, 7, &[4]), ReplayBatch { id: 4, tags: vec![] }]);
    assert_eq!(log.metrics().fsyncs.load(Ordering::Relaxed), 3);
    drop(log);
    let path = replay_dir(dir.path()).join("epoch-7.tags");
    assert_eq!(fs::metadata(&path).unwrap().len(), 24 + (4 + 64 + 8) + (4 + 32 + 8));
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(replay_dir(dir.path())).unwrap().permissions().mode() & 0o777, 0o700);

    let mut log = ReplayLog::open(dir.path(), |e| e == 7).unwrap();
    assert_eq!(log.recovered_epochs(), vec![7]);
    assert!(!replay_dir(dir.path()).join("epoch-8.tags").exists(), "its key is gone");
    assert_eq!(log.installed(7), vec![tag(1), tag(2), tag(4)]);
    assert!(log.installed(7).is_empty(), "handed out once");
    // Tags of a key not installed yet survive the expiry of others while it may still come.
    let mut other = ReplayLog::open(dir.path(), all_keys).unwrap();
    other.retain(&[8]);
    assert_eq!(other.installed(7).len(), 3, "epoch 7 may still be installed after 8");
    drop(other);
    // Appending after a restart continues the same file.
    write(&mut log, vec![batch(1, 7, &[5])]);
    // The key expires: its log goes with it.
    log.retain(&[9]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(std::time::Instant::now() < deadline, "log of an expired key not deleted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_torn_last_batch_is_cut_off_and_appending_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = ReplayLog::open(dir.path(), all_keys).unwrap();
    write(&mut log, vec![batch(1, 7, &[1, 2])]);
    drop(log);
    let path = replay_dir(dir.path()).join("epoch-7.tags");
    let good = fs::metadata(&path).unwrap().len();
    // Three kinds of torn write: a partial batch, a full one with a bad checksum, zeros.
    let mut rec = Vec::new();
    encode_batches(7, &[tag(3)], &mut rec);
    let last = rec.len() - 1;
    rec[last] ^= 1;
    for tail in [&rec[..20], &rec[..], &[0u8; 50][..]] {
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(tail).unwrap();
        drop(f);
        let mut log = ReplayLog::open(dir.path(), all_keys).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        assert_eq!(log.installed(7), vec![tag(1), tag(2)]);
    }
    let mut log = ReplayLog::open(dir.path(), all_keys).unwrap();
    write(&mut log, vec![batch(1, 7, &[9])]);
    drop(log);
    let mut log = ReplayLog::open(dir.path(), all_keys).unwrap();
    assert_eq!(log.installed(7), vec![tag(1), tag(2), tag(9)]);
}

/// Writes `bytes` as the log of epoch 7 and opens the directory.
fn open_with(bytes: &[u8]) -> (tempfile::TempDir, Result<ReplayLog, ReplayLogError>) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(replay_dir(dir.path())).unwrap();
    fs::write(replay_dir(dir.path()).join("epoch-7.tags"), bytes).unwrap();
    let r = ReplayLog::open(dir.path(), all_keys);
    (dir, r)
}

fn good_log(tags: &[ReplayTag]) -> Vec<u8> {
    let mut b = header(7).to_vec();
    encode_batches(7, tags, &mut b);
    b
}

#[test]
fn damaged_or_foreign_logs_are_refused_with_the_file_named() {
    let mut middle = good_log(&[tag(1), tag(2)]);
    encode_batches(7, &[tag(3)], &mut middle);
    middle[24 + 4 + 5] ^= 0x80; // inside the first batch, with a second one after it
    let mut version = good_log(&[tag(1)]);
    version[8] = 2;
    let mut magic = good_log(&[tag(1)]);
    magic[0] = b'X';
    let mut epoch = good_log(&[tag(1)]);
    epoch[23] = 8;
    let mut zero_count = good_log(&[tag(1)]);
    zero_count.extend_from_slice(&[0, 0, 0, 0, 1]);
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("middle", middle, "checksum mismatch in the batch at byte 24"),
        ("version", version, "format version 2, this version of Qanat reads version 1"),
        ("magic", magic, "not a Qanat replay log"),
        ("epoch", epoch, "holds the tags of epoch 8, not 7"),
        ("short", b"garbage".to_vec(), "shorter than its 24-byte header"),
        ("zero count", zero_count, "a batch of no tags"),
    ];
    for (name, bytes, want) in cases {
        let (_dir, r) = open_with(&bytes);
        let msg = r.map(|_| ()).unwrap_err().to_string();
        assert!(msg.contains("epoch-7.tags"), "{name}: {msg}");
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(msg.to_lowercase().contains("delete"), "{name}: says what to do: {msg}");
    }
    // A file cut off in its header was never written to: removed, not an error.
    let (dir, r) = open_with(&header(7)[..11]);
    assert!(r.unwrap().recovered_epochs().is_empty());
    assert!(!replay_dir(dir.path()).join("epoch-7.tags").exists());
}

proptest::proptest! {
    /// Whatever bytes a log holds, opening it gives tags or an error, never a panic; and any
    /// prefix of a good log (a crash while appending) opens with a prefix of its tags.
    #[test]
    fn opening_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400), cut in 0usize..200) {
        let (_d, _) = open_with(&bytes);
        let tags: Vec<ReplayTag> = (0..4).map(tag).collect();
        let mut good = good_log(&tags[..2]);
        encode_batches(7, &tags[2..], &mut good);
        let cut = cut.min(good.len());
        let (_d, r) = open_with(&good[..cut]);
        let got = r.unwrap().installed(7);
        proptest::prop_assert!(tags.starts_with(&got));
    }
}

/// Format version 1, byte for byte: a change here is a new format version.
#[test]
fn file_format_is_stable() {
    let bytes = good_log(&[tag(1), tag(2)]);
    let mut want = b"QNATRPL\0".to_vec();
    want.push(1);
    want.extend_from_slice(&[0; 7]);
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&2u32.to_be_bytes());
    want.extend_from_slice(&[1; 32]);
    want.extend_from_slice(&[2; 32]);
    want.extend_from_slice(&[0xf9, 0xe7, 0xee, 0x49, 0x23, 0x39, 0xc4, 0x02]);
    assert_eq!(bytes, want);
}
