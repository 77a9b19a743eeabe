//! Profiles of earlier formats: one that can be carried over opens with everything in it, one
//! that cannot is refused with a message that says what to do, never a panic, and opening it
//! changes none of its bytes.
//!
//! The fixtures, passphrase "fixture passphrase", with the test-only weak KDF parameters:
//! - `tests/data/profile-format1/`: a profile made by the client before mailbox items were
//!   sealed (engine rows of format 1: no seal keys);
//! - `tests/data/profile-format2/{ann,bob}/`: two profiles made by the client before row
//!   versions (engine rows of format 2), written by the engine's test `write_profile_fixture`
//!   (whose documentation says what they hold) at commit d68c747.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qanat_client::engine::{ENGINE_FORMAT, Engine, EngineConfig, EngineError, ThreadInfo};
use qanat_client::store::{DATABASE_FILE, HEADER_FILE, Passphrase, Profile};
use qanat_mixnet::sending::Delivery;
use qanat_packet::NodeId;

const PASSPHRASE: &str = "fixture passphrase";

/// When the fixtures are opened: after everything in them.
fn opened() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_001_000)
}

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
    let profile = Profile::open(dir.path(), &Passphrase::new(PASSPHRASE)).unwrap();
    assert!(Engine::is_initialized(&profile).unwrap());
    let err = Engine::open(profile, EngineConfig::default(), opened()).unwrap_err();
    assert!(matches!(err, EngineError::Format(1)), "{err}");
    let text = err.to_string();
    assert!(text.contains("format 1") && text.contains(&format!("format {ENGINE_FORMAT}")), "{text}");
    assert!(text.contains("qanat init"), "says what to do: {text}");
    assert_eq!(std::fs::read(dir.path().join(DATABASE_FILE)).unwrap(), before, "nothing changed");
}

/// What Ann's profile of format 2 holds, as the engine shows it.
fn check_ann(e: &Engine) {
    type Row = (String, bool, &'static str, Vec<String>, usize);
    let thread = |name: &str, group, state, members: &[&str], unread| -> Row {
        (name.into(), group, state, members.iter().map(|m| m.to_string()).collect(), unread)
    };
    let infos = e.threads().unwrap();
    // Most recently active first: the contacts and groups with messages, by their newest.
    let order: Vec<&str> = infos.iter().filter(|t| t.last.is_some()).map(|t| t.name.as_str()).collect();
    assert_eq!(order, ["bob", "team"]);
    let last = |name: &str| infos.iter().find(|t| t.name == name).and_then(|t| t.last.clone());
    assert_eq!(last("bob").map(|(_, h)| h.text), Some("are you there?".into()));
    assert_eq!(last("team").map(|(_, h)| h.text), Some("hello team".into()));
    let dave = infos.iter().find(|t| t.name == "dave").unwrap();
    assert!(dave.expires_at_ms.is_some() && dave.activity_ms > 0, "{dave:?}");
    let mut threads: Vec<Row> =
        infos.into_iter().map(|t: ThreadInfo| (t.name, t.group, t.state, t.members, t.unread)).collect();
    threads.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        threads,
        [
            thread("bob", false, "active", &["bob"], 1),
            thread("cat", false, "joining", &[], 0),
            thread("dave", false, "inviting", &[], 0),
            thread("old", true, "left", &[], 0),
            thread("team", true, "active", &["bob"], 1),
        ]
    );
    let history = |name: &str| -> Vec<(bool, String, String, Delivery)> {
        e.history(name)
            .unwrap()
            .into_iter()
            .map(|(_, h)| (h.outgoing, h.sender.clone(), h.text.clone(), h.delivery()))
            .collect()
    };
    let entry =
        |outgoing, sender: &str, text: &str, delivery| (outgoing, sender.into(), text.into(), delivery);
    assert_eq!(
        history("bob"),
        [
            entry(true, "me", "hello bob", Delivery::Delivered),
            entry(false, "bob", "hi ann", Delivery::Delivered),
            entry(true, "me", "are you there?", Delivery::Sent),
        ]
    );
    assert_eq!(
        history("team"),
        [
            entry(true, "me", "hi team", Delivery::Delivered),
            entry(false, "bob", "hello team", Delivery::Delivered)
        ]
    );
    assert!(history("old").is_empty());
    let (id, _) = e.history("bob").unwrap().pop().unwrap();
    assert_eq!(e.delivery(&id).unwrap(), Some(Delivery::Sent));
    assert_eq!(e.members("team").unwrap(), ["bob"]);
    let invitations = e.group_invitations();
    assert_eq!(invitations.len(), 1);
    assert_eq!((invitations[0].from.as_str(), invitations[0].group.as_str()), ("bob", "bobs"));
    assert_eq!(invitations[0].id, "19f04b52482967e86de7ce754397302d");
    assert_eq!(invitations[0].received_at, UNIX_EPOCH + Duration::from_millis(1_800_000_005_810));
    // The text to Bob and the answer to Cat's invitation wait to be delivered; one fragment of
    // three of a message is held; the mailbox of the group she left waits to be unregistered.
    assert_eq!(e.undelivered(), 2);
    let s = e.stats();
    assert_eq!((s.partial_messages, s.partial_bytes), (1, 781));
    assert_eq!(e.retired().len(), 1);
    // Home, Bob's (and the one it replaced, still read), the team's, Cat's and Dave's.
    assert_eq!(e.mailboxes().len(), 6);
    assert_eq!(e.gateway(), NodeId([1; 32]));
}

#[test]
fn a_profile_of_format_2_opens_with_everything_in_it() {
    let dir = copy_fixture("profile-format2/ann");
    let profile = Profile::open(dir.path(), &Passphrase::new(PASSPHRASE)).unwrap();
    // Read before the upgrade too.
    assert_eq!(Engine::gateway_of(&profile).unwrap(), NodeId([1; 32]));
    let before = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
    let engine = Engine::open(profile, EngineConfig::default(), opened()).unwrap();
    check_ann(&engine);
    // Upgraded once, in the profile: opened again, it holds the same.
    drop(engine.into_profile());
    assert_ne!(std::fs::read(dir.path().join(DATABASE_FILE)).unwrap(), before, "upgraded in place");
    let profile = Profile::open(dir.path(), &Passphrase::new(PASSPHRASE)).unwrap();
    assert_eq!(Engine::gateway_of(&profile).unwrap(), NodeId([1; 32]));
    check_ann(&Engine::open(profile, EngineConfig::default(), opened()).unwrap());
}
