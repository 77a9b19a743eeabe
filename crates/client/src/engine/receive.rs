//! Receiving: items fetched from a mailbox, their reassembly into messages, and what each message
//! does in its conversation (MLS's output, routes, texts in order).

use std::time::SystemTime;

use qanat_mixnet::{MailboxItem, UnixMicros};
use qanat_packet::MailboxId;
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::gateway::Fetched;
use crate::mls::{Conversation, Event as MlsEvent, MemberId, MlsError, OutgoingKind, Output};
use qanat_mixnet::sending::acks::AckGroup;
use qanat_mixnet::sending::seal::{self, SealKey};
use qanat_mixnet::sending::{MessageId, Payload, Received};

use super::mailboxes::MAX_REPLACED;
use super::persist::Write;
use super::rows::{
    Cursor, FragmentData, Kind, NS_FRAG, NS_PARTIAL, NS_SEEN, PartialSince, Recipient, RouteRec, SeenAt,
    ThreadState, fragment_key,
};
use super::wire::{Content, Outer};
use super::{Engine, EngineError, EngineEvent, HistoryEntry, LocalMessageId, hex};

/// Most MLS messages kept for a conversation we are still joining (more wait, unacknowledged,
/// at their senders).
pub const MAX_EARLY: usize = 1_000;

/// Most bytes of them.
pub const MAX_EARLY_BYTES: usize = 16 << 20;

/// Where an incoming mailbox item belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Home,
    Thread([u8; 16]),
}

/// An acknowledgement owed for a fragment, queued once the fragment is saved.
pub(super) struct OwedAck {
    pub(super) group: AckGroup,
    pub(super) surb: Vec<u8>,
    pub(super) message_id: MessageId,
    pub(super) index: u16,
}

impl Engine {
    /// Items fetched from `mailbox`: processes and saves them, and returns the sequence number up
    /// to which the gateway may delete (everything processed is saved).
    pub fn handle_fetched<R: CryptoRng>(
        &mut self,
        mailbox: MailboxId,
        items: Vec<Fetched>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<u64, EngineError> {
        let mailbox = mailbox.0;
        let target = if mailbox == self.settings.home_mailbox {
            Target::Home
        } else if let Some(t) = self
            .threads
            .values()
            .find(|t| t.mailbox == mailbox || t.replaced.iter().any(|o| o.mailbox == mailbox))
        {
            Target::Thread(t.id)
        } else {
            return Ok(0);
        };
        let mut cursor = self.cursors.get(&mailbox).copied().unwrap_or(0);
        let mut acks = Vec::new();
        for f in items {
            if f.seq <= cursor {
                continue;
            }
            cursor = f.seq;
            self.handle_item(target, mailbox, f.item, now, rng, &mut acks)?;
        }
        self.cursors.insert(mailbox, cursor);
        self.writes.push(Write::put(mailbox, &Cursor(cursor)));
        self.flush()?;
        // Only now that the fragments are saved may their acknowledgements leave.
        let t = UnixMicros::from_system_time(now);
        for a in acks {
            self.acks.add(t, a.group, a.surb, a.message_id, a.index);
        }
        self.outbox_events()?;
        Ok(cursor)
    }

    pub(super) fn handle_item<R: CryptoRng>(
        &mut self,
        target: Target,
        mailbox: [u8; 32],
        item: MailboxItem,
        now: SystemTime,
        rng: &mut R,
        acks: &mut Vec<OwedAck>,
    ) -> Result<(), EngineError> {
        let Some(net) = &self.network else { return Ok(()) };
        let g = net.sphinx.geometry().clone();
        if item.body.len() != g.payload_tag_len() + g.forward_payload_len() {
            // An item of another geometry, or of the format before sealing.
            self.stats.malformed += 1;
            return Ok(());
        }
        // An acknowledgement through one of our SURBs (they point at the home mailbox), else
        // something sealed to this mailbox: data, or one of our loops.
        if self.outbox.handle_reply(&net.sphinx, item.id, &item.body) {
            self.stats.acks += 1;
            return Ok(());
        }
        if self.on_file_reply(item.id, &item.body, now) {
            self.stats.acks += 1;
            return Ok(());
        }
        let key = match target {
            Target::Home => SealKey(self.settings.home_seal),
            Target::Thread(t) => match self.threads.get(&t) {
                Some(th) if th.mailbox == mailbox => SealKey(th.seal),
                Some(th) => match th.replaced.iter().find(|o| o.mailbox == mailbox) {
                    Some(o) => SealKey(o.seal),
                    None => return Ok(()),
                },
                None => return Ok(()),
            },
        };
        let Ok(plain) = seal::open(&key, &item.id.0, &item.body) else {
            // Not sealed to this mailbox: the reply to a SURB we no longer wait for (its message
            // was delivered through another), or garbage.
            return Ok(());
        };
        let payload = match Payload::decode(&g, &plain) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return Ok(());
            }
        };
        let payload = match (payload, target) {
            (Payload::Chunk { transfer, block, index, signature, shard }, Target::Thread(t)) => {
                return self.on_chunk(t, transfer, block, index, &signature, &shard, now, rng);
            }
            (Payload::Surbs { transfer, block, round, signature, surb }, Target::Thread(t)) => {
                self.on_surbs(t, mailbox, transfer, block, round, &signature, &surb, now, rng);
                return Ok(());
            }
            (Payload::Chunk { .. } | Payload::Surbs { .. }, Target::Home) => {
                self.stats.shards_refused += 1;
                return Ok(());
            }
            (p, _) => p,
        };
        let Payload::Data { surb, message_id, index, count, data } = payload else {
            self.stats.cover += 1;
            return Ok(());
        };
        let Target::Thread(t) = target else {
            // Data in the home mailbox: nobody was given it.
            self.stats.malformed += 1;
            return Ok(());
        };
        let group = match self.threads.get(&t).map(|th| th.kind) {
            Some(Kind::Contact) => AckGroup::Mailbox(MailboxId(mailbox)),
            _ => AckGroup::Message(message_id),
        };
        let owed = OwedAck { group, surb, message_id, index };
        if self.profile.get(NS_SEEN, &message_id.0)?.is_some() {
            self.stats.duplicates += 1;
            acks.push(owed);
            return Ok(());
        }
        let fkey = fragment_key(message_id, index, count);
        let first = self.inbox.partial_since(&message_id).is_none();
        match self.inbox.handle(UnixMicros::from_system_time(now), t, message_id, index, count, data.clone())
        {
            Received::Partial => {
                if first {
                    let since =
                        PartialSince { first_ms: UnixMillis::from_system_time(now).as_millis(), source: t };
                    self.writes.push(Write::put(message_id.0, &since));
                }
                self.writes.push(Write::put(fkey, &FragmentData(data)));
                acks.push(owed);
            }
            Received::Duplicate => {
                self.stats.duplicates += 1;
                acks.push(owed);
            }
            Received::Refused => self.stats.deferred += 1,
            Received::Message(id, bytes) => {
                let r = self.handle_outer(t, &bytes, now, rng);
                // One whose handling failed part-way (not fatally) is taken as one MLS refuses:
                // counted, acknowledged, and what it changed saved with the rest.
                let taken = self.go_on("a received message", r)?.unwrap_or(true);
                if !taken {
                    // Not taken now: neither kept nor acknowledged; its sender sends the last
                    // fragment again.
                    self.inbox.refuse(id, index);
                    return Ok(());
                }
                self.inbox.commit(id, UnixMicros::from_system_time(now));
                self.forget_fragments(id, count);
                self.writes.push(Write::put(id.0, &SeenAt(UnixMillis::from_system_time(now).as_millis())));
                acks.push(owed);
            }
        }
        Ok(())
    }

    /// Deletes the saved fragments (all `count`) of message `id` and its partial row: it was
    /// delivered, or is given up.
    pub(super) fn forget_fragments(&mut self, id: MessageId, count: u16) {
        for i in 0..count {
            self.writes.push(Write::Del(NS_FRAG, fragment_key(id, i, count)));
        }
        self.writes.push(Write::Del(NS_PARTIAL, id.0.to_vec()));
    }

    pub(super) fn handle_outer<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        bytes: &[u8],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<bool, EngineError> {
        let Ok(outer) = Outer::decode(bytes) else {
            self.stats.malformed += 1;
            return Ok(true);
        };
        let Some(th) = self.threads.get(&t) else { return Ok(true) };
        match (outer, th.state) {
            (Outer::Answer(answer), ThreadState::Inviting) => {
                self.on_answer(t, answer, now, rng).map(|()| true)
            }
            (Outer::Welcome(welcome), ThreadState::Joining) if th.kind == Kind::Contact => {
                self.on_contact_welcome(t, &welcome, now, rng).map(|()| true)
            }
            (Outer::Mls(m), ThreadState::Joining) => {
                let Some(th) = self.threads.get_mut(&t) else { return Ok(true) };
                let held: usize = th.early.iter().map(Vec::len).sum();
                if th.early.len() >= MAX_EARLY || held + m.len() > MAX_EARLY_BYTES {
                    // Not now: unacknowledged, it is sent again.
                    self.stats.deferred += 1;
                    return Ok(false);
                }
                th.early.push(m);
                self.save_thread(t);
                Ok(true)
            }
            (Outer::Mls(m), ThreadState::Active) => {
                let Some(conv) = self.convs.get_mut(&t) else { return Ok(true) };
                match conv.receive(&m, now) {
                    Ok(out) => {
                        self.dirty_convs.push(t);
                        self.dispatch(t, out, now, rng).map(|()| true)
                    }
                    Err(MlsError::Internal(e)) => Err(EngineError::Mls(MlsError::Internal(e))),
                    Err(MlsError::BufferFull) => {
                        self.stats.deferred += 1;
                        Ok(false)
                    }
                    Err(_) => {
                        self.stats.rejected += 1;
                        Ok(true)
                    }
                }
            }
            _ => {
                self.stats.rejected += 1;
                Ok(true)
            }
        }
    }

    /// Handles the messages that arrived before we joined thread `t`.
    pub(super) fn replay_early<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let early = match self.threads.get_mut(&t) {
            Some(th) => std::mem::take(&mut th.early),
            None => return Ok(()),
        };
        if early.is_empty() {
            return Ok(());
        }
        self.save_thread(t);
        for m in early {
            let Some(conv) = self.convs.get_mut(&t) else { return Ok(()) };
            let received = conv.receive(&m, now);
            if let Some(out) = self.or_rejected(received)? {
                self.dirty_convs.push(t);
                self.dispatch(t, out, now, rng)?;
            }
        }
        Ok(())
    }

    /// Carries out what an MLS call produced in thread `t`.
    pub(super) fn dispatch<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        out: Output,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        for o in out.outgoing {
            if o.kind == OutgoingKind::Welcome {
                for m in &o.to {
                    self.deliver_welcome(t, m, &o.bytes, now, rng)?;
                }
                continue;
            }
            for m in &o.to {
                let commit = o.kind == OutgoingKind::Commit;
                self.queue_mls(t, m, Outer::Mls(o.bytes.clone()).encode(), None, commit, rng);
            }
        }
        for e in out.events {
            self.on_mls_event(t, e, now, rng)?;
        }
        Ok(())
    }

    pub(super) fn on_mls_event<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        e: MlsEvent,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        match e {
            MlsEvent::Message { sender, bytes } => match Content::decode(&bytes) {
                Ok(c) => self.on_content(t, sender, c, now, rng),
                Err(_) => {
                    self.stats.malformed += 1;
                    Ok(())
                }
            },
            MlsEvent::EpochChanged { added, removed, .. } => {
                let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                let mut gone = Vec::new();
                for m in &removed {
                    let h = hex(m.as_bytes());
                    th.roster.remove(&h);
                    th.moved_from.remove(&h);
                    let awaiting = th.awaiting.remove(&h).unwrap_or_default();
                    gone.push((Recipient { thread: t, member: *m.as_bytes() }, awaiting));
                }
                let (kind, name) = (th.kind, th.name.clone());
                self.save_thread(t);
                for m in &removed {
                    self.forget_marks(t, Some(m));
                }
                // What waits for those who left would wait for ever: their mailboxes go.
                for (to, awaiting) in gone {
                    self.cancel_to(to, awaiting, now)?;
                    self.files_member_left(t, &to.member, now)?;
                }
                // (Our own removal comes as `Removed`; a commit that removes us may list us here.)
                let own = self.convs.get(&t).map(Conversation::own_id);
                let someone_left = !removed.is_empty() && !removed.iter().any(|m| Some(*m) == own);
                if kind == Kind::Group && (!added.is_empty() || !removed.is_empty()) {
                    let added = added.iter().map(|m| self.label(t, m)).collect();
                    let removed = removed.iter().map(|m| self.label(t, m)).collect();
                    self.events.push_back(EngineEvent::GroupChanged { name, added, removed });
                }
                // Whoever left knows our mailbox and its seal key: a fresh pair, told only to
                // those who stay (we are still a member: our own removal is `Removed`).
                if someone_left {
                    self.rotate_mailbox(t, true, now, rng)?;
                }
                Ok(())
            }
            MlsEvent::AddRefused { member } => {
                // A contact's KeyPackage the group could not take after all: that add is over,
                // and what was kept for the newcomer goes.
                self.stats.rejected += 1;
                let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                let h = hex(member.as_bytes());
                th.welcome_to.remove(&h);
                th.roster.remove(&h);
                th.labels.remove(&h);
                th.moved_from.remove(&h);
                let awaiting = th.awaiting.remove(&h).unwrap_or_default();
                self.save_thread(t);
                self.cancel_to(Recipient { thread: t, member: *member.as_bytes() }, awaiting, now)
            }
            MlsEvent::Removed => {
                let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                th.state = ThreadState::Left;
                th.awaiting.clear();
                th.roster.clear();
                let name = th.name.clone();
                let (mailbox, credential) = (th.mailbox, th.credential);
                let replaced = std::mem::take(&mut th.replaced);
                self.save_thread(t);
                self.retire(mailbox, credential);
                for o in replaced {
                    self.retire(o.mailbox, o.credential);
                }
                // Out of the conversation: its keys go (P7), and the marks of its safety codes
                // with them; the history stays.
                self.forget_marks(t, None);
                self.convs.remove(&t);
                self.dirty_convs.push(t);
                self.events.push_back(EngineEvent::Left { name });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(super) fn on_content<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        sender: MemberId,
        c: Content,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let kind = self.threads.get(&t).map(|th| th.kind);
        match c {
            Content::Text { seq, epoch, prev_epoch, sent_at_ms, text } => {
                self.on_text(t, sender, seq, epoch, prev_epoch, sent_at_ms, text, now);
                Ok(())
            }
            Content::Route(r) if kind.is_some() => {
                // A member's own announcement sets its route; anyone else's (the adder telling
                // the group where a newcomer receives) only fills a route not known yet. So no
                // member can move another's route, or give others a seal key it chose, once the
                // member has spoken for itself. Routes are for current members only, never name
                // one of our own mailboxes, and never go back to a mailbox the member moved away
                // from (an old ROUTE arriving late: MLS takes messages of past epochs).
                let own = sender.as_bytes() == &r.member;
                let h = hex(&r.member);
                let Some(conv) = self.convs.get(&t) else { return Ok(()) };
                let is_self = conv.own_id().as_bytes() == &r.member;
                let is_member = conv.members().iter().any(|m| m.as_bytes() == &r.member);
                let Some(th) = self.threads.get(&t) else { return Ok(()) };
                let previous = th.roster.get(&h).copied();
                let stale = th.moved_from.get(&h).is_some_and(|v| v.contains(&r.mailbox));
                if r.seal == [0u8; 32]
                    || is_self
                    || !is_member
                    || (previous.is_some() && !own)
                    || stale
                    || self.is_own_mailbox(&r.mailbox)
                {
                    self.stats.rejected += 1;
                    return Ok(());
                }
                let route = RouteRec::of_entry(&r);
                let moved = previous.filter(|p| p.mailbox != r.mailbox);
                let waiting = {
                    let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
                    th.roster.insert(h.clone(), route);
                    if let Some(p) = moved {
                        let from = th.moved_from.entry(h.clone()).or_default();
                        from.push(p.mailbox);
                        let over = from.len().saturating_sub(MAX_REPLACED + 1);
                        from.drain(..over);
                    }
                    th.awaiting.remove(&h).unwrap_or_default()
                };
                self.save_thread(t);
                let to = Recipient { thread: t, member: r.member };
                if moved.is_some() {
                    // What waits for its old mailbox goes to the new one: the old one may be
                    // given up before our resends reach it.
                    self.reroute(to, route, now);
                }
                for a in waiting {
                    self.queue_out(route, Some(to), a.bytes, a.history, false, rng);
                }
                Ok(())
            }
            Content::GroupInvite { token, name } if kind == Some(Kind::Contact) => {
                self.on_group_invite(t, token, &name, now);
                Ok(())
            }
            Content::GroupJoin { token, gateway, mailbox, seal, key_package }
                if kind == Some(Kind::Contact) =>
            {
                self.on_group_join(t, token, RouteRec { gateway, mailbox, seal }, &key_package, now, rng)
            }
            Content::GroupWelcome { token, name: _, welcome, roster } if kind == Some(Kind::Contact) => {
                self.on_group_welcome(t, token, &welcome, &roster, now, rng)
            }
            Content::File(offer) if kind.is_some() => self.on_file_offer(t, sender, *offer, now, rng),
            Content::FileStatus { transfer, status } if kind.is_some() => {
                self.on_file_status(t, sender, transfer, status, now)
            }
            _ => {
                self.stats.rejected += 1;
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_text(
        &mut self,
        t: [u8; 16],
        sender: MemberId,
        seq: u64,
        epoch: u64,
        prev_epoch: Option<u64>,
        sent_at_ms: u64,
        text: String,
        now: SystemTime,
    ) {
        if seq == u64::MAX {
            // No sender counts that far; the number after it would not exist. (So every `seq`
            // taken, held or expected next below is at most `u64::MAX - 1`, and `+ 1` fits.)
            self.stats.malformed += 1;
            return;
        }
        let h = hex(sender.as_bytes());
        let label = self.label(t, &sender);
        let mut deliver = Vec::new();
        let thread_name = {
            let Some(th) = self.threads.get_mut(&t) else { return };
            let join_epoch = th.join_epoch;
            let st = th.recv.entry(h).or_default();
            let first_readable = prev_epoch.is_none_or(|p| p < join_epoch);
            match st.next {
                Some(n) if seq < n => return,
                Some(n) if seq > n => {
                    st.held.insert(seq, (epoch, prev_epoch, sent_at_ms, text));
                }
                None if !first_readable => {
                    st.held.insert(seq, (epoch, prev_epoch, sent_at_ms, text));
                }
                _ => {
                    deliver.push((sent_at_ms, text));
                    st.next = Some(seq + 1);
                }
            }
            // Drain what is now in order.
            while let Some(n) = st.next {
                let Some((_, _, at, text)) = st.held.remove(&n) else { break };
                deliver.push((at, text));
                st.next = Some(n + 1);
            }
            th.name.clone()
        };
        self.save_thread(t);
        for (at, text) in deliver {
            let hkey = self.history_key(t);
            let entry = HistoryEntry {
                outgoing: false,
                sender: label.clone(),
                text: text.clone(),
                sent_at_ms: at,
                at_ms: UnixMillis::from_system_time(now).as_millis(),
                recipients: 0,
                delivered: 0,
                sent: false,
                read: false,
                file: None,
            };
            self.writes.push(Write::put(hkey.clone(), &entry));
            self.events.push_back(EngineEvent::Message {
                id: LocalMessageId(hkey),
                thread: thread_name.clone(),
                sender: label.clone(),
                text,
                sent_at: UnixMillis::from_millis(at).to_system_time(),
                received_at: now,
                file: None,
            });
        }
        self.save_thread(t);
    }
}
