//! The link profiles of the testbed and the schedule of what goes wrong during a run (link
//! flaps, relay stalls and resets, partitions between layers). IO-free: the schedule is a
//! function of the profile, the run's length and a seed, so a run can be repeated and the plan
//! tested.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

/// What a user's access link does: applied to each client's link to its gateway.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LinkProfile {
    /// Its name on the command line.
    pub(crate) name: &'static str,
    /// One line for people.
    pub(crate) summary: &'static str,
    /// Bandwidth in each direction (`tc tbf` on both ends of the client's veth); `None`: the
    /// veth's own speed.
    pub(crate) rate_kbit: Option<u32>,
    /// One-way delay added by the relay in each direction.
    pub(crate) one_way: Duration,
    /// The relay's jitter: each chunk's delay is `one_way` plus a uniform draw in
    /// `[-jitter, +jitter]` (never reordering the stream).
    pub(crate) jitter: Duration,
    /// Packets dropped on the client's veth, per thousand, in each direction (nftables
    /// `numgen random`).
    pub(crate) loss_permille: u32,
    /// Relay stalls (nothing forwarded, everything buffered): mean seconds between two, and
    /// the range of their length.
    pub(crate) stalls: Option<Episodes>,
    /// Link down and up again (`ip link set`): mean seconds between two, range of the outage.
    pub(crate) flaps: Option<Episodes>,
    /// Relay resets (both TCP connections aborted with RST): mean seconds between two.
    pub(crate) resets_every_s: Option<f64>,
    /// Partitions between adjacent layers of the network (nftables drop in the router), one
    /// boundary at a time in turn: mean seconds between two, range of their length.
    pub(crate) partitions: Option<Episodes>,
}

/// Episodes of some trouble: exponential gaps of mean `every_s`, lengths uniform in
/// `[min_s, max_s]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Episodes {
    pub(crate) every_s: f64,
    pub(crate) min_s: f64,
    pub(crate) max_s: f64,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const CLEAN: LinkProfile = LinkProfile {
    name: "",
    summary: "",
    rate_kbit: None,
    one_way: Duration::ZERO,
    jitter: Duration::ZERO,
    loss_permille: 0,
    stalls: None,
    flaps: None,
    resets_every_s: None,
    partitions: None,
};

/// Every profile, in the order `--profile all` runs them.
pub(crate) const PROFILES: [LinkProfile; 6] = [
    LinkProfile { name: "lan", summary: "the baseline: no shaping at all", ..CLEAN },
    LinkProfile {
        name: "2g",
        summary: "50 kbit/s each way, 250 ms one way (500 ms RTT) +-50 ms jitter, 5% loss",
        rate_kbit: Some(50),
        one_way: ms(250),
        jitter: ms(50),
        loss_permille: 50,
        ..CLEAN
    },
    LinkProfile {
        name: "3g-lossy",
        summary: "384 kbit/s, 100 ms one way +-40 ms, 10% loss, 1-3 s stalls every ~30 s",
        rate_kbit: Some(384),
        one_way: ms(100),
        jitter: ms(40),
        loss_permille: 100,
        stalls: Some(Episodes { every_s: 30.0, min_s: 1.0, max_s: 3.0 }),
        ..CLEAN
    },
    LinkProfile {
        name: "satellite",
        summary: "2 Mbit/s, 600 ms one way +-20 ms, 0.5% loss",
        rate_kbit: Some(2000),
        one_way: ms(600),
        jitter: ms(20),
        loss_permille: 5,
        ..CLEAN
    },
    LinkProfile {
        name: "flapping",
        summary: "1 Mbit/s, 80 ms +-30 ms, 1% loss; link down 2-8 s every ~25 s; \
                  connections reset every ~40 s",
        rate_kbit: Some(1000),
        one_way: ms(80),
        jitter: ms(30),
        loss_permille: 10,
        flaps: Some(Episodes { every_s: 25.0, min_s: 2.0, max_s: 8.0 }),
        resets_every_s: Some(40.0),
        ..CLEAN
    },
    LinkProfile {
        name: "partition",
        summary: "clean client links; a 5-10 s partition between two adjacent layers \
                  (gateways|L1, L1|L2, L2|L3, L3|gateways in turn) every ~20 s",
        partitions: Some(Episodes { every_s: 20.0, min_s: 5.0, max_s: 10.0 }),
        ..CLEAN
    },
];

/// The profile named `name`.
pub(crate) fn by_name(name: &str) -> Option<LinkProfile> {
    PROFILES.iter().find(|p| p.name == name).copied()
}

/// A boundary between two adjacent layers: 0 is gateways|L1, 1 is L1|L2, 2 is L2|L3, 3 is
/// L3|gateways.
pub(crate) type Boundary = usize;

/// One thing the testbed does to the network during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Client `c`'s link goes down.
    LinkDown(usize),
    /// Client `c`'s link comes back.
    LinkUp(usize),
    /// Client `c`'s relay stops forwarding for this long.
    Stall(usize, Duration),
    /// Client `c`'s relay aborts its connections.
    Reset(usize),
    /// Packets between the two layers of the boundary are dropped.
    Cut(Boundary),
    /// The partition ends.
    Heal,
}

/// A schedule: actions at offsets from the start of the chat, in order.
pub(crate) type Plan = Vec<(Duration, Action)>;

/// The plan for a chat of `length` with `clients` clients on `p`. Every episode starts within
/// `length` and ends (a link up, a heal) before `length` plus its own length: the network is
/// whole again when the last messages drain.
pub(crate) fn plan(p: &LinkProfile, clients: usize, length: Duration, seed: u64) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Plan = Vec::new();
    let end = length.as_secs_f64();
    let at = Duration::from_secs_f64;
    for c in 0..clients {
        if let Some(e) = p.flaps {
            for (t, len) in episodes(&mut rng, e, end) {
                out.push((at(t), Action::LinkDown(c)));
                out.push((at(t + len), Action::LinkUp(c)));
            }
        }
        if let Some(e) = p.stalls {
            out.extend(episodes(&mut rng, e, end).map(|(t, len)| (at(t), Action::Stall(c, at(len)))));
        }
        if let Some(every_s) = p.resets_every_s {
            let e = Episodes { every_s, min_s: 0.0, max_s: 0.0 };
            out.extend(episodes(&mut rng, e, end).map(|(t, _)| (at(t), Action::Reset(c))));
        }
    }
    if let Some(e) = p.partitions {
        for (i, (t, len)) in episodes(&mut rng, e, end).enumerate() {
            out.push((at(t), Action::Cut(i % 4)));
            out.push((at(t + len), Action::Heal));
        }
    }
    // A stable sort: a link's down stays before its up even at one instant.
    out.sort_by_key(|(t, _)| *t);
    out
}

/// Episodes (start, length in seconds) starting before `end`: exponential gaps between the end
/// of one and the start of the next; the first comes after one gap; at least one.
fn episodes(rng: &mut StdRng, e: Episodes, end: f64) -> impl Iterator<Item = (f64, f64)> {
    let mut list = Vec::new();
    let mut t = 0.0;
    loop {
        t += -e.every_s * (1.0 - rng.random::<f64>()).ln();
        if t >= end {
            break;
        }
        let len = e.min_s + (e.max_s - e.min_s) * rng.random::<f64>();
        list.push((t, len));
        t += len;
    }
    // A profile's trouble happens in every run, however short: one episode a third of the
    // way in when the draws put none before the end.
    if list.is_empty() {
        list.push((end / 3.0, e.min_s + (e.max_s - e.min_s) * rng.random::<f64>()));
    }
    list.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in PROFILES {
            assert_eq!(by_name(p.name), Some(p));
        }
        assert_eq!(by_name("5g"), None);
    }

    #[test]
    fn plans_are_repeatable_and_every_episode_ends() {
        let length = Duration::from_secs(600);
        for p in PROFILES {
            let a = plan(&p, 3, length, 7);
            assert_eq!(a, plan(&p, 3, length, 7), "{}", p.name);
            assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
            let mut down = [false; 3];
            let mut cut = false;
            for (t, action) in &a {
                match *action {
                    Action::LinkDown(c) => {
                        assert!(!down[c] && *t < length);
                        down[c] = true;
                    }
                    Action::LinkUp(c) => {
                        assert!(down[c]);
                        down[c] = false;
                    }
                    Action::Cut(b) => {
                        assert!(!cut && b < 4 && *t < length);
                        cut = true;
                    }
                    Action::Heal => {
                        assert!(cut);
                        cut = false;
                    }
                    Action::Stall(c, _) | Action::Reset(c) => assert!(c < 3 && *t < length),
                }
            }
            assert!(!cut && down == [false; 3], "{}: an episode never ends", p.name);
            let troubled = p.flaps.is_some()
                || p.stalls.is_some()
                || p.resets_every_s.is_some()
                || p.partitions.is_some();
            assert_eq!(!a.is_empty(), troubled, "{}", p.name);
            // Even a short run meets its profile's trouble.
            assert_eq!(!plan(&p, 2, Duration::from_secs(5), 1).is_empty(), troubled, "{}", p.name);
        }
    }
}
