//! The adversary works: it finds senders when nothing hides them, and it is not fooled by a
//! single client; with the defaults its uncertainty approaches the whole population.

use std::time::Duration;

use qanat_packet::Scheme;
use qanat_sim::timing::{Sender, inter_departures};
use qanat_sim::{Config, evaluate, stats::ks_two_sample};

fn small(clients: u32, seed: u64) -> Config {
    let params = qanat_pki::Parameters::default_for(Scheme::X25519Nike);
    let mut c = Config::from_parameters(&params, clients, seed);
    c.warmup = Duration::from_secs(20);
    c.duration = Duration::from_secs(120);
    c.tail = Duration::from_secs(30);
    c
}

#[test]
fn without_delay_or_cover_the_adversary_finds_the_sender() {
    let mut c = small(10, 1);
    c.mean_delay = Duration::ZERO;
    c.mix_loop_rate = 0.0;
    c.client_cover = false;
    let s = evaluate(&c).unwrap();
    assert!(s.delivered > 30, "{s:?}");
    assert!(s.top_correct >= 0.95, "{s:?}");
    assert!(s.p_true.mean >= 0.95, "{s:?}");
}

#[test]
fn a_single_client_is_always_found() {
    let s = evaluate(&small(1, 2)).unwrap();
    assert!(s.delivered > 3, "{s:?}");
    assert_eq!(s.p_true.min, 1.0);
    assert_eq!(s.entropy.max, 0.0);
}

#[test]
fn with_the_defaults_entropy_approaches_the_population() {
    let c = small(16, 3);
    let s = evaluate(&c).unwrap();
    assert!(s.delivered > 50, "{s:?}");
    // Within 1.5 bits of log2(16) = 4 on average, and the true sender rarely the top guess.
    assert!(s.entropy.mean >= s.max_entropy - 1.5, "{s:?}");
    assert!(s.p_true.mean < 0.25, "{s:?}");
}

#[test]
fn busy_and_idle_clients_look_alike_and_a_naive_sender_does_not() {
    let c = small(4, 4);
    let n = 3_000;
    let idle = inter_departures(&c, Sender::Qanat, false, n).unwrap();
    let busy = inter_departures(&Config { seed: 5, ..c.clone() }, Sender::Qanat, true, n).unwrap();
    let t = ks_two_sample(&idle, &busy).unwrap();
    assert!(t.p_value > 0.01, "{t:?}");
    let idle = inter_departures(&c, Sender::Naive, false, n).unwrap();
    let busy = inter_departures(&Config { seed: 5, ..c }, Sender::Naive, true, n).unwrap();
    let t = ks_two_sample(&idle, &busy).unwrap();
    assert!(t.p_value < 1e-6, "{t:?}");
}

#[test]
fn without_delay_the_gateway_adversaries_link_nearly_always() {
    let mut c = small(10, 6);
    c.mean_delay = Duration::ZERO;
    c.mix_loop_rate = 0.0;
    let s = evaluate(&c).unwrap();
    for (name, l) in [("all", &s.all_gateways), ("one", &s.one_gateway)] {
        assert!(l.messages > 10, "{name}: {l:?}");
        assert!(l.top_correct >= 0.95, "{name}: {l:?}");
    }
    assert_eq!(s.all_gateways.messages, s.delivered, "{s:?}");
}

#[test]
fn all_gateways_with_one_honest_mix_do_no_worse_than_the_global_observer() {
    let mut c = small(12, 7);
    c.layers = 1;
    c.mixes_per_layer = 1;
    c.mix_loop_rate = 4.0;
    let s = evaluate(&c).unwrap();
    let (g, a) = (&s, &s.all_gateways);
    assert_eq!(a.messages, g.delivered, "{s:?}");
    eprintln!(
        "global: H {:.3} p {:.3} top {:.3}; all gateways: H {:.3} p {:.3} top {:.3}; recipient only: H {:.3} p {:.3} top {:.3}",
        g.entropy.mean,
        g.p_true.mean,
        g.top_correct,
        a.entropy.mean,
        a.p_true.mean,
        a.top_correct,
        s.all_gateways_recipient_only.entropy.mean,
        s.all_gateways_recipient_only.p_true.mean,
        s.all_gateways_recipient_only.top_correct
    );
    assert!(a.entropy.mean <= g.entropy.mean + 1e-9, "{s:?}");
    assert!(a.p_true.mean >= g.p_true.mean, "{s:?}");
    assert!(a.top_correct >= g.top_correct, "{s:?}");
}

#[test]
fn the_gateway_adversary_uses_only_its_own_gateways_stores() {
    let c = small(8, 8);
    let r = qanat_sim::run(&c).unwrap();
    let k = c.knowledge();
    let everything = qanat_sim::analyse_gateways(&r.observations, &k, &r.stores, &[0]).unwrap();
    let own: Vec<_> = r.stores.iter().copied().filter(|s| s.gateway == 0).collect();
    let only_own = qanat_sim::analyse_gateways(&r.observations, &k, &own, &[0]).unwrap();
    assert_eq!(everything, only_own);
    assert!(!everything.targets.is_empty() && everything.drops > 0 && everything.home > 0);
}
