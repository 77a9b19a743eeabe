//! Making a contact: the invitation, the answer and the Welcome (see the module `engine`'s
//! "Making a contact").

use std::time::SystemTime;

use qanat_packet::MailboxId;
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::gateway::MailboxAccess;
use crate::invite::{self, Invitation, PendingInvitation};
use crate::mls::{self, Conversation, MemberId, Output, PendingJoin};
use qanat_mixnet::sending::MessageId;
use qanat_mixnet::sending::seal::SealKey;

use super::persist::Write;
use super::rows::{self, Kind, NS_JOIN, OutRec, RouteRec, ThreadState};
use super::wire::Outer;
use super::{Engine, EngineError, EngineEvent, check_name, hex};

impl Engine {
    /// Makes a one-time invitation for a new contact, to be called `name` here.
    pub fn invite<R: CryptoRng>(
        &mut self,
        name: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Invitation, EngineError> {
        check_name(name)?;
        if self.name_used(name) {
            return Err(EngineError::NameTaken(name.into()));
        }
        let gw = self.network()?.own_gateway.clone();
        let validity = self.config.invitation_validity.as_millis() as u64;
        let mut thread = self.new_thread(name.into(), Kind::Contact, ThreadState::Inviting, rng);
        let pending: PendingInvitation = self.profile.transaction(|tx| {
            let p = invite::create(tx, rng, gw, UnixMillis::from_system_time(now), validity)?;
            thread.give_up_at_ms =
                Some(p.invitation().expires_at().as_millis().saturating_add(invite::GRACE_MS));
            thread.mailbox = p.invitation().mailbox().0;
            thread.credential = *p.mailbox_credential();
            thread.seal = p.invitation().seal_key().0;
            rows::put(tx, &thread.id, &thread)?;
            Ok::<_, EngineError>(p)
        })?;
        self.registrations
            .push(MailboxAccess { mailbox: MailboxId(thread.mailbox), credential: thread.credential });
        self.threads.insert(thread.id, thread);
        Ok(pending.invitation().clone())
    }

    /// The invitation made for `name`, a contact still waiting for its answer: to show its link
    /// again (and its expiry).
    pub fn invitation(&mut self, name: &str) -> Result<Invitation, EngineError> {
        let t = self.thread_by_name(name)?;
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        if th.state != ThreadState::Inviting {
            return Err(EngineError::NotReady(name.into(), "it has no invitation waiting for an answer"));
        }
        let mailbox = th.mailbox;
        let pending = self.profile.transaction(|tx| invite::pending(tx))?;
        pending
            .into_iter()
            .find(|p| p.invitation().mailbox().0 == mailbox)
            .map(|p| p.invitation().clone())
            .ok_or(EngineError::NotReady(
                name.into(),
                "its invitation is no longer open (expired or answered)",
            ))
    }

    /// Accepts the invitation `link`; the new contact is called `name` here. The answer leaves
    /// with the next sending slots; [`EngineEvent::ContactReady`] follows the inviter's Welcome.
    pub fn accept<R: CryptoRng>(
        &mut self,
        link: &str,
        name: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        check_name(name)?;
        if self.name_used(name) {
            return Err(EngineError::NameTaken(name.into()));
        }
        // Check the link before anything else (a bad link is reported even without a network)
        // and before making keys for it.
        Invitation::parse(link)?.check_expiry(UnixMillis::from_system_time(now))?;
        self.network()?;
        let (join, key_package) = PendingJoin::new()?;
        self.accept_as(link, name, now, rng, &join, &key_package)
    }

    /// [`Engine::accept`] with the conversation's identity `join` and its KeyPackage made by the
    /// caller (`attacks` hands in one of its own).
    pub(super) fn accept_as<R: CryptoRng>(
        &mut self,
        link: &str,
        name: &str,
        now: SystemTime,
        rng: &mut R,
        join: &PendingJoin,
        key_package: &[u8],
    ) -> Result<(), EngineError> {
        let net = self.network()?;
        let gw = net.own_gateway.clone();
        let geometry = net.sphinx.geometry().clone();
        let join_saved = join.export()?;
        let mut thread = self.new_thread(name.into(), Kind::Contact, ThreadState::Joining, rng);
        let mut out_id = [0u8; 16];
        rng.fill_bytes(&mut out_id);
        let (accepted_mailbox, rec) = self.profile.transaction(|tx| {
            let seal = SealKey(thread.seal);
            let a = invite::accept(tx, rng, link, UnixMillis::from_system_time(now), gw, seal, key_package)?;
            thread.mailbox = a.mailbox.0;
            thread.credential = *a.mailbox_credential;
            let inv = &a.invitation;
            let route = RouteRec {
                gateway: inv.gateway().node_id().0,
                mailbox: inv.mailbox().0,
                seal: inv.seal_key().0,
            };
            thread.peer_route = Some(route);
            let rec = OutRec {
                route,
                bytes: Outer::Answer(a.answer.clone()).encode(),
                history: None,
                to: None,
                commit: false,
                farewell_until_ms: None,
            };
            rows::put(tx, &thread.id, &thread)?;
            tx.put(NS_JOIN, &thread.id, &join_saved)?;
            rows::put(tx, &out_id, &rec)?;
            Ok::<_, EngineError>((a.mailbox, rec))
        })?;
        let _ = accepted_mailbox;
        let reply = MailboxId(self.settings.home_mailbox);
        self.outbox.queue_as(MessageId(out_id), &geometry, rec.route.route(), reply, &rec.bytes)?;
        self.out_recs.insert(MessageId(out_id), rec);
        self.registrations
            .push(MailboxAccess { mailbox: MailboxId(thread.mailbox), credential: thread.credential });
        self.threads.insert(thread.id, thread);
        Ok(())
    }

    pub(super) fn on_answer<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        answer: Vec<u8>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(th) = self.threads.get(&t) else { return Ok(()) };
        let Some(saved) = self.profile.get(invite::NS_PENDING, &th.mailbox)? else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let pending = PendingInvitation::decode(&saved)?;
        let Ok(a) = pending.open_answer(&answer) else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let Ok(member) = mls::key_package_member(&a.key_package) else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let mut conv = Conversation::create(&self.config.mls)?;
        let added = conv.add(&a.key_package, now);
        let Some(out) = self.or_rejected(added)? else { return Ok(()) };
        // Alone in the conversation, the add is decided at once: the accepter is in it, or its
        // KeyPackage was refused.
        if !conv.members().contains(&member) {
            self.stats.rejected += 1;
            return Ok(());
        }
        let mailbox = self.threads.get(&t).map(|th| th.mailbox).unwrap_or_default();
        self.writes.push(Write::TakeAnswer(mailbox, answer));
        let name = {
            let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
            th.state = ThreadState::Active;
            th.roster.insert(
                hex(member.as_bytes()),
                RouteRec { gateway: a.gateway.node_id().0, mailbox: a.mailbox.0, seal: a.seal.0 },
            );
            th.join_epoch = 0;
            th.name.clone()
        };
        self.convs.insert(t, conv);
        self.dirty_convs.push(t);
        self.save_thread(t);
        self.dispatch(t, out, now, rng)?;
        self.events.push_back(EngineEvent::ContactReady { name });
        // The invitation's mailbox and its key (derived from the link) are known to whoever saw
        // the link: the conversation goes on in a fresh mailbox, told inside MLS.
        self.rotate_mailbox(t, true, now, rng)
    }

    pub(super) fn on_contact_welcome<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        welcome: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some((conv, out)) = self.join_from_welcome(t, welcome)? else { return Ok(()) };
        let own = conv.own_id();
        let others: Vec<MemberId> = conv.members().into_iter().filter(|m| *m != own).collect();
        let epoch = conv.epoch();
        let name = {
            let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
            if let (Some(route), [peer]) = (th.peer_route, others.as_slice()) {
                th.roster.insert(hex(peer.as_bytes()), route);
            }
            th.state = ThreadState::Active;
            th.join_epoch = epoch;
            th.name.clone()
        };
        self.keep_joined(t, conv);
        // The join's own output only reports the epoch.
        let _ = out;
        self.events.push_back(EngineEvent::ContactReady { name });
        self.replay_early(t, now, rng)?;
        // Our mailbox and its key travelled in the answer, which whoever saw the invitation link
        // can open: the conversation goes on in a fresh mailbox, told inside MLS.
        self.rotate_mailbox(t, true, now, rng)
    }

    /// Joins thread `t`'s conversation from `welcome`, with the join saved for it (a contact's
    /// or a group's). `None`: no join is waiting, or the Welcome was refused (counted).
    pub(super) fn join_from_welcome(
        &mut self,
        t: [u8; 16],
        welcome: &[u8],
    ) -> Result<Option<(Conversation, Output)>, EngineError> {
        let Some(saved) = self.profile.get(NS_JOIN, &t)? else { return Ok(None) };
        let join = PendingJoin::import(&saved)?;
        let joined = join.join(welcome, &self.config.mls);
        self.or_rejected(joined)
    }

    /// Keeps `conv`, joined by [`Engine::join_from_welcome`], as thread `t`'s conversation (the
    /// thread itself already changed), and drops the join that waited for it.
    pub(super) fn keep_joined(&mut self, t: [u8; 16], conv: Conversation) {
        self.convs.insert(t, conv);
        self.dirty_convs.push(t);
        self.writes.push(Write::Del(NS_JOIN, t.to_vec()));
        self.save_thread(t);
    }
}
