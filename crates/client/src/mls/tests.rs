//! Tests that reach into a conversation's saved state (the API tests are in `tests/mls.rs`).

use std::time::SystemTime;

use super::state::Intent;
use super::*;

#[test]
fn a_queued_add_no_commit_can_take_is_left_out_and_reported() {
    // Regression: an add queued unchecked (as earlier versions did: they checked a
    // KeyPackage by its own signatures only) whose KeyPackage no commit can take failed
    // every later commit of this member as an internal error, at each deadline and again
    // after each restart, which stopped the client for good.
    let config = Config::default();
    let mut c = Conversation::create(&config).unwrap();
    let bad = crate::engine::attacks::untakeable_key_package().unwrap();
    let refused = key_package_member(&bad).unwrap();
    c.state.queued.push(Intent::Add(bad));
    let mut c = Conversation::import(&c.export().unwrap(), &config).unwrap();
    let (join, kp) = PendingJoin::new().unwrap();
    let out = c.add(&kp, SystemTime::now()).unwrap();
    assert!(out.events.contains(&Event::AddRefused { member: refused }), "{:?}", out.events);
    let welcome = out.outgoing.iter().find(|o| o.kind == OutgoingKind::Welcome).unwrap();
    assert_eq!(welcome.to, [join.member_id()]);
    assert_eq!(c.members().len(), 2);
    assert!(c.state.queued.is_empty());
    let (joined, _) = join.join(&welcome.bytes, &config).unwrap();
    assert_eq!(joined.epoch_authenticator(), c.epoch_authenticator());
}
