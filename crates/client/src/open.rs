//! Opening a profile as every front end does: the real passphrase opens it; a duress passphrase
//! destroys it and opens a fresh, empty profile in its place, whose passphrase is the duress one
//! (docs/APP.md §3 "Duress opening"). The command line's commands call [`open_profile`]; the
//! app's host will too, so that all treat a duress passphrase alike.
//!
//! From outside, a duress opening looks like a real one: the same answer, no message, and about
//! the same time (the one Argon2id run was done by the unlock; the wipe and the creation add the
//! time of overwriting the database). The fresh profile has the gateway and traffic profile
//! of when the duress passphrase was set, so it talks to the same gateway at the same rates.

use std::path::Path;

use qanat_mixnet::sending::TrafficProfile;
use qanat_packet::NodeId;
use rand_core::CryptoRng;

use crate::engine::{Engine, EngineError, LANGUAGES};
use crate::store::{DuressSettings, Passphrase, Profile, StoreError, Unlocked};

/// A profile opened by [`open_profile`].
#[derive(Debug)]
pub struct Opened {
    /// The profile, open (after a duress opening: the fresh one, set up by [`Engine::init`]).
    pub profile: Profile,
    /// After a duress opening, the duress slot's settings (already applied to the fresh profile:
    /// gateway, traffic, the interface's language and lock timeout). `None` after a real
    /// opening. A caller shows nothing different either way.
    pub duress: Option<DuressSettings>,
}

/// Why [`open_profile`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The profile could not be opened (wrong passphrase, in use, damaged, …), or the duress
    /// opening's wipe or creation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fresh profile of a duress opening could not be set up.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A duress opening found no gateway to give the fresh profile (the network file lists
    /// none); nothing was changed.
    #[error("the network file lists no gateway")]
    NoGateway,
}

/// Opens the profile in `dir` with `passphrase`. A duress passphrase wipes the profile
/// ([`crate::store::wipe`]'s steps, under the lock the unlock took), creates a fresh one with the
/// key just derived ([`Profile::create_with_kek`]: no second Argon2id run) and sets it up with
/// [`Engine::init`] on the gateway at the slot's position in `gateways` (the network file's
/// gateways, in order; the first if the list has become shorter) and the slot's traffic profile.
pub fn open_profile<R: CryptoRng>(
    dir: &Path,
    passphrase: &Passphrase,
    gateways: &[NodeId],
    rng: &mut R,
) -> Result<Opened, OpenError> {
    let duress = match Profile::unlock(dir, passphrase)? {
        Unlocked::Real(profile) => return Ok(Opened { profile: *profile, duress: None }),
        Unlocked::Duress(d) => d,
    };
    let settings = duress.settings();
    let gateway = gateways
        .get(usize::from(settings.gateway_index))
        .or_else(|| gateways.first())
        .copied()
        .ok_or(OpenError::NoGateway)?;
    let mut profile = duress.wipe_and_create()?;
    let language = LANGUAGES.get(usize::from(settings.language)).copied();
    let traffic = traffic_profile(settings.traffic);
    Engine::init_with(&mut profile, gateway, traffic, language, Some(settings.lock_timeout_secs), rng)?;
    Ok(Opened { profile, duress: Some(settings) })
}

/// The traffic profile a duress slot's code names (an unknown code: standard).
pub fn traffic_profile(code: u8) -> TrafficProfile {
    match code {
        1 => TrafficProfile::Metered,
        _ => TrafficProfile::Standard,
    }
}

/// The code a duress slot keeps for `traffic`.
pub fn traffic_code(traffic: TrafficProfile) -> u8 {
    match traffic {
        TrafficProfile::Standard => 0,
        TrafficProfile::Metered => 1,
    }
}
