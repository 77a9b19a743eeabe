//! Texts and messages on their way: exactly once and in order through loss and restarts, the user's
//! turn beside others' acknowledgements, fragments that never complete, what is refused.

use super::*;

#[test]
fn contacts_exchange_messages_exactly_once_in_order_with_loss() {
    let mut w = World::new(1, 0.2, &[1, 2]);
    w.connect(0, "alice", 1, "bob");
    let n = 40;
    let mut ids = Vec::new();
    for i in 0..n {
        let now = w.now;
        ids.push(w.clients[0].e().send("bob", &format!("a{i}"), now, &mut w.rng).unwrap());
        w.clients[1].e().send("alice", &format!("b{i}"), now, &mut w.rng).unwrap();
        w.run_for(Duration::from_millis(30));
    }
    w.run_until(Duration::from_secs(600), |w| {
        w.clients[0].texts().len() == n && w.clients[1].texts().len() == n
    });
    let expect = |p: &str, from: &str| -> Vec<(String, String, String)> {
        (0..n).map(|i| (from.to_owned(), from.to_owned(), format!("{p}{i}"))).collect()
    };
    assert_eq!(w.clients[1].texts(), expect("a", "alice"));
    assert_eq!(w.clients[0].texts(), expect("b", "bob"));
    // Every message of ours ends delivered.
    w.run_until(Duration::from_secs(600), |w| {
        w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
    for id in &ids {
        assert_eq!(w.clients[0].e().delivery(id).unwrap(), Some(Delivery::Delivered));
    }
    // Nothing more arrives later (no duplicate deliveries).
    w.run_for(Duration::from_secs(20));
    assert_eq!(w.clients[1].texts().len(), n);
    let unread = w.clients[1].e().take_unread().unwrap();
    assert_eq!(unread.len(), n);
    assert!(w.clients[1].e().take_unread().unwrap().is_empty());
    let info = w.clients[0].e().threads().unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].name.as_str(), info[0].state, info[0].group), ("bob", "active", false));
}

#[test]
fn a_restart_and_a_long_absence_lose_nothing() {
    let mut w = World::new(2, 0.1, &[1, 2]);
    w.connect(0, "alice", 1, "bob");
    // Bob goes offline; Alice keeps sending.
    w.clients[1].online = false;
    for i in 0..10 {
        let now = w.now;
        w.clients[0].e().send("bob", &format!("m{i}"), now, &mut w.rng).unwrap();
        w.run_for(Duration::from_millis(50));
    }
    // Alice restarts with messages still unacknowledged; Bob restarts too.
    let net = std::mem::replace(&mut w.net, Net::new(99, 0.0));
    w.clients[0].restart(&net, w.now);
    w.clients[1].restart(&net, w.now);
    w.net = net;
    w.run_for(Duration::from_secs(60));
    assert!(w.clients[1].texts().is_empty());
    w.clients[1].online = true;
    w.run_until(Duration::from_secs(900), |w| w.clients[1].texts().len() == 10);
    let got: Vec<String> = w.clients[1].texts().into_iter().map(|t| t.2).collect();
    assert_eq!(got, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // And Bob can answer after the restart.
    let now = w.now;
    w.clients[1].e().send("alice", "back", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(300), |w| w.clients[0].texts().len() == 1);
}

#[test]
fn members_writing_steadily_cannot_keep_the_user_from_speaking() {
    // Regression: every fragment's acknowledgement took a payload slot before the user's own
    // messages, so two members of a group writing steadily (together above her rate) left her
    // no slot at all. Acknowledgements now take turns with her messages (in a group each
    // message's acknowledgement is its own reply: members share the mailbox).
    let mut w = World::new(7, 0.0, &[1, 2, 2]);
    w.connect(0, "ann", 1, "bob");
    w.connect(0, "ann", 2, "cat");
    w.clients[0].e().create_group("g", &mut w.rng).unwrap();
    let joined = EngineEvent::GroupJoined { name: "g".into() };
    for (i, m) in [(1, "bob"), (2, "cat")] {
        w.clients[0].e().group_add("g", m, w.now, &mut w.rng).unwrap();
        let j = joined.clone();
        w.run_until(Duration::from_secs(120), |w| w.clients[i].events.contains(&j));
    }
    // Cat's addition is merged by Bob too.
    w.run_until(Duration::from_secs(120), |w| w.clients[1].clients_members("g") == 2);
    let before = w.clients[0].texts().len();
    for i in 0..300 {
        let now = w.now;
        w.clients[1].e().send("g", &format!("b{i}"), now, &mut w.rng).unwrap();
        w.clients[2].e().send("g", &format!("c{i}"), now, &mut w.rng).unwrap();
    }
    // Both write for a while before she speaks.
    w.run_until(Duration::from_secs(120), |w| w.clients[0].texts().len() >= before + 100);
    let start = w.now;
    let mine = w.clients[0].e().send("bob", "can I speak?", start, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(120), |w| w.clients[1].texts().iter().any(|t| t.2 == "can I speak?"));
    let took = w.now.duration_since(start).unwrap();
    let received = w.clients[0].texts().len() - before;
    assert!(received < 600, "the members were still writing ({received} of 600 received)");
    // At 20 payload slots a second and hops of 10 ms, a few seconds at most.
    assert!(took < Duration::from_secs(10), "her message took {took:?}");
    w.run_until(Duration::from_secs(600), |w| w.clients[0].texts().len() == before + 600);
    w.run_until(Duration::from_secs(600), |w| {
        w.clients[0].engine.as_ref().unwrap().delivery(&mine).unwrap() == Some(Delivery::Delivered)
            && w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
}

#[test]
fn contacts_writing_steadily_cannot_keep_the_user_from_speaking() {
    // Regression: every fragment's acknowledgement took a payload slot before the user's own
    // messages, so two contacts writing steadily (together above the user's rate) left her no
    // slot at all. Now acknowledgements share replies and take turns with her messages.
    let mut w = World::new(7, 0.0, &[1, 2, 2]);
    w.connect(0, "ann", 1, "bob");
    w.connect(0, "ann", 2, "cat");
    for i in 0..400 {
        let now = w.now;
        w.clients[1].e().send("ann", &format!("b{i}"), now, &mut w.rng).unwrap();
        w.clients[2].e().send("ann", &format!("c{i}"), now, &mut w.rng).unwrap();
    }
    // Both write for a while before she speaks.
    w.run_until(Duration::from_secs(120), |w| w.clients[0].texts().len() >= 100);
    let start = w.now;
    let mine = w.clients[0].e().send("bob", "can I speak?", start, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[1].texts().iter().any(|t| t.2 == "can I speak?"));
    let took = w.now.duration_since(start).unwrap();
    let received = w.clients[0].texts().len();
    assert!(received < 800, "the contacts were still writing ({received} of 800 received)");
    // At 20 payload slots a second and a few hops of 10 ms, a few seconds at most.
    assert!(took < Duration::from_secs(10), "her message took {took:?}");
    w.run_until(Duration::from_secs(300), |w| w.clients[0].texts().len() == 800);
    w.run_until(Duration::from_secs(300), |w| {
        w.clients[0].engine.as_ref().unwrap().delivery(&mine).unwrap() == Some(Delivery::Delivered)
            && w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
    let s = w.clients[0].e().stats();
    // One reply acknowledges what waits of a contact's messages (here about two: her slots come
    // as fast as one contact writes).
    assert!(s.sent_acks * 2 < 800, "{} acknowledgement packets for 800 messages", s.sent_acks);
    assert_eq!(s.acks_dropped, 0);
}

#[test]
fn fragments_that_never_complete_are_held_within_bounds_counted_and_expire() {
    use super::attacks::{Incomplete, IncompleteMessages};
    // Mallory, a contact, writes fragments of messages that never complete into the mailbox
    // Ann gave her (huge claimed counts, truncated messages, contradicting and over-claimed
    // fragments), while the two also talk honestly.
    let mut w = World::new(10, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "mallory");
    // The mailboxes have moved (rotation after the contact is made): her route is the new one.
    w.run_until(Duration::from_secs(60), |w| {
        w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
    let cap = sending::fragment_capacity(w.net.sphinx.geometry()).unwrap();
    let mut plan = IncompleteMessages::new(cap);
    let mallory_gw = NodeId([w.clients[1].gw; 32]);
    let first = w.now;
    for i in 0..120 {
        let (_, f) = plan.next_fragment(&mut w.rng);
        let p = w.clients[1].e().forged_fragment("ann", &f, &mut w.rng).unwrap();
        let now = w.now;
        w.net.deliver(mallory_gw, p, now);
        if i % 20 == 0 {
            let now = w.now;
            w.clients[0].e().send("mallory", &format!("a:{i}"), now, &mut w.rng).unwrap();
            w.clients[1].e().send("ann", &format!("m:{i}"), now, &mut w.rng).unwrap();
        }
        w.run_for(Duration::from_millis(20));
    }
    let (claimed, truncated) = (plan.made(Incomplete::ClaimedMax), plan.made(Incomplete::Truncated));
    let (contradicting, over) = (plan.made(Incomplete::Contradicting), plan.made(Incomplete::OverClaimed));
    assert!(claimed > 0 && truncated > 0 && contradicting > 0 && over > 0);
    // Here fragments arrive in the order they were sent, so each contradicting one is refused
    // (after the fragments it contradicts) and every other fragment is held.
    let expect = (plan.messages(), (claimed + truncated) * cap as u64);
    w.run_until(Duration::from_secs(60), |w| {
        let s = w.clients[0].engine.as_ref().unwrap().stats();
        (s.partial_messages, s.partial_bytes) == expect
            && w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
    let s = w.clients[0].e().stats();
    assert_eq!((s.deferred, s.malformed), (contradicting, over), "{s:?}");
    // A claimed count costs nothing: 4,096 claimed fragments would have been 4 MiB a message.
    assert!(s.partial_bytes < claimed * cap as u64 * 4, "{s:?}");
    // The honest texts, each once, in order.
    let texts = |c: &Client| c.texts().into_iter().map(|t| t.2).collect::<Vec<_>>();
    let sent = |p: &str| (0..120).step_by(20).map(|i| format!("{p}:{i}")).collect::<Vec<_>>();
    assert_eq!((texts(&w.clients[0]), texts(&w.clients[1])), (sent("m"), sent("a")));

    // A restart keeps what is held; once the first fragment of each is past the bound, the next
    // clean-up (within the hour) forgets them, their fragments and their rows.
    let net = std::mem::replace(&mut w.net, Net::new(99, 0.0));
    w.clients[0].restart(&net, w.now);
    w.net = net;
    assert_eq!((w.clients[0].e().stats().partial_messages, w.clients[0].e().stats().partial_bytes), expect);
    w.now = first + sending::REMEMBER_DELIVERED - Duration::from_secs(1);
    w.run_for(Duration::from_millis(100));
    assert_eq!(w.clients[0].e().stats().partial_messages, plan.messages(), "expired too early");
    w.now += Duration::from_secs(2 * 3600);
    w.run_for(Duration::from_millis(100));
    let s = w.clients[0].e().stats();
    assert_eq!((s.partial_messages, s.partial_bytes), (0, 0));
    let profile = &w.clients[0].engine.as_ref().unwrap().profile;
    assert!(profile.scan(NS_FRAG).unwrap().is_empty() && profile.scan(NS_PARTIAL).unwrap().is_empty());
    let net = std::mem::replace(&mut w.net, Net::new(99, 0.0));
    w.clients[0].restart(&net, w.now);
    w.net = net;
    assert_eq!(w.clients[0].e().stats().partial_messages, 0);
    // The contact still talks.
    let now = w.now;
    w.clients[1].e().send("ann", "after", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].texts().iter().any(|t| t.2 == "after"));
}

#[test]
fn a_text_numbered_last_is_refused() {
    // Regression: a TEXT numbered u64::MAX, the first its receiver could read from its sender,
    // made the receiver's next expected number overflow (a panic where overflow is checked).
    let mut w = World::new(13, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "mallory");
    let now = w.now;
    w.clients[1].e().send_text_as("ann", u64::MAX, "last", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].engine.as_ref().unwrap().stats().malformed >= 1);
    let now = w.now;
    w.clients[1].e().send("ann", "first", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].texts().len() == 1);
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.clients[0].texts().into_iter().map(|t| t.2).collect::<Vec<_>>(), ["first"]);
}

#[test]
fn a_message_too_long_for_the_network_is_dropped_and_counted() {
    // Regression: a message of ours longer than the network carries (more than MAX_FRAGMENTS
    // fragments: the Welcome of a group a member swelled with hundreds of members carries its
    // whole ratchet tree) failed when it was queued, and the client stopped: at a commit's
    // decision, again at every restart. Here the message is one that waited for its
    // recipient's route, queued when the route comes.
    let mut w = World::new(15, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let cap = sending::fragment_capacity(w.net.sphinx.geometry()).unwrap();
    let huge = Outer::Mls(vec![7u8; cap * sending::MAX_FRAGMENTS + 1]).encode();
    {
        let e = w.clients[0].e();
        let t = e.thread_by_name("bob").unwrap();
        let th = e.threads.get_mut(&t).unwrap();
        let bob = th.roster.keys().next().unwrap().clone();
        th.awaiting.insert(bob, vec![crate::engine::rows::Awaiting { bytes: huge, history: None }]);
    }
    // Bob moves to a fresh mailbox and tells Ann: what waited for him is queued.
    let old = w.clients[1].thread("ann").mailbox;
    let now = w.now;
    w.clients[1].e().registration_refused(MailboxId(old), now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| w.clients[0].engine.as_ref().unwrap().stats().too_long == 1);
    let now = w.now;
    w.clients[0].e().send("bob", "still here?", now, &mut w.rng).unwrap();
    w.clients[1].e().send("ann", "yes", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].texts().len() == 1 && w.clients[1].texts().len() == 1
    });
    w.run_until(Duration::from_secs(60), |w| {
        w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
}

/// Regression: the hourly sweep read each delivered id's row without its version byte, took every
/// one for older than [`sending::REMEMBER_DELIVERED`] and forgot them all within the hour, so a
/// resent copy found no record that its message had been delivered.
#[test]
fn delivered_ids_are_kept_until_their_time_not_dropped_by_the_next_sweep() {
    let mut w = World::new(1, 0.0, &[1, 2]);
    w.connect(0, "alice", 1, "bob");
    let now = w.now;
    w.clients[0].e().send("bob", "remember me", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(120), |w| w.clients[1].texts().iter().any(|t| t.2 == "remember me"));
    let seen = |c: &mut Client| c.e().profile.scan(super::rows::NS_SEEN).unwrap().len();
    let before = seen(&mut w.clients[1]);
    assert!(before >= 1);
    let now = w.now;
    w.clients[1].e().forget_received(now + Duration::from_secs(3600)).unwrap();
    assert_eq!(seen(&mut w.clients[1]), before, "an hour later, every delivered id is still known");
    let later = now + sending::REMEMBER_DELIVERED + Duration::from_secs(60);
    w.clients[1].e().forget_received(later).unwrap();
    assert_eq!(seen(&mut w.clients[1]), 0, "and forgotten once their time is over");
}
