//! Time as the cores see it: [`UnixMicros`], a count of microseconds that only moves forward.
//! The cores never read a clock; the networking layer (or a simulation) passes `now` in.
//!
//! Nodes and clients run on the wall clock, counted from the Unix epoch:
//! [`UnixMicros::from_system_time`], [`UnixMicros::to_system_time`] and
//! [`UnixMicros::from_unix_millis`] (from the directory's [`UnixMillis`]) are the conversions, each
//! written here once. They saturate, never panic: a time before 1970 is [`UnixMicros::ZERO`].

use core::ops::{Add, Sub};
use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use qanat_pki::UnixMillis;

/// Microseconds since the Unix epoch, 1970-01-01T00:00:00Z. Simulations and tests, which have no
/// wall clock, start near [`UnixMicros::ZERO`]: the cores only compare times and add durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMicros(pub u64);

impl UnixMicros {
    /// The Unix epoch (a simulation's start).
    pub const ZERO: Self = Self(0);

    /// The wall-clock reading `t` (which the caller takes: nothing here reads a clock) in
    /// microseconds since the Unix epoch. A time before 1970 is [`UnixMicros::ZERO`]; one beyond
    /// `u64::MAX` microseconds (in the year 586,912) saturates.
    pub fn from_system_time(t: SystemTime) -> Self {
        let micros = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        Self(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// This time, counted from the Unix epoch, as a `SystemTime`; one the platform cannot
    /// represent reads as [`UnixMillis::to_system_time`] reads it (the end of 9999).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_micros(self.0))
            .unwrap_or_else(|| UnixMillis::from_millis(self.0 / 1000).to_system_time())
    }

    /// The directory's time `t` in microseconds (saturating).
    pub const fn from_unix_millis(t: UnixMillis) -> Self {
        Self(t.as_millis().saturating_mul(1000))
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for UnixMicros {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

impl Sub<Duration> for UnixMicros {
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
    fn wall_clock_times_round_trip() {
        for micros in [0, 1, 999_999, 1_767_225_600_123_456, 4_102_444_800_000_001] {
            let t = UnixMicros(micros);
            assert_eq!(t.to_system_time(), UNIX_EPOCH + Duration::from_micros(micros));
            assert_eq!(UnixMicros::from_system_time(t.to_system_time()), t);
        }
        let ms = UnixMillis::from_millis(1_767_225_600_123);
        assert_eq!(UnixMicros::from_unix_millis(ms), UnixMicros(1_767_225_600_123_000));
        assert_eq!(UnixMicros::from_unix_millis(ms).to_system_time(), ms.to_system_time());
        // The two clocks agree on any reading, to the millisecond.
        let t = UNIX_EPOCH + Duration::from_nanos(1_767_225_600_123_456_789);
        assert_eq!(UnixMicros::from_system_time(t), UnixMicros(1_767_225_600_123_456));
        assert_eq!(UnixMicros::from_system_time(t).0 / 1000, UnixMillis::from_system_time(t).as_millis());
    }

    #[test]
    fn times_out_of_range_saturate_without_panicking() {
        for before in
            [Duration::from_nanos(1), Duration::from_secs(1), Duration::from_secs(86_400 * 365 * 100)]
        {
            if let Some(t) = UNIX_EPOCH.checked_sub(before) {
                assert_eq!(UnixMicros::from_system_time(t), UnixMicros::ZERO);
                assert_eq!(UnixMillis::from_system_time(t), UnixMillis::from_millis(0));
            }
        }
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(1 << 62)) {
            assert_eq!(UnixMicros::from_system_time(far), UnixMicros(u64::MAX));
        }
        assert_eq!(UnixMicros::from_unix_millis(UnixMillis::from_millis(u64::MAX)), UnixMicros(u64::MAX));
        let _: SystemTime = UnixMicros(u64::MAX).to_system_time();
    }

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
