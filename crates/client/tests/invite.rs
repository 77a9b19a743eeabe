//! One-time invitations: encoding, links, QR codes, answers, and their life in the profile.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use proptest::prelude::*;
use qanat_client::invite::{
    self, Answer, INVITATION_VERSION, Invitation, InviteError, InviteGateway, LINK_PREFIX, PendingInvitation,
};
use qanat_client::store::{Passphrase, Profile, danger};
use qanat_mixnet::sending::seal::SealKey;
use qanat_packet::{MailboxId, NodeId};
use qanat_pki::{LinkAddress, UnixMillis};

const NOW: UnixMillis = UnixMillis::from_secs(1_780_000_000);
const DAY: u64 = 24 * 3600 * 1000;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn gateway(n: u8) -> InviteGateway {
    // A real link key has 1,216 bytes (X25519 + ML-KEM-768); the invitation keeps it opaque.
    InviteGateway::new(
        NodeId([n; 32]),
        LinkAddress::parse(&format!("gw{n}.example.org:4430")).unwrap(),
        vec![n; 1216],
    )
    .unwrap()
}

fn answer(n: u8) -> Answer {
    Answer {
        gateway: gateway(n),
        mailbox: MailboxId([n; 32]),
        seal: SealKey([n; 32]),
        key_package: vec![0xab; 3000],
    }
}

fn profile() -> (tempfile::TempDir, Profile) {
    let tmp = tempfile::tempdir().unwrap();
    let p = Profile::create_with(
        tmp.path().join("p"),
        &Passphrase::new("pw"),
        danger::weak_kdf_params(8, 1, 1).unwrap(),
    )
    .unwrap();
    (tmp, p)
}

fn pending() -> PendingInvitation {
    PendingInvitation::new(&mut rng(1), gateway(1), NOW, invite::DEFAULT_VALIDITY_MS)
}

#[test]
fn an_invitation_round_trips_through_bytes_and_links() {
    let p = pending();
    let inv = p.invitation();
    assert_eq!(&Invitation::decode(&inv.encode()).unwrap(), inv);
    let link = inv.to_link();
    assert!(link.starts_with(LINK_PREFIX));
    assert_eq!(&Invitation::parse(&link).unwrap(), inv);
    // The bare base64 part, and surrounding whitespace, are accepted too.
    assert_eq!(&Invitation::parse(&format!("  {}\n", &link[LINK_PREFIX.len()..])).unwrap(), inv);
    assert_eq!(inv.expires_at(), NOW.plus_millis(invite::DEFAULT_VALIDITY_MS));
    assert_eq!(inv.gateway(), &gateway(1));
    // Its size: 1 + 8 + (32 + 1 + 20 + 2 + 1216) + 3 · 32.
    assert_eq!(inv.encode().len(), 1376);
}

#[test]
fn fresh_invitations_share_nothing() {
    let a = PendingInvitation::new(&mut rng(1), gateway(1), NOW, DAY);
    let b = PendingInvitation::new(&mut rng(2), gateway(1), NOW, DAY);
    assert_ne!(a.invitation().mailbox(), b.invitation().mailbox());
    assert_ne!(a.mailbox_credential(), b.mailbox_credential());
    // What is common is only the gateway and the expiry.
    let (ea, eb) = (a.invitation().encode(), b.invitation().encode());
    let gw_end = 1 + 8 + 32 + 1 + 20 + 2 + 1216;
    assert_eq!(ea[..gw_end], eb[..gw_end]);
    for i in 0..3 {
        let r = gw_end + 32 * i..gw_end + 32 * (i + 1);
        assert_ne!(ea[r.clone()], eb[r]);
    }
}

#[test]
fn damaged_links_are_refused_clearly() {
    let link = pending().invitation().to_link();
    assert!(matches!(Invitation::parse("https://example.org"), Err(InviteError::NotALink)));
    assert!(matches!(Invitation::parse(&format!("{link}=")), Err(InviteError::NotALink)));
    let cut = format!("{LINK_PREFIX}{}", base64_url(&pending().invitation().encode()[..1000]));
    assert!(matches!(Invitation::parse(&cut), Err(InviteError::Malformed(_))));
    let mut bytes = pending().invitation().encode();
    bytes.push(0);
    assert!(matches!(Invitation::decode(&bytes), Err(InviteError::Malformed("trailing bytes"))));
    bytes.pop();
    // Version 1 (before sealed mailbox items) is refused by name.
    bytes[0] = 1;
    let err = Invitation::decode(&bytes).unwrap_err();
    assert!(matches!(err, InviteError::UnknownVersion(1)), "{err}");
    assert!(err.to_string().contains("version 1"));
    assert!(err.to_string().contains("reads version 2"));
    assert!(matches!(Invitation::decode(&[]), Err(InviteError::Malformed(_))));
}

#[test]
fn expiry_is_checked() {
    let inv = PendingInvitation::new(&mut rng(1), gateway(1), NOW, DAY).invitation().clone();
    inv.check_expiry(NOW.plus_millis(DAY - 1)).unwrap();
    let err = inv.check_expiry(NOW.plus_millis(DAY)).unwrap_err();
    assert!(matches!(err, InviteError::Expired { .. }));
    assert!(err.to_string().contains("expired"));
}

#[test]
fn the_qr_code_renders_as_half_blocks() {
    let qr = pending().invitation().qr_code().unwrap();
    let lines: Vec<&str> = qr.lines().collect();
    assert!(lines.len() > 20);
    let width = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width));
    assert!(qr.chars().all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}' | '\n')));
    // Two rows of modules per line.
    assert_eq!(lines.len(), width.div_ceil(2));
}

#[test]
fn an_answer_opens_with_its_invitation_only() {
    let p = pending();
    let bytes = p.invitation().answer(&mut rng(9), &answer(2)).unwrap();
    let opened = p.open_answer(&bytes).unwrap();
    assert!(opened == answer(2));
    let other = PendingInvitation::new(&mut rng(3), gateway(1), NOW, DAY);
    assert!(matches!(other.open_answer(&bytes), Err(InviteError::BadAnswer)));
}

#[test]
fn every_tampered_byte_of_an_answer_is_rejected() {
    let p = pending();
    let small = Answer { key_package: vec![7; 40], ..answer(2) };
    let bytes = p.invitation().answer(&mut rng(9), &small).unwrap();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x40;
        assert!(matches!(p.open_answer(&t), Err(InviteError::BadAnswer)), "byte {i}");
    }
    assert!(matches!(p.open_answer(&bytes[..bytes.len() - 1]), Err(InviteError::BadAnswer)));
    assert!(matches!(p.open_answer(&[]), Err(InviteError::BadAnswer)));
}

#[test]
fn a_low_order_ephemeral_key_is_rejected() {
    let p = pending();
    let mut bytes = p.invitation().answer(&mut rng(9), &answer(2)).unwrap();
    bytes[1..33].copy_from_slice(&[0; 32]);
    assert!(matches!(p.open_answer(&bytes), Err(InviteError::BadAnswer)));
}

#[test]
fn pending_invitations_round_trip() {
    let p = pending();
    let back = PendingInvitation::decode(&p.encode()).unwrap();
    assert_eq!(back.invitation(), p.invitation());
    assert_eq!(back.mailbox_credential(), p.mailbox_credential());
    let mut bad = p.encode().to_vec();
    let n = bad.len();
    bad[n - 40] ^= 1; // the secret key no longer matches the public one
    assert!(PendingInvitation::decode(&bad).is_err());
}

/// The whole exchange through two profiles: create, accept, answer taken once.
#[test]
fn inviter_and_accepter_through_their_profiles() {
    let (_ta, mut alice) = profile();
    let (_tb, mut bob) = profile();
    let inv = alice.transaction(|tx| invite::create(tx, &mut rng(1), gateway(1), NOW, DAY)).unwrap();
    let link = inv.invitation().to_link();
    let mailbox = *inv.invitation().mailbox();
    assert_eq!(alice.transaction(|tx| invite::pending(tx)).unwrap().len(), 1);

    let accepted = bob
        .transaction(|tx| invite::accept(tx, &mut rng(2), &link, NOW, gateway(2), SealKey([5; 32]), b"kp"))
        .unwrap();
    assert_eq!(accepted.invitation.mailbox(), &mailbox);
    // Accepting twice is refused and changes nothing.
    let keys = bob.keys(invite::NS_ACCEPTED);
    let again = bob
        .transaction(|tx| invite::accept(tx, &mut rng(3), &link, NOW, gateway(2), SealKey([5; 32]), b"kp"));
    assert!(matches!(again, Err(InviteError::AlreadyAccepted)));
    assert_eq!(bob.keys(invite::NS_ACCEPTED), keys);
    // The acceptance survives a restart (the answer can be resent).
    let stored = bob.transaction(|tx| invite::accepted(tx)).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].answer, accepted.answer);
    assert_eq!(stored[0].mailbox, accepted.mailbox);

    // Alice cannot accept her own invitation.
    let own = alice
        .transaction(|tx| invite::accept(tx, &mut rng(4), &link, NOW, gateway(1), SealKey([5; 32]), b"kp"));
    assert!(matches!(own, Err(InviteError::OwnInvitation)));

    // A tampered answer is rejected and leaves the invitation open.
    let mut tampered = accepted.answer.clone();
    tampered[40] ^= 1;
    let r = alice.transaction(|tx| invite::take_answer(tx, &mailbox, &tampered));
    assert!(matches!(r, Err(InviteError::BadAnswer)));
    assert_eq!(alice.keys(invite::NS_PENDING).len(), 1);

    // Days later (after the expiry, even) the answer is taken once.
    let got = alice.transaction(|tx| invite::take_answer(tx, &mailbox, &accepted.answer)).unwrap();
    assert_eq!(got.mailbox, accepted.mailbox);
    assert_eq!(got.key_package, b"kp");
    assert_eq!(got.gateway, gateway(2));
    let second = alice.transaction(|tx| invite::take_answer(tx, &mailbox, &accepted.answer));
    assert!(matches!(second, Err(InviteError::AlreadyUsed)));
    // Another person's valid-looking answer to the spent invitation: also refused.
    let other = inv.invitation().answer(&mut rng(5), &answer(3)).unwrap();
    assert!(matches!(
        alice.transaction(|tx| invite::take_answer(tx, &mailbox, &other)),
        Err(InviteError::AlreadyUsed)
    ));
    assert!(matches!(
        alice.transaction(|tx| invite::take_answer(tx, &MailboxId([0; 32]), &other)),
        Err(InviteError::Unknown)
    ));
}

#[test]
fn an_expired_invitation_is_refused_and_changes_nothing() {
    let (_ta, mut alice) = profile();
    let (_tb, mut bob) = profile();
    let inv = alice.transaction(|tx| invite::create(tx, &mut rng(1), gateway(1), NOW, DAY)).unwrap();
    let link = inv.invitation().to_link();
    let r = bob.transaction(|tx| {
        invite::accept(tx, &mut rng(2), &link, NOW.plus_millis(DAY), gateway(2), SealKey([5; 32]), b"kp")
    });
    assert!(matches!(r, Err(InviteError::Expired { .. })));
    assert!(bob.keys(invite::NS_ACCEPTED).is_empty());
    // A wrong version too.
    let mut bytes = inv.invitation().encode();
    bytes[0] = INVITATION_VERSION + 1;
    let link = format!("{LINK_PREFIX}{}", base64_url(&bytes));
    let r = bob
        .transaction(|tx| invite::accept(tx, &mut rng(2), &link, NOW, gateway(2), SealKey([5; 32]), b"kp"));
    assert!(matches!(r, Err(InviteError::UnknownVersion(_))));
    assert!(bob.keys(invite::NS_ACCEPTED).is_empty());
}

#[test]
fn forgetting_expired_records() {
    let (_t, mut alice) = profile();
    let a = alice.transaction(|tx| invite::create(tx, &mut rng(1), gateway(1), NOW, DAY)).unwrap();
    alice.transaction(|tx| invite::create(tx, &mut rng(2), gateway(1), NOW, 10 * DAY)).unwrap();
    let ans = a.invitation().answer(&mut rng(3), &answer(2)).unwrap();
    alice.transaction(|tx| invite::take_answer(tx, a.invitation().mailbox(), &ans)).unwrap();
    let later = NOW.plus_millis(DAY + invite::GRACE_MS);
    assert_eq!(alice.transaction(|tx| invite::forget_expired(tx, later)).unwrap(), 1); // the answered record
    assert_eq!(alice.keys(invite::NS_PENDING).len(), 1);
    let much_later = NOW.plus_millis(10 * DAY + invite::GRACE_MS);
    assert_eq!(alice.transaction(|tx| invite::forget_expired(tx, much_later)).unwrap(), 1);
    assert!(alice.keys(invite::NS_PENDING).is_empty());
}

/// The records in the profile are versioned: a spent invitation's record of the form before row
/// versions (the time alone) is still read, and a record of a later version is refused by name.
#[test]
fn invitation_records_of_every_version_are_read_and_later_ones_refused() {
    let (_t, mut alice) = profile();
    let later = NOW.plus_millis(DAY);
    let record = |v: &[u8]| {
        let (_t, mut p) = profile();
        p.put(invite::NS_ANSWERED, &[7; 32], v).unwrap();
        let r = p.transaction(|tx| invite::forget_expired(tx, later));
        (r, p.keys(invite::NS_ANSWERED).len())
    };
    let at = NOW.as_millis().to_be_bytes();
    // Before row versions: the time alone; then version 1 and the time. Both past: forgotten.
    assert_eq!(record(&at).0.unwrap(), 1);
    assert_eq!(record(&[&[1][..], &at].concat()).0.unwrap(), 1);
    let (r, kept) = record(&[&[2][..], &at].concat());
    assert!(matches!(r, Err(InviteError::NewerRecord { found: 2, .. })), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("newer Qanat"));
    assert_eq!(kept, 1, "nothing changed");
    // A pending invitation of a later version, likewise.
    let mut newer = pending().encode().to_vec();
    newer[0] = 2;
    assert!(matches!(PendingInvitation::decode(&newer), Err(InviteError::NewerRecord { found: 2, .. })));
    alice.put(invite::NS_PENDING, &[8; 32], &newer).unwrap();
    let r = alice.transaction(|tx| invite::forget_expired(tx, later));
    assert!(matches!(r, Err(InviteError::NewerRecord { what: "pending invitation", .. })), "{r:?}");
}

/// base64url without padding, written out here so the test does not trust the code under test.
fn base64_url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn the_test_base64_agrees_with_links() {
    let inv = pending().invitation().clone();
    assert_eq!(format!("{LINK_PREFIX}{}", base64_url(&inv.encode())), inv.to_link());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The decoder never panics, and whatever it accepts re-encodes to the same bytes.
    #[test]
    fn decode_is_strict_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        if let Ok(inv) = Invitation::decode(&bytes) {
            prop_assert_eq!(inv.encode(), bytes);
        }
    }

    /// Mutations of a valid invitation either fail or decode to something that re-encodes exactly.
    #[test]
    fn mutated_invitations(pos in 0usize..1376, byte in any::<u8>(), cut in 0usize..1400) {
        let mut bytes = pending().invitation().encode();
        bytes[pos] = byte;
        bytes.truncate(cut.max(1));
        if let Ok(inv) = Invitation::decode(&bytes) {
            prop_assert_eq!(inv.encode(), bytes);
        }
    }

    /// Link parsing never panics on any text.
    #[test]
    fn parse_never_panics(s in "\\PC{0,200}") {
        let _ = Invitation::parse(&s);
    }

    /// Answers of any KeyPackage length round-trip.
    #[test]
    fn answers_round_trip(kp in proptest::collection::vec(any::<u8>(), 0..5000), seed in any::<u64>()) {
        let p = PendingInvitation::new(&mut rng(seed), gateway(1), NOW, DAY);
        let a = Answer { key_package: kp, ..answer(2) };
        let bytes = p.invitation().answer(&mut rng(seed ^ 1), &a).unwrap();
        prop_assert!(p.open_answer(&bytes).unwrap() == a);
    }
}
