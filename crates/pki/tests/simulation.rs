//! Authorities and nodes on a deterministic simulated network: simulated time, a message queue
//! with per-message loss and delay, every authority driven only through `handle_*` and `poll`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chacha20::rand_core::Rng;
use common::*;
use qanat_pki::{ConsensusFailure, Epoch, PeerMessageError, Position};

fn check_epoch_contents(sim: &Sim, e: Epoch, who: &[usize], nodes: &[usize]) {
    let doc = sim.agreed(e, who);
    assert_eq!(sim.node_ids_in(&doc), nodes.iter().copied().collect(), "nodes of {e:?}");
    let mixes = nodes.iter().filter(|&&i| i < 6).count();
    let sizes: Vec<usize> = (0..3).map(|l| doc.layer(l).count()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), mixes);
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "unbalanced layers {sizes:?}");
    assert_eq!(doc.gateways().count(), nodes.len() - mixes);
    for n in doc.nodes() {
        for j in 0..3 {
            assert!(doc.packet_key(&n.id(), e.plus(j)).is_some());
        }
        assert!(doc.packet_key(&n.id(), e.plus(3)).is_none());
        assert_eq!(doc.node(&n.id()).unwrap().position(), n.position());
    }
    assert_eq!(doc.parameters(), &params());
}

fn clean_run(n: usize, seed: u64) {
    let mut sim = Sim::new(seed, n, 6, 2);
    let e0 = first_epoch();
    sim.run_through(e0.plus(3));
    let all: Vec<usize> = (0..n).collect();
    let mut layouts = Vec::new();
    for k in 1..=4 {
        let e = e0.plus(k);
        check_epoch_contents(&sim, e, &all, &(0..8).collect::<Vec<_>>());
        let doc = sim.agreed(e, &all);
        assert_eq!(doc.signers().len(), n, "every authority signed {e:?}");
        for i in 0..n {
            assert_eq!(sim.published[i][&e], sim.published[0][&e], "identical bytes");
            assert_eq!(sim.publish_count[i][&e], 1, "published once");
        }
        // Packet keys announced ahead stay the same in the next document.
        if k > 1 {
            let prev = sim.agreed(e0.plus(k - 1), &all);
            for node in doc.nodes() {
                assert_eq!(prev.packet_key(&node.id(), e), doc.packet_key(&node.id(), e));
            }
        }
        layouts.push(doc.nodes().iter().map(|n| n.position()).collect::<Vec<Position>>());
    }
    // The shared random value re-deals the layers from epoch to epoch.
    assert!(layouts.windows(2).any(|w| w[0] != w[1]));
    assert!(sim.failures.is_empty(), "{:?}", sim.failures);
    assert!(sim.message_errors.is_empty(), "{:?}", sim.message_errors);
}

#[test]
fn three_authorities_publish_one_identical_document_every_epoch() {
    clean_run(3, 1);
}

#[test]
fn five_authorities_publish_one_identical_document_every_epoch() {
    clean_run(5, 2);
}

#[test]
fn a_node_that_stops_uploading_is_absent_from_the_next_epoch() {
    let mut sim = Sim::new(3, 3, 6, 2);
    let e0 = first_epoch();
    // Mix 0 and gateway 7 upload during e0 and e0+1 (for e0+1 and e0+2), then crash.
    sim.nodes[0].uploads_until = e0.plus(2).start(period());
    sim.nodes[7].uploads_until = e0.plus(2).start(period());
    sim.run_through(e0.plus(3));
    let all = [0, 1, 2];
    check_epoch_contents(&sim, e0.plus(2), &all, &[0, 1, 2, 3, 4, 5, 6, 7]);
    check_epoch_contents(&sim, e0.plus(3), &all, &[1, 2, 3, 4, 5, 6]);
    check_epoch_contents(&sim, e0.plus(4), &all, &[1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_node_that_dies_after_uploading_but_before_the_vote_is_absent_from_the_next_epoch() {
    let mut sim = Sim::new(5, 3, 6, 2);
    let e0 = first_epoch();
    // Mix 3 uploads its descriptor for e0+2 early in e0+1, then dies a second later: well before
    // that epoch's vote, so its stale upload no longer counts as a sign of life.
    sim.nodes[3].uploads_until = e0.plus(1).start(period()).plus_millis(1_000);
    sim.run_through(e0.plus(3));
    let all = [0, 1, 2];
    check_epoch_contents(&sim, e0.plus(1), &all, &[0, 1, 2, 3, 4, 5, 6, 7]);
    check_epoch_contents(&sim, e0.plus(2), &all, &[0, 1, 2, 4, 5, 6, 7]);
}

#[test]
fn an_offline_minority_does_not_stop_consensus_and_rejoins() {
    for (n, offline) in [(3usize, vec![2usize]), (5, vec![0, 3])] {
        let mut sim = Sim::new(4 + n as u64, n, 6, 2);
        let e0 = first_epoch();
        for &i in &offline {
            sim.online[i] = false;
        }
        let online: Vec<usize> = (0..n).filter(|i| !offline.contains(i)).collect();
        sim.run_through(e0.plus(1));
        // The offline ones come back after the vote of e0+2 (they sit that round out).
        let p = period().as_millis();
        sim.run_until(e0.plus(2).start(period()).plus_millis(p * 65 / 100));
        for &i in &offline {
            sim.online[i] = true;
        }
        sim.run_through(e0.plus(3));
        for e in [e0.plus(1), e0.plus(2)] {
            check_epoch_contents(&sim, e, &online, &(0..8).collect::<Vec<_>>());
            assert_eq!(sim.agreed(e, &online).signers().len(), online.len());
            for &i in &offline {
                assert!(!sim.published[i].contains_key(&e));
            }
        }
        // Back for tabulation of e0+3: every authority publishes it and signs it.
        let all: Vec<usize> = (0..n).collect();
        for e in [e0.plus(3), e0.plus(4)] {
            check_epoch_contents(&sim, e, &all, &(0..8).collect::<Vec<_>>());
            assert_eq!(sim.agreed(e, &all).signers().len(), n, "{e:?}");
        }
        assert!(sim.failures.is_empty(), "{:?}", sim.failures);
    }
}

#[test]
fn an_offline_majority_means_no_document_and_a_reported_failure() {
    let mut sim = Sim::new(8, 3, 6, 2);
    let e0 = first_epoch();
    sim.online[1] = false;
    sim.online[2] = false;
    sim.run_through(e0.plus(1));
    assert!(sim.published[0].is_empty());
    assert_eq!(
        sim.failures,
        vec![
            (0, e0.plus(1), ConsensusFailure::NotEnoughVotes { got: 1, needed: 2 }),
            (0, e0.plus(2), ConsensusFailure::NotEnoughVotes { got: 1, needed: 2 })
        ]
    );
}

#[test]
fn lost_and_delayed_messages_still_give_one_document() {
    let mut sim = Sim::new(9, 3, 6, 2);
    let e0 = first_epoch();
    let p = period().as_millis();
    sim.rule = Box::new(move |m| {
        let late = Fate::Deliver { delay_ms: p / 5 };
        match (m.epoch.0 - first_epoch().0, m.kind, m.from, m.to) {
            // e0: a lost vote and a lost reveal, recovered through the cert relays.
            (0, VOTE, 0, 1) | (0, REVEAL, 1, 2) => Fate::Drop,
            // e0: a signature arriving after publication is merged and republished.
            (0, SIGNATURE, 2, 0) => late,
            // e1: authority 2 misses authority 0's vote on every path, so it tabulates a
            // different body; it adopts the majority's document when that arrives.
            (1, VOTE, 0, 2) | (1, CERT, 0, 2) | (1, CERT, 1, 2) => Fate::Drop,
            // e2: every signature to authority 1 is lost: it adopts a peer's document.
            (2, SIGNATURE, _, 1) => Fate::Drop,
            _ => Fate::Deliver { delay_ms: LINK_DELAY_MS },
        }
    });
    sim.run_through(e0.plus(3));
    let all = [0, 1, 2];
    for k in 1..=4 {
        check_epoch_contents(&sim, e0.plus(k), &all, &(0..8).collect::<Vec<_>>());
    }
    // Authority 0 got every signature in the end.
    assert_eq!(sim.agreed(e0.plus(1), &[0]).signers().len(), 3);
    // Authority 2's own signature over its different body was refused by the others.
    assert!(sim.message_errors.iter().any(|(_, e)| *e == PeerMessageError::SignatureMismatch));
    assert_eq!(sim.agreed(e0.plus(2), &[2]).signers().len(), 2);
    assert!(sim.failures.is_empty(), "{:?}", sim.failures);
}

#[test]
fn random_loss_never_splits_the_authorities() {
    for seed in 0..3u64 {
        let mut sim = Sim::new(20 + seed, 5, 6, 2);
        let e0 = first_epoch();
        let mut r = rng(100 + seed);
        sim.rule = Box::new(move |_| {
            if r.next_u32() % 100 < 20 {
                Fate::Drop
            } else {
                Fate::Deliver { delay_ms: 10 + u64::from(r.next_u32() % 400) }
            }
        });
        sim.run_through(e0.plus(4));
        let mut published_epochs = 0;
        for k in 1..=5 {
            let e = e0.plus(k);
            let who: Vec<usize> = (0..5).filter(|&i| sim.published[i].contains_key(&e)).collect();
            if !who.is_empty() {
                // Safety: whoever published, published the same body, majority-signed.
                sim.agreed(e, &who);
                published_epochs += 1;
            }
        }
        assert!(published_epochs >= 4, "seed {seed}: only {published_epochs} epochs published");
    }
}

/// The operator's switch to version 2 (docs/OPERATING.md): authorities restarted one by one
/// with file limits in their config. Each round goes on; the documents stay at version 1 until a
/// majority votes version 2, and are of version 2 from then on.
#[test]
fn authorities_switch_to_version_2_one_by_one_without_a_failed_round() {
    let mut sim = Sim::new(21, 3, 6, 2);
    let e0 = first_epoch();
    sim.run_through(e0.plus(1));
    let all = [0, 1, 2];
    // Authority 0 at the start of e0+2 (whose vote makes e0+3's document), authority 1 at the
    // start of e0+3, authority 2 at the start of e0+4.
    for (i, e) in [(0, e0.plus(2)), (1, e0.plus(3)), (2, e0.plus(4))] {
        sim.restart(i, params_v2());
        sim.run_through(e);
    }
    sim.run_through(e0.plus(5));
    for (e, want) in [(1, params()), (2, params()), (3, params()), (4, params_v2()), (5, params_v2())] {
        let doc = sim.agreed(e0.plus(e), &all[..2]);
        assert_eq!(doc.parameters(), &want, "e0 + {e}");
        assert_eq!(doc.body_bytes()[0], want.version());
        assert_eq!(sim.node_ids_in(&doc).len(), 8);
    }
    assert!(sim.failures.is_empty(), "{:?}", sim.failures);
}
