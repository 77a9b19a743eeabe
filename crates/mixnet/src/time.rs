//! Time as the cores see it: a monotonic count of microseconds from an origin the caller chooses.
//! The cores never read a clock; the networking layer (or a simulation) passes `now` in.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in microseconds since an origin chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// The origin.
    pub const ZERO: Self = Self(0);

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

impl Sub<Duration> for Time {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

/// A sample of the exponential distribution with the given mean, drawn from `rng` by inversion
/// (`-mean · ln(1 - U)`, `U` uniform in [0, 1) with 53 bits). Used for Poisson processes (sending
/// and loop rates) and for per-hop delays.
pub fn exponential<R: rand_core::Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
    let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    let x = -(1.0 - u).ln() * mean.as_secs_f64();
    // 1 - u is in (0, 1], so x is finite and non-negative; the cap guards absurd means.
    Duration::try_from_secs_f64(x).unwrap_or(Duration::from_secs(u32::MAX as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use chacha20::rand_core::SeedableRng;

    #[test]
    fn exponential_has_the_right_mean() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mean = Duration::from_millis(50);
        let n = 100_000;
        let total: f64 = (0..n).map(|_| exponential(&mut rng, mean).as_secs_f64()).sum();
        let m = total / n as f64;
        assert!((m - 0.05).abs() < 0.05 * 0.02, "mean {m}");
    }
}
