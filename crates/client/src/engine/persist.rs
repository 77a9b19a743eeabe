//! Opening a profile and saving to it: the settings and their format (a profile of format 2 is
//! upgraded first), what is read back at start, and the one transaction in which every change is
//! written before anything that depends on it leaves. What each row holds, and its version, is in
//! the module `rows`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use qanat_mixnet::UnixMicros;
use qanat_packet::{MailboxId, NodeId};
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::gateway::MailboxAccess;
use crate::invite::{self, InviteError};
use crate::mls::Conversation;
use crate::store::{Profile, Transaction};
use qanat_mixnet::sending::acks::AckQueue;
use qanat_mixnet::sending::seal::SealKey;
use qanat_mixnet::sending::{Inbox, MessageId, Outbox, ResendPolicy, TrafficProfile};

use super::rows::{
    self, Cursor, FIRST_VERSION, FragmentData, GroupInvitationRec, NS_CONV, NS_CURSOR, NS_FRAG,
    NS_GROUP_INVITES, NS_OUT, NS_PARTIAL, NS_RETIRED, NS_SETTINGS, NS_THREAD, OutRec, PartialSince,
    RetiredCredential, Row, SETTINGS_KEY, Settings, Thread, ThreadState, UNVERSIONED_FORMAT, VERSIONED,
    decode, encode,
};
use super::{ENGINE_FORMAT, Engine, EngineConfig, EngineError, EngineStats};

/// One change to write in the next transaction.
pub(super) enum Write {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Del(&'static str, Vec<u8>),
    TakeAnswer([u8; 32], Vec<u8>),
}

impl Write {
    /// Writes `r` under `key`, in its kind's namespace, with its version.
    pub(super) fn put<R: Row>(key: impl Into<Vec<u8>>, r: &R) -> Self {
        Self::Put(R::NS, key.into(), encode(r))
    }
}

impl Engine {
    /// Sets up the client on a new `profile` whose gateway is `gateway`: a home mailbox (loops and
    /// acknowledgements come back there) and the traffic profile.
    pub fn init<R: CryptoRng>(
        profile: &mut Profile,
        gateway: NodeId,
        traffic: TrafficProfile,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        Self::init_with(profile, gateway, traffic, None, None, rng)
    }

    /// [`Engine::init`] with the interface's language and lock timeout (a duress opening gives
    /// the fresh profile those of the one it replaces). A language without a catalogue or a
    /// timeout out of range is left unset (the defaults).
    pub fn init_with<R: CryptoRng>(
        profile: &mut Profile,
        gateway: NodeId,
        traffic: TrafficProfile,
        language: Option<&str>,
        lock_timeout_secs: Option<u32>,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let mut home_mailbox = [0u8; 32];
        let mut home_credential = [0u8; 32];
        rng.fill_bytes(&mut home_mailbox);
        rng.fill_bytes(&mut home_credential);
        let s = Settings {
            format: ENGINE_FORMAT,
            gateway: gateway.0,
            home_mailbox,
            home_credential,
            home_seal: SealKey::random(rng).0,
            traffic: traffic.name().into(),
            language: language.filter(|l| super::LANGUAGES.contains(l)).map(str::to_owned),
            lock_timeout_secs: lock_timeout_secs.filter(|s| super::LOCK_TIMEOUT_SECS.contains(s)),
            max_file_bytes: None,
            auto_accept_bytes: None,
        };
        profile.transaction(|tx| rows::put(tx, SETTINGS_KEY, &s))?;
        Ok(())
    }

    /// Whether `profile` was set up with [`Engine::init`].
    pub fn is_initialized(profile: &Profile) -> Result<bool, EngineError> {
        Ok(profile.get(NS_SETTINGS, SETTINGS_KEY)?.is_some())
    }

    /// The gateway `profile` uses.
    pub fn gateway_of(profile: &Profile) -> Result<NodeId, EngineError> {
        let (s, _) = settings_of(profile)?;
        Ok(NodeId(s.gateway))
    }

    /// The traffic profile `profile` uses.
    pub fn traffic_of(profile: &Profile) -> Result<TrafficProfile, EngineError> {
        let (s, _) = settings_of(profile)?;
        TrafficProfile::from_name(&s.traffic).ok_or(EngineError::Corrupt("traffic profile"))
    }

    /// The interface's settings `profile` keeps.
    pub fn ui_settings_of(profile: &Profile) -> Result<super::UiSettings, EngineError> {
        let (s, _) = settings_of(profile)?;
        Ok(super::UiSettings {
            language: s.language,
            lock_timeout_secs: s.lock_timeout_secs.unwrap_or(super::DEFAULT_LOCK_TIMEOUT_SECS),
        })
    }

    /// Opens the engine on an initialised profile at `now`, resuming every conversation and every
    /// message not yet delivered (a partial message saved without the time of its first fragment
    /// counts from `now`). A profile of format 2 is first upgraded to [`ENGINE_FORMAT`], in one
    /// transaction (see the module `rows`' "Versions").
    pub fn open(mut profile: Profile, config: EngineConfig, now: SystemTime) -> Result<Self, EngineError> {
        let (mut settings, unversioned) = settings_of(&profile)?;
        if unversioned {
            upgrade_from_format_2(&mut profile, &mut settings)?;
        }
        let traffic =
            TrafficProfile::from_name(&settings.traffic).ok_or(EngineError::Corrupt("traffic profile"))?;
        let mut threads = BTreeMap::new();
        for (_, v) in profile.scan(NS_THREAD)? {
            let t: Thread = decode(&v)?;
            threads.insert(t.id, t);
        }
        let mut convs = HashMap::new();
        for (k, v) in profile.scan(NS_CONV)? {
            let id: [u8; 16] =
                k.as_slice().try_into().map_err(|_| EngineError::Corrupt("conversation key"))?;
            convs.insert(id, Conversation::import(&v, &config.mls)?);
        }
        let mut cursors = HashMap::new();
        for (k, v) in profile.scan(NS_CURSOR)? {
            let m = <[u8; 32]>::try_from(k.as_slice()).map_err(|_| EngineError::Corrupt("cursor"))?;
            let Cursor(c) = decode(&v)?;
            cursors.insert(m, c);
        }
        let outbox =
            Outbox::new(ResendPolicy { first: Duration::from_secs(10), max: Duration::from_secs(600) });
        let mut out_recs = HashMap::new();
        let mut pending_out = Vec::new();
        for (k, v) in profile.scan(NS_OUT)? {
            let id: [u8; 16] = k.as_slice().try_into().map_err(|_| EngineError::Corrupt("outbox key"))?;
            let rec: OutRec = decode(&v)?;
            pending_out.push((MessageId(id), rec));
        }
        // Queued again (with their ids) once the first document gives the geometry.
        out_recs.extend(pending_out);
        let mut inbox = Inbox::default();
        let mut since = HashMap::new();
        for (k, v) in profile.scan(NS_PARTIAL)? {
            let id =
                <[u8; 16]>::try_from(k.as_slice()).map_err(|_| EngineError::Corrupt("partial message"))?;
            let PartialSince { first_ms, source } = decode(&v)?;
            since.insert(id, (UnixMicros::from_unix_millis(UnixMillis::from_millis(first_ms)), source));
        }
        let loaded = UnixMicros::from_system_time(now);
        for (k, v) in profile.scan(NS_FRAG)? {
            let (id, index, count) = rows::fragment_of_key(&k).ok_or(EngineError::Corrupt("fragment key"))?;
            let (at, source) = since.get(&id.0).copied().unwrap_or((loaded, [0u8; 16]));
            let FragmentData(data) = decode(&v)?;
            inbox.restore(at, source, id, index, count, data);
        }
        let mut group_invites = BTreeMap::new();
        for (k, v) in profile.scan(NS_GROUP_INVITES)? {
            let token: [u8; 16] =
                k.as_slice().try_into().map_err(|_| EngineError::Corrupt("group invitation"))?;
            group_invites.insert(token, decode::<GroupInvitationRec>(&v)?);
        }
        let mut retired = BTreeMap::new();
        for (k, v) in profile.scan(NS_RETIRED)? {
            let m =
                <[u8; 32]>::try_from(k.as_slice()).map_err(|_| EngineError::Corrupt("retired mailbox"))?;
            let RetiredCredential(c) = decode(&v)?;
            retired.insert(m, c);
        }
        let mut registrations = vec![MailboxAccess {
            mailbox: MailboxId(settings.home_mailbox),
            credential: settings.home_credential,
        }];
        for t in threads.values() {
            if t.state != ThreadState::Left {
                registrations.push(MailboxAccess { mailbox: MailboxId(t.mailbox), credential: t.credential });
                for o in &t.replaced {
                    registrations
                        .push(MailboxAccess { mailbox: MailboxId(o.mailbox), credential: o.credential });
                }
            }
        }
        let mut engine = Self {
            profile,
            config,
            settings,
            traffic,
            threads,
            convs,
            cursors,
            outbox,
            out_recs,
            inbox,
            acks: AckQueue::default(),
            acks_turn: false,
            schedule: None,
            network: None,
            events: VecDeque::new(),
            registrations,
            writes: Vec::new(),
            dirty_convs: Vec::new(),
            stats: EngineStats::default(),
            idle_cost: None,
            retired,
            last_forget: None,
            group_invites,
            files: Default::default(),
        };
        engine.load_files(now)?;
        Ok(engine)
    }

    /// Closes the engine, giving the profile back.
    pub fn into_profile(self) -> Profile {
        self.profile
    }

    pub(super) fn save_thread(&mut self, t: [u8; 16]) {
        if let Some(th) = self.threads.get(&t) {
            self.writes.push(Write::put(t, th));
        }
    }

    /// Writes every pending change in one transaction. Every error it returns is fatal
    /// ([`EngineError::is_fatal`]): the pending changes are gone, so the profile no longer
    /// holds what memory does.
    pub(super) fn flush(&mut self) -> Result<(), EngineError> {
        self.stage_file_writes();
        let mut writes = std::mem::take(&mut self.writes);
        let mut dirty = std::mem::take(&mut self.dirty_convs);
        dirty.sort_unstable();
        dirty.dedup();
        for t in dirty {
            if let Some(c) = self.convs.get(&t) {
                writes.push(Write::Put(NS_CONV, t.to_vec(), c.export()?.to_vec()));
            } else {
                writes.push(Write::Del(NS_CONV, t.to_vec()));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.profile.transaction(|tx: &mut Transaction<'_>| {
            for w in &writes {
                match w {
                    Write::Put(ns, k, v) => tx.put(ns, k, v)?,
                    Write::Del(ns, k) => {
                        tx.delete(ns, k)?;
                    }
                    Write::TakeAnswer(mailbox, bytes) => {
                        // Read and opened just before, in this process: an error other than the
                        // profile's means the saved invitation changed under us. Either way the
                        // transaction's writes are lost: fatal (`EngineError::is_fatal`).
                        invite::take_answer(tx, &MailboxId(*mailbox), bytes).map_err(|e| match e {
                            InviteError::Store(e) => EngineError::Store(e),
                            _ => EngineError::Corrupt("a pending invitation changed under its answer"),
                        })?;
                    }
                }
            }
            Ok::<_, EngineError>(())
        })
    }
}

/// The settings of `profile`, and whether it is of format 2 (its rows without versions, to be
/// upgraded); any other format but [`ENGINE_FORMAT`] is an error that says which.
fn settings_of(profile: &Profile) -> Result<(Settings, bool), EngineError> {
    let raw = profile.get(NS_SETTINGS, SETTINGS_KEY)?.ok_or(EngineError::NotInitialized)?;
    if raw.first() == Some(&b'{') {
        // Before row versions: the record's JSON alone.
        let s: Settings =
            serde_json::from_slice(&raw).map_err(|_| EngineError::Corrupt("client settings"))?;
        return match s.format {
            UNVERSIONED_FORMAT => Ok((s, true)),
            f if f < UNVERSIONED_FORMAT => Err(EngineError::Format(f)),
            _ => Err(EngineError::Corrupt("client settings of a later format without a version")),
        };
    }
    let s: Settings = decode(&raw)?;
    if s.format > ENGINE_FORMAT {
        return Err(EngineError::NewerFormat { what: "client state", found: s.format, known: ENGINE_FORMAT });
    }
    if s.format < ENGINE_FORMAT {
        return Err(EngineError::Corrupt("client settings of an earlier format with a version"));
    }
    Ok((s, false))
}

/// Brings a profile of format 2 to [`ENGINE_FORMAT`] in one transaction: every row of the
/// engine's own kinds gets [`FIRST_VERSION`] in front (whose body is the format 2 value, byte for
/// byte), and the settings say the new format. Either all of it is saved or nothing.
fn upgrade_from_format_2(profile: &mut Profile, settings: &mut Settings) -> Result<(), EngineError> {
    let mut upgraded = settings.clone();
    upgraded.format = ENGINE_FORMAT;
    profile.transaction(|tx| {
        for ns in VERSIONED.into_iter().filter(|ns| *ns != NS_SETTINGS) {
            for (k, v) in tx.scan(ns)? {
                let mut row = Vec::with_capacity(1 + v.len());
                row.push(FIRST_VERSION);
                row.extend_from_slice(&v);
                tx.put(ns, &k, &row)?;
            }
        }
        rows::put(tx, SETTINGS_KEY, &upgraded)
    })?;
    *settings = upgraded;
    Ok(())
}
