//! The figures of small runs, pinned: what `qanat eval` reports comes from these runs' code, so a
//! change to the network that moves them moves the published figures (`docs/EVALUATION.md`).
//! With the optional parts of the network off (link loss, link-level acknowledgements, mailbox
//! pulls) a seed must give the same run, packet for packet, as before they existed.

use std::time::Duration;

use qanat_packet::Scheme;
use qanat_sim::{Config, Endpoint, MailboxSeen, Run, evaluate, run};

fn small(clients: u32, seed: u64) -> Config {
    let params = qanat_pki::Parameters::default_for(Scheme::X25519Nike);
    let mut c = Config::from_parameters(&params, clients, seed);
    c.warmup = Duration::from_secs(10);
    c.duration = Duration::from_secs(60);
    c.tail = Duration::from_secs(20);
    c
}

/// FNV-1a, 64 bits.
struct Hash(u64);

impl Hash {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, x: u64) {
        for b in x.to_be_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn endpoint(e: Endpoint) -> u64 {
    match e {
        Endpoint::Client(c) => u64::from(c),
        Endpoint::Gateway(g) => (1 << 32) | u64::from(g),
        Endpoint::Mix(m) => (2 << 32) | u64::from(m),
    }
}

/// A digest of everything a run returns.
fn digest(r: &Run) -> [u64; 8] {
    let mut obs = Hash::new();
    for o in &r.observations {
        obs.add(o.time.0);
        obs.add(endpoint(o.from));
        obs.add(endpoint(o.to));
    }
    let mut msgs = Hash::new();
    let mut delivered = 0;
    for m in &r.messages {
        msgs.add(u64::from(m.sender));
        msgs.add(u64::from(m.recipient));
        msgs.add(m.queued.0);
        if let Some(d) = m.delivered {
            delivered += 1;
            msgs.add(d.time.0);
            msgs.add(d.observation as u64);
        }
    }
    let mut stores = Hash::new();
    for s in &r.stores {
        stores.add(s.observation as u64);
        stores.add(u64::from(s.gateway));
        match s.mailbox {
            MailboxSeen::Home { owner } => stores.add(u64::from(owner)),
            MailboxSeen::Thread { owner, mailbox } => {
                stores.add(1 << 40 | u64::from(owner));
                stores.add(mailbox);
            }
            MailboxSeen::Unregistered => stores.add(u64::MAX),
        }
    }
    let mut mixes = Hash::new();
    for m in &r.mix_metrics {
        mixes.add(m.received);
        mixes.add(m.loops_sent);
        mixes.add(m.loops_returned);
        mixes.add(m.pool_packet_seconds.to_bits());
    }
    let mut clients = Hash::new();
    r.client_packets.iter().for_each(|p| clients.add(*p));
    [
        r.observations.len() as u64,
        obs.0,
        r.messages.len() as u64,
        delivered,
        msgs.0,
        stores.0,
        mixes.0,
        clients.0 ^ r.end.0,
    ]
}

#[test]
fn a_seed_gives_the_run_it_always_gave() {
    let defaults = small(6, 11);
    let quiet = Config {
        client_cover: false,
        mean_delay: Duration::from_millis(200),
        ack_delay: Duration::from_secs(3),
        message_rate: 0.2,
        seed: 12,
        ..small(5, 12)
    };
    let got: Vec<[u64; 8]> = [defaults, quiet].iter().map(|c| digest(&run(c).unwrap())).collect();
    let want: Vec<[u64; 8]> = vec![
        [
            4929,
            10793236279384041537,
            18,
            18,
            10925754356302783913,
            8724597851668121587,
            3548440226396870531,
            1872215306581363500,
        ],
        [
            4679,
            12907226764573668698,
            62,
            40,
            7548280477096196325,
            17993106113155399362,
            2158107455407371906,
            14758439336949137777,
        ],
    ];
    assert_eq!(got, want);
}

#[test]
fn a_seed_gives_the_scores_it_always_gave() {
    let s = evaluate(&small(6, 13)).unwrap();
    let got = format!(
        "{} {} {} {:.12} {:.12} {:.12} {:.12} {:.12} {} {:.12}",
        s.messages,
        s.delivered,
        s.observations,
        s.entropy.mean,
        s.p_true.mean,
        s.latency.mean,
        s.pair_linked,
        s.all_gateways.entropy.mean,
        s.all_gateways.home,
        s.one_gateway.p_true.mean,
    );
    assert_eq!(
        got,
        "19 19 4886 2.317650982889 0.224328557132 12.048889052632 0.140350877193 1.505937746752 37 0.191801943395"
    );
}
