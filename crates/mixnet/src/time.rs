//! Time as the cores see it: a monotonic count of microseconds from an origin the caller chooses.
//! The cores never read a clock; the networking layer (or a simulation) passes `now` in.
//!
//! Nodes and clients, which run on the wall clock, choose the Unix epoch: [`Time::from_system_time`],
//! [`Time::to_system_time`] and [`Time::from_unix_time`] (the directory's
//! [`UnixTime`], in milliseconds) are the conversions on that origin, each written here once.
//! They saturate, never panic: a time before 1970 is [`Time::ZERO`].

use core::ops::{Add, Sub};
use core::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use qanat_pki::UnixTime;

/// A point in time, in microseconds since an origin chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// The origin.
    pub const ZERO: Self = Self(0);

    /// The wall-clock reading `t` (which the caller takes: nothing here reads a clock) in
    /// microseconds since the Unix epoch. A time before 1970 is [`Time::ZERO`]; one beyond
    /// `u64::MAX` microseconds (in the year 586,912) saturates.
    pub fn from_system_time(t: SystemTime) -> Self {
        let micros = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        Self(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// This time, counted from the Unix epoch, as a `SystemTime`; one the platform cannot
    /// represent reads as [`UnixTime::to_system_time`] reads it (the end of 9999).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_micros(self.0))
            .unwrap_or_else(|| UnixTime::from_millis(self.0 / 1000).to_system_time())
    }

    /// The directory's time `t` on the same origin (saturating).
    pub const fn from_unix_time(t: UnixTime) -> Self {
        Self(t.as_millis().saturating_mul(1000))
    }

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
    fn wall_clock_times_round_trip() {
        for micros in [0, 1, 999_999, 1_767_225_600_123_456, 4_102_444_800_000_001] {
            let t = Time(micros);
            assert_eq!(t.to_system_time(), UNIX_EPOCH + Duration::from_micros(micros));
            assert_eq!(Time::from_system_time(t.to_system_time()), t);
        }
        let ms = UnixTime::from_millis(1_767_225_600_123);
        assert_eq!(Time::from_unix_time(ms), Time(1_767_225_600_123_000));
        assert_eq!(Time::from_unix_time(ms).to_system_time(), ms.to_system_time());
        // The two clocks agree on any reading, to the millisecond.
        let t = UNIX_EPOCH + Duration::from_nanos(1_767_225_600_123_456_789);
        assert_eq!(Time::from_system_time(t), Time(1_767_225_600_123_456));
        assert_eq!(Time::from_system_time(t).0 / 1000, UnixTime::from_system_time(t).as_millis());
    }

    #[test]
    fn times_out_of_range_saturate_without_panicking() {
        for before in
            [Duration::from_nanos(1), Duration::from_secs(1), Duration::from_secs(86_400 * 365 * 100)]
        {
            if let Some(t) = UNIX_EPOCH.checked_sub(before) {
                assert_eq!(Time::from_system_time(t), Time::ZERO);
                assert_eq!(UnixTime::from_system_time(t), UnixTime::from_millis(0));
            }
        }
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(1 << 62)) {
            assert_eq!(Time::from_system_time(far), Time(u64::MAX));
        }
        assert_eq!(Time::from_unix_time(UnixTime::from_millis(u64::MAX)), Time(u64::MAX));
        let _: SystemTime = Time(u64::MAX).to_system_time();
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
