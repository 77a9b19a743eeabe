//! Groups: creating one, adding a contact (GROUP_INVITE, GROUP_JOIN, GROUP_WELCOME over the
//! contact's conversation), removing a member, leaving, and the invitations that wait for the
//! user's answer (see the module `engine`'s "Groups").

use std::time::{Duration, SystemTime};

use qanat_packet::MailboxId;
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::gateway::MailboxAccess;
use crate::mls::{self, Conversation, Event as MlsEvent, MemberId, PendingJoin};

use super::persist::Write;
use super::rows::{GroupInvitationRec, Kind, NS_GROUP_INVITES, NS_JOIN, Recipient, RouteRec, ThreadState};
use super::wire::{Content, Outer, RouteEntry};
use super::{
    Engine, EngineError, EngineEvent, GroupInvitationInfo, MAX_LOCAL_NAME, check_name, hex, unhex32,
};

/// At most this many group invitations from one contact wait for the user's answer (more are
/// dropped, and counted in [`EngineStats::rejected`]).
///
/// [`EngineStats::rejected`]: super::EngineStats::rejected
pub const MAX_GROUP_INVITATIONS_PER_CONTACT: usize = 8;

/// At most this many group invitations wait in all.
pub const MAX_GROUP_INVITATIONS: usize = 64;

/// A group invitation not answered in this long is dropped.
pub const GROUP_INVITATION_TTL: Duration = Duration::from_secs(14 * 86_400);

impl Engine {
    /// Creates a group with only us in it, called `name` here.
    pub fn create_group<R: CryptoRng>(&mut self, name: &str, rng: &mut R) -> Result<(), EngineError> {
        check_name(name)?;
        if self.name_used(name) {
            return Err(EngineError::NameTaken(name.into()));
        }
        let conv = Conversation::create(&self.config.mls)?;
        let thread = self.new_thread(name.into(), Kind::Group, ThreadState::Active, rng);
        let id = thread.id;
        self.registrations
            .push(MailboxAccess { mailbox: MailboxId(thread.mailbox), credential: thread.credential });
        self.writes.push(Write::put(id, &thread));
        self.threads.insert(id, thread);
        self.convs.insert(id, conv);
        self.dirty_convs.push(id);
        self.flush()
    }

    /// Adds the contact `contact` to the group `group` (it takes a round trip with the contact,
    /// then the decision window of the add).
    pub fn group_add<R: CryptoRng>(
        &mut self,
        group: &str,
        contact: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let g = self.thread_by_name(group)?;
        let c = self.thread_by_name(contact)?;
        self.require(g, Kind::Group)?;
        self.require(c, Kind::Contact)?;
        let mut token = [0u8; 16];
        rng.fill_bytes(&mut token);
        if let Some(t) = self.threads.get_mut(&g) {
            t.pending_adds.insert(hex(&token), c);
        }
        self.save_thread(g);
        self.send_content(c, &Content::GroupInvite { token, name: group.into() }, None, now, rng)?;
        self.flush()
    }

    /// Removes a member (a contact name or a label shown by [`Engine::members`]) from a group.
    pub fn group_remove<R: CryptoRng>(
        &mut self,
        group: &str,
        member: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let g = self.thread_by_name(group)?;
        self.require(g, Kind::Group)?;
        let id = self
            .member_by_label(g, member)
            .ok_or_else(|| EngineError::UnknownMember(group.into(), member.into()))?;
        let conv = self.convs.get_mut(&g).ok_or(EngineError::NotReady(group.into(), "no conversation"))?;
        let out = conv.remove(&id, now)?;
        self.dirty_convs.push(g);
        self.dispatch(g, out, now, rng)?;
        self.flush()
    }

    /// Leaves a group.
    pub fn group_leave<R: CryptoRng>(
        &mut self,
        group: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let g = self.thread_by_name(group)?;
        self.require(g, Kind::Group)?;
        let conv = self.convs.get_mut(&g).ok_or(EngineError::NotReady(group.into(), "no conversation"))?;
        let out = conv.leave(now)?;
        self.dirty_convs.push(g);
        self.dispatch(g, out, now, rng)?;
        self.flush()
    }

    /// The members of a group (or contact conversation) other than us: labels.
    pub fn members(&self, name: &str) -> Result<Vec<String>, EngineError> {
        let t = self.thread_by_name(name)?;
        Ok(self.member_labels(t))
    }

    /// The contacts invited into a group who have not joined it yet (they may never: a
    /// declined invitation is not answered), by name, each once.
    pub fn invited(&self, name: &str) -> Result<Vec<String>, EngineError> {
        let t = self.thread_by_name(name)?;
        let Some(th) = self.threads.get(&t) else { return Ok(Vec::new()) };
        let members = self.member_labels(t);
        let mut names: Vec<String> = th
            .pending_adds
            .values()
            .filter_map(|c| self.threads.get(c).map(|c| c.name.clone()))
            .filter(|n| !members.contains(n))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub(super) fn member_labels(&self, t: [u8; 16]) -> Vec<String> {
        let Some(conv) = self.convs.get(&t) else { return Vec::new() };
        let own = conv.own_id();
        conv.members().into_iter().filter(|m| *m != own).map(|m| self.label(t, &m)).collect()
    }

    pub(super) fn label(&self, t: [u8; 16], m: &MemberId) -> String {
        let h = hex(m.as_bytes());
        let Some(th) = self.threads.get(&t) else { return h[..8].to_owned() };
        if th.kind == Kind::Contact {
            return th.name.clone();
        }
        th.labels.get(&h).cloned().unwrap_or_else(|| format!("member-{}", &h[..8]))
    }

    pub(super) fn member_by_label(&self, t: [u8; 16], label: &str) -> Option<MemberId> {
        let conv = self.convs.get(&t)?;
        let own = conv.own_id();
        let members: Vec<MemberId> = conv.members().into_iter().filter(|m| *m != own).collect();
        if let Some(m) = members.iter().find(|m| self.label(t, m) == label) {
            return Some(*m);
        }
        let prefix = label.strip_prefix("member-").unwrap_or(label);
        let mut hits = members.iter().filter(|m| prefix.len() >= 4 && hex(m.as_bytes()).starts_with(prefix));
        let first = hits.next()?;
        hits.next().is_none().then_some(*first)
    }

    pub(super) fn deliver_welcome<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        m: &MemberId,
        welcome: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(th) = self.threads.get(&t) else { return Ok(()) };
        let h = hex(m.as_bytes());
        if th.kind == Kind::Contact {
            if let Some(route) = th.roster.get(&h).copied() {
                let to = Recipient { thread: t, member: *m.as_bytes() };
                self.queue_out(route, Some(to), Outer::Welcome(welcome.to_vec()).encode(), None, false, rng);
            }
            return Ok(());
        }
        let Some((contact, token)) = th.welcome_to.get(&h).copied() else { return Ok(()) };
        let Some(route) = th.roster.get(&h).copied() else { return Ok(()) };
        let name = th.name.clone();
        let conv = self.convs.get(&t).ok_or(EngineError::Corrupt("conversation"))?;
        let own = conv.own_id();
        let mut roster: Vec<RouteEntry> =
            th.roster.iter().filter_map(|(k, r)| Some(r.entry(unhex32(k)?))).collect();
        roster.push(RouteEntry {
            member: *own.as_bytes(),
            gateway: self.settings.gateway,
            mailbox: th.mailbox,
            seal: th.seal,
        });
        let content = Content::GroupWelcome { token, name, welcome: welcome.to_vec(), roster };
        if self.threads.get(&contact).is_some_and(|c| c.state == ThreadState::Active)
            && self.convs.get(&contact).is_some_and(Conversation::can_send)
        {
            match self.send_content(contact, &content, None, now, rng) {
                // A group with more members than a GROUP_WELCOME lists (its Welcome is far too
                // long for the network by then anyway): as for any message the network cannot
                // carry (`queue_out`), only its recipient misses it, counted, and the rest goes on.
                Err(EngineError::TooLong(e)) => {
                    tracing::warn!("a group's welcome cannot be sent: {e}");
                    self.stats.too_long += 1;
                }
                r => {
                    r?;
                }
            }
        }
        if let Some(th) = self.threads.get_mut(&t) {
            th.welcome_to.remove(&h);
        }
        self.save_thread(t);
        // Tell the group where the newcomer receives, unless we are leaving it (our commit that
        // adds the newcomer won after we asked to leave): then the newcomer's own ROUTE, sent as
        // it joins, tells them.
        if self.convs.get(&t).is_some_and(Conversation::can_send) {
            let announce = Content::Route(route.entry(*m.as_bytes()));
            self.send_content(t, &announce, None, now, rng)?;
        }
        Ok(())
    }

    /// A contact's GROUP_JOIN over contact thread `t`: its KeyPackage and `route` for the group
    /// it was invited into with `token`. The add is committed (its Welcome leaves once it wins).
    pub(super) fn on_group_join<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        token: [u8; 16],
        route: RouteRec,
        key_package: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let key = hex(&token);
        let Some(g) = self.threads.values().find(|g| g.pending_adds.get(&key) == Some(&t)).map(|g| g.id)
        else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let Ok(member) = mls::key_package_member(key_package) else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let contact_name = self.threads.get(&t).map(|c| c.name.clone()).unwrap_or_default();
        let Some(conv) = self.convs.get_mut(&g) else { return Ok(()) };
        let added = conv.add(key_package, now);
        let Some(out) = self.or_rejected(added)? else { return Ok(()) };
        self.dirty_convs.push(g);
        if let Some(th) = self.threads.get_mut(&g) {
            let h = hex(member.as_bytes());
            th.pending_adds.remove(&key);
            th.roster.insert(h.clone(), route);
            th.labels.insert(h.clone(), contact_name);
            th.welcome_to.insert(h, (t, token));
        }
        self.save_thread(g);
        self.dispatch(g, out, now, rng)
    }

    /// A contact's GROUP_WELCOME over contact thread `t` for the group we asked to join with
    /// `token`: we join it, with the routes of its members in `roster`.
    pub(super) fn on_group_welcome<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        token: [u8; 16],
        welcome: &[u8],
        roster: &[RouteEntry],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(g) = self
            .threads
            .values()
            .find(|g| g.join_token == Some(token) && g.state == ThreadState::Joining)
            .map(|g| g.id)
        else {
            self.stats.rejected += 1;
            return Ok(());
        };
        let Some((conv, out)) = self.join_from_welcome(g, welcome)? else { return Ok(()) };
        let own = *conv.own_id().as_bytes();
        let epoch = conv.epoch();
        let committer = out.events.iter().find_map(|e| match e {
            MlsEvent::EpochChanged { committer, .. } => Some(*committer),
            _ => None,
        });
        let contact_name = self.threads.get(&t).map(|c| c.name.clone()).unwrap_or_default();
        let name = {
            let Some(th) = self.threads.get_mut(&g) else { return Ok(()) };
            for r in roster.iter().filter(|r| r.member != own && r.seal != [0u8; 32]) {
                th.roster.insert(hex(&r.member), RouteRec::of_entry(r));
            }
            if let Some(c) = committer {
                th.labels.insert(hex(c.as_bytes()), contact_name);
            }
            th.state = ThreadState::Active;
            th.join_epoch = epoch;
            th.join_token = None;
            th.name.clone()
        };
        self.keep_joined(g, conv);
        self.events.push_back(EngineEvent::GroupJoined { name });
        self.replay_early(g, now, rng)?;
        // We speak for ourselves: our own ROUTE is the one the members keep, whatever the
        // adder told them. (Unless what waited for the Welcome already took us out.)
        let Some(th) = self.threads.get(&g) else { return Ok(()) };
        if !self.convs.get(&g).is_some_and(Conversation::can_send) {
            return Ok(());
        }
        let announce = Content::Route(RouteEntry {
            member: own,
            gateway: self.settings.gateway,
            mailbox: th.mailbox,
            seal: th.seal,
        });
        self.send_content(g, &announce, None, now, rng)?;
        Ok(())
    }

    /// A contact invites us into a group: kept for the user's answer, within bounds.
    pub(super) fn on_group_invite(
        &mut self,
        contact: [u8; 16],
        token: [u8; 16],
        name: &str,
        now: SystemTime,
    ) {
        if self.group_invites.contains_key(&token)
            || self.threads.values().any(|g| g.join_token == Some(token))
        {
            return;
        }
        let from_contact = self.group_invites.values().filter(|i| i.contact == contact).count();
        if from_contact >= MAX_GROUP_INVITATIONS_PER_CONTACT
            || self.group_invites.len() >= MAX_GROUP_INVITATIONS
        {
            self.stats.rejected += 1;
            return;
        }
        let name: String = name.chars().filter(|c| !c.is_control()).take(MAX_LOCAL_NAME).collect();
        let name = if name.trim().is_empty() { "group".to_owned() } else { name.trim().to_owned() };
        let rec = GroupInvitationRec {
            contact,
            name: name.clone(),
            received_ms: UnixMillis::from_system_time(now).as_millis(),
        };
        self.writes.push(Write::put(token, &rec));
        self.group_invites.insert(token, rec);
        let from = self.threads.get(&contact).map(|c| c.name.clone()).unwrap_or_default();
        self.events.push_back(EngineEvent::GroupInvitation { id: hex(&token), from, group: name });
    }

    /// The group invitations waiting for the user's answer, oldest first.
    pub fn group_invitations(&self) -> Vec<GroupInvitationInfo> {
        let mut v: Vec<GroupInvitationInfo> = self
            .group_invites
            .iter()
            .map(|(token, r)| GroupInvitationInfo {
                id: hex(token),
                from: self.threads.get(&r.contact).map(|c| c.name.clone()).unwrap_or_default(),
                group: r.name.clone(),
                received_at: UnixMillis::from_millis(r.received_ms).to_system_time(),
            })
            .collect();
        v.sort_by_key(|i| i.received_at);
        v
    }

    pub(super) fn group_invitation(&self, id: &str) -> Result<[u8; 16], EngineError> {
        let id = id.trim().to_ascii_lowercase();
        let mut found = self.group_invites.keys().filter(|t| !id.is_empty() && hex(&t[..]).starts_with(&id));
        match (found.next(), found.next()) {
            (Some(t), None) => Ok(*t),
            _ => Err(EngineError::UnknownInvitation(id)),
        }
    }

    /// Accepts group invitation `id` (or a unique prefix of it): joins the group under `name`
    /// (the suggested name if `None`, with a number if it is taken). Returns the local name.
    pub fn accept_group_invitation<R: CryptoRng>(
        &mut self,
        id: &str,
        name: Option<&str>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<String, EngineError> {
        let token = self.group_invitation(id)?;
        let Some(rec) = self.group_invites.get(&token).cloned() else {
            return Err(EngineError::UnknownInvitation(id.into()));
        };
        let contact_name = self.threads.get(&rec.contact).map(|c| c.name.clone()).unwrap_or_default();
        if self.threads.get(&rec.contact).is_none_or(|c| c.state != ThreadState::Active) {
            return Err(EngineError::NotReady(contact_name, "the contact who invited you is not active"));
        }
        let local = match name {
            Some(n) => {
                check_name(n)?;
                if self.name_used(n) {
                    return Err(EngineError::NameTaken(n.into()));
                }
                n.to_owned()
            }
            None => {
                // The suggested name if free, else with a number.
                let base: String = rec.name.chars().take(MAX_LOCAL_NAME - 4).collect();
                let mut local = base.clone();
                let mut i = 2;
                while self.name_used(&local) {
                    local = format!("{base}-{i}");
                    i += 1;
                }
                local
            }
        };
        let (join, key_package) = PendingJoin::new()?;
        self.join_group_as(token, rec.contact, local, now, rng, &join, key_package)
    }

    /// Joins the group of invitation `token` from `contact` as `local`, with the conversation's
    /// identity `join` and its KeyPackage made by the caller (`attacks` hands in one of its own).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn join_group_as<R: CryptoRng>(
        &mut self,
        token: [u8; 16],
        contact: [u8; 16],
        local: String,
        now: SystemTime,
        rng: &mut R,
        join: &PendingJoin,
        key_package: Vec<u8>,
    ) -> Result<String, EngineError> {
        let mut g = self.new_thread(local.clone(), Kind::Group, ThreadState::Joining, rng);
        g.join_token = Some(token);
        let content = Content::GroupJoin {
            token,
            gateway: self.settings.gateway,
            mailbox: g.mailbox,
            seal: g.seal,
            key_package,
        };
        self.registrations.push(MailboxAccess { mailbox: MailboxId(g.mailbox), credential: g.credential });
        self.writes.push(Write::Put(NS_JOIN, g.id.to_vec(), join.export()?.to_vec()));
        self.writes.push(Write::put(g.id, &g));
        self.writes.push(Write::Del(NS_GROUP_INVITES, token.to_vec()));
        self.group_invites.remove(&token);
        self.threads.insert(g.id, g);
        self.send_content(contact, &content, None, now, rng)?;
        self.flush()?;
        Ok(local)
    }

    /// Declines group invitation `id` (or a unique prefix): it is forgotten, and the contact is
    /// told nothing (to them it looks as if it was not answered yet).
    pub fn decline_group_invitation(&mut self, id: &str) -> Result<(), EngineError> {
        let token = self.group_invitation(id)?;
        self.group_invites.remove(&token);
        self.writes.push(Write::Del(NS_GROUP_INVITES, token.to_vec()));
        self.flush()
    }
}
