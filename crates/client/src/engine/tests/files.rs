//! Files: one-to-one and in a group, with loss, a recipient offline and both ends restarted,
//! offers waiting for the user's yes, declines and cancels, and what a hostile member cannot do.

use super::*;
use crate::engine::wire::FileKind;

fn spec(name: &str) -> FileSpec {
    FileSpec {
        name: name.into(),
        mime: "application/octet-stream".into(),
        kind: FileKind::File,
        duration_ms: 0,
        caption: "for you".into(),
    }
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The file of `c`'s history entry `id` once whole.
fn got(c: &mut Client, id: &LocalMessageId) -> Option<Vec<u8>> {
    let info = c.e().file_info(id)?;
    if info.state != "received" && !info.outgoing {
        return None;
    }
    c.e().file_bytes(id, 0, info.size as usize).ok().map(|(b, _)| b)
}

/// The id of the file `name` offered to client `c`, once its message came.
fn offered(c: &Client, name: &str) -> Option<LocalMessageId> {
    c.events.iter().find_map(|e| match e {
        EngineEvent::Message { id, file: Some(f), .. } if f.name == name => Some(id.clone()),
        _ => None,
    })
}

fn delivered(c: &Client, id: &LocalMessageId) -> bool {
    c.events
        .iter()
        .any(|e| matches!(e, EngineEvent::Delivery { message, state: Delivery::Delivered } if message == id))
}

#[test]
fn a_file_arrives_whole_once_through_loss_and_is_delivered() {
    let mut w = World::new(41, 0.1, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let file = bytes(300_000, 1);
    let now = w.now;
    let id = w.clients[0].e().send_file("bob", spec("report.pdf"), &file, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(600), |w| delivered(&w.clients[0], &id));
    let theirs = offered(&w.clients[1], "report.pdf").unwrap();
    assert_eq!(got(&mut w.clients[1], &theirs).unwrap(), file, "byte for byte");
    assert_eq!(got(&mut w.clients[0], &id).unwrap(), file, "our own copy");
    let n = w.clients[1]
        .events
        .iter()
        .filter(|e| matches!(e, EngineEvent::Message { file: Some(_), .. }))
        .count();
    assert_eq!(n, 1, "one entry");
    let s = w.clients[1].e().stats();
    assert_eq!(s.files_received, 1);
    assert_eq!(s.files_corrupt, 0);
    // The keys went once it was done; the history says delivered.
    let info = w.clients[0].e().file_info(&id).unwrap();
    assert_eq!((info.state, info.recipients), ("sent", [1, 1]));
    assert_eq!(w.clients[1].e().history("ann").unwrap().last().unwrap().1.text, "for you");
}

/// Ann makes the group "team" of herself, Bob and Cat (clients 0, 1, 2, already her contacts);
/// returns once both joined and her roster has them.
fn team(w: &mut World) {
    let now = w.now;
    w.clients[0].e().create_group("team", &mut w.rng).unwrap();
    w.clients[0].e().group_add("team", "bob", now, &mut w.rng).unwrap();
    w.clients[0].e().group_add("team", "cat", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(300), |w| {
        (1..3).all(|c| w.clients[c].events.contains(&EngineEvent::GroupJoined { name: "team".into() }))
            && w.clients[0].clients_members("team") == 2
    });
    w.run_for(Duration::from_secs(5));
}

#[test]
fn a_group_of_three_gets_it_with_the_recipient_offline_and_both_ends_restarted() {
    let mut w = World::new(42, 0.1, &[1, 2, 1]);
    w.connect(0, "ann", 1, "bob");
    w.connect(0, "ann", 2, "cat");
    team(&mut w);
    let file = bytes(400_000, 2);
    let now = w.now;
    let id = w.clients[0].e().send_file("team", spec("map.png"), &file, false, now, &mut w.rng).unwrap();
    // Bob goes offline once the file starts arriving, and comes back later; Ann restarts in the
    // middle, and so does Cat.
    w.run_until(Duration::from_secs(300), |w| {
        offered(&w.clients[1], "map.png").is_some_and(|id| {
            w.clients[1].engine.as_ref().unwrap().file_info(&id).is_some_and(|f| f.done_bytes > 50_000)
        })
    });
    w.clients[1].online = false;
    w.run_for(Duration::from_secs(10));
    let now = w.now;
    w.clients[0].restart(&w.net, now);
    w.run_for(Duration::from_secs(5));
    let now = w.now;
    w.clients[2].restart(&w.net, now);
    w.run_for(Duration::from_secs(20));
    w.clients[1].online = true;
    w.run_until(Duration::from_secs(1200), |w| delivered(&w.clients[0], &id));
    for c in 1..3 {
        let theirs = offered(&w.clients[c], "map.png").unwrap();
        assert_eq!(got(&mut w.clients[c], &theirs).unwrap(), file, "client {c}: byte for byte");
        assert_eq!(w.clients[c].e().stats().files_received, 1);
    }
}

#[test]
fn a_large_offer_waits_for_a_yes_and_a_no_is_told() {
    let mut w = World::new(43, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let big = bytes(1_500_000, 3);
    let now = w.now;
    let id = w.clients[0].e().send_file("bob", spec("big.bin"), &big, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| offered(&w.clients[1], "big.bin").is_some());
    let theirs = offered(&w.clients[1], "big.bin").unwrap();
    w.run_for(Duration::from_secs(10));
    assert_eq!(w.clients[1].e().file_info(&theirs).unwrap().state, "offered");
    assert_eq!(w.clients[0].e().stats().sent_file, 0, "no chunk before a yes");
    let now = w.now;
    w.clients[1].e().accept_file(&theirs, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(900), |w| delivered(&w.clients[0], &id));
    assert_eq!(got(&mut w.clients[1], &theirs).unwrap(), big);

    // A second one, declined: its sender hears it and stops.
    let now = w.now;
    let id2 = w.clients[0].e().send_file("bob", spec("again.bin"), &big, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| offered(&w.clients[1], "again.bin").is_some());
    let theirs2 = offered(&w.clients[1], "again.bin").unwrap();
    let now = w.now;
    w.clients[1].e().decline_file(&theirs2, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].engine.as_ref().unwrap().file_info(&id2).is_some_and(|f| f.state == "declined")
    });
    assert!(matches!(w.clients[1].e().file_bytes(&theirs2, 0, 10), Err(EngineError::FileNotReady(_))));
}

#[test]
fn a_sender_cancels_and_the_recipient_drops_what_it_holds() {
    let mut w = World::new(44, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let file = bytes(900_000, 4);
    let now = w.now;
    let id = w.clients[0].e().send_file("bob", spec("long.bin"), &file, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(300), |w| {
        offered(&w.clients[1], "long.bin").is_some_and(|id| {
            w.clients[1].engine.as_ref().unwrap().file_info(&id).is_some_and(|f| f.done_bytes > 100_000)
        })
    });
    let now = w.now;
    w.clients[0].e().cancel_file(&id, now, &mut w.rng).unwrap();
    let theirs = offered(&w.clients[1], "long.bin").unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[1].engine.as_ref().unwrap().file_info(&theirs).is_some_and(|f| f.state == "cancelled")
    });
    let p = w.clients[1].e();
    assert!(p.profile.keys(super::super::rows::NS_SHARD).is_empty(), "shards dropped");
    assert!(p.profile.keys(super::super::rows::NS_BLOB).is_empty(), "partial blocks dropped");
}

#[test]
fn files_over_the_limit_are_refused_and_names_must_be_names() {
    let mut w = World::new(45, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let now = w.now;
    let e = w.clients[0].e();
    assert_eq!(e.max_file_bytes(), 4 << 20, "the directory's limit");
    let too_big = vec![0u8; (e.max_file_bytes() + 1) as usize];
    assert!(matches!(
        e.send_file("bob", spec("x"), &too_big, false, now, &mut w.rng),
        Err(EngineError::FileTooLarge { .. })
    ));
    assert!(matches!(
        e.send_file("bob", spec("../etc/passwd"), b"x", false, now, &mut w.rng),
        Err(EngineError::InvalidName(_))
    ));
    // In parts: in order, no more than announced.
    let up = e.attach_begin("bob", spec("a.txt"), 10, now, &mut w.rng).unwrap();
    assert!(e.attach_part(&up, 5, b"hello", now).is_err());
    e.attach_part(&up, 0, b"hello", now).unwrap();
    assert!(e.attach_commit(&up, false, now, &mut w.rng).is_err(), "not whole yet");
    assert!(e.attach_part(&up, 5, b"world!", now).is_err(), "more than announced");
    e.attach_part(&up, 5, b"world", now).unwrap();
    let id = e.attach_commit(&up, false, now, &mut w.rng).unwrap();
    assert_eq!(e.file_bytes(&id, 0, 100).unwrap(), (b"helloworld".to_vec(), 10));
    w.run_until(Duration::from_secs(60), |w| delivered(&w.clients[0], &id));
}

#[test]
fn a_fast_file_doubles_the_payload_rate_while_it_runs_and_no_longer() {
    let mut w = World::new(46, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    let rate = |c: &mut Client| c.e().schedule.as_ref().unwrap().rates().payload;
    let normal = rate(&mut w.clients[0]);
    let e = w.clients[0].e();
    let est = e.estimate_file("bob", 300_000).unwrap();
    let (fast_low, _, extra) = est.fast.expect("the directory allows fast files");
    assert!(fast_low < est.secs_low && extra > 0, "{est:?}");
    let file = bytes(300_000, 5);
    let now = w.now;
    let id = w.clients[0].e().send_file("bob", spec("fast.bin"), &file, true, now, &mut w.rng).unwrap();
    assert_eq!(rate(&mut w.clients[0]), normal * 2.0, "flat at twice the rate from the start");
    let pulls = w.clients[0].e().rates().unwrap().payload;
    assert_eq!(pulls, normal, "the pulls (which follow the profile's rates) do not change");
    assert!(w.clients[0].e().file_info(&id).unwrap().fast);
    w.run_until(Duration::from_secs(300), |w| delivered(&w.clients[0], &id));
    assert_eq!(rate(&mut w.clients[0]), normal, "back once it is done");
    let theirs = offered(&w.clients[1], "fast.bin").unwrap();
    assert_eq!(got(&mut w.clients[1], &theirs).unwrap(), file);
}

#[test]
fn a_member_who_leaves_stops_counting_and_the_file_is_delivered_to_the_rest() {
    let mut w = World::new(47, 0.0, &[1, 2, 1]);
    w.connect(0, "ann", 1, "bob");
    w.connect(0, "ann", 2, "cat");
    team(&mut w);
    // Over auto-accept: it waits for each member's yes. Bob says yes; Cat never does, and is
    // removed.
    let big = bytes(1_200_000, 6);
    let now = w.now;
    let id = w.clients[0].e().send_file("team", spec("plan.bin"), &big, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        offered(&w.clients[1], "plan.bin").is_some() && offered(&w.clients[2], "plan.bin").is_some()
    });
    let bobs = offered(&w.clients[1], "plan.bin").unwrap();
    let now = w.now;
    w.clients[1].e().accept_file(&bobs, now, &mut w.rng).unwrap();
    let now = w.now;
    w.clients[0].e().group_remove("team", "cat", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(600), |w| delivered(&w.clients[0], &id));
    let info = w.clients[0].e().file_info(&id).unwrap();
    assert_eq!((info.state, info.recipients), ("sent", [1, 2]));
    assert_eq!(got(&mut w.clients[1], &bobs).unwrap(), big);
    assert!(w.clients[0].e().stats().sent_file > 0);
}

/// Whether client `c`'s copy of the file offered as `name` holds more than `n` bytes.
fn holds(c: &Client, name: &str, n: u64) -> bool {
    offered(c, name).is_some_and(|id| {
        c.engine.as_ref().unwrap().file_info(&id).is_some_and(|f| f.done_bytes > n || f.state == "received")
    })
}

/// Randomised: over 10-second epochs and 19% loss, to a contact or to a group of three, the
/// sender or a recipient restarts, or a recipient is away a while, at moments drawn from the seed,
/// up to three times during the transfer; the file always arrives whole at every recipient and
/// is delivered within a bound. Regression: a fresh-clone CI run's devnet transfer never finished
/// after its sender restarted, because the restored state's record of what was sent lagged
/// behind what the recipient reported, and every top-up named shards the recipient held (sent
/// as nothing but SURBS until the budget ran out). More seeds: `QANAT_FILE_SEEDS=200`.
#[test]
fn restarts_and_absences_at_any_moment_never_stall_a_file() {
    let seeds: u64 = std::env::var("QANAT_FILE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let from: u64 = std::env::var("QANAT_FILE_SEED_FROM").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let period = EpochPeriod::from_secs(10).unwrap();
    let mut slowest = Duration::ZERO;
    for seed in from..from + seeds {
        let mut pick = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
        let group = seed % 3 == 2;
        let mut w = World::with_period(100 + seed, 0.19, if group { &[1, 2, 1] } else { &[1, 2] }, period);
        w.connect(0, "ann", 1, "bob");
        let thread = if group {
            w.connect(0, "ann", 2, "cat");
            team(&mut w);
            "team"
        } else {
            "bob"
        };
        let recipients = if group { 1..3 } else { 1..2 };
        let size = 60_000 + (pick.next_u64() % 400_000) as usize;
        let file = bytes(size, seed as u8);
        let now = w.now;
        let started = now;
        let id = w.clients[0].e().send_file(thread, spec("f.bin"), &file, false, now, &mut w.rng).unwrap();
        let mut plan = Vec::new();
        for _ in 0..1 + pick.next_u64() % 3 {
            // At a share of the file at the first recipient: the sender restarts, a recipient
            // restarts, a recipient is away a while, or the sender and a recipient restart.
            let at = (size as u64) * (5 + pick.next_u64() % 90) / 100;
            let who = recipients.start + (pick.next_u64() % recipients.len() as u64) as usize;
            plan.push((at, pick.next_u64() % 4, who, Duration::from_millis(pick.next_u64() % 30_000)));
        }
        plan.sort();
        for (at, what, who, away) in &plan {
            w.run_until(Duration::from_secs(900), |w| holds(&w.clients[1], "f.bin", *at));
            let now = w.now;
            match what {
                0 => w.clients[0].restart(&w.net, now),
                1 => w.clients[*who].restart(&w.net, now),
                2 => {
                    w.clients[*who].online = false;
                    w.run_for(*away);
                    w.clients[*who].online = true;
                }
                _ => {
                    w.clients[0].restart(&w.net, now);
                    w.clients[*who].restart(&w.net, now);
                }
            }
        }
        let end = w.now + Duration::from_secs(900);
        while !delivered(&w.clients[0], &id) {
            if w.now >= end {
                let ours = w.clients[0].e().file_info(&id);
                let theirs: Vec<_> = recipients
                    .clone()
                    .map(|c| offered(&w.clients[c], "f.bin").and_then(|t| w.clients[c].e().file_info(&t)))
                    .collect();
                panic!(
                    "seed {seed} (size {size}, plan {plan:?}): not delivered in 900 s\nours {ours:?}\ntheirs {theirs:?}\n{:?}",
                    w.clients[0].e().stats(),
                );
            }
            w.run_for(Duration::from_millis(100));
        }
        slowest = slowest.max(w.now.duration_since(started).unwrap());
        for c in recipients {
            let theirs = offered(&w.clients[c], "f.bin").unwrap();
            assert_eq!(got(&mut w.clients[c], &theirs).unwrap(), file, "seed {seed}: byte for byte");
        }
    }
    println!("the slowest file took {slowest:?}");
}

/// A recipient who never answers, away for good: the sender probes it (one SURBS per resend
/// wait) and gives it up when the recipient's own client would have: an offer never answered
/// after `OFFER_TTL`, an accepted file never completed after `RECEIVE_TTL`. Its keys go then.
#[test]
fn a_recipient_gone_for_good_is_given_up_after_its_time() {
    let mut w = World::new(49, 0.0, &[1, 2, 1]);
    w.connect(0, "ann", 1, "bob");
    w.connect(0, "ann", 2, "cat");
    // Bob is offered a file too large to take without asking while he is away; Cat accepts one
    // (small enough) and is gone halfway.
    w.clients[1].online = false;
    let big = bytes(1_500_000, 7);
    let now = w.now;
    let to_bob = w.clients[0].e().send_file("bob", spec("big.bin"), &big, false, now, &mut w.rng).unwrap();
    let small = bytes(300_000, 8);
    let to_cat =
        w.clients[0].e().send_file("cat", spec("small.bin"), &small, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(120), |w| holds(&w.clients[2], "small.bin", 50_000));
    w.clients[2].online = false;
    let state = |w: &mut World, id: &LocalMessageId| w.clients[0].e().file_info(id).unwrap().state;
    // Days go by (the clock jumps; the sender keeps running).
    for (days, bob, cat) in [(13, "offered", "sending"), (15, "failed", "sending"), (31, "failed", "failed")]
    {
        w.now = genesis() + Duration::from_secs(days * 86_400);
        w.run_for(Duration::from_secs(2));
        assert_eq!((state(&mut w, &to_bob), state(&mut w, &to_cat)), (bob, cat), "day {days}");
    }
    let probes = w.clients[0].e().stats().sent_file;
    w.now += Duration::from_secs(86_400);
    w.run_for(Duration::from_secs(600));
    assert_eq!(w.clients[0].e().stats().sent_file, probes, "nothing more goes once given up");
    // Bob comes back: the offer reaches him now, and so does the word that it was given up (his
    // own client would have waited 14 days from now).
    w.clients[1].online = true;
    w.run_until(Duration::from_secs(120), |w| {
        offered(&w.clients[1], "big.bin").is_some_and(|t| {
            w.clients[1].engine.as_ref().unwrap().file_info(&t).is_some_and(|f| f.state == "cancelled")
        })
    });
    assert_eq!(w.clients[0].e().stats().sent_file, probes);
}

/// A recipient away for hours, whose sender's probes have backed off, says it is back when its
/// client starts again: the file goes on within minutes, not at the next probe (up to 2 h away).
#[test]
fn a_recipient_that_restarts_after_hours_away_gets_the_rest_at_once() {
    // Ten-minute epochs: the SURBs of the probes waiting in Bob's mailbox die with their epoch's
    // keys, as in the network, so only his word brings the next one.
    let mut w = World::with_period(51, 0.05, &[1, 2], EpochPeriod::from_secs(600).unwrap());
    w.connect(0, "ann", 1, "bob");
    let file = bytes(300_000, 9);
    let now = w.now;
    let id = w.clients[0].e().send_file("bob", spec("away.bin"), &file, false, now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(120), |w| holds(&w.clients[1], "away.bin", 30_000));
    w.clients[1].online = false;
    // Hours pass (the clock jumps, the sender runs a while after each jump and probes).
    for _ in 0..6 {
        w.now += Duration::from_secs(3600);
        w.run_for(Duration::from_secs(30));
    }
    let now = w.now;
    w.clients[1].restart(&w.net, now);
    w.clients[1].online = true;
    w.run_until(Duration::from_secs(300), |w| delivered(&w.clients[0], &id));
    let theirs = offered(&w.clients[1], "away.bin").unwrap();
    assert_eq!(got(&mut w.clients[1], &theirs).unwrap(), file);
}
