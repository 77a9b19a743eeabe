//! Making a contact: invitations misused, leaked, squatted, expired or answered with what no
//! conversation takes.

use super::*;

#[test]
fn bad_input_changes_nothing() {
    let mut w = World::new(4, 0.0, &[1, 2]);
    let now = w.now;
    let rng = &mut w.rng;
    let e = w.clients[1].engine.as_mut().unwrap();
    assert!(matches!(e.accept("qanat://invite/AAAA", "x", now, rng), Err(EngineError::Invite(_))));
    assert!(matches!(e.accept("hello", "x", now, rng), Err(EngineError::Invite(InviteError::NotALink))));
    assert!(matches!(e.send("nobody", "hi", now, rng), Err(EngineError::UnknownName(_))));
    assert!(matches!(e.invite("", now, rng), Err(EngineError::InvalidName(_))));
    assert!(e.threads().unwrap().is_empty());
    let inv = w.clients[0].e().invite("bob", now, &mut w.rng).unwrap();
    assert!(matches!(w.clients[0].e().invite("bob", now, &mut w.rng), Err(EngineError::NameTaken(_))));
    // Own invitation.
    assert!(matches!(
        w.clients[0].e().accept(&inv.to_link(), "me", now, &mut w.rng),
        Err(EngineError::Invite(InviteError::OwnInvitation))
    ));
    w.clients[1].e().accept(&inv.to_link(), "alice", now, &mut w.rng).unwrap();
    assert!(matches!(
        w.clients[1].e().accept(&inv.to_link(), "alice2", now, &mut w.rng),
        Err(EngineError::Invite(InviteError::AlreadyAccepted))
    ));
    // Not set up yet: a clear error.
    assert!(matches!(w.clients[1].e().send("alice", "hi", now, &mut w.rng), Err(EngineError::NotReady(..))));
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[1].events.contains(&EngineEvent::ContactReady { name: "alice".into() })
    });

    // A third party replays the same link: its answer is refused by the inviter, nothing changes.
    let mut third = Client::new(&w.net, 2, w.now, &mut w.rng);
    third.e().accept(&inv.to_link(), "alice", w.now, &mut w.rng).unwrap();
    w.clients.push(third);
    w.run_for(Duration::from_secs(10));
    assert_eq!(w.clients[0].e().threads().unwrap().len(), 1);
    assert!(w.clients[0].e().stats().rejected >= 1);
    assert!(!w.clients[2].events.iter().any(|e| matches!(e, EngineEvent::ContactReady { .. })));
}

#[test]
fn an_unanswered_invitation_expires_and_its_mailbox_goes() {
    let mut w = World::new(7, 0.0, &[1, 2]);
    let now = w.now;
    let inv = w.clients[0].e().invite("bob", now, &mut w.rng).unwrap();
    w.run_for(Duration::from_secs(1));
    let mailbox = *inv.mailbox();
    assert!(w.net.registered.contains_key(&mailbox));
    let named_bob = |c: &mut Client| c.e().threads().unwrap().iter().any(|t| t.name == "bob");

    // Expired, but an answer written before the expiry may still wait in the mailbox.
    w.now += config().invitation_validity + Duration::from_secs(24 * 3600);
    w.run_for(Duration::from_secs(1));
    assert!(named_bob(&mut w.clients[0]));
    assert!(w.net.registered.contains_key(&mailbox));

    // Past the grace: the thread goes, and the mailbox is given up, durably (here the gateway
    // is not told before a restart).
    w.now += Duration::from_millis(invite::GRACE_MS);
    let now = w.now;
    w.clients[0].e().handle_timeout(now, &mut w.rng).unwrap();
    let ev = w.clients[0].e().poll_event();
    assert_eq!(ev, Some(EngineEvent::InvitationExpired { name: "bob".into() }));
    assert!(!named_bob(&mut w.clients[0]));
    w.clients[0].restart(&w.net, w.now);
    assert!(!named_bob(&mut w.clients[0]));
    let retired = w.clients[0].e().retired();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].mailbox, mailbox);
    assert!(w.clients[0].e().mailboxes().iter().all(|(m, _)| m.mailbox != mailbox));
    w.run_for(Duration::from_secs(1));
    assert!(!w.net.registered.contains_key(&mailbox));
    assert!(w.clients[0].e().retired().is_empty());
    w.clients[0].restart(&w.net, w.now);
    assert!(w.clients[0].e().retired().is_empty());

    // The name is free again.
    let now = w.now;
    w.clients[0].e().invite("bob", now, &mut w.rng).unwrap();
}

#[test]
fn a_leaked_invitation_opens_nothing_once_the_contact_is_made() {
    // Whoever saw the link (and runs the gateway) knows the invitation's mailbox and the key
    // derived from it, and can open the answer, which names the accepter's first mailbox and
    // key. Both sides move to fresh ones, told inside MLS, and retire the old after the grace.
    let mut w = World::new(7, 0.0, &[1, 2]);
    let now = w.now;
    let inv = w.clients[0].e().invite("bob", now, &mut w.rng).unwrap();
    let (inv_mailbox, inv_key) = (inv.mailbox().0, inv.seal_key());
    w.clients[1].e().accept(&inv.to_link(), "alice", now, &mut w.rng).unwrap();
    let answer_route = w.clients[1].thread("alice").mailbox;
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].events.contains(&EngineEvent::ContactReady { name: "bob".into() })
            && w.clients[1].events.contains(&EngineEvent::ContactReady { name: "alice".into() })
    });
    // Each learns the other's new route.
    w.run_until(Duration::from_secs(60), |w| {
        let (a, b) = (w.clients[0].thread("bob"), w.clients[1].thread("alice"));
        a.mailbox != inv_mailbox
            && b.mailbox != answer_route
            && b.roster.values().any(|r| r.mailbox == a.mailbox)
            && a.roster.values().any(|r| r.mailbox == b.mailbox)
    });
    let (a, b) = (w.clients[0].thread("bob"), w.clients[1].thread("alice"));
    assert_eq!(a.replaced.iter().map(|o| o.mailbox).collect::<Vec<_>>(), vec![inv_mailbox]);
    assert_ne!(a.seal, inv_key.0);
    // Texts both ways, held at the gateway so we can look at what it stores.
    w.clients[0].hold.push(a.mailbox);
    w.clients[1].hold.push(b.mailbox);
    for i in 0..3 {
        let now = w.now;
        w.clients[1].e().send("alice", &format!("to a {i}"), now, &mut w.rng).unwrap();
        w.clients[0].e().send("bob", &format!("to b {i}"), now, &mut w.rng).unwrap();
        w.run_for(Duration::from_millis(200));
    }
    w.run_until(Duration::from_secs(60), |w| {
        w.net.mailboxes.get(&MailboxId(a.mailbox)).is_some_and(|v| v.len() >= 3)
            && w.net.mailboxes.get(&MailboxId(b.mailbox)).is_some_and(|v| v.len() >= 3)
    });
    let stored: Vec<&Fetched> =
        [a.mailbox, b.mailbox].iter().flat_map(|m| w.net.mailboxes[&MailboxId(*m)].iter()).collect();
    for f in &stored {
        assert!(seal::open(&inv_key, &f.item.id.0, &f.item.body).is_err(), "the link's key opens an item");
    }
    assert!(
        w.net.mailboxes.get(&MailboxId(inv_mailbox)).is_none_or(|v| v.is_empty()),
        "nothing new in the old mailbox"
    );
    w.clients[0].hold.clear();
    w.clients[1].hold.clear();
    w.run_until(Duration::from_secs(120), |w| {
        w.clients[0].texts().len() == 3 && w.clients[1].texts().len() == 3
    });

    // After the grace, the old mailboxes are given up at the gateway.
    assert!(w.net.registered.contains_key(&MailboxId(inv_mailbox)));
    w.now += Duration::from_millis(ROTATION_GRACE_MS) + Duration::from_secs(1);
    w.run_for(Duration::from_secs(2));
    assert!(!w.net.registered.contains_key(&MailboxId(inv_mailbox)), "the invitation's mailbox is retired");
    assert!(!w.net.registered.contains_key(&MailboxId(answer_route)), "the answer's mailbox is retired");
    assert!(w.clients[0].thread("bob").replaced.is_empty());
    // And the two still talk.
    let now = w.now;
    w.clients[1].e().send("alice", "still here", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(120), |w| w.clients[0].texts().len() == 4);
}

#[test]
fn a_squatted_mailbox_fails_only_itself() {
    // Whoever sees an invitation link can register its mailbox first: that invitation is
    // reported dead, and nothing else of the user's stops.
    let mut w = World::new(9, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let now = w.now;
    let inv = w.clients[0].e().invite("carol", now, &mut w.rng).unwrap();
    w.net.registered.insert(*inv.mailbox(), [0x5a; 32]);
    w.run_for(Duration::from_millis(100));
    assert!(w.clients[0].events.contains(&EngineEvent::InvitationRefused { name: "carol".into() }));
    assert!(!w.clients[0].e().threads().unwrap().iter().any(|t| t.name == "carol"));
    assert_eq!(w.clients[0].e().stats().registrations_refused, 1);
    // A conversation's mailbox taken by someone else is replaced, and the talk goes on.
    let old = w.clients[1].thread("ann").mailbox;
    let now = w.now;
    w.clients[1].e().registration_refused(MailboxId(old), now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].thread("bob").roster.values().all(|r| r.mailbox != old)
    });
    let now = w.now;
    w.clients[0].e().send("bob", "still here?", now, &mut w.rng).unwrap();
    w.clients[1].e().send("ann", "yes", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[1].texts().iter().any(|t| t.2 == "still here?")
            && w.clients[0].texts().iter().any(|t| t.2 == "yes")
    });
}

#[test]
fn an_answer_whose_key_package_no_group_takes_fails_only_itself() {
    // Regression: whoever saw an invitation link could answer it with a KeyPackage that
    // verifies but that no commit can add (its leaf does not list the conversation's
    // ciphersuite): building the inviter's commit failed, the engine called it an internal MLS
    // error, and the inviter's client stopped, again at every restart (the answer was never
    // taken), until the invitation expired.
    let mut w = World::new(11, 0.0, &[1, 2, 1]);
    let now = w.now;
    let inv = w.clients[0].e().invite("bob", now, &mut w.rng).unwrap();
    let kp = attacks::untakeable_key_package().unwrap();
    w.clients[2].e().accept_with_key_package(&inv.to_link(), "ann", now, &mut w.rng, &kp).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].engine.as_ref().unwrap().stats().rejected >= 1);
    assert_eq!(w.clients[0].thread("bob").state, ThreadState::Inviting);
    // The invitation is still open: Bob's answer makes the contact.
    let now = w.now;
    w.clients[1].e().accept(&inv.to_link(), "ann", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].events.contains(&EngineEvent::ContactReady { name: "bob".into() })
            && w.clients[1].events.contains(&EngineEvent::ContactReady { name: "ann".into() })
    });
    assert!(!w.clients[2].events.iter().any(|e| matches!(e, EngineEvent::ContactReady { .. })));
    let now = w.now;
    w.clients[1].e().send("ann", "hello", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].texts().len() == 1);
}
