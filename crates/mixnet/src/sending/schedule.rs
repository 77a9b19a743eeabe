//! When packets leave: three Poisson processes per client, whatever the user does.
//!
//! [`Schedule`] draws three independent Poisson processes: payload slots at rate λ_P (each
//! carries the next real packet waiting, an acknowledgement or a fragment of a message, or else
//! a drop), loops at rate λ_L and drops at rate λ_D. The rates are the directory's parameters
//! under the client's [`TrafficProfile`].
//!
//! # What an observer learns
//!
//! An observer of the client's link (and its gateway) sees the same packet stream whether the
//! user is typing or asleep (P3): packets of one size at the profile's rates, and no burst after
//! a sleep. The profile itself shows, so each profile is its own anonymity set. What comes down
//! the link is fixed too: one pull per interval, answered by a fixed number of frames
//! ([`PULL_BATCH`], [`PULL_FIRST`]).

use std::time::Duration;

use rand_core::CryptoRng;

use crate::{UnixMicros, exponential};

/// A sending slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A payload slot: the next real packet, or a drop if none is queued.
    Payload,
    /// A loop to ourselves.
    Loop,
    /// A drop.
    Drop,
}

/// Packets per second of each stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// λ_P.
    pub payload: f64,
    /// λ_L.
    pub loops: f64,
    /// λ_D.
    pub drops: f64,
}

impl Rates {
    /// Packets per day, all streams.
    pub fn packets_per_day(&self) -> f64 {
        (self.payload + self.loops + self.drops) * 86_400.0
    }
}

/// How much cover traffic a client sends: its rates, from the directory's parameters.
///
/// Clients of different profiles are told apart by their rates, so each profile is its own
/// anonymity set; the directory's rates are the standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficProfile {
    /// The directory's λ_P, λ_L, λ_D.
    Standard,
    /// A tenth of each: for metered or expensive links, at ten times the wait for a slot.
    Metered,
}

impl TrafficProfile {
    /// The profile's name, as the command line takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Metered => "metered",
        }
    }

    /// The profile named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Standard, Self::Metered].into_iter().find(|p| p.name() == name)
    }

    /// The rates of this profile under the directory's `params`.
    pub fn rates(self, params: &qanat_pki::Parameters) -> Rates {
        let k = match self {
            Self::Standard => 1.0,
            Self::Metered => 0.1,
        };
        Rates {
            payload: params.lambda_p().per_second() * k,
            loops: params.lambda_l().per_second() * k,
            drops: params.lambda_d().per_second() * k,
        }
    }

    /// Bytes per day on the client's link to its gateway (every frame is `wire_len` bytes),
    /// busy or idle alike: up, its packets plus one pull request per mean payload slot; down,
    /// `1 +` [`PULL_BATCH`] frames per pull (the answer's head and its slots).
    pub fn idle_bytes_per_day(self, params: &qanat_pki::Parameters, wire_len: usize) -> (f64, f64) {
        let r = self.rates(params);
        let pulls = r.payload * 86_400.0;
        let up = (r.packets_per_day() + pulls) * wire_len as f64;
        let down = pulls * f64::from(1 + PULL_BATCH) * wire_len as f64;
        (up, down)
    }
}

/// Frames in the answer to each routine pull from the gateway, whatever is waiting: the most
/// items a client receives per pull. Pulls come once per mean payload slot by default, so a
/// client takes in up to twice its own sending rate (its loops come back at a quarter of it);
/// a larger backlog drains over the following pulls.
pub const PULL_BATCH: u16 = 2;
/// Frames in the answer to the first pull of each gateway session (catching up after a time
/// offline).
pub const PULL_FIRST: u16 = 32;

/// The three Poisson processes of a client.
#[derive(Debug, Clone)]
pub struct Schedule {
    rates: Rates,
    next: [Option<UnixMicros>; 3],
}

impl Schedule {
    /// A schedule at `rates` (a rate of 0 disables its stream).
    pub fn new(rates: Rates) -> Self {
        Self { rates, next: [None; 3] }
    }

    /// The rates.
    pub fn rates(&self) -> Rates {
        self.rates
    }

    fn rate(&self, i: usize) -> f64 {
        match i {
            0 => self.rates.payload,
            1 => self.rates.loops,
            _ => self.rates.drops,
        }
    }

    /// The slots due at `now` (drawing the next time of each stream afresh).
    pub fn poll<R: CryptoRng + ?Sized>(&mut self, now: UnixMicros, rng: &mut R) -> Vec<Slot> {
        let mut out = Vec::new();
        for i in 0..3 {
            let rate = self.rate(i);
            if !(rate.is_finite() && rate > 0.0) {
                self.next[i] = None;
                continue;
            }
            let mean = Duration::from_secs_f64(1.0 / rate);
            let next = self.next[i].get_or_insert_with(|| now + exponential(rng, mean));
            // At most one slot per stream per poll: a client that slept does not burst.
            if *next <= now {
                out.push([Slot::Payload, Slot::Loop, Slot::Drop][i]);
                *next = now + exponential(rng, mean);
            }
        }
        out
    }

    /// When [`Schedule::poll`] next has a slot (once every stream has been drawn).
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        self.next.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use chacha20::ChaCha20Rng;
    use qanat_packet::{Geometry, Scheme};
    use rand_core::SeedableRng as _;

    use super::*;

    const SCHEME: Scheme = Scheme::X25519Kem;

    fn geometry() -> Geometry {
        Geometry::default_for(SCHEME)
    }

    #[test]
    fn the_schedule_keeps_its_rates_and_never_bursts() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let rates = Rates { payload: 2.0, loops: 0.5, drops: 0.25 };
        let mut s = Schedule::new(rates);
        let mut counts = [0usize; 3];
        let mut t = UnixMicros::ZERO;
        let secs = 20_000;
        for _ in 0..secs * 100 {
            t = t + Duration::from_millis(10);
            let slots = s.poll(t, &mut rng);
            assert!(slots.len() <= 3);
            for slot in slots {
                counts[slot as usize] += 1;
            }
        }
        for (i, r) in [2.0, 0.5, 0.25].iter().enumerate() {
            let got = counts[i] as f64 / secs as f64;
            assert!((got - r).abs() / r < 0.05, "stream {i}: {got}/s against {r}/s");
        }
        // After a long sleep, one slot per stream, not a burst.
        let later = t + Duration::from_secs(3600);
        assert!(s.poll(later, &mut rng).len() <= 3);
        assert_eq!(rates.packets_per_day(), 2.75 * 86_400.0);
    }

    #[test]
    fn profiles_and_their_bytes_per_day() {
        let params = qanat_pki::Parameters::default_for(SCHEME);
        let wire = qanat_link::FrameSize::for_packet_len(geometry().packet_len()).unwrap().wire_len();
        let (up, down) = TrafficProfile::Standard.idle_bytes_per_day(&params, wire);
        // 0.3 packets/s and 0.2 pulls/s of 2,229 bytes: about 96.3 MB a day up; three frames per
        // pull down (the answer's head and two slots), about 115.6 MB.
        assert!((up / 1e6 - 96.3).abs() < 0.5, "{up}");
        assert!((down / 1e6 - 115.6).abs() < 0.5, "{down}");
        let (mup, _) = TrafficProfile::Metered.idle_bytes_per_day(&params, wire);
        assert!((mup * 10.0 - up).abs() < 1.0);
        assert_eq!(TrafficProfile::from_name("metered"), Some(TrafficProfile::Metered));
        assert_eq!(TrafficProfile::from_name("fast"), None);
    }
}
