//! The whole round trip on one network, pulls included: a message leaves its sender's payload
//! slot, crosses the mixes into its recipient's mailbox, comes out by the recipient's pull, and
//! its acknowledgement goes back the same way into the sender's mailbox and the sender's pull.

use std::collections::HashMap;
use std::time::Duration;

use qanat_mixnet::ResendConfig;
use qanat_mixnet::UnixMicros;
use qanat_mixnet::sending::{PULL_BATCH, PULL_FIRST, Rates};
use qanat_packet::Scheme;
use qanat_sim::{Config, Endpoint, Network, Pulls, Run, run};

/// A small, fast network: 6 clients at λ_P = 2/s (a pull every 0.5 s), 100 ms mean delay, every
/// client writing, 30 s of messages and a minute to drain.
fn fast(seed: u64) -> Config {
    let params = qanat_pki::Parameters::default_for(Scheme::X25519Nike);
    let mut c = Config::from_parameters(&params, 6, seed);
    c.rates = Rates { payload: 2.0, loops: 0.5, drops: 0.5 };
    c.mean_delay = Duration::from_millis(100);
    c.mix_loop_rate = 10.0;
    c.message_rate = 0.3;
    c.warmup = Duration::from_secs(5);
    c.duration = Duration::from_secs(30);
    c.tail = Duration::from_secs(60);
    c.pulls = Some(Pulls::for_rates(c.rates));
    c.links.resend = Some(ResendConfig::new(Duration::from_millis(500), Duration::from_secs(60)));
    c
}

fn assert_each_delivered_once(r: &Run) {
    assert!(r.messages.len() > 30, "{} messages", r.messages.len());
    for (i, m) in r.messages.iter().enumerate() {
        assert_eq!(m.deliveries, 1, "message {i}: {m:?}");
        let d = m.delivered.unwrap();
        assert!(d.time > m.queued);
        // Delivered when pulled, after its packet reached the recipient's gateway.
        let o = r.observations[d.observation];
        assert_eq!(o.to, Endpoint::Gateway((m.recipient % 2) as u16), "{o:?}");
        assert!(d.time > o.time, "pulled after it was stored");
    }
}

#[test]
fn a_message_is_pulled_by_its_recipient_exactly_once_under_loss() {
    let mut c = fast(21);
    c.links.loss = 0.05;
    c.links.client_loss = 0.02;
    c.links.pull_loss = 0.02;
    let r = run(&c).unwrap();
    assert_each_delivered_once(&r);
    assert!(r.links.lost > 50, "{:?}", r.links);
    assert!(r.links.resent > 0, "lost packets to gateways were sent again: {:?}", r.links);
    assert!(r.pulls.sessions > 0, "lost pulls started new sessions: {:?}", r.pulls);
    // Lost packets and acknowledgements made senders resend: the copies were taken, not delivered.
    assert!(r.messages.iter().any(|m| m.copies > 1));
}

#[test]
fn without_loss_every_item_is_pulled_once() {
    let r = run(&fast(22)).unwrap();
    assert_each_delivered_once(&r);
    assert_eq!(r.pulls.repeats, 0, "{:?}", r.pulls);
    assert_eq!(r.links.lost, 0);
    assert!(r.pulls.items > r.messages.len() as u64, "messages, acknowledgements and loops: {:?}", r.pulls);
}

#[test]
fn a_failing_store_is_not_acknowledged_and_the_last_mix_sends_again() {
    let c = fast(23);
    let (start, stop) = (UnixMicros::ZERO + c.warmup, UnixMicros::ZERO + c.warmup + c.duration);
    let end = stop + c.tail;
    let mut net = Network::new(c).unwrap();
    net.run_until(start + Duration::from_secs(10)).unwrap();
    // What is in flight: packets sent within the last round trip.
    let steady = net.unacked();
    assert!(steady < 20, "{steady} unacknowledged");
    net.set_store_failing(true);
    net.run_until(start + Duration::from_secs(15)).unwrap();
    // Nothing is acknowledged while the store fails: the last mixes keep what they sent.
    assert!(net.unacked() > 20, "{} unacknowledged", net.unacked());
    net.set_store_failing(false);
    net.run_until(end).unwrap();
    assert!(net.unacked() < 20, "everything stored once the store works again: {}", net.unacked());
    let r = net.finish();
    assert_eq!(r.links.gave_up, 0);
    let failed: u64 = r.gateway_metrics.iter().map(|g| g.store_failed).sum();
    assert!(failed > 20, "{failed}");
    assert!(r.links.resent >= failed, "every failed write was sent again: {:?}", r.links);
    assert_each_delivered_once(&r);
}

#[test]
fn pull_answers_have_one_length_whatever_the_mailbox_holds() {
    let c = fast(24);
    let clients = c.clients;
    let r = run(&c).unwrap();
    // Each request is answered by one burst of 1 + limit frames: 1 + PULL_FIRST for the
    // session's first pull, 1 + PULL_BATCH for every other.
    let mut bursts: HashMap<(u32, UnixMicros), usize> = HashMap::new();
    let mut requests = vec![0usize; clients as usize];
    for o in &r.pull_frames {
        match (o.from, o.to) {
            (Endpoint::Gateway(_), Endpoint::Client(c)) => *bursts.entry((c, o.time)).or_default() += 1,
            (Endpoint::Client(c), Endpoint::Gateway(_)) => requests[c as usize] += 1,
            x => panic!("a pull frame on {x:?}"),
        }
    }
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for n in bursts.values() {
        *sizes.entry(*n).or_default() += 1;
    }
    let first = 1 + usize::from(PULL_FIRST);
    let other = 1 + usize::from(PULL_BATCH);
    assert_eq!(sizes.keys().filter(|k| **k != first && **k != other).count(), 0, "{sizes:?}");
    assert_eq!(sizes.get(&first), Some(&(clients as usize)), "one first pull per client");
    assert!(bursts.len() as u64 >= r.pulls.answers, "every answer observed");
    // While the answers, and so the frames, carried items (messages, acknowledgements, loops)
    // in some pulls and none in others.
    assert!(r.pulls.items > 0 && r.pulls.items < r.pulls.answers * u64::from(PULL_BATCH));
    // Pulls leave on the cadence, whatever arrives: each client's requests are as many.
    let (min, max) = (requests.iter().min().unwrap(), requests.iter().max().unwrap());
    assert!(max - min <= 1, "{requests:?}");
}

#[test]
fn without_pulls_link_acknowledgements_on_a_perfect_network_change_nothing() {
    let mut c = fast(25);
    c.pulls = None;
    let with = run(&c).unwrap();
    c.links.resend = None;
    let without = run(&c).unwrap();
    assert_eq!(with.observations, without.observations);
    assert_eq!(with.messages, without.messages);
    assert_eq!(with.links.resent, 0);
    assert!(with.links.acks > 0);
}
