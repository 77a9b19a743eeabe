//! The network's parameters, carried in every vote and document.
//!
//! # Defaults and λ/μ
//!
//! A Poisson mix delays each packet by an exponential time of mean `1/μ`. By Little's law a mix
//! that receives packets at rate `λ` holds `λ/μ` packets on average; Loopix wants that to be at
//! least 2 even when no client is sending, so that an observer can never assume a mix holds a
//! single packet. The floor comes from the mixes' own loop cover traffic: each mix sends loops
//! at rate `λ_M`; a loop leaves its own mix at once, is held by one mix of each of the `L − 1`
//! other layers and ends back at its mix, so with balanced layers every mix holds on average
//! `(L − 1)·λ_M/μ` loop packets (`L` layers). The defaults give
//! `(L − 1)·λ_M/μ = 2 · 2/s · 1 s = 4`, before any client traffic; [`Parameters::new`] refuses
//! parameters whose floor is below 2. (Until session 4 the check was `L·λ_M/μ ≥ 2`, which
//! counted the loop's return to its own mix; the evaluation measured the floor and found it.)
//!
//! Client defaults (`λ_P = 0.2/s`, `λ_L = λ_D = 0.05/s`) cost 0.3 packets and 0.2 pulls per
//! second: about 96 MB a day up and 77 MB down with X25519-KEM frames
//! (`TrafficProfile::idle_bytes_per_day`). The mean delay costs no bytes, only latency.
//!
//! # Why these defaults
//!
//! Chosen from the global-passive-adversary evaluation (`qanat eval`, `docs/EVALUATION.md`: a
//! simulated network of the real cores, 50 clients, every link watched):
//! - `1/μ = 1 s` (500 ms until issue 11): the cheapest way to bring the global observer's
//!   mean sender entropy within 0.5 bit of log2 of the clients online at the default cost (at
//!   500 ms it was 0.6 bits short; at 1 s about 0.3 bits short, with 750 ms too close to the
//!   line). It costs no bandwidth and adds 1.5 s to the mean latency (three hops), which the
//!   wait for a payload slot still dominates (p50 about 8.5 s). The other way, λ_L = λ_D =
//!   0.2/s at 500 ms, also met the target but at 1.6 times the bytes sent a day.
//! - `λ_P = 0.2/s`: a payload slot every 5 s, so latency of seconds; the slot (a drop when
//!   nothing is queued) is what makes a busy client indistinguishable from an idle one (KS test
//!   over 10,000 gaps: p ≈ 0.9).
//! - `λ_L = λ_D = 0.05/s`: against the global observer, from none to 0.05/s gains an eighth to a
//!   quarter of a bit, and 0.2/s as much again for 2.5 times the loop and drop traffic; loops
//!   also blur acknowledgements in home mailboxes against gateway adversaries (at 1 s per hop the
//!   all-gateways linking falls from 24% without loops to 10% at 0.05/s).
//! - `λ_M = 2/s`: a mix's loop is held only at the `L − 1` other layers (it leaves its own mix at
//!   once and ends there), so loops alone keep `(L − 1)·λ_M/μ = 4` packets in every mix at 1 s,
//!   twice Loopix's floor of 2 that [`Parameters::new`] checks (met exactly, measured 2.1, at the
//!   old 500 ms). Kept rather than halved: it costs no client bandwidth, and keeps a mix from
//!   ever looking nearly empty when users are quiet.
//!
//! Rates are integers in micro-events per second, and delays integers in milliseconds, so that
//! the encoding is exact and canonical.
//!
//! # File transfers (version 2)
//!
//! Version 2 of the document and the vote adds [`FileLimits`] after the fields above
//! (`docs/ATTACHMENTS.md` §3.12): the largest file a client may send or accept on the network
//! (`max_file_bytes`, default 4 MiB) and the largest multiple of `λ_P` a client may send at
//! during a fast transfer (`fast_factor_max`, default 4; 1 means no fast mode). Parameters
//! without them ([`ParametersConfig::file_limits`] `None`) are encoded as version 1, byte for
//! byte as before, and mean 1 MiB and no fast mode ([`FileLimits::VERSION_1`]): an authority
//! votes version 2 only once its operator sets the limits, after clients are upgraded, and
//! readers take either version. Which version a value came in is kept, so that re-encoding
//! gives the same bytes and votes compare as before.
//!
//! A gateway budgets each client session for the fastest a client may send,
//! `fast_factor_max·λ_P + λ_L + λ_D` ([`Parameters::max_client_rate`]), so that a fast transfer
//! is not throttled.

use qanat_packet::{Geometry, Scheme};

use crate::error::{BuildError, DecodeError};
use crate::time::EpochPeriod;
use crate::wire::{Reader, Writer, encoded};

/// A rate of events, in millionths of an event per second.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Rate(u64);

impl Rate {
    /// Highest accepted rate: 10,000 events per second.
    pub const MAX: Self = Self(10_000 * 1_000_000);

    /// `micro` millionths of an event per second.
    pub const fn from_micro_per_sec(micro: u64) -> Self {
        Self(micro)
    }

    /// `millis` thousandths of an event per second.
    pub const fn from_milli_per_sec(millis: u64) -> Self {
        Self(millis.saturating_mul(1000))
    }

    /// Millionths of an event per second.
    pub const fn as_micro_per_sec(self) -> u64 {
        self.0
    }

    /// Events per second.
    pub fn per_second(self) -> f64 {
        // Rates are at most 10^10, exactly representable.
        self.0 as f64 / 1e6
    }
}

/// What a network allows of file transfers (`docs/ATTACHMENTS.md` §3.10, §3.12): carried by
/// documents and votes of version 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FileLimits {
    /// The largest file, in bytes, a client may send or accept: 1 to [`FileLimits::MAX_FILE_BYTES`].
    pub max_file_bytes: u32,
    /// The largest multiple of `λ_P` a client may send at during a fast transfer: 1 (no fast
    /// mode) to [`FileLimits::MAX_FAST_FACTOR`].
    pub fast_factor_max: u8,
}

impl FileLimits {
    /// The defaults of version 2: 4 MiB, and fast transfers at up to 4·λ_P (at the default
    /// rates `4 × 0.2 + 0.1 = 0.9` packets a second, within a gateway's default budget).
    pub const DEFAULT: Self = Self { max_file_bytes: 4 * 1024 * 1024, fast_factor_max: 4 };
    /// What parameters of version 1 (which carry no limits) mean: 1 MiB, and no fast mode.
    pub const VERSION_1: Self = Self { max_file_bytes: 1024 * 1024, fast_factor_max: 1 };
    /// The largest `max_file_bytes`: 64 MiB, the most a file description can announce.
    pub const MAX_FILE_BYTES: u32 = 64 * 1024 * 1024;
    /// The largest `fast_factor_max`.
    pub const MAX_FAST_FACTOR: u8 = 8;

    /// Whether both values are in range; the error names the one that is not.
    pub fn check(self) -> Result<Self, BuildError> {
        if self.max_file_bytes == 0 || self.max_file_bytes > Self::MAX_FILE_BYTES {
            return Err(BuildError::Parameters("max_file_bytes is outside 1..=64 MiB"));
        }
        if self.fast_factor_max == 0 || self.fast_factor_max > Self::MAX_FAST_FACTOR {
            return Err(BuildError::Parameters("fast_factor_max is outside 1..=8"));
        }
        Ok(self)
    }
}

/// The network-wide parameters every client and node must share.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Parameters {
    geometry: Geometry,
    mix_layers: u8,
    mean_delay_ms: u32,
    lambda_p: Rate,
    lambda_l: Rate,
    lambda_d: Rate,
    lambda_m: Rate,
    epoch_period: EpochPeriod,
    /// `None`: version 1.
    file_limits: Option<FileLimits>,
}

/// The values of [`Parameters`], as given by an operator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ParametersConfig {
    /// The packet scheme.
    pub scheme: Scheme,
    /// Sphinx hops (gateway, mixes, gateway): at least `mix_layers + 2`.
    pub nr_hops: usize,
    /// Forward payload length of the Sphinx geometry ([`Geometry::new`]).
    pub forward_payload_len: usize,
    /// Number of mix layers.
    pub mix_layers: u8,
    /// Mean delay per hop `1/μ`, in milliseconds.
    pub mean_delay_ms: u32,
    /// Client payload rate `λ_P` (a real packet if queued, else a drop packet).
    pub lambda_p: Rate,
    /// Client loop rate `λ_L`.
    pub lambda_l: Rate,
    /// Client drop rate `λ_D`.
    pub lambda_d: Rate,
    /// Mix loop rate `λ_M`.
    pub lambda_m: Rate,
    /// Epoch period.
    pub epoch_period: EpochPeriod,
    /// The file-transfer limits, carried by version 2; `None`: version 1, which means
    /// [`FileLimits::VERSION_1`].
    pub file_limits: Option<FileLimits>,
}

impl ParametersConfig {
    /// The defaults for `scheme` (see the module documentation), of version 1: an operator
    /// switches to version 2 by setting [`ParametersConfig::file_limits`].
    pub fn default_for(scheme: Scheme) -> Self {
        let g = Geometry::default_for(scheme);
        Self {
            scheme,
            nr_hops: g.nr_hops(),
            forward_payload_len: g.forward_payload_len(),
            mix_layers: 3,
            // 1 s per hop, 0.2, 0.05, 0.05, 2 per second: see "Why these defaults" above.
            mean_delay_ms: 1000,
            lambda_p: Rate::from_milli_per_sec(200),
            lambda_l: Rate::from_milli_per_sec(50),
            lambda_d: Rate::from_milli_per_sec(50),
            lambda_m: Rate::from_milli_per_sec(2000),
            epoch_period: EpochPeriod::DEFAULT,
            file_limits: None,
        }
    }
}

/// Most mix layers.
pub const MAX_MIX_LAYERS: u8 = 16;
/// Longest mean delay per hop: one hour.
pub const MAX_MEAN_DELAY_MS: u32 = 3_600_000;
const MAX_SCHEME_NAME: usize = 32;
/// The first version of documents and votes, without file limits.
pub const VERSION_1: u8 = 1;
/// The version of documents and votes whose parameters carry [`FileLimits`].
pub const VERSION_2: u8 = 2;

impl Parameters {
    /// Validates `c`.
    pub fn new(c: ParametersConfig) -> Result<Self, BuildError> {
        let geometry = Geometry::new(c.scheme, c.forward_payload_len, c.nr_hops)
            .map_err(|_| BuildError::Parameters("geometry"))?;
        if c.mix_layers == 0 || c.mix_layers > MAX_MIX_LAYERS {
            return Err(BuildError::Parameters("mix layers"));
        }
        if c.nr_hops < usize::from(c.mix_layers) + 2 {
            return Err(BuildError::Parameters("hops must cover gateway, every layer, gateway"));
        }
        if c.mean_delay_ms == 0 || c.mean_delay_ms > MAX_MEAN_DELAY_MS {
            return Err(BuildError::Parameters("mean delay"));
        }
        for r in [c.lambda_p, c.lambda_l, c.lambda_d, c.lambda_m] {
            if r.0 == 0 || r > Rate::MAX {
                return Err(BuildError::Parameters("rate"));
            }
        }
        // (L − 1)·λ_M/μ ≥ 2, in integers: (L − 1) · λ_M[µ/s] · delay[ms] ≥ 2 · 10^9 (one layer
        // counts as one).
        let held = u128::from(c.mix_layers.saturating_sub(1).max(1));
        let floor = held * u128::from(c.lambda_m.0) * u128::from(c.mean_delay_ms);
        if floor < 2_000_000_000 {
            return Err(BuildError::Parameters("mix loop traffic gives (L − 1)·λ_M/μ < 2"));
        }
        let file_limits = c.file_limits.map(FileLimits::check).transpose()?;
        Ok(Self {
            geometry,
            mix_layers: c.mix_layers,
            mean_delay_ms: c.mean_delay_ms,
            lambda_p: c.lambda_p,
            lambda_l: c.lambda_l,
            lambda_d: c.lambda_d,
            lambda_m: c.lambda_m,
            epoch_period: c.epoch_period,
            file_limits,
        })
    }

    /// The defaults for `scheme`.
    pub fn default_for(scheme: Scheme) -> Self {
        // The defaults satisfy every check (pinned by a unit test).
        #[allow(clippy::expect_used)]
        Self::new(ParametersConfig::default_for(scheme)).expect("default parameters are valid")
    }

    /// The values, for changing some of them.
    pub fn config(&self) -> ParametersConfig {
        ParametersConfig {
            scheme: self.geometry.scheme(),
            nr_hops: self.geometry.nr_hops(),
            forward_payload_len: self.geometry.forward_payload_len(),
            mix_layers: self.mix_layers,
            mean_delay_ms: self.mean_delay_ms,
            lambda_p: self.lambda_p,
            lambda_l: self.lambda_l,
            lambda_d: self.lambda_d,
            lambda_m: self.lambda_m,
            epoch_period: self.epoch_period,
            file_limits: self.file_limits,
        }
    }

    /// The packet scheme.
    pub fn scheme(&self) -> Scheme {
        self.geometry.scheme()
    }

    /// The packet geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Number of mix layers.
    pub fn mix_layers(&self) -> usize {
        usize::from(self.mix_layers)
    }

    /// Mean delay per hop `1/μ`, in milliseconds.
    pub fn mean_delay_ms(&self) -> u32 {
        self.mean_delay_ms
    }

    /// `μ`, per second.
    pub fn mu(&self) -> f64 {
        1000.0 / f64::from(self.mean_delay_ms)
    }

    /// Client payload rate `λ_P`.
    pub fn lambda_p(&self) -> Rate {
        self.lambda_p
    }

    /// Client loop rate `λ_L`.
    pub fn lambda_l(&self) -> Rate {
        self.lambda_l
    }

    /// Client drop rate `λ_D`.
    pub fn lambda_d(&self) -> Rate {
        self.lambda_d
    }

    /// Mix loop rate `λ_M`.
    pub fn lambda_m(&self) -> Rate {
        self.lambda_m
    }

    /// The epoch period.
    pub fn epoch_period(&self) -> EpochPeriod {
        self.epoch_period
    }

    /// The version of the documents and votes that carry these parameters: 2 if they have file
    /// limits, else 1.
    pub fn version(&self) -> u8 {
        if self.file_limits.is_some() { VERSION_2 } else { VERSION_1 }
    }

    /// The file-transfer limits: as set (version 2), or [`FileLimits::VERSION_1`].
    pub fn file_limits(&self) -> FileLimits {
        self.file_limits.unwrap_or(FileLimits::VERSION_1)
    }

    /// The largest file, in bytes, a client may send or accept on this network.
    pub fn max_file_bytes(&self) -> u32 {
        self.file_limits().max_file_bytes
    }

    /// The largest multiple of `λ_P` a client may send at during a fast transfer (1: no fast
    /// mode).
    pub fn fast_factor_max(&self) -> u8 {
        self.file_limits().fast_factor_max
    }

    /// The most packets per second a client may send: `fast_factor_max·λ_P + λ_L + λ_D` (a
    /// gateway's budget for a client session is a multiple of it).
    pub fn max_client_rate(&self) -> f64 {
        f64::from(self.fast_factor_max()) * self.lambda_p.per_second()
            + self.lambda_l.per_second()
            + self.lambda_d.per_second()
    }

    /// The floor of packets held by each mix from mix loops alone, `(L − 1)·λ_M/μ` (at least 2).
    pub fn mix_occupancy_floor(&self) -> f64 {
        f64::from(self.mix_layers.saturating_sub(1).max(1)) * self.lambda_m.per_second() / self.mu()
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes8(self.scheme().name().as_bytes());
        // Both bounded by the geometry's own limits (16 hops, 1 MiB payload).
        w.u8(u8::try_from(self.geometry.nr_hops()).unwrap_or(u8::MAX));
        w.u32(u32::try_from(self.geometry.forward_payload_len()).unwrap_or(u32::MAX));
        w.u8(self.mix_layers);
        w.u32(self.mean_delay_ms);
        for r in [self.lambda_p, self.lambda_l, self.lambda_d, self.lambda_m] {
            w.u64(r.0);
        }
        w.u64(self.epoch_period.as_millis());
        if let Some(l) = self.file_limits {
            w.u32(l.max_file_bytes);
            w.u8(l.fast_factor_max);
        }
    }

    /// Reads parameters of the document or vote `version` ([`VERSION_1`] or [`VERSION_2`]; the
    /// caller has refused any other).
    pub(crate) fn decode(r: &mut Reader<'_>, version: u8) -> Result<Self, DecodeError> {
        let scheme = decode_scheme(r)?;
        let nr_hops = usize::from(r.u8()?);
        let forward_payload_len =
            usize::try_from(r.u32()?).map_err(|_| DecodeError::Invalid { what: "parameters" })?;
        let mix_layers = r.u8()?;
        let mean_delay_ms = r.u32()?;
        let lambda_p = Rate(r.u64()?);
        let lambda_l = Rate(r.u64()?);
        let lambda_d = Rate(r.u64()?);
        let lambda_m = Rate(r.u64()?);
        let epoch_period =
            EpochPeriod::from_millis(r.u64()?).map_err(|_| DecodeError::Invalid { what: "epoch period" })?;
        let file_limits = match version {
            VERSION_1 => None,
            VERSION_2 => {
                let max_file_bytes = r.u32()?;
                if max_file_bytes == 0 || max_file_bytes > FileLimits::MAX_FILE_BYTES {
                    return Err(DecodeError::Invalid { what: "max file bytes" });
                }
                let fast_factor_max = r.u8()?;
                if fast_factor_max == 0 || fast_factor_max > FileLimits::MAX_FAST_FACTOR {
                    return Err(DecodeError::Invalid { what: "fast factor max" });
                }
                Some(FileLimits { max_file_bytes, fast_factor_max })
            }
            got => return Err(DecodeError::Version { what: "parameters", got }),
        };
        Self::new(ParametersConfig {
            scheme,
            nr_hops,
            forward_payload_len,
            mix_layers,
            mean_delay_ms,
            lambda_p,
            lambda_l,
            lambda_d,
            lambda_m,
            epoch_period,
            file_limits,
        })
        .map_err(|_| DecodeError::Invalid { what: "parameters" })
    }

    /// The canonical encoding (what votes compare).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        encoded(w)
    }
}

pub(crate) fn decode_scheme(r: &mut Reader<'_>) -> Result<Scheme, DecodeError> {
    let name = r.bytes8(MAX_SCHEME_NAME, "scheme name")?;
    core::str::from_utf8(name).ok().and_then(Scheme::from_name).ok_or(DecodeError::Invalid { what: "scheme" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn decode(b: &[u8], version: u8) -> Result<Parameters, DecodeError> {
        let mut r = Reader::new(b);
        let p = Parameters::decode(&mut r, version)?;
        r.finish()?;
        Ok(p)
    }

    fn v2(base: ParametersConfig, max_file_bytes: u32, fast_factor_max: u8) -> ParametersConfig {
        ParametersConfig { file_limits: Some(FileLimits { max_file_bytes, fast_factor_max }), ..base }
    }

    #[test]
    fn defaults_are_valid_and_keep_two_packets_per_mix() {
        for s in Scheme::ALL {
            let p = Parameters::default_for(s);
            assert!(p.mix_occupancy_floor() >= 2.0);
            assert_eq!(p.mean_delay_ms(), 1000);
            assert_eq!(p.geometry().nr_hops(), 5);
            assert_eq!(p.mix_layers(), 3);
            assert_eq!(p.version(), VERSION_1);
            assert_eq!(decode(&p.to_bytes(), VERSION_1).unwrap(), p);
            let p2 = Parameters::new(ParametersConfig {
                file_limits: Some(FileLimits::DEFAULT),
                ..ParametersConfig::default_for(s)
            })
            .unwrap();
            assert_eq!(p2.version(), VERSION_2);
            assert_eq!(decode(&p2.to_bytes(), VERSION_2).unwrap(), p2);
        }
        assert_eq!(FileLimits::DEFAULT.check(), Ok(FileLimits::DEFAULT));
        assert_eq!(FileLimits::VERSION_1.check(), Ok(FileLimits::VERSION_1));
    }

    /// The encodings of the default parameters (X25519-KEM), pinned: version 1 as it was before
    /// version 2 existed, and version 2 with the default file limits after it.
    #[test]
    fn encodings_are_pinned() {
        // scheme name, hops, payload length, layers, delay (ms), λ_P, λ_L, λ_D, λ_M (µ/s), period (ms).
        const V1: &str = concat!(
            "0a",
            "7832353531392d6b656d",
            "05",
            "00000600",
            "03",
            "000003e8",
            "0000000000030d40",
            "000000000000c350",
            "000000000000c350",
            "00000000001e8480",
            "0000000000124f80",
        );
        // max_file_bytes (4 MiB), fast_factor_max (4).
        const V2_TAIL: &str = "0040000004";
        let p1 = Parameters::default_for(Scheme::X25519Kem);
        assert_eq!(hex(&p1.to_bytes()), V1);
        let p2 = Parameters::new(v2(p1.config(), 4 * 1024 * 1024, 4)).unwrap();
        assert_eq!(hex(&p2.to_bytes()), format!("{V1}{V2_TAIL}"));
        // 1 MiB and no fast mode, explicitly: version 2 still, not the same bytes as version 1.
        let p2_as_v1 = Parameters::new(v2(p1.config(), 1024 * 1024, 1)).unwrap();
        assert_eq!(hex(&p2_as_v1.to_bytes()), format!("{V1}0010000001"));
        assert_ne!(p2_as_v1, p1);
        assert_eq!(p2_as_v1.file_limits(), p1.file_limits());
    }

    #[test]
    fn version_1_means_one_mebibyte_and_no_fast_mode() {
        let p = decode(&Parameters::default_for(Scheme::XWing).to_bytes(), VERSION_1).unwrap();
        assert_eq!(p.version(), VERSION_1);
        assert_eq!(p.file_limits(), FileLimits::VERSION_1);
        assert_eq!((p.max_file_bytes(), p.fast_factor_max()), (1_048_576, 1));
        assert_eq!(p.config().file_limits, None);
        // λ_P + λ_L + λ_D at the defaults; version 2's default lets the payload stream run at 4·λ_P.
        assert!((p.max_client_rate() - 0.3).abs() < 1e-9);
        let p2 = Parameters::new(ParametersConfig { file_limits: Some(FileLimits::DEFAULT), ..p.config() })
            .unwrap();
        assert_eq!((p2.max_file_bytes(), p2.fast_factor_max()), (4_194_304, 4));
        assert!((p2.max_client_rate() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let base = ParametersConfig::default_for(Scheme::X25519Kem);
        let bad = [
            ParametersConfig { mix_layers: 0, ..base },
            ParametersConfig { nr_hops: 4, ..base },
            ParametersConfig { mean_delay_ms: 0, ..base },
            ParametersConfig { lambda_p: Rate::from_micro_per_sec(0), ..base },
            ParametersConfig { lambda_m: Rate::from_milli_per_sec(100), ..base },
            ParametersConfig { forward_payload_len: 0, ..base },
            v2(base, 0, 4),
            v2(base, FileLimits::MAX_FILE_BYTES + 1, 4),
            v2(base, 4096, 0),
            v2(base, 4096, 9),
        ];
        for c in bad {
            assert!(Parameters::new(c).is_err(), "{c:?}");
        }
        for c in [v2(base, 1, 1), v2(base, FileLimits::MAX_FILE_BYTES, FileLimits::MAX_FAST_FACTOR)] {
            assert!(Parameters::new(c).is_ok(), "{c:?}");
        }
        assert_eq!(
            Parameters::new(v2(base, 4096, 9)),
            Err(BuildError::Parameters("fast_factor_max is outside 1..=8"))
        );
        assert_eq!(
            Parameters::new(v2(base, 0, 4)),
            Err(BuildError::Parameters("max_file_bytes is outside 1..=64 MiB"))
        );
    }

    /// Strict decoding of version 2: out-of-range limits, a missing or an extra byte, and a
    /// version this code does not speak are each refused with their error.
    #[test]
    fn bad_version_2_encodings_are_refused() {
        let p1 = Parameters::default_for(Scheme::X25519Kem);
        let v1 = p1.to_bytes();
        let with = |limits: &[u8]| [&v1[..], limits].concat();
        let invalid = |what| Err(DecodeError::Invalid { what });
        assert_eq!(decode(&with(&[0, 0, 0, 0, 4]), VERSION_2), invalid("max file bytes"));
        assert_eq!(decode(&with(&[4, 0, 0, 1, 4]), VERSION_2), invalid("max file bytes"));
        assert_eq!(decode(&with(&[0, 0x40, 0, 0, 0]), VERSION_2), invalid("fast factor max"));
        assert_eq!(decode(&with(&[0, 0x40, 0, 0, 9]), VERSION_2), invalid("fast factor max"));
        assert_eq!(decode(&with(&[0, 0x40, 0, 0]), VERSION_2), Err(DecodeError::Truncated));
        assert_eq!(decode(&v1, VERSION_2), Err(DecodeError::Truncated));
        assert_eq!(decode(&with(&[0, 0x40, 0, 0, 4, 0]), VERSION_2), Err(DecodeError::TrailingBytes));
        // Version 1 has no limits: they are bytes too many.
        assert_eq!(decode(&with(&[0, 0x40, 0, 0, 4]), VERSION_1), Err(DecodeError::TrailingBytes));
        assert_eq!(decode(&v1, 3), Err(DecodeError::Version { what: "parameters", got: 3 }));
        // The largest values pass.
        let p = decode(&with(&[4, 0, 0, 0, 8]), VERSION_2).unwrap();
        assert_eq!(p.file_limits(), FileLimits { max_file_bytes: 64 << 20, fast_factor_max: 8 });
    }

    fn any_config() -> impl Strategy<Value = ParametersConfig> {
        let limits = prop_oneof![
            Just(None),
            (1..=FileLimits::MAX_FILE_BYTES, 1..=FileLimits::MAX_FAST_FACTOR).prop_map(
                |(max_file_bytes, fast_factor_max)| Some(FileLimits { max_file_bytes, fast_factor_max })
            ),
        ];
        (
            proptest::sample::select(Scheme::ALL.to_vec()),
            1u8..=3,
            1u32..=MAX_MEAN_DELAY_MS,
            proptest::array::uniform4(1u64..=Rate::MAX.0),
            1u64..=86_400,
            limits,
        )
            .prop_map(
                |(scheme, mix_layers, mean_delay_ms, [p, l, d, m], epoch_secs, file_limits)| {
                    ParametersConfig {
                        mix_layers,
                        mean_delay_ms,
                        lambda_p: Rate(p),
                        lambda_l: Rate(l),
                        lambda_d: Rate(d),
                        lambda_m: Rate(m),
                        epoch_period: EpochPeriod::from_secs(epoch_secs).unwrap_or(EpochPeriod::DEFAULT),
                        file_limits,
                        ..ParametersConfig::default_for(scheme)
                    }
                },
            )
    }

    proptest! {
        /// Parameters of either version come back equal from their encoding, in the version
        /// they give; version 1 means the version-1 limits.
        #[test]
        fn parameters_round_trip_in_their_version(c in any_config()) {
            // Some draws break the mix floor; those are refused, and have no encoding.
            let Ok(p) = Parameters::new(c) else { return Ok(()) };
            prop_assert_eq!(p.version(), if c.file_limits.is_some() { VERSION_2 } else { VERSION_1 });
            let b = p.to_bytes();
            let back = decode(&b, p.version()).unwrap();
            prop_assert_eq!(back.to_bytes(), b);
            prop_assert_eq!(back.config(), c);
            prop_assert_eq!(back.file_limits(), c.file_limits.unwrap_or(FileLimits::VERSION_1));
            prop_assert_eq!(&back, &p);
        }

        /// Whatever bytes decode, in either version, are the canonical encoding of what they
        /// decode to.
        #[test]
        fn whatever_decodes_is_canonical(v1 in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..8), flip in any::<(usize, u8)>()) {
            let mut b = Parameters::default_for(Scheme::X25519Kem).to_bytes();
            b.extend_from_slice(&tail);
            let i = flip.0 % b.len();
            b[i] ^= flip.1;
            let version = if v1 { VERSION_1 } else { VERSION_2 };
            if let Ok(p) = decode(&b, version) {
                prop_assert_eq!(p.version(), version);
                prop_assert_eq!(p.to_bytes(), b);
            }
        }
    }
}
