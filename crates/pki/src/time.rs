//! Time as the directory sees it: [`UnixMillis`], [`EpochPeriod`], [`Epoch`] and the per-epoch
//! [`Schedule`].
//!
//! Epoch 0 begins at [`GENESIS`], 2026-01-01T00:00:00Z; epoch `e` covers
//! `[GENESIS + e·P, GENESIS + (e+1)·P)`. Every instant before the genesis belongs to epoch 0.
//! Times are milliseconds since the Unix epoch, so that test networks can run epochs of a few
//! seconds; nothing here reads a clock.
//!
//! During epoch `E` the authorities prepare the document of epoch `E + 1` on the schedule of
//! Katzenpost's PKI specification §2.1 (`T` is the start of `E`, `P` the period):
//!
//! | point | when | what |
//! |---|---|---|
//! | descriptor deadline | `T + P/8` | nodes should have uploaded their descriptor for `E + 1` |
//! | vote | `T + P/2` | authorities exchange signed votes (descriptors, parameters, commit) |
//! | reveal | `T + 5P/8` | authorities exchange their shared-random reveals |
//! | cert | `T + 11P/16` | authorities relay every vote and reveal they hold to each other |
//! | tabulate | `T + 3P/4` | each computes the consensus, signs it and sends its signature |
//! | publish | `T + 7P/8` | a document signed by a majority is published |
//!
//! Authorities accept descriptors for `E + 1` until the vote point: the deadline before it leaves
//! room for a retry.
//!
//! The packet keys of `E` are accepted by mixes and gateways from `start(E) − g` until
//! `end(E) + g`, `g` = [`EpochPeriod::key_grace`]: a rule of the network that nodes and clients
//! share, so it lives here. A client therefore has from the publish point until
//! `end(E) + g`, `3P/8` at the most, to fetch the document of `E + 1` before the keys it holds
//! are refused.

use core::fmt;
use core::time::Duration;

/// Milliseconds since 1970-01-01T00:00:00Z (leap seconds ignored, as Unix time does).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(u64);

impl UnixMillis {
    /// The time `secs` seconds after the Unix epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// The time `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// The Unix time of the wall-clock reading `t` (which the caller takes: nothing here reads a
    /// clock). A time before 1970 is 0; one beyond `u64::MAX` milliseconds saturates.
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let ms = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// This time as a `SystemTime`; one the platform cannot represent (past the year 9999 on
    /// some) reads as the end of 9999.
    pub fn to_system_time(self) -> std::time::SystemTime {
        let end_of_9999 = Duration::from_secs(253_402_300_799);
        std::time::UNIX_EPOCH
            .checked_add(Duration::from_millis(self.0))
            .unwrap_or(std::time::UNIX_EPOCH + end_of_9999)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This time plus `millis` milliseconds (saturating).
    pub const fn plus_millis(self, millis: u64) -> Self {
        Self(self.0.saturating_add(millis))
    }
}

impl fmt::Debug for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixMillis({}.{:03})", self.0 / 1000, self.0 % 1000)
    }
}

/// The start of epoch 0: 2026-01-01T00:00:00Z.
pub const GENESIS: UnixMillis = UnixMillis::from_secs(1_767_225_600);

/// The length of an epoch. Always between [`EpochPeriod::MIN`] and [`EpochPeriod::MAX`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EpochPeriod(u64);

/// An epoch period outside the accepted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("epoch period of {0} ms is outside {min}..={max} ms", min = EpochPeriod::MIN.0, max = EpochPeriod::MAX.0)]
pub struct PeriodError(pub u64);

impl EpochPeriod {
    /// The shortest period: one second (test networks).
    pub const MIN: Self = Self(1_000);
    /// The longest period: one day.
    pub const MAX: Self = Self(86_400_000);
    /// The default period: 20 minutes, as in Katzenpost.
    pub const DEFAULT: Self = Self(20 * 60 * 1000);

    /// A period of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Result<Self, PeriodError> {
        if millis < Self::MIN.0 || millis > Self::MAX.0 {
            return Err(PeriodError(millis));
        }
        Ok(Self(millis))
    }

    /// A period of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Result<Self, PeriodError> {
        Self::from_millis(secs.saturating_mul(1000))
    }

    /// The period in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// How long before its epoch begins and after it ends an epoch's packet keys still unwrap
    /// packets: a quarter of the period, at most five minutes. Mixes and gateways accept a key
    /// of epoch `E` from `start(E) − grace` until `end(E) + grace`, for packets built near a
    /// boundary that are still in flight and for clocks a little apart; a client must not build
    /// a packet with keys whose window will have closed before the packet's last hop.
    pub const fn key_grace(self) -> Duration {
        let quarter = self.0 / 4;
        Duration::from_millis(if quarter < 300_000 { quarter } else { 300_000 })
    }
}

impl Default for EpochPeriod {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An epoch number: the index of a period since [`GENESIS`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch that `now` falls in (epoch 0 for any time before [`GENESIS`]).
    pub fn at(now: UnixMillis, period: EpochPeriod) -> Self {
        Self(now.0.saturating_sub(GENESIS.0) / period.0)
    }

    /// The epoch after this one (saturating at `u64::MAX`).
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The epoch `n` after this one (saturating).
    pub const fn plus(self, n: u64) -> Self {
        Self(self.0.saturating_add(n))
    }

    /// When this epoch begins (saturating at the end of time).
    pub fn start(self, period: EpochPeriod) -> UnixMillis {
        offset(GENESIS, u128::from(self.0) * u128::from(period.0))
    }

    /// When this epoch ends: the start of the next one.
    pub fn end(self, period: EpochPeriod) -> UnixMillis {
        offset(GENESIS, (u128::from(self.0) + 1) * u128::from(period.0))
    }

    /// The schedule on which, during this epoch, the next epoch's document is made.
    pub fn schedule(self, period: EpochPeriod) -> Schedule {
        Schedule { start: self.start(period), period }
    }
}

fn offset(base: UnixMillis, millis: u128) -> UnixMillis {
    UnixMillis(u64::try_from(u128::from(base.0) + millis).unwrap_or(u64::MAX))
}

/// The schedule points of one epoch, at which the next epoch's document is prepared (see the
/// module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Schedule {
    start: UnixMillis,
    period: EpochPeriod,
}

/// A step of the authorities' protocol, in schedule order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[non_exhaustive]
pub enum Phase {
    /// From the start of the epoch to the descriptor deadline.
    Descriptors,
    /// From the descriptor deadline to the vote: late uploads are still accepted.
    LateDescriptors,
    /// From the vote to the reveal.
    Vote,
    /// From the reveal to the cert exchange.
    Reveal,
    /// From the cert exchange to tabulation.
    Cert,
    /// From tabulation to publication: signatures are exchanged.
    Tabulate,
    /// From publication to the end of the epoch: the next document is available.
    Publish,
}

impl Schedule {
    fn at(&self, num: u64, den: u64) -> UnixMillis {
        offset(self.start, u128::from(self.period.0) * u128::from(num) / u128::from(den))
    }

    /// The start of the epoch.
    pub fn start(&self) -> UnixMillis {
        self.start
    }

    /// `T + P/8`: nodes should have uploaded their descriptors for the next epoch.
    pub fn descriptor_deadline(&self) -> UnixMillis {
        self.at(1, 8)
    }

    /// `T + P/2`: authorities vote.
    pub fn vote(&self) -> UnixMillis {
        self.at(1, 2)
    }

    /// `T + 5P/8`: authorities reveal their shared-random values.
    pub fn reveal(&self) -> UnixMillis {
        self.at(5, 8)
    }

    /// `T + 11P/16`: authorities relay the votes and reveals they hold.
    pub fn cert(&self) -> UnixMillis {
        self.at(11, 16)
    }

    /// `T + 3P/4`: authorities tabulate, sign and exchange signatures.
    pub fn tabulate(&self) -> UnixMillis {
        self.at(3, 4)
    }

    /// `T + 7P/8`: the next epoch's document is published.
    pub fn publish(&self) -> UnixMillis {
        self.at(7, 8)
    }

    /// The end of the epoch.
    pub fn end(&self) -> UnixMillis {
        self.at(1, 1)
    }

    /// The phase that `now` falls in (`now` is assumed to be inside this epoch).
    pub fn phase(&self, now: UnixMillis) -> Phase {
        if now < self.descriptor_deadline() {
            Phase::Descriptors
        } else if now < self.vote() {
            Phase::LateDescriptors
        } else if now < self.reveal() {
            Phase::Vote
        } else if now < self.cert() {
            Phase::Reveal
        } else if now < self.tabulate() {
            Phase::Cert
        } else if now < self.publish() {
            Phase::Tabulate
        } else {
            Phase::Publish
        }
    }

    /// The first schedule point strictly after `now` (the end of the epoch at the latest).
    pub fn next_point_after(&self, now: UnixMillis) -> UnixMillis {
        [self.descriptor_deadline(), self.vote(), self.reveal(), self.cert(), self.tabulate(), self.publish()]
            .into_iter()
            .find(|t| *t > now)
            .unwrap_or_else(|| self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_times_convert_both_ways() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let t = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        assert_eq!(UnixMillis::from_system_time(t), UnixMillis::from_millis(1_767_225_600_123));
        assert_eq!(UnixMillis::from_millis(1_767_225_600_123).to_system_time(), t);
        // Sub-millisecond parts are dropped; times before 1970 read as 0.
        assert_eq!(
            UnixMillis::from_system_time(t + Duration::from_micros(999)),
            UnixMillis::from_millis(1_767_225_600_123)
        );
        assert_eq!(
            UnixMillis::from_system_time(UNIX_EPOCH - Duration::from_secs(1)),
            UnixMillis::from_millis(0)
        );
        let _: SystemTime = UnixMillis::from_millis(u64::MAX).to_system_time();
    }

    #[test]
    fn genesis_is_2026() {
        // 2026-01-01T00:00:00Z: 56 years of 365 days plus 14 leap days.
        assert_eq!(GENESIS.as_secs(), (56 * 365 + 14) * 86_400);
    }

    #[test]
    fn epochs_tile_time() {
        let p = EpochPeriod::DEFAULT;
        assert_eq!(Epoch::at(GENESIS, p), Epoch(0));
        assert_eq!(Epoch::at(UnixMillis::from_secs(0), p), Epoch(0));
        let e = Epoch(1000);
        assert_eq!(Epoch::at(e.start(p), p), e);
        assert_eq!(Epoch::at(e.end(p).plus_millis(0), p), e.next());
        assert_eq!(Epoch::at(UnixMillis::from_millis(e.end(p).as_millis() - 1), p), e);
        assert_eq!(e.end(p), e.next().start(p));
        assert_eq!(Epoch(u64::MAX).start(p), UnixMillis::from_millis(u64::MAX));
    }

    #[test]
    fn key_grace_is_a_quarter_period_at_most_five_minutes() {
        assert_eq!(EpochPeriod::from_secs(20).unwrap().key_grace(), Duration::from_secs(5));
        assert_eq!(EpochPeriod::DEFAULT.key_grace(), Duration::from_secs(300));
        assert_eq!(EpochPeriod::MAX.key_grace(), Duration::from_secs(300));
        assert_eq!(EpochPeriod::MIN.key_grace(), Duration::from_millis(250));
    }

    #[test]
    fn schedule_points_are_ordered() {
        let p = EpochPeriod::from_secs(8).unwrap();
        let s = Epoch(3).schedule(p);
        let t = s.start().as_millis();
        assert_eq!(s.descriptor_deadline().as_millis(), t + 1000);
        assert_eq!(s.vote().as_millis(), t + 4000);
        assert_eq!(s.reveal().as_millis(), t + 5000);
        assert_eq!(s.cert().as_millis(), t + 5500);
        assert_eq!(s.tabulate().as_millis(), t + 6000);
        assert_eq!(s.publish().as_millis(), t + 7000);
        assert_eq!(s.end(), Epoch(4).start(p));
        assert_eq!(s.phase(s.start()), Phase::Descriptors);
        assert_eq!(s.phase(s.vote()), Phase::Vote);
        assert_eq!(s.phase(s.publish()), Phase::Publish);
        assert_eq!(s.next_point_after(s.vote()), s.reveal());
        assert_eq!(s.next_point_after(s.publish()), s.end());
    }

    #[test]
    fn period_bounds() {
        assert!(EpochPeriod::from_millis(999).is_err());
        assert!(EpochPeriod::from_secs(1).is_ok());
        assert!(EpochPeriod::from_secs(86_401).is_err());
        assert!(EpochPeriod::from_secs(u64::MAX).is_err());
    }
}
