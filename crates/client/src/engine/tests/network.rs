//! The directory: the idle cost, documents that come late, documents of another geometry.

use super::*;

#[test]
fn the_idle_cost_is_known_once_the_network_is() {
    let net = Net::new(5, 0.0);
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::create_with(dir.path().join("p"), &Passphrase::new("pw"), weak()).unwrap();
    Engine::init(&mut profile, NodeId([1; 32]), TrafficProfile::Metered, &mut rng).unwrap();
    let mut engine = Engine::open(profile, config(), genesis()).unwrap();
    assert_eq!(engine.idle_bytes_per_day(), None);
    engine.set_network(net.topology.clone(), &net.params, net.gateway(1)).unwrap();
    let wire = qanat_link::FrameSize::for_packet_len(net.params.geometry().packet_len()).unwrap().wire_len();
    let want = TrafficProfile::Metered.idle_bytes_per_day(&net.params, wire);
    assert_eq!(engine.idle_bytes_per_day(), Some(want));
    assert!(want.0 > 0.0 && want.1 > 0.0);
}

/// The directory's file limits reach the engine from each document: what a version-1 document
/// means, then what a version-2 document sets.
#[test]
fn the_file_limits_are_the_current_documents() {
    let net = Net::new(6, 0.0);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::create_with(dir.path().join("p"), &Passphrase::new("pw"), weak()).unwrap();
    Engine::init(&mut profile, NodeId([1; 32]), TrafficProfile::Standard, &mut rng).unwrap();
    let mut engine = Engine::open(profile, config(), genesis()).unwrap();
    assert_eq!(engine.file_limits(), None);
    assert_eq!(net.params.version(), 2);
    let v1 = Parameters::new(ParametersConfig { file_limits: None, ..net.params.config() }).unwrap();
    assert_eq!(v1.version(), 1);
    engine.set_network(net.topology.clone(), &v1, net.gateway(1)).unwrap();
    assert_eq!(engine.file_limits(), Some(FileLimits::VERSION_1));
    assert_eq!(engine.max_file_bytes(), 1 << 20);
    let limits = FileLimits { max_file_bytes: 3_000_000, fast_factor_max: 2 };
    let v2 = Parameters::new(ParametersConfig { file_limits: Some(limits), ..net.params.config() }).unwrap();
    engine.set_network(net.topology.clone(), &v2, net.gateway(1)).unwrap();
    assert_eq!(engine.file_limits(), Some(limits));
    assert_eq!(engine.network().unwrap().params.max_file_bytes(), 3_000_000);
    assert_eq!(engine.max_file_bytes(), 3_000_000);
}

// Regression (testbed and devnet with 20-second epochs: every message late by 30 s or more, in
// bursts): the next epoch's document reached clients only 6 to 10 s into the epoch, through
// their pulls, while mixes and gateways refuse the old epoch's keys from 5 s (the key grace)
// on. Meanwhile the engine kept putting messages into packets built with those keys: the
// gateway dropped them (17% of every client's packets), and each lost fragment waited for the
// outbox's resend, holding every later message of its sender in order. A message now waits for
// the document instead, and leaves once, as soon as it comes.
#[test]
fn a_message_is_not_spent_on_keys_the_network_no_longer_accepts() {
    let period = EpochPeriod::from_secs(20).unwrap();
    let mut w = World::with_period(11, 0.0, &[1, 2], period);
    w.connect(0, "alice", 1, "bob");
    w.clients[0].late_documents = true;
    // Past the end of the epoch and its grace, without the next epoch's document.
    let stale = w.epoch_end() + period.key_grace() + Duration::from_secs(1);
    let wait = stale.duration_since(w.now).unwrap();
    w.run_for(wait);
    let sent = w.clients[0].e().stats().sent_real;
    let refused = w.net.refused;
    let now = w.now;
    let id = w.clients[0].e().send("bob", "late", now, &mut w.rng).unwrap();
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.clients[0].e().stats().sent_real, sent, "a message went out on retired keys");
    assert_eq!(w.clients[0].e().delivery(&id).unwrap(), Some(Delivery::Queued));
    assert!(w.net.refused > refused, "the payload slots still go (as drops)");
    assert!(w.clients[0].e().stats().held_for_directory > 0);
    // The document comes: the message leaves once and arrives.
    w.document_to(0);
    w.run_until(Duration::from_secs(10), |w| w.clients[1].texts().len() == 1);
    w.run_until(Duration::from_secs(10), |w| {
        w.clients[0]
            .events
            .iter()
            .any(|e| matches!(e, EngineEvent::Delivery { state: Delivery::Delivered, .. }))
    });
    assert_eq!(w.clients[0].e().stats().sent_real, sent + 1, "resent: the first copy was lost");
}

// What a client without the current document still sends: acknowledgements travel in the
// SURBs their senders made (with keys the sender chose), so they do not wait for the directory.
#[test]
fn acknowledgements_do_not_wait_for_the_directory() {
    let period = EpochPeriod::from_secs(20).unwrap();
    let mut w = World::with_period(12, 0.0, &[1, 2], period);
    w.connect(0, "alice", 1, "bob");
    w.clients[1].late_documents = true;
    let stale = w.epoch_end() + period.key_grace() + Duration::from_secs(1);
    let wait = stale.duration_since(w.now).unwrap();
    w.run_for(wait);
    let now = w.now;
    let id = w.clients[0].e().send("bob", "hello", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(5), |w| w.clients[1].texts().len() == 1);
    w.run_until(Duration::from_secs(5), |w| {
        w.clients[0].engine.as_ref().unwrap().delivery(&id).unwrap() == Some(Delivery::Delivered)
    });
}

#[test]
fn a_directory_of_another_geometry_changes_nothing() {
    // Regression: a directory document of another geometry replaced the engine's network. One
    // whose payload leaves no room for a fragment beside its SURB made every message to queue
    // fail, and the client stopped at the next one it had to send on its own (a ROUTE, a
    // commit); with any other, the fragments already cut for the old geometry could never be
    // built again.
    let mut w = World::new(16, 0.0, &[1, 2]);
    w.connect(0, "ann", 1, "bob");
    // The mailboxes have moved (rotation after the contact is made): the routes are the new ones.
    w.run_until(Duration::from_secs(60), |w| {
        w.clients.iter().all(|c| c.engine.as_ref().unwrap().undelivered() == 0)
    });
    let params = |forward_payload_len| {
        Parameters::new(ParametersConfig {
            mean_delay_ms: 10,
            lambda_p: Rate::from_micro_per_sec(20_000_000),
            lambda_l: Rate::from_micro_per_sec(1_000_000),
            lambda_d: Rate::from_micro_per_sec(1_000_000),
            lambda_m: Rate::from_micro_per_sec(100_000_000),
            forward_payload_len,
            ..ParametersConfig::default_for(SCHEME)
        })
        .unwrap()
    };
    let now = w.now;
    w.clients[0].e().send("bob", "before", now, &mut w.rng).unwrap();
    for len in [200, 4000] {
        let (topology, gw) = (w.net.topology.clone(), w.net.gateway(1));
        assert!(w.clients[0].e().set_network(topology, &params(len), gw).is_err(), "{len}");
    }
    assert_eq!(w.clients[0].e().network().unwrap().sphinx.geometry(), w.net.sphinx.geometry());
    // Nor does a first document of such a geometry give a network.
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::create_with(dir.path().join("p"), &Passphrase::new("pw"), weak()).unwrap();
    Engine::init(&mut profile, NodeId([1; 32]), TrafficProfile::Standard, &mut w.rng).unwrap();
    let mut fresh = Engine::open(profile, config(), w.now).unwrap();
    assert!(fresh.set_network(w.net.topology.clone(), &params(200), w.net.gateway(1)).is_err());
    assert!(!fresh.has_network());
    let now = w.now;
    w.clients[0].e().send("bob", "after", now, &mut w.rng).unwrap();
    w.clients[1].e().send("ann", "yes", now, &mut w.rng).unwrap();
    w.run_until(Duration::from_secs(60), |w| {
        w.clients[0].texts().len() == 1 && w.clients[1].texts().len() == 2
    });
}
