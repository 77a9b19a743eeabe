//! A gateway's budgets for each client session, without IO: token buckets driven by the time the
//! caller passes in, and the client rate the directory sets.
//!
//! - **Packets**: a session may send packets at `slack × (f·λ_P + λ_L + λ_D)` per second (the
//!   directory's client rates, with `f` its `fast_factor_max`: what a client of the busiest
//!   profile sends during a fast transfer, see `qanat_mixnet::sending::TrafficProfile::rates` and
//!   `docs/ATTACHMENTS.md` §3.10, so that a fast transfer is not throttled; `f = 1` in a
//!   version-1 document, which has no fast mode; the largest of the last epochs' rates, so
//!   that a client still on an earlier epoch is not cut off) with a burst of `packet_burst`. An
//!   honest client sends a Poisson stream at (at most) that sum, so it almost never comes near:
//!   with the defaults (slack 4, burst 32) it would need 32 packets more than four times its mean
//!   in some stretch of time; for a window of `t` seconds at 0.3 packets per second the chance of
//!   that is below 10⁻²⁰ for every `t` (at the default rates, 0.3 is the sum without fast mode,
//!   and 0.9 with `f = 4`: a budget of 3.6 a second). A packet beyond the budget is dropped before
//!   the core sees it and counted; client packets are never acknowledged, so none is acknowledged
//!   and then dropped. Until the gateway has a directory document, it knows no rate and applies
//!   none (it cannot forward anything without a topology either).
//! - **Registrations**: `registrations_per_second` with a burst of `registration_burst` per
//!   session, besides the session's bound of mailboxes. A registration beyond either fails alone
//!   (its operation slot says `Unavailable`, which the client retries in a later pull); the
//!   session and its other operations go on.
//!
//! [`SessionBudget`] holds one session's two buckets; the session's clock is the caller's (the
//! time since the session began), so every decision here is testable without waiting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::gateway::ClientBudgets;

/// A token bucket: `burst` tokens at most, refilled at a rate given at each call.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least 1) at time `now`.
    pub(crate) fn new(burst: u32, now: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        Self { tokens: burst, burst, last: now }
    }

    /// Takes one token, refilled at `rate` per second since the last call; `false` if none is
    /// left. Time going backwards refills nothing.
    pub(crate) fn try_take(&mut self, now: Duration, rate: f64) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        if rate.is_finite() && rate > 0.0 {
            self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One client session's budgets: packets at `packet_slack ×` the directory's client rate with a
/// burst of `packet_burst`, and registrations at `registrations_per_second` with a burst of
/// `registration_burst` (see the module documentation), on the time the caller passes in.
#[derive(Debug, Clone)]
pub(crate) struct SessionBudget {
    packets: TokenBucket,
    packet_slack: f64,
    registrations: TokenBucket,
    registration_rate: f64,
}

impl SessionBudget {
    /// Full buckets at `now`.
    pub(crate) fn new(b: &ClientBudgets, now: Duration) -> Self {
        Self {
            packets: TokenBucket::new(b.packet_burst, now),
            packet_slack: b.packet_slack,
            registrations: TokenBucket::new(b.registration_burst, now),
            registration_rate: b.registrations_per_second,
        }
    }

    /// Whether a packet at `now` is within the budget at the directory's client `rate` (none
    /// known: every packet is, and none is taken from the bucket).
    pub(crate) fn take_packet(&mut self, now: Duration, rate: Option<f64>) -> bool {
        match rate {
            Some(r) => self.packets.try_take(now, r * self.packet_slack),
            None => true,
        }
    }

    /// Whether a registration at `now` is within the registration rate.
    pub(crate) fn take_registration(&mut self, now: Duration) -> bool {
        self.registrations.try_take(now, self.registration_rate)
    }
}

/// The packet rate per client session the directory allows, shared between the gateway's main
/// loop (which learns it from each epoch's document) and its client sessions. Unknown (no
/// document yet) until set.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientRate(Arc<AtomicU64>);

impl ClientRate {
    /// Packets per second per session, if known.
    pub(crate) fn get(&self) -> Option<f64> {
        let r = f64::from_bits(self.0.load(Ordering::Relaxed));
        (r.is_finite() && r > 0.0).then_some(r)
    }

    /// Sets it (`rate` ≤ 0 or not finite: unknown).
    pub(crate) fn set(&self, rate: f64) {
        let r = if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        self.0.store(r.to_bits(), Ordering::Relaxed);
    }
}

/// The client rates of the last epochs the directory described, kept by the gateway's main loop:
/// sessions get the largest, so that a client still on an epoch with higher rates is not cut
/// off.
#[derive(Debug, Clone)]
pub(crate) struct RecentClientRates {
    rates: BTreeMap<u64, f64>,
    keep: usize,
}

impl RecentClientRates {
    /// Keeps the rates of the last `keep` epochs (at least one).
    pub(crate) fn new(keep: usize) -> Self {
        Self { rates: BTreeMap::new(), keep: keep.max(1) }
    }

    /// Records the client rate of `epoch` and returns the rate sessions get now (the largest of
    /// the epochs kept); `None`, recording nothing, when `rate` is not positive (the directory
    /// said nothing).
    pub(crate) fn insert(&mut self, epoch: u64, rate: f64) -> Option<f64> {
        if rate > 0.0 {
            self.rates.insert(epoch, rate);
            while self.rates.len() > self.keep {
                self.rates.pop_first();
            }
            Some(self.rates.values().copied().fold(0.0, f64::max))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(3, s(0.0));
        assert!((0..3).all(|_| b.try_take(s(0.0), 2.0)));
        assert!(!b.try_take(s(0.0), 2.0));
        // Half a second at 2 per second: one more.
        assert!(b.try_take(s(0.5), 2.0));
        assert!(!b.try_take(s(0.5), 2.0));
        // A long pause refills only up to the burst.
        assert_eq!((0..10).filter(|_| b.try_take(s(100.0), 2.0)).count(), 3);
        // Time going backwards gives nothing; no rate gives nothing.
        assert!(!b.try_take(s(50.0), 2.0));
        assert!(!b.try_take(s(200.0), 0.0));
    }

    #[test]
    fn over_a_long_run_a_bucket_admits_burst_plus_rate_times_time() {
        let mut b = TokenBucket::new(32, s(0.0));
        // A flooder trying 100 packets a second for 60 s at a budget of 1.2 per second.
        let admitted = (0..6_000).filter(|i| b.try_take(s(f64::from(*i) / 100.0), 1.2)).count();
        assert!((32 + 71..=32 + 72).contains(&admitted), "{admitted}");
    }

    fn budgets(packet_burst: u32, registration_burst: u32) -> ClientBudgets {
        ClientBudgets {
            packet_slack: 4.0,
            packet_burst,
            registrations_per_second: 2.0,
            registration_burst,
            ..ClientBudgets::default()
        }
    }

    #[test]
    fn a_sessions_packets_are_held_to_slack_times_the_rate_once_a_rate_is_known() {
        let mut b = SessionBudget::new(&budgets(2, 1), s(10.0));
        // No rate known: every packet passes and none is taken from the bucket.
        assert!((0..100).all(|_| b.take_packet(s(10.0), None)));
        // The burst, then 4 × 0.5 = 2 per second.
        assert!(b.take_packet(s(10.0), Some(0.5)));
        assert!(b.take_packet(s(10.0), Some(0.5)));
        assert!(!b.take_packet(s(10.0), Some(0.5)));
        assert!(b.take_packet(s(10.5), Some(0.5)));
        assert!(!b.take_packet(s(10.5), Some(0.5)));
        // Registrations have their own bucket: packets did not spend it.
        assert!(b.take_registration(s(10.5)));
    }

    #[test]
    fn a_sessions_registrations_are_held_to_their_rate_after_the_burst() {
        let mut b = SessionBudget::new(&budgets(1, 3), s(0.0));
        assert_eq!((0..10).filter(|_| b.take_registration(s(0.0))).count(), 3);
        // 2 per second: one more after half a second, and the burst again after a long pause.
        assert!(b.take_registration(s(0.5)));
        assert!(!b.take_registration(s(0.5)));
        assert_eq!((0..10).filter(|_| b.take_registration(s(60.0))).count(), 3);
        // Packets were untouched.
        assert!(b.take_packet(s(60.0), Some(1.0)));
    }

    #[test]
    fn the_client_rate_is_unknown_until_set() {
        let r = ClientRate::default();
        assert_eq!(r.get(), None);
        r.set(1.5);
        assert_eq!(r.get(), Some(1.5));
        r.set(f64::NAN);
        assert_eq!(r.get(), None);
    }

    #[test]
    fn sessions_get_the_largest_client_rate_of_the_last_epochs() {
        let mut r = RecentClientRates::new(4);
        assert_eq!(r.insert(1, 5.0), Some(5.0));
        // A lower rate does not cut off clients still on the earlier epoch.
        for e in 2..=4 {
            assert_eq!(r.insert(e, 1.0), Some(5.0));
        }
        // Epoch 1 leaves once four later epochs are kept.
        assert_eq!(r.insert(5, 1.5), Some(1.5));
        // An epoch without a rate changes nothing.
        assert_eq!(r.insert(6, 0.0), None);
        assert_eq!(r.insert(6, f64::NAN), None);
        assert_eq!(r.insert(7, 1.0), Some(1.5));
    }
}
