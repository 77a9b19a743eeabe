//! A conversation's public face: creating it, the user's operations, incoming messages, time,
//! and saving it.

use std::time::SystemTime;

use openmls::prelude::*;
use qanat_pki::UnixMillis;
use zeroize::Zeroizing;

use super::commit::refused_by_group;
use super::config::create_config;
use super::error::{internal, rejected};
use super::provider::{Provider, new_identity, parse_key_package, read_signer, wire};
use super::state::{Intent, MetaIn, MetaOut, State};
use super::{
    Config, Conversation, ConversationId, Event, MemberId, MlsError, Outgoing, OutgoingKind, Output, blob,
    duration_ms,
};

impl Conversation {
    /// A new conversation with this member alone in it, under a fresh signature key.
    pub fn create(config: &Config) -> Result<Self, MlsError> {
        let provider = Provider::default();
        let (signer, credential) = new_identity(&provider)?;
        let id: [u8; 32] = provider.rand().random_array().map_err(internal)?;
        let group = MlsGroup::new_with_group_id(
            &provider,
            &signer,
            &create_config(config),
            GroupId::from_slice(&id),
            credential,
        )
        .map_err(internal)?;
        Ok(Self { provider, signer, group, config: config.clone(), state: State::default() })
    }

    /// The conversation's id.
    pub fn id(&self) -> ConversationId {
        ConversationId::of_group(self.group.group_id())
    }

    /// This member's id in this conversation.
    pub fn own_id(&self) -> MemberId {
        MemberId::of_signer(&self.signer)
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// A value all members at the same epoch share (and that differs between branches): compare it
    /// out of band to detect an active attacker, or in tests to check convergence.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    /// Whether this member is still in the conversation.
    pub fn is_active(&self) -> bool {
        self.group.is_active()
    }

    /// The members at the current epoch, this member included, in leaf order.
    pub fn members(&self) -> Vec<MemberId> {
        self.group.members().filter_map(|m| MemberId::of_member(&m).ok()).collect()
    }

    pub(super) fn others(&self) -> Vec<MemberId> {
        let own = self.own_id();
        self.members().into_iter().filter(|m| *m != own).collect()
    }

    pub(super) fn leaf_of(&self, member: &MemberId) -> Option<LeafNodeIndex> {
        self.group.members().find(|m| m.signature_key.as_slice() == member.as_bytes()).map(|m| m.index)
    }

    pub(super) fn member_at(&self, leaf: u32) -> Option<MemberId> {
        self.group.member_at(LeafNodeIndex::new(leaf)).and_then(|m| MemberId::of_member(&m).ok())
    }

    /// Adds the owner of `key_package` (from [`PendingJoin::new`](super::PendingJoin::new)). The Welcome for it is sent
    /// once this member's commit wins.
    ///
    /// A KeyPackage comes from someone else (an invitation's answer, a contact joining a group):
    /// one that verifies may still be one no commit can take (a leaf whose capabilities leave out
    /// the ciphersuite, keys that another member's already use). It is refused here
    /// ([`MlsError::Rejected`]) by building, and throwing away, a commit that adds it; one that
    /// only a later commit finds it cannot take (next to another newcomer's) is left out of that
    /// commit and reported ([`Event::AddRefused`]). Either way it is the KeyPackage's fault, never
    /// an [`MlsError::Internal`].
    pub fn add(&mut self, key_package: &[u8], now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        let kp = parse_key_package(self.provider.crypto(), key_package)?;
        match self.try_commit(vec![kp], &[]) {
            Ok(()) => {}
            Err(e) if refused_by_group(&e) => return Err(rejected(e)),
            Err(e) => return Err(internal(e)),
        }
        self.state.queued.push(Intent::Add(key_package.to_vec()));
        self.poll(now)
    }

    /// Removes a member.
    pub fn remove(&mut self, member: &MemberId, now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        if self.leaf_of(member).is_none() {
            return Err(MlsError::UnknownMember);
        }
        if *member == self.own_id() {
            return self.leave(now);
        }
        self.state.queued.push(Intent::Remove(*member));
        self.poll(now)
    }

    /// Refreshes this member's keys (post-compromise security).
    pub fn update(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        self.state.queued.push(Intent::Update);
        self.poll(now)
    }

    /// Leaves the conversation: asks the others to remove this member. [`Event::Removed`] follows
    /// when one of them has.
    pub fn leave(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        self.state.leaving = true;
        self.state.queued.clear();
        let mut out = self.poll(now)?;
        if self.others().is_empty() {
            self.deactivate(&mut out);
        } else if self.group.pending_commit().is_none() {
            self.send_leave(&mut out)?;
        }
        Ok(out)
    }

    pub(super) fn send_leave(&mut self, out: &mut Output) -> Result<(), MlsError> {
        let message = self.group.leave_group(&self.provider, &self.signer).map_err(internal)?;
        out.outgoing.push(Outgoing {
            kind: OutgoingKind::Proposal,
            to: self.others(),
            bytes: wire(&message)?,
        });
        Ok(())
    }

    pub(super) fn deactivate(&mut self, out: &mut Output) {
        self.state = State { leaving: self.state.leaving, ..State::default() };
        out.events.push(Event::Removed);
    }

    /// Whether this member may still send (in the group, and not leaving it).
    pub fn can_send(&self) -> bool {
        self.ensure_member().is_ok()
    }

    fn ensure_member(&self) -> Result<(), MlsError> {
        if self.group.is_active() && !self.state.leaving { Ok(()) } else { Err(MlsError::NotMember) }
    }

    /// Encrypts a message for the other members.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<Outgoing, MlsError> {
        self.ensure_member()?;
        let message = self.group.create_message(&self.provider, &self.signer, plaintext).map_err(internal)?;
        Ok(Outgoing { kind: OutgoingKind::Application, to: self.others(), bytes: wire(&message)? })
    }

    /// Handles one incoming message of this conversation.
    pub fn receive(&mut self, message: &[u8], now: SystemTime) -> Result<Output, MlsError> {
        let mut out = Output::default();
        self.receive_one(message, UnixMillis::from_system_time(now).as_millis(), &mut out)?;
        self.poll_into(UnixMillis::from_system_time(now).as_millis(), &mut out)?;
        Ok(out)
    }

    /// Lets time pass: decides the current epoch once its window is over, commits leaves whose
    /// designated member has not. Call it at [`Conversation::next_deadline`].
    pub fn tick(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        self.poll(now)
    }

    /// When [`Conversation::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let window = duration_ms(self.config.decision_window);
        let fallback = duration_ms(self.config.leave_fallback);
        let decide = self.state.window_start_ms.map(|s| s.saturating_add(window));
        let leave = (self.state.window_start_ms.is_none() && self.group.is_active() && !self.state.leaving)
            .then(|| self.state.leave_requests.values().min().map(|s| s.saturating_add(fallback)))
            .flatten();
        let at = decide.into_iter().chain(leave).min()?;
        Some(UnixMillis::from_millis(at).to_system_time())
    }

    fn poll(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        let mut out = Output::default();
        self.poll_into(UnixMillis::from_system_time(now).as_millis(), &mut out)?;
        Ok(out)
    }

    fn poll_into(&mut self, now: u64, out: &mut Output) -> Result<(), MlsError> {
        // Each round merges one epoch; catching up after days offline may take many.
        loop {
            self.maybe_commit(now, out)?;
            if !self.decide(now, out)? {
                return Ok(());
            }
        }
    }

    /// The whole state of the conversation, to save (secret: store it encrypted).
    pub fn export(&self) -> Result<Zeroizing<Vec<u8>>, MlsError> {
        let signer = self.signer.to_public_vec();
        let meta =
            MetaOut { group_id: self.group.group_id().as_slice(), signer: &signer, state: &self.state };
        let meta = Zeroizing::new(serde_json::to_vec(&meta).map_err(internal)?);
        blob::encode(blob::Kind::Conversation, self.provider.entries()?, &meta).map(Zeroizing::new)
    }

    /// Resumes from [`Conversation::export`].
    pub fn import(saved: &[u8], config: &Config) -> Result<Self, MlsError> {
        let (entries, meta) = blob::decode(blob::Kind::Conversation, saved)?;
        let meta: MetaIn =
            serde_json::from_slice(meta).map_err(|_| MlsError::CorruptState("unreadable metadata"))?;
        let provider = Provider::from_entries(entries)?;
        let signer = read_signer(&provider, &meta.signer)?;
        let group = MlsGroup::load(provider.storage(), &GroupId::from_slice(&meta.group_id))
            .map_err(|_| MlsError::CorruptState("unreadable group"))?
            .ok_or(MlsError::CorruptState("group missing"))?;
        Ok(Self { provider, signer, group, config: config.clone(), state: meta.state })
    }
}
