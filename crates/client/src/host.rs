//! The profile's lifecycle for an interface that outlives it (`qanat app`): create, unlock
//! (real or duress), quit, wipe, change passphrases; and, while the profile is open, the client
//! (`runtime`) whose commands and events it passes on.
//!
//! Requests come as the control protocol's JSON (one object with `cmd`): the lifecycle's
//! ([`HostRequest`]) are answered here, every other one by the running client
//! ([`crate::control::Request`]). Events go out as JSON ([`EventOut`]), plus
//! `{"type":"profile_changed"}` when the profile was replaced (wiped, or a duress opening).
//!
//! # What others learn, what they can make us do
//!
//! - Passphrases arrive in request bodies only, are held as [`Secret`] (zeroized, never
//!   printed), and go to Argon2id on a blocking thread, one unlock at a time (the interface's
//!   server also throttles failures). An error never names what was typed.
//! - A duress passphrase answers exactly as the real one does (`unlocked`), after the profile
//!   was wiped and an empty one created in its place (`crate::open`); the events say only
//!   `profile_changed`, as after a wipe.
//! - The client keeps running while the interface is locked (cover traffic, pulls and
//!   acknowledgements go on: stopping would show the network that the user walked away);
//!   [`HostRequest::Quit`] stops it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use qanat_mixnet::sending::TrafficProfile;
use qanat_network::ClientNetwork;
use qanat_packet::NodeId;
use serde::Deserialize;
use tokio::sync::{Mutex, broadcast};
use zeroize::Zeroizing;

use crate::control::{EventOut, Request, Response};
use crate::engine::{Engine, EngineConfig, LANGUAGES};
use crate::open::{self, OpenError};
use crate::runtime::{self, ClientHandle, RuntimeConfig};
use crate::store::{self, Checked, DuressSettings, KdfParams, Passphrase, Profile, StoreError};

/// A passphrase in a request: zeroized when dropped, never printed.
pub struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    fn passphrase(&self) -> Passphrase {
        Passphrase::new(self.0.as_str())
    }
}

/// The lifecycle's requests.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostRequest {
    /// Whether a profile exists and is open.
    AppState,
    /// The first run: a profile, its gateway and traffic profile, its interface's language.
    Create {
        /// The passphrase.
        passphrase: Secret,
        /// `standard` or `metered`.
        traffic: String,
        /// The gateway's name (default: the network file's first).
        #[serde(default)]
        gateway: Option<String>,
        /// `en`, `fr` or `ar`.
        #[serde(default)]
        language: Option<String>,
    },
    /// Opens the profile and starts its client (or, while it runs, checks the passphrase).
    Unlock {
        /// The passphrase (the real one, or the duress one).
        passphrase: Secret,
    },
    /// Stops the client; its keys leave memory.
    Quit,
    /// Destroys the profile: afterwards nothing in its directory can be decrypted.
    Wipe {
        /// Must be `wipe`.
        confirm: String,
    },
    /// Changes the passphrase (the duress passphrase, if given, is set again under the new salt;
    /// otherwise any duress passphrase is gone).
    ChangePassphrase {
        /// The current passphrase.
        old: Secret,
        /// The new one.
        new: Secret,
        /// The duress passphrase to keep.
        #[serde(default)]
        duress: Option<Secret>,
    },
    /// Sets (or, with none, removes) the duress passphrase.
    SetDuress {
        /// The current passphrase.
        passphrase: Secret,
        /// The duress passphrase.
        #[serde(default)]
        duress: Option<Secret>,
    },
}

/// The commands [`HostRequest`] answers.
pub const HOST_COMMANDS: [&str; 7] =
    ["app_state", "create", "unlock", "quit", "wipe", "change_passphrase", "set_duress"];

/// How the host runs its client.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The profile directory.
    pub dir: PathBuf,
    /// The network.
    pub network: ClientNetwork,
    /// The engine's configuration.
    pub engine: EngineConfig,
    /// The runtime's pull interval (zero: the traffic profile's).
    pub fetch_interval: Duration,
    /// Argon2id parameters of a new profile (`None`: the store's default; tests use weak ones).
    pub kdf: Option<KdfParams>,
    /// Whether the open client also answers the terminal's commands on the profile's control
    /// socket (`HOME/control.sock`, 0600), as `qanat run` does.
    pub serve_socket: bool,
}

enum State {
    None,
    Closed,
    Open(ClientHandle, NodeId),
}

/// The lifecycle of one profile directory, and its client while it is open.
pub struct Host {
    config: HostConfig,
    state: Mutex<State>,
    events: broadcast::Sender<String>,
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::WrongPassphrase { .. } => Response::error_code("wrong passphrase", "wrong_passphrase"),
        StoreError::InUse { .. } => {
            Response::error_code("another Qanat holds this profile (quit it first)", "profile_in_use")
        }
        e => Response::error_code(e.to_string(), "profile"),
    }
}

fn language_code(l: &str) -> u8 {
    LANGUAGES.iter().position(|x| *x == l).map_or(0, |i| i as u8)
}

impl Host {
    /// A host of `config.dir` (whose profile may not exist yet).
    pub fn new(config: HostConfig) -> Arc<Self> {
        let state = if config.dir.join(store::HEADER_FILE).exists() { State::Closed } else { State::None };
        Arc::new(Self { config, state: Mutex::new(state), events: broadcast::channel(4096).0 })
    }

    /// The events from now on, as JSON.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Answers one request given as the control protocol's JSON.
    pub async fn call_json(self: &Arc<Self>, body: &[u8]) -> Vec<u8> {
        #[derive(Deserialize)]
        struct Head {
            cmd: String,
        }
        let bad = |e: serde_json::Error| {
            Response::error_code(
                format!("bad request (line {}, column {})", e.line(), e.column()),
                "bad_request",
            )
        };
        let resp = match serde_json::from_slice::<Head>(body) {
            Err(e) => bad(e),
            Ok(h) if HOST_COMMANDS.contains(&h.cmd.as_str()) => {
                match serde_json::from_slice::<HostRequest>(body) {
                    Ok(r) => self.host(r).await,
                    Err(e) => bad(e),
                }
            }
            Ok(_) => match serde_json::from_slice::<Request>(body) {
                Ok(r) => self.client(r).await,
                Err(e) => bad(e),
            },
        };
        serde_json::to_vec(&resp).unwrap_or_default()
    }

    /// Passes `req` to the running client.
    pub async fn client(&self, req: Request) -> Response {
        match &*self.state.lock().await {
            State::Open(h, _) => h.call(req).await,
            State::Closed => Response::error_code("the profile is locked", "locked"),
            State::None => Response::error_code("there is no profile yet", "no_profile"),
        }
    }

    /// Answers a lifecycle request.
    pub async fn host(self: &Arc<Self>, req: HostRequest) -> Response {
        let mut state = self.state.lock().await;
        match req {
            HostRequest::AppState => Response::State {
                profile: match *state {
                    State::None => "none",
                    State::Closed => "closed",
                    State::Open(..) => "open",
                }
                .into(),
                gateways: self.config.network.gateways.iter().map(|g| g.name.clone()).collect(),
            },
            HostRequest::Create { passphrase, traffic, gateway, language } => {
                if !matches!(*state, State::None) {
                    return Response::error_code("a profile exists already", "profile_exists");
                }
                let Some(traffic) = TrafficProfile::from_name(&traffic) else {
                    return Response::error_code("traffic: standard or metered", "invalid_setting");
                };
                let gws = &self.config.network.gateways;
                let gw = match &gateway {
                    Some(name) => gws.iter().find(|g| g.name == *name),
                    None => gws.first(),
                };
                let Some(gw) = gw.map(|g| g.identity.node_id()) else {
                    return Response::error_code("no such gateway in the network file", "invalid_setting");
                };
                let (dir, kdf) = (self.config.dir.clone(), self.config.kdf);
                let made = tokio::task::spawn_blocking(move || {
                    let p = passphrase.passphrase();
                    let mut profile = match kdf {
                        Some(k) => Profile::create_with(&dir, &p, k)?,
                        None => Profile::create(&dir, &p)?,
                    };
                    Engine::init(&mut profile, gw, traffic, &mut rand::rng())?;
                    Ok::<_, OpenError>(profile)
                })
                .await;
                let profile = match made {
                    Ok(Ok(p)) => p,
                    Ok(Err(OpenError::Store(e))) => return store_error(&e),
                    Ok(Err(e)) => return Response::error_code(e.to_string(), "profile"),
                    Err(_) => return Response::error_code("the profile could not be made", "profile"),
                };
                match self.start(profile, language.as_deref()) {
                    Ok((h, gw)) => {
                        *state = State::Open(h, gw);
                        Response::Ok
                    }
                    Err(r) => *r,
                }
            }
            HostRequest::Unlock { passphrase } => {
                let dir = self.config.dir.clone();
                if let State::Open(..) = &*state {
                    let p = passphrase.passphrase();
                    let checked = tokio::task::spawn_blocking(move || Profile::check(&dir, &p)).await;
                    match checked {
                        Ok(Ok(Checked::Real)) => return Response::Unlocked,
                        Ok(Ok(Checked::Duress(_))) => {
                            // The running client goes first: the opening below wipes its profile.
                            if let State::Open(h, _) = std::mem::replace(&mut *state, State::Closed) {
                                let _ = h.shutdown().await;
                            }
                        }
                        Ok(Err(e)) => return store_error(&e),
                        Err(_) => return Response::error_code("the check failed", "profile"),
                    }
                }
                if matches!(*state, State::None) {
                    return Response::error_code("there is no profile yet", "no_profile");
                }
                let gateways: Vec<_> =
                    self.config.network.gateways.iter().map(|g| g.identity.node_id()).collect();
                let dir = self.config.dir.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    open::open_profile(&dir, &passphrase.passphrase(), &gateways, &mut rand::rng())
                })
                .await;
                let opened = match opened {
                    Ok(Ok(o)) => o,
                    Ok(Err(OpenError::Store(e))) => return store_error(&e),
                    Ok(Err(e)) => return Response::error_code(e.to_string(), "profile"),
                    Err(_) => return Response::error_code("the profile could not be opened", "profile"),
                };
                let duress = opened.duress;
                match self.start(opened.profile, None) {
                    Ok((h, gw)) => {
                        *state = State::Open(h, gw);
                        if duress.is_some() {
                            let _ = self.events.send(r#"{"type":"profile_changed"}"#.into());
                        }
                        Response::Unlocked
                    }
                    Err(r) => *r,
                }
            }
            HostRequest::Quit => {
                if let State::Open(h, _) = std::mem::replace(&mut *state, State::Closed) {
                    let _ = h.shutdown().await;
                } else if matches!(*state, State::Closed) {
                    // Nothing ran.
                } else {
                    *state = State::None;
                }
                Response::Ok
            }
            HostRequest::Wipe { confirm } => {
                if confirm != "wipe" {
                    return Response::error_code("type the word wipe to confirm", "confirm");
                }
                if let State::Open(h, _) = std::mem::replace(&mut *state, State::None) {
                    let _ = h.shutdown().await;
                }
                let dir = self.config.dir.clone();
                match tokio::task::spawn_blocking(move || store::wipe(&dir)).await {
                    Ok(Ok(())) => {
                        let _ = self.events.send(r#"{"type":"profile_changed"}"#.into());
                        Response::Ok
                    }
                    Ok(Err(e)) => store_error(&e),
                    Err(_) => Response::error_code("the wipe failed", "profile"),
                }
            }
            HostRequest::ChangePassphrase { old, new, duress } => {
                self.with_profile(&mut state, old, move |p, settings| {
                    let kdf = p.kdf_params();
                    let d = duress.map(|d| (d.passphrase(), settings));
                    p.change_passphrase(&new.passphrase(), kdf, d.as_ref().map(|(p, s)| (p, *s)))
                })
                .await
            }
            HostRequest::SetDuress { passphrase, duress } => {
                self.with_profile(&mut state, passphrase, move |p, settings| match duress {
                    Some(d) => p.set_duress(&d.passphrase(), settings),
                    None => p.remove_duress(),
                })
                .await
            }
        }
    }

    /// Stops the client, checks `passphrase`, changes the profile with `f` (given the duress
    /// slot's settings of the profile as it is now), and starts the client again.
    async fn with_profile(
        self: &Arc<Self>,
        state: &mut State,
        passphrase: Secret,
        f: impl FnOnce(&mut Profile, DuressSettings) -> Result<(), StoreError> + Send + 'static,
    ) -> Response {
        let State::Open(h, gw) = std::mem::replace(state, State::Closed) else {
            *state = match state {
                State::None => State::None,
                _ => State::Closed,
            };
            return Response::error_code("unlock the profile first", "locked");
        };
        let settings = self.duress_settings(&h, gw).await;
        let profile = match h.shutdown().await {
            Ok(p) => p,
            Err(e) => return Response::error_code(e.to_string(), "profile"),
        };
        let dir = self.config.dir.clone();
        let changed = tokio::task::spawn_blocking(move || {
            let mut profile = profile;
            let r = match Profile::check(&dir, &passphrase.passphrase()) {
                Ok(Checked::Real) => f(&mut profile, settings),
                Ok(Checked::Duress(_)) | Err(StoreError::WrongPassphrase { .. }) => {
                    Err(StoreError::WrongPassphrase { dir })
                }
                Err(e) => Err(e),
            };
            (profile, r)
        })
        .await;
        let Ok((profile, r)) = changed else {
            return Response::error_code("the change failed", "profile");
        };
        match self.start(profile, None) {
            Ok((h, gw)) => *state = State::Open(h, gw),
            Err(resp) => return *resp,
        }
        match r {
            Ok(()) => Response::Ok,
            Err(e) => store_error(&e),
        }
    }

    /// What a duress slot set now keeps: the profile's gateway, traffic, language and lock
    /// timeout.
    async fn duress_settings(&self, h: &ClientHandle, gateway: NodeId) -> DuressSettings {
        let mut s = DuressSettings::default();
        let gws = &self.config.network.gateways;
        s.gateway_index = gws.iter().position(|x| x.identity.node_id() == gateway).map_or(0, |i| i as u16);
        if let Response::Settings { traffic, language, lock_timeout_secs, .. } =
            h.call(Request::Settings).await
        {
            s.traffic =
                open::traffic_code(TrafficProfile::from_name(&traffic).unwrap_or(TrafficProfile::Standard));
            s.language = language.as_deref().map_or(0, language_code);
            s.lock_timeout_secs = lock_timeout_secs;
        }
        s
    }

    /// Starts the client on `profile` (with `language` set, at the first run).
    fn start(
        self: &Arc<Self>,
        profile: Profile,
        language: Option<&str>,
    ) -> Result<(ClientHandle, NodeId), Box<Response>> {
        let gw = Engine::gateway_of(&profile).map_err(|e| Box::new(Response::refused(&e)))?;
        let gateway =
            self.config.network.gateways.iter().find(|g| g.identity.node_id() == gw).cloned().ok_or_else(
                || {
                    Box::new(Response::error_code(
                        "this profile's gateway is not in the network file",
                        "profile",
                    ))
                },
            )?;
        let mut engine = Engine::open(profile, self.config.engine.clone(), SystemTime::now())
            .map_err(|e| Box::new(Response::refused(&e)))?;
        if language.is_some() {
            engine.set_ui_settings(language, None).map_err(|e| Box::new(Response::refused(&e)))?;
        }
        let config = RuntimeConfig {
            network: self.config.network.clone(),
            gateway,
            fetch_interval: self.config.fetch_interval,
        };
        let mut handle = runtime::start(engine, config)
            .map_err(|e| Box::new(Response::error_code(e.to_string(), "profile")))?;
        if self.config.serve_socket
            && handle.serve_socket(&self.config.dir.join(crate::control::SOCKET_FILE)).is_err()
        {
            // The profile stays open for the page; the terminal's commands say no client runs.
            tracing::warn!("the control socket could not be served");
        }
        let mut rx = handle.subscribe();
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        if let Ok(json) = serde_json::to_string(&EventOut::of(&e)) {
                            let _ = events.send(json);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = events.send(r#"{"type":"resync"}"#.into());
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok((handle, gw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::danger;

    fn host(dir: &std::path::Path) -> Arc<Host> {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../qanat/tests/data/configs-1/network.toml");
        let network = ClientNetwork::load(std::path::Path::new(file)).unwrap();
        Host::new(HostConfig {
            dir: dir.join("p"),
            network,
            engine: EngineConfig::default(),
            fetch_interval: Duration::ZERO,
            kdf: Some(danger::weak_kdf_params(8, 1, 1).unwrap()),
            serve_socket: true,
        })
    }

    async fn call(h: &Arc<Host>, json: &str) -> serde_json::Value {
        serde_json::from_slice(&h.call_json(json.as_bytes()).await).unwrap()
    }

    async fn state(h: &Arc<Host>) -> String {
        call(h, r#"{"cmd":"app_state"}"#).await["profile"].as_str().unwrap().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_profile_is_made_locked_unlocked_and_wiped() {
        let dir = tempfile::tempdir().unwrap();
        let h = host(dir.path());
        assert_eq!(state(&h).await, "none");
        let v = call(&h, r#"{"cmd":"app_state"}"#).await;
        assert_eq!(v["gateways"], serde_json::json!(["gw1", "gw2"]));
        assert_eq!(call(&h, r#"{"cmd":"contacts"}"#).await["code"], "no_profile");
        let create = r#"{"cmd":"create","passphrase":"a long passphrase","traffic":"metered","gateway":"gw2","language":"ar"}"#;
        assert_eq!(call(&h, create).await["kind"], "ok");
        assert_eq!(state(&h).await, "open");
        assert_eq!(call(&h, create).await["code"], "profile_exists");
        let s = call(&h, r#"{"cmd":"settings"}"#).await;
        assert_eq!((s["traffic"].as_str(), s["language"].as_str()), (Some("metered"), Some("ar")));
        // The lock screen in front of the running client checks the passphrase only.
        assert_eq!(call(&h, r#"{"cmd":"unlock","passphrase":"wrong"}"#).await["code"], "wrong_passphrase");
        assert_eq!(
            call(&h, r#"{"cmd":"unlock","passphrase":"a long passphrase"}"#).await["kind"],
            "unlocked"
        );
        assert_eq!(state(&h).await, "open");
        // Quit: closed; commands refused; unlock opens it again.
        // The terminal's commands reach the open client, as with `qanat run`, until it quits.
        let socket = dir.path().join("p").join(crate::control::SOCKET_FILE);
        assert!(socket.exists());
        assert_eq!(call(&h, r#"{"cmd":"quit"}"#).await["kind"], "ok");
        assert_eq!(state(&h).await, "closed");
        assert!(!socket.exists());
        assert_eq!(call(&h, r#"{"cmd":"contacts"}"#).await["code"], "locked");
        assert_eq!(call(&h, r#"{"cmd":"unlock","passphrase":"wrong"}"#).await["code"], "wrong_passphrase");
        assert_eq!(
            call(&h, r#"{"cmd":"unlock","passphrase":"a long passphrase"}"#).await["kind"],
            "unlocked"
        );
        assert_eq!(call(&h, r#"{"cmd":"settings"}"#).await["traffic"], "metered");
        // Wipe: asked for the word, then nothing left to open.
        assert_eq!(call(&h, r#"{"cmd":"wipe","confirm":"yes"}"#).await["code"], "confirm");
        let mut events = h.subscribe();
        assert_eq!(call(&h, r#"{"cmd":"wipe","confirm":"wipe"}"#).await["kind"], "ok");
        assert_eq!(state(&h).await, "none");
        assert_eq!(events.recv().await.unwrap(), r#"{"type":"profile_changed"}"#);
        assert!(Profile::check(dir.path().join("p"), &Passphrase::new("a long passphrase")).is_err());
        // Bad requests name a position, never what was sent.
        let v = call(&h, r#"{"cmd":"unlock","passphrase":7}"#).await;
        assert_eq!(v["code"], "bad_request");
        assert!(!v["message"].as_str().unwrap().contains('7'), "{v}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duress_passphrase_opens_an_empty_profile_as_the_real_one_opens_the_real() {
        let dir = tempfile::tempdir().unwrap();
        let h = host(dir.path());
        let create = r#"{"cmd":"create","passphrase":"the real one","traffic":"metered","gateway":"gw2","language":"fr"}"#;
        assert_eq!(call(&h, create).await["kind"], "ok");
        let set = r#"{"cmd":"set_settings","lock_timeout_secs":900}"#;
        assert_eq!(call(&h, set).await["kind"], "ok");
        // A contact waiting for its answer: something the empty profile will not have.
        assert_eq!(call(&h, r#"{"cmd":"contacts"}"#).await["list"], serde_json::json!([]));
        let wrong = r#"{"cmd":"set_duress","passphrase":"not it","duress":"the duress one"}"#;
        assert_eq!(call(&h, wrong).await["code"], "wrong_passphrase");
        let dup = r#"{"cmd":"set_duress","passphrase":"the real one","duress":"the real one"}"#;
        assert_eq!(call(&h, dup).await["kind"], "error");
        let duress = r#"{"cmd":"set_duress","passphrase":"the real one","duress":"the duress one"}"#;
        assert_eq!(call(&h, duress).await["kind"], "ok");
        assert_eq!(state(&h).await, "open");
        // At the lock screen of the running client: the duress passphrase answers as the real one.
        let mut events = h.subscribe();
        let v = call(&h, r#"{"cmd":"unlock","passphrase":"the duress one"}"#).await;
        assert_eq!(v, serde_json::json!({"kind":"unlocked"}));
        assert_eq!(events.recv().await.unwrap(), r#"{"type":"profile_changed"}"#);
        // An empty profile with the old one's settings, whose passphrase is the duress one.
        let s = call(&h, r#"{"cmd":"settings"}"#).await;
        assert_eq!(
            (s["traffic"].as_str(), s["language"].as_str(), s["lock_timeout_secs"].as_u64()),
            (Some("metered"), Some("fr"), Some(900))
        );
        assert_eq!(call(&h, r#"{"cmd":"quit"}"#).await["kind"], "ok");
        assert_eq!(
            call(&h, r#"{"cmd":"unlock","passphrase":"the real one"}"#).await["code"],
            "wrong_passphrase"
        );
        assert_eq!(call(&h, r#"{"cmd":"unlock","passphrase":"the duress one"}"#).await["kind"], "unlocked");
        // Changing the passphrase: the old one no longer opens it.
        let change = r#"{"cmd":"change_passphrase","old":"the duress one","new":"another"}"#;
        assert_eq!(call(&h, change).await["kind"], "ok");
        assert_eq!(call(&h, r#"{"cmd":"quit"}"#).await["kind"], "ok");
        assert_eq!(
            call(&h, r#"{"cmd":"unlock","passphrase":"the duress one"}"#).await["code"],
            "wrong_passphrase"
        );
        assert_eq!(call(&h, r#"{"cmd":"unlock","passphrase":"another"}"#).await["kind"], "unlocked");
        assert_eq!(call(&h, r#"{"cmd":"quit"}"#).await["kind"], "ok");
    }
}
