//! Profiles of earlier formats: the fixture writer.

use super::*;

/// The passphrase of the profiles [`write_profile_fixture`] writes.
const FIXTURE_PASSPHRASE: &str = "fixture passphrase";

/// Writes the profiles of a small world, in the current format, into the directory
/// `$QANAT_PROFILE_FIXTURE` (`ann/` and `bob/`, each `profile.header` and `profile.sqlite`,
/// passphrase [`FIXTURE_PASSPHRASE`], the test-only weak KDF parameters): for the tests that open
/// profiles of an earlier format. Run it on the commit before a format changes, and commit what
/// it writes as `crates/client/tests/data/profile-formatN/`:
///
/// ```text
/// QANAT_PROFILE_FIXTURE=/tmp/fx cargo test -p qanat-client --lib write_profile_fixture -- --ignored
/// ```
///
/// Ann's profile holds a row of every kind the engine and the invitations write: a contact (Bob)
/// with texts both ways, one of hers not yet delivered (Bob is offline), a group she made with Bob
/// ("team") with texts both ways, a group she left ("old", its mailbox retired but not yet
/// unregistered), Bob's invitation into his group "bobs" waiting for her answer, a message of which
/// one fragment of three arrived, an open invitation ("dave"), and an invitation of Cat's she
/// accepted whose Welcome has not come ("cat", joining).
#[test]
#[ignore = "writes a fixture: run by hand on the commit before a format change"]
fn write_profile_fixture() {
    let out =
        std::path::PathBuf::from(std::env::var_os("QANAT_PROFILE_FIXTURE").expect("QANAT_PROFILE_FIXTURE"));
    let mut w = World::new(21, 0.0, &[1, 2, 1]);
    let settled = |w: &World| w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0);
    w.clients[0].auto_join = false;
    w.clients[0].unregister = false;
    w.connect(0, "ann", 1, "bob");
    w.run_until(Duration::from_secs(60), settled);
    for g in ["team", "old"] {
        w.clients[0].e().create_group(g, &mut w.rng).unwrap();
        w.clients[0].e().group_add(g, "bob", w.now, &mut w.rng).unwrap();
        let joined = EngineEvent::GroupJoined { name: g.into() };
        w.run_until(Duration::from_secs(120), |w| w.clients[1].events.contains(&joined));
    }
    let now = w.now;
    w.clients[0].e().send("bob", "hello bob", now, &mut w.rng).unwrap();
    w.clients[1].e().send("ann", "hi ann", now, &mut w.rng).unwrap();
    w.clients[0].e().send("team", "hi team", now, &mut w.rng).unwrap();
    w.clients[1].e().send("team", "hello team", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(120), |w| {
        w.clients[0].texts().len() == 2 && w.clients[1].texts().len() == 2 && settled(w)
    });
    let now = w.now;
    w.clients[0].e().group_leave("old", now, &mut w.rng).unwrap();
    let left = EngineEvent::Left { name: "old".into() };
    w.run_until(Duration::from_secs(300), |w| w.clients[0].events.contains(&left));
    w.clients[1].e().create_group("bobs", &mut w.rng).unwrap();
    w.clients[1].e().group_add("bobs", "ann", w.now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        !w.clients[0].engine.as_ref().unwrap().group_invitations().is_empty()
    });
    let cap = sending::fragment_capacity(w.net.sphinx.geometry()).unwrap();
    let f = attacks::Forged { message_id: MessageId([0x77; 16]), index: 0, count: 3, len: cap };
    let p = w.clients[1].e().forged_fragment("ann", &f, &mut w.rng).unwrap();
    let now = w.now;
    w.net.deliver(NodeId([w.clients[1].gw; 32]), p, now);
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].engine.as_ref().unwrap().stats().partial_messages == 1 && settled(w)
    });
    let now = w.now;
    w.clients[0].e().invite("dave", now, &mut w.rng).unwrap();
    let inv = w.clients[2].e().invite("ann", now, &mut w.rng).unwrap();
    w.run_for(Duration::from_millis(100));
    w.clients[2].online = false;
    w.clients[1].online = false;
    let now = w.now;
    w.clients[0].e().accept(&inv.to_link(), "cat", now, &mut w.rng).unwrap();
    w.clients[0].e().send("bob", "are you there?", now, &mut w.rng).unwrap();
    w.run_for(Duration::from_secs(1));
    let e = w.clients[0].e();
    eprintln!("threads {:?}", e.threads().unwrap());
    for t in ["bob", "team", "old"] {
        eprintln!("history {t} {:?}", e.history(t).unwrap());
    }
    eprintln!("invitations {:?}", e.group_invitations());
    eprintln!("stats {:?}", e.stats());
    eprintln!(
        "undelivered {} retired {} mailboxes {}",
        e.undelivered(),
        e.retired().len(),
        e.mailboxes().len()
    );
    for (i, name) in [(0, "ann"), (1, "bob")] {
        let mut profile = w.clients[i].engine.take().unwrap().into_profile();
        profile.change_passphrase(&Passphrase::new(FIXTURE_PASSPHRASE), weak()).unwrap();
        drop(profile);
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [crate::store::HEADER_FILE, crate::store::DATABASE_FILE] {
            std::fs::copy(w.clients[i].dir.path().join("p").join(f), dir.join(f)).unwrap();
        }
    }
}
