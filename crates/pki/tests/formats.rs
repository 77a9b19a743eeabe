//! Directory messages of every version are read by this code: the committed fixtures in
//! `tests/data/directory-v1/` and `directory-v2/` (each a document of a simulated round, signed
//! by its three authorities, and one of the votes it was tabulated from) decode, verify, and
//! re-encode to the same bytes. Version 1 was written before version 2 existed (commit c739ca0);
//! version 2 adds the file limits to the parameters (`docs/ATTACHMENTS.md` §3.12).
//!
//! Documents and votes are not kept on disk, but they cross versions on the wire: a node or client
//! reads documents of authorities older than itself, and an authority the votes of its peers. When
//! a version changes, keep the test of the old fixture and add one of the new version, written by
//! `write_directory_fixtures` (which writes the current version).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use qanat_pki::{AuthoritySet, Document, Epoch, FileLimits, IdentityKey, SignedVote, UnverifiedDocument};

/// The epoch of every fixture's document and vote.
const EPOCH: Epoch = Epoch(100_001);

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn read(dir: &str, file: &str) -> Vec<u8> {
    let path = fixture_dir(dir).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The authority set of a fixture: its `authorities.bin`, 32-byte identity keys one after another.
fn authorities(dir: &str) -> AuthoritySet {
    let bytes = read(dir, "authorities.bin");
    assert_eq!(bytes.len() % 32, 0);
    AuthoritySet::new(bytes.chunks(32).map(|k| IdentityKey::from_bytes(k.try_into().unwrap()).unwrap()))
        .unwrap()
}

/// Opens `dir`'s document and vote as a node, a client and an authority would: both decode and
/// verify, come back to the same bytes, and carry the same parameters, which are returned.
fn open(dir: &str) -> (Document, SignedVote) {
    let set = authorities(dir);
    let bytes = read(dir, "document.bin");
    let doc = Document::verify(&bytes, &set, EPOCH).unwrap_or_else(|e| panic!("{dir}: {e}"));
    assert_eq!(doc.signers().len(), 3);
    assert_eq!(doc.to_bytes(), bytes);
    assert_eq!(UnverifiedDocument::decode(&bytes).unwrap().to_bytes(), bytes);
    assert_eq!(doc.nodes().len(), 8);
    assert_eq!((doc.layer_count(), doc.gateways().count()), (3, 2));
    let vote_bytes = read(dir, "vote.bin");
    let vote = SignedVote::decode(&vote_bytes).unwrap_or_else(|e| panic!("{dir}: {e}"));
    assert_eq!(vote.as_bytes(), &vote_bytes[..]);
    assert_eq!(vote.epoch(), EPOCH);
    assert!(set.contains(vote.authority()));
    assert_eq!(vote.parameters(), doc.parameters());
    assert_eq!(vote.descriptors().len(), 8);
    (doc, vote)
}

/// A version-1 document and vote mean 1 MiB files and no fast mode.
#[test]
fn a_document_and_a_vote_of_version_1_are_read() {
    let (doc, vote) = open("directory-v1");
    let p = doc.parameters();
    assert_eq!(*p, params());
    assert_eq!((doc.body_bytes()[0], vote.as_bytes()[0], p.version()), (1, 1, 1), "the versions");
    assert_eq!(p.file_limits(), FileLimits::VERSION_1);
    assert_eq!((p.max_file_bytes(), p.fast_factor_max()), (1 << 20, 1));
}

#[test]
fn a_document_and_a_vote_of_version_2_are_read() {
    let (doc, vote) = open("directory-v2");
    let p = doc.parameters();
    assert_eq!(*p, params_v2());
    assert_eq!((doc.body_bytes()[0], vote.as_bytes()[0], p.version()), (2, 2, 2), "the versions");
    assert_eq!((p.max_file_bytes(), p.fast_factor_max()), (4 << 20, 4));
    // Apart from the limits, the same parameters as version 1's.
    let (v1, _) = open("directory-v1");
    let mut c = p.config();
    c.file_limits = None;
    assert_eq!(c, v1.parameters().config());
}

/// Writes `tests/data/directory-v2/` (the current version) from a simulated round: run by hand
/// before a format change, with
/// `cargo test -p qanat-pki --release --test formats write_directory_fixtures -- --ignored`.
#[test]
#[ignore = "writes the committed fixture; run by hand before a format change"]
fn write_directory_fixtures() {
    let mut sim = Sim::with_params(500, 3, 6, 2, params_v2());
    sim.run_through(first_epoch());
    let out = fixture_dir("directory-v2");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("document.bin"), &sim.published[0][&EPOCH]).unwrap();
    // A peer message is its kind, then the vote.
    std::fs::write(out.join("vote.bin"), &sim.samples[&VOTE][1..]).unwrap();
    let keys: Vec<u8> = sim.keys.iter().flat_map(|k| *k.as_bytes()).collect();
    std::fs::write(out.join("authorities.bin"), keys).unwrap();
}
