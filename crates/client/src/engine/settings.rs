//! What the user sets: the traffic profile, the interface's language and lock timeout; and what
//! the network costs and hides at each traffic profile, for the user to choose from.

use std::time::Duration;

use qanat_mixnet::sending::{Rates, TrafficProfile};

use super::persist::Write;
use super::rows::SETTINGS_KEY;
use super::{Engine, EngineError};

/// The languages the interface has a catalogue for.
pub const LANGUAGES: [&str; 3] = ["en", "fr", "ar"];

/// The interface locks after this long without the user, unless set otherwise.
pub const DEFAULT_LOCK_TIMEOUT_SECS: u32 = 300;

/// The shortest and longest lock timeouts a user may choose.
pub const LOCK_TIMEOUT_SECS: std::ops::RangeInclusive<u32> = 60..=3600;

/// The interface's settings, kept in the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// `en`, `fr` or `ar`; `None` until the user chose (the interface follows the browser).
    pub language: Option<String>,
    /// Seconds without the user after which the interface locks.
    pub lock_timeout_secs: u32,
}

/// What one traffic profile costs and how long its messages take, under the directory in use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileCost {
    /// Its sending rates.
    pub rates: Rates,
    /// Bytes per day to and from the gateway while idle (what the link carries whatever the
    /// user does).
    pub bytes_per_day: (f64, f64),
    /// A message's typical delay: the sender's wait for a payload slot (1/λ_P), the mixes'
    /// delays (layers × the mean delay), and the recipient's next pull (about 1/λ_P).
    pub expected_delay: Duration,
}

/// The directory in use, as the user is told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkInfo {
    /// The epoch of the document in use.
    pub epoch: u64,
    /// The length of an epoch.
    pub epoch_period: Duration,
    /// Mix layers every packet crosses.
    pub layers: usize,
    /// Each mix's mean delay (1/μ).
    pub mean_delay: Duration,
    /// The standard profile.
    pub standard: ProfileCost,
    /// The metered profile.
    pub metered: ProfileCost,
}

impl NetworkInfo {
    /// The cost of `t`.
    pub fn cost(&self, t: TrafficProfile) -> &ProfileCost {
        match t {
            TrafficProfile::Standard => &self.standard,
            TrafficProfile::Metered => &self.metered,
        }
    }
}

impl Engine {
    /// Switches to traffic profile `t`: saved, and from now on its rates (the schedule is drawn
    /// afresh when they change).
    pub fn set_traffic(&mut self, t: TrafficProfile) -> Result<(), EngineError> {
        self.traffic = t;
        self.settings.traffic = t.name().into();
        self.writes.push(Write::put(SETTINGS_KEY, &self.settings));
        if let Some(net) = &self.network {
            let (params, view) = (net.params.clone(), net.view.clone());
            self.apply_traffic(&params, &view);
        }
        self.flush()
    }

    /// The interface's settings.
    pub fn ui_settings(&self) -> UiSettings {
        UiSettings {
            language: self.settings.language.clone(),
            lock_timeout_secs: self.settings.lock_timeout_secs.unwrap_or(DEFAULT_LOCK_TIMEOUT_SECS),
        }
    }

    /// Changes the interface's settings given (`None`: unchanged). A language without a
    /// catalogue, or a lock timeout out of [`LOCK_TIMEOUT_SECS`], is refused and nothing changes.
    pub fn set_ui_settings(
        &mut self,
        language: Option<&str>,
        lock_timeout_secs: Option<u32>,
    ) -> Result<(), EngineError> {
        if let Some(l) = language
            && !LANGUAGES.contains(&l)
        {
            return Err(EngineError::Setting("language", "one of en, fr, ar"));
        }
        if let Some(s) = lock_timeout_secs
            && !LOCK_TIMEOUT_SECS.contains(&s)
        {
            return Err(EngineError::Setting("lock timeout", "from 60 to 3600 seconds"));
        }
        if let Some(l) = language {
            self.settings.language = Some(l.into());
        }
        if let Some(s) = lock_timeout_secs {
            self.settings.lock_timeout_secs = Some(s);
        }
        self.writes.push(Write::put(SETTINGS_KEY, &self.settings));
        self.flush()
    }

    /// The user's own file limits (`Some(None)`: back to the default; `None`: unchanged): the
    /// largest file sent or accepted (never above the network's), and the size accepted without
    /// asking (never above that).
    pub fn set_file_settings(
        &mut self,
        max_file_bytes: Option<Option<u64>>,
        auto_accept_bytes: Option<Option<u64>>,
    ) -> Result<(), EngineError> {
        if max_file_bytes.flatten() == Some(0) {
            return Err(EngineError::Setting("largest file", "at least 1 byte"));
        }
        if let Some(m) = max_file_bytes {
            self.settings.max_file_bytes = m;
        }
        if let Some(a) = auto_accept_bytes {
            self.settings.auto_accept_bytes = a;
        }
        self.writes.push(Write::put(SETTINGS_KEY, &self.settings));
        self.flush()
    }

    /// The user's own file limits: (largest file, accepted without asking), `None` for the
    /// defaults.
    pub fn file_settings(&self) -> (Option<u64>, Option<u64>) {
        (self.settings.max_file_bytes, self.settings.auto_accept_bytes)
    }

    /// What each traffic profile costs and how long its messages take under the directory in
    /// use; `None` before the first document.
    pub fn network_info(&self) -> Option<NetworkInfo> {
        let net = self.network.as_ref()?;
        let params = &net.params;
        let layers = params.mix_layers();
        let mean_delay = Duration::from_millis(u64::from(params.mean_delay_ms()));
        let wire_len = qanat_link::FrameSize::for_packet_len(params.geometry().packet_len()).ok()?.wire_len();
        let cost = |t: TrafficProfile| {
            let rates = t.rates(params);
            let slot = Duration::from_secs_f64(1.0 / rates.payload.max(1e-6));
            ProfileCost {
                rates,
                bytes_per_day: t.idle_bytes_per_day(params, wire_len),
                expected_delay: slot * 2 + mean_delay * layers as u32,
            }
        };
        Some(NetworkInfo {
            epoch: net.view.topology.epoch,
            epoch_period: Duration::from_millis(params.epoch_period().as_millis()),
            layers,
            mean_delay,
            standard: cost(TrafficProfile::Standard),
            metered: cost(TrafficProfile::Metered),
        })
    }
}
