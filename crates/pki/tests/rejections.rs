//! What authorities, nodes and clients must refuse, each with its typed error, and the
//! majority rule for document signatures (property test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use qanat_packet::{Scheme, SecretKey};
use qanat_pki::{
    Action, Authority, AuthorityConfig, AuthoritySet, DecodeError, DescriptorRejected, Document, Epoch,
    IdentitySecret, LinkAddress, NodeDescriptor, PeerMessageError, Role, UnverifiedDocument, VerifyError,
};

/// A 3-authority network that ran until the document of `first_epoch() + 1` was published.
fn published_sim() -> Sim {
    let mut sim = Sim::new(42, 3, 6, 2);
    sim.run_through(first_epoch());
    sim
}

#[test]
fn descriptor_uploads_are_checked() {
    let mut sim = published_sim();
    let e1 = first_epoch().next();
    // Mid-e1, before the vote: uploads for e1+1 are accepted.
    let now = e1.start(period()).plus_millis(200);
    let target = e1.next();
    let good = sim.nodes[0].descriptor(target);
    let auth = &mut sim.authorities[0];
    assert_eq!(auth.handle_descriptor(now, good.as_bytes()), Ok(target));

    // A forged descriptor: one bit of the signature flipped.
    let mut forged = good.as_bytes().to_vec();
    *forged.last_mut().unwrap() ^= 1;
    assert_eq!(
        auth.handle_descriptor(now, &forged),
        Err(DescriptorRejected::Malformed(DecodeError::BadSignature { what: "descriptor" }))
    );
    // Garbage and truncation.
    assert!(matches!(auth.handle_descriptor(now, &[1, 2, 3]), Err(DescriptorRejected::Malformed(_))));
    assert!(matches!(
        auth.handle_descriptor(now, &good.as_bytes()[..good.as_bytes().len() - 65]),
        Err(DescriptorRejected::Malformed(_))
    ));

    // A node outside the allowlist.
    let mut r = rng(5);
    let stranger = IdentitySecret::generate(&mut r);
    let keys = (0..3).map(|_| SecretKey::generate(SCHEME, &mut r).public_key()).collect();
    let addr = LinkAddress::parse("stranger.example:1").unwrap();
    let d = NodeDescriptor::new(target, stranger.public(), Role::Mix, addr.clone(), vec![1; 32], keys)
        .unwrap()
        .sign(&stranger)
        .unwrap();
    assert_eq!(auth.handle_descriptor(now, d.as_bytes()), Err(DescriptorRejected::NotAllowed));

    // An allowed node with keys of another scheme.
    let node = &sim.nodes[1];
    let keys = (0..3).map(|_| SecretKey::generate(Scheme::X25519Nike, &mut r).public_key()).collect();
    let d = NodeDescriptor::new(target, node.secret.public(), Role::Mix, addr.clone(), vec![1; 32], keys)
        .unwrap()
        .sign(&node.secret)
        .unwrap();
    assert_eq!(auth.handle_descriptor(now, d.as_bytes()), Err(DescriptorRejected::WrongScheme));

    // A node changing a key already published for e1+1.
    let keys = (0..3).map(|_| SecretKey::generate(SCHEME, &mut r).public_key()).collect();
    let d = NodeDescriptor::new(target, node.secret.public(), Role::Mix, addr, vec![1; 32], keys)
        .unwrap()
        .sign(&node.secret)
        .unwrap();
    assert_eq!(auth.handle_descriptor(now, d.as_bytes()), Err(DescriptorRejected::KeyChanged));

    // Too late (after the vote, or for an epoch already begun) and too early.
    let after_vote = e1.schedule(period()).vote();
    assert_eq!(auth.handle_descriptor(after_vote, good.as_bytes()), Err(DescriptorRejected::TooLate(target)));
    let old = sim.nodes[2].descriptor(e1);
    let auth = &mut sim.authorities[0];
    assert_eq!(auth.handle_descriptor(now, old.as_bytes()), Err(DescriptorRejected::TooLate(e1)));
    let far = sim.nodes[2].descriptor(e1.plus(3));
    let auth = &mut sim.authorities[0];
    assert_eq!(auth.handle_descriptor(now, far.as_bytes()), Err(DescriptorRejected::TooEarly(e1.plus(3))));
}

#[test]
fn documents_are_checked() {
    let sim = published_sim();
    let e = first_epoch().next();
    let bytes = sim.published[0][&e].clone();
    let doc = Document::verify(&bytes, &sim.set, e).unwrap();
    assert_eq!(doc.signers().len(), 3);
    assert_eq!(UnverifiedDocument::decode(&bytes).unwrap().to_bytes(), bytes);
    assert_eq!(doc.to_bytes(), bytes);

    // For the wrong epoch.
    assert_eq!(
        Document::verify(&bytes, &sim.set, e.next()).unwrap_err(),
        VerifyError::WrongEpoch { expected: e.next(), got: e }
    );

    // Signed by a minority.
    let (body, sigs) = split_document(&bytes);
    let minority = join_document(&body, &sigs[..1]);
    assert_eq!(
        Document::verify(&minority, &sim.set, e).unwrap_err(),
        VerifyError::NotEnoughSignatures { valid: 1, needed: 2 }
    );
    // The same signer twice is not two signatures.
    let twice = join_document(&body, &[sigs[0], sigs[0]]);
    assert_eq!(
        Document::verify(&twice, &sim.set, e).unwrap_err(),
        VerifyError::Malformed(DecodeError::NotCanonical { what: "signature list" })
    );
    // A wrong signature by a configured authority.
    let mut bad = sigs.clone();
    bad[1].1[5] ^= 1;
    assert_eq!(
        Document::verify(&join_document(&body, &bad), &sim.set, e).unwrap_err(),
        VerifyError::BadSignature
    );
    // A changed body: every signature fails.
    let mut changed = body.clone();
    let last = changed.len() - 70;
    changed[last] ^= 1;
    assert!(Document::verify(&join_document(&changed, &sigs), &sim.set, e).is_err());
    // Signatures by keys outside the configured set do not count.
    let mut r = rng(77);
    let others = AuthoritySet::new((0..3).map(|_| IdentitySecret::generate(&mut r).public())).unwrap();
    assert_eq!(
        Document::verify(&bytes, &others, e).unwrap_err(),
        VerifyError::NotEnoughSignatures { valid: 0, needed: 2 }
    );
    // Truncated and extended.
    assert!(Document::verify(&bytes[..bytes.len() - 1], &sim.set, e).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Document::verify(&longer, &sim.set, e).unwrap_err(),
        VerifyError::Malformed(DecodeError::TrailingBytes)
    );
}

#[test]
fn votes_from_outside_the_authority_set_are_refused() {
    let mut sim = published_sim();
    // A rogue authority that believes itself part of the set.
    let mut r = rng(11);
    let rogue = IdentitySecret::generate(&mut r);
    let set = AuthoritySet::new(sim.keys.iter().copied().chain([rogue.public()])).unwrap();
    let mut rogue = Authority::new(
        AuthorityConfig {
            identity: rogue,
            authorities: set,
            parameters: params(),
            allowed_nodes: BTreeSet::new(),
        },
        &mut r,
    )
    .unwrap();
    let e1 = first_epoch().next();
    let vote_time = e1.schedule(period()).vote();
    let actions = rogue.poll(vote_time);
    let Some(Action::Send { message, .. }) = actions.into_iter().find(|a| matches!(a, Action::Send { .. }))
    else {
        panic!("the rogue sent no vote")
    };
    assert_eq!(sim.authorities[0].handle_message(vote_time, &message), Err(PeerMessageError::NotAnAuthority));
    // Garbage from a peer.
    assert!(matches!(sim.authorities[0].handle_message(vote_time, &[]), Err(PeerMessageError::Malformed(_))));
    assert!(matches!(
        sim.authorities[0].handle_message(vote_time, &[9, 9]),
        Err(PeerMessageError::Malformed(_))
    ));
}

#[test]
fn an_authority_outside_its_own_set_is_a_config_error() {
    let mut r = rng(12);
    let me = IdentitySecret::generate(&mut r);
    let set = AuthoritySet::new([IdentitySecret::generate(&mut r).public()]).unwrap();
    let config = AuthorityConfig {
        identity: me,
        authorities: set,
        parameters: params(),
        allowed_nodes: BTreeSet::new(),
    };
    assert_eq!(Authority::new(config, &mut r).unwrap_err(), qanat_pki::ConfigError::NotInSet);
    let k = IdentitySecret::generate(&mut r).public();
    assert!(AuthoritySet::new([k, k]).is_err());
    assert!(AuthoritySet::new([]).is_err());
}

/// For n = 1..=7 authorities: the authority set, the epoch and a document signed by all.
fn fully_signed() -> &'static Vec<(AuthoritySet, Epoch, Vec<u8>)> {
    static DOCS: OnceLock<Vec<(AuthoritySet, Epoch, Vec<u8>)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        (1..=7)
            .map(|n| {
                let mut sim = Sim::new(200 + n as u64, n, 3, 1);
                sim.run_through(first_epoch());
                let e = first_epoch().next();
                let doc = sim.published[0][&e].clone();
                assert_eq!(Document::verify(&doc, &sim.set, e).unwrap().signers().len(), n);
                (sim.set, e, doc)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any subset of more than n/2 distinct authorities' signatures verifies; n/2 or fewer
    /// does not.
    #[test]
    fn a_strict_majority_of_signatures_is_needed(n in 1usize..=7, mask in any::<u8>()) {
        let (set, e, doc) = &fully_signed()[n - 1];
        let (body, sigs) = split_document(doc);
        let subset: Vec<_> = sigs.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| *s).collect();
        let got = Document::verify(&join_document(&body, &subset), set, *e);
        if subset.len() > n / 2 {
            prop_assert_eq!(got.unwrap().signers().len(), subset.len());
        } else {
            prop_assert_eq!(got.unwrap_err(), VerifyError::NotEnoughSignatures { valid: subset.len(), needed: n / 2 + 1 });
        }
    }
}

/// Makes seed corpora for the fuzz targets from a simulated round. They are written under
/// `fuzz/corpus` with `QANAT_WRITE_FUZZ_SEEDS=1 cargo test -p qanat-pki --release --test
/// rejections write_fuzz_seeds`; otherwise into a scratch directory, so the test still checks that
/// a round produces every kind of message.
#[test]
fn write_fuzz_seeds() {
    let mut sim = Sim::new(300, 3, 6, 2);
    sim.run_through(first_epoch());
    let root = if std::env::var_os("QANAT_WRITE_FUZZ_SEEDS").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
    } else {
        std::env::temp_dir().join(format!("qanat-pki-seeds-{}", std::process::id()))
    };
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let e = first_epoch().next();
    write("pki_document", "three_signed", &sim.published[0][&e]);
    let (body, sigs) = split_document(&sim.published[0][&e]);
    write("pki_document", "one_signed", &join_document(&body, &sigs[..1]));
    write("pki_descriptor", "mix", sim.nodes[0].descriptor(e).as_bytes());
    write("pki_descriptor", "gateway", sim.nodes[7].descriptor(e).as_bytes());
    write("pki_vote", "vote", &sim.samples[&VOTE][1..]);
    // Version 2: parameters with file limits.
    let mut v2 = Sim::with_params(301, 3, 6, 2, params_v2());
    v2.run_through(first_epoch());
    write("pki_document", "three_signed_v2", &v2.published[0][&e]);
    write("pki_vote", "vote_v2", &v2.samples[&VOTE][1..]);
    write("pki_peer_message", "vote_v2", &v2.samples[&VOTE]);
    for (kind, name) in [
        (VOTE, "vote"),
        (REVEAL, "reveal"),
        (CERT, "cert"),
        (SIGNATURE, "signature"),
        (CONSENSUS, "consensus"),
    ] {
        write("pki_peer_message", name, &sim.samples[&kind]);
    }
    if std::env::var_os("QANAT_WRITE_FUZZ_SEEDS").is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
}
