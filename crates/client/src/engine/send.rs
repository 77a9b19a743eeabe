//! Sending: a text into a conversation, what MLS makes into the outbox, and the packets of each
//! sending slot (acknowledgements and our messages taking turns, cover otherwise).

use std::time::{Duration, SystemTime};

use qanat_mixnet::UnixMicros;
use qanat_packet::MailboxId;
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::mls::MemberId;
use qanat_mixnet::sending::seal::SealKey;
use qanat_mixnet::sending::{self, Delivery, MessageId, OutboxEvent, PayloadError};

use super::persist::Write;
use super::rows::{Awaiting, NS_HISTORY, NS_OUT, OutRec, Recipient, RouteRec, ThreadState, decode};
use super::wire::{self, Content, Outer};
use super::{Engine, EngineError, EngineEvent, HistoryEntry, LocalMessageId, hex};

/// How long the commits a member who left has not acknowledged still go to it (a week: a
/// phone off for days still learns that it is out; a member gone for good costs a resend at
/// the outbox's longest backoff until then).
pub const FAREWELL: Duration = Duration::from_secs(7 * 86_400);

impl Engine {
    /// Sends `text` to the contact or group `name`. Returns the message's local id (its delivery
    /// state comes as [`EngineEvent::Delivery`]).
    pub fn send<R: CryptoRng>(
        &mut self,
        name: &str,
        text: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<LocalMessageId, EngineError> {
        let t = self.thread_by_name(name)?;
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        if th.state != ThreadState::Active {
            return Err(EngineError::NotReady(
                name.into(),
                "its conversation is not set up yet (waiting for the other side)",
            ));
        }
        if text.len() > wire::MAX_TEXT_LEN {
            return Err(EngineError::Payload(PayloadError::TooLong));
        }
        let conv = self.convs.get(&t).ok_or(EngineError::NotReady(name.into(), "no conversation"))?;
        let epoch = conv.epoch();
        let now_ms = UnixMillis::from_system_time(now).as_millis();
        let content = Content::Text {
            seq: th.next_seq,
            epoch,
            prev_epoch: th.last_epoch,
            sent_at_ms: now_ms,
            text: text.into(),
        };
        let hkey = self.history_key(t);
        let recipients = self.send_content(t, &content, Some(hkey.clone()), now, rng)?;
        if let Some(th) = self.threads.get_mut(&t) {
            th.next_seq += 1;
            th.last_epoch = Some(epoch);
        }
        self.save_thread(t);
        let entry = HistoryEntry {
            outgoing: true,
            sender: "me".into(),
            text: text.into(),
            sent_at_ms: now_ms,
            at_ms: now_ms,
            recipients,
            delivered: 0,
            sent: false,
            read: true,
            file: None,
        };
        self.writes.push(Write::put(hkey.clone(), &entry));
        self.flush()?;
        let id = LocalMessageId(hkey);
        if recipients == 0 {
            self.events.push_back(EngineEvent::Delivery { message: id.clone(), state: Delivery::Delivered });
        }
        Ok(id)
    }

    pub(super) fn history_key(&mut self, t: [u8; 16]) -> Vec<u8> {
        let n = self.threads.get_mut(&t).map(|th| {
            th.history_next += 1;
            th.history_next
        });
        let mut k = t.to_vec();
        k.extend_from_slice(&n.unwrap_or(0).to_be_bytes());
        k
    }

    /// Encrypts `content` in thread `t`'s conversation and queues it for every other member;
    /// returns how many. A content over a limit of its format ([`EngineError::TooLong`]) changes
    /// nothing.
    pub(super) fn send_content<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        content: &Content,
        history: Option<Vec<u8>>,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<u32, EngineError> {
        let plaintext = content.encode()?;
        let conv = self.convs.get_mut(&t).ok_or(EngineError::Corrupt("conversation"))?;
        let out = conv.send(&plaintext)?;
        self.dirty_convs.push(t);
        let n = out.to.len() as u32;
        for m in &out.to {
            self.queue_mls(t, m, Outer::Mls(out.bytes.clone()).encode(), history.clone(), false, rng);
        }
        let _ = now;
        Ok(n)
    }

    /// Queues outer message `bytes` for member `m` of thread `t` (or keeps it until its route is
    /// known). `commit`: it carries an MLS commit (see [`OutRec::commit`]).
    pub(super) fn queue_mls<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        m: &MemberId,
        bytes: Vec<u8>,
        history: Option<Vec<u8>>,
        commit: bool,
        rng: &mut R,
    ) {
        let h = hex(m.as_bytes());
        let Some(th) = self.threads.get_mut(&t) else { return };
        match th.roster.get(&h).copied() {
            Some(route) => {
                let to = Recipient { thread: t, member: *m.as_bytes() };
                self.queue_out(route, Some(to), bytes, history, commit, rng);
            }
            None => {
                th.awaiting.entry(h).or_default().push(Awaiting { bytes, history });
                self.save_thread(t);
            }
        }
    }

    /// Queues `bytes` for `route`. Acknowledgements come back to the home mailbox, where those of
    /// messages to every contact and a share of the loops land together (docs/EVALUATION.md says
    /// why not the thread's own mailbox).
    ///
    /// Never fails: a message the network cannot carry (more than [`sending::MAX_FRAGMENTS`]
    /// fragments; our texts are bounded far below, but a Welcome carries the group's whole
    /// ratchet tree, and a member can swell a group) is dropped, counted in
    /// [`EngineStats::too_long`]. Only its recipient misses it; stopping would stop every
    /// conversation, again at each restart.
    pub(super) fn queue_out<R: CryptoRng>(
        &mut self,
        route: RouteRec,
        to: Option<Recipient>,
        bytes: Vec<u8>,
        history: Option<Vec<u8>>,
        commit: bool,
        rng: &mut R,
    ) {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let rec = OutRec { route, bytes, history, to, commit, farewell_until_ms: None };
        if let Some(net) = &self.network {
            let g = net.sphinx.geometry().clone();
            let reply = MailboxId(self.settings.home_mailbox);
            if let Err(e) = self.outbox.queue_as(MessageId(id), &g, route.route(), reply, &rec.bytes) {
                tracing::warn!(bytes = rec.bytes.len(), "a message of ours cannot be sent: {e}");
                self.stats.too_long += 1;
                return;
            }
        }
        self.writes.push(Write::put(id, &rec));
        self.out_recs.insert(MessageId(id), rec);
    }

    /// Every message of ours for member `to` waiting goes to `route` from now on (the member
    /// moved: its own ROUTE), in the outbox and in its saved record. Only that member's
    /// messages in that thread move, whatever routes others announced.
    pub(super) fn reroute(&mut self, to: Recipient, route: RouteRec, now: SystemTime) {
        let at = UnixMicros::from_system_time(now);
        for (id, rec) in self.out_recs.iter_mut().filter(|(_, rec)| rec.to == Some(to)) {
            self.outbox.reroute(id, route.route(), at);
            rec.route = route;
            self.writes.push(Write::put(id.0, &*rec));
        }
    }

    /// Drops every message of ours for member `to` (it left the thread) and `awaiting`, those
    /// that waited for its route: none would ever arrive. A message it was one of the
    /// recipients of counts it no longer, so its ticks can still reach "delivered" with the
    /// others'. Saved with the change that removed the member, in the same transaction.
    ///
    /// But not the commits it has not acknowledged: the last of them tells it that it is out
    /// (without it, its client would take itself for a member for ever). Those go on being sent
    /// for [`FAREWELL`] from `now`; [`Engine::expire_farewells`] drops what is left then.
    pub(super) fn cancel_to(
        &mut self,
        to: Recipient,
        awaiting: Vec<Awaiting>,
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let until = UnixMillis::from_system_time(now).as_millis().saturating_add(FAREWELL.as_millis() as u64);
        let ids: Vec<MessageId> =
            self.out_recs.iter().filter(|(_, rec)| rec.to == Some(to)).map(|(id, _)| *id).collect();
        let mut histories: Vec<Vec<u8>> = awaiting.into_iter().filter_map(|a| a.history).collect();
        for id in ids {
            if let Some(rec) = self.out_recs.get_mut(&id)
                && rec.commit
            {
                if rec.farewell_until_ms.is_none() {
                    rec.farewell_until_ms = Some(until);
                    self.writes.push(Write::put(id.0, &*rec));
                }
                continue;
            }
            self.outbox.cancel(&id);
            let Some(rec) = self.out_recs.remove(&id) else { continue };
            self.writes.push(Write::Del(NS_OUT, id.0.to_vec()));
            histories.extend(rec.history);
        }
        for hkey in histories {
            // The entry as this transaction will leave it: a decrement earlier in it counts.
            let pending = self.writes.iter().rev().find_map(|w| match w {
                Write::Put(ns, k, v) if *ns == NS_HISTORY && *k == hkey => Some(v.clone()),
                _ => None,
            });
            let raw = match pending {
                Some(v) => v,
                None => match self.profile.get(NS_HISTORY, &hkey)? {
                    Some(v) => v.to_vec(),
                    None => continue,
                },
            };
            let mut e: HistoryEntry = decode(&raw)?;
            let before = e.delivery();
            e.recipients = e.recipients.saturating_sub(1);
            self.writes.push(Write::put(hkey.clone(), &e));
            let after = e.delivery();
            if after != before {
                self.events.push_back(EngineEvent::Delivery { message: LocalMessageId(hkey), state: after });
            }
        }
        Ok(())
    }

    /// Whether `mailbox` is one of ours (the home mailbox, a thread's, or one it replaced): no
    /// member's route may name it.
    pub(super) fn is_own_mailbox(&self, mailbox: &[u8; 32]) -> bool {
        *mailbox == self.settings.home_mailbox
            || self
                .threads
                .values()
                .any(|t| t.mailbox == *mailbox || t.replaced.iter().any(|o| o.mailbox == *mailbox))
    }

    /// The packets due at `now`: one per sending slot (an acknowledgement or a queued fragment
    /// in a payload slot, else a drop; a loop in a loop slot; a drop in a drop slot).
    pub fn poll_transmit<R: CryptoRng>(
        &mut self,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        let t = UnixMicros::from_system_time(now);
        let (Some(net), Some(schedule)) = (&self.network, &mut self.schedule) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for slot in schedule.poll(t, rng) {
            let p = match slot {
                sending::Slot::Payload => {
                    // Our own messages are built with the directory's keys: once the network no
                    // longer accepts them (the next epoch's document is late) they wait for it.
                    // Acknowledgements travel in the SURBs their senders made, and still go.
                    let current = t < net.keys_until;
                    if !current && self.outbox.has_queued() {
                        self.stats.held_for_directory += 1;
                    }
                    // Acknowledgements and our own messages take turns, so that nothing others
                    // send can keep the user from speaking.
                    let own_queued = self.outbox.has_queued() || self.files.have_queued();
                    let acks_first = self.acks_turn || !own_queued || !current;
                    let mut packet = None;
                    for acks in [acks_first, !acks_first] {
                        packet = if acks {
                            match self.acks.next_packet(t, &net.sphinx, rng) {
                                Some(p) => {
                                    self.stats.sent_acks += 1;
                                    Some(p)
                                }
                                None => self.files.next_answer(net, &mut self.stats, now, rng),
                            }
                        } else if !current {
                            None
                        } else {
                            // Texts and MLS first: a file never delays a text.
                            match self.outbox.next_packet(t, &net.sphinx, &net.view, rng) {
                                Some(p) => {
                                    self.stats.sent_real += 1;
                                    Some(p.packet)
                                }
                                None => self.files.next_packet(net, &mut self.stats, now, rng),
                            }
                        };
                        if packet.is_some() {
                            self.acks_turn = !acks;
                            break;
                        }
                    }
                    match packet {
                        Some(p) => Some(p),
                        None => {
                            self.stats.sent_cover += 1;
                            sending::cover_packet(&net.sphinx, &net.view, None, rng).ok().map(|p| p.packet)
                        }
                    }
                }
                sending::Slot::Loop => {
                    self.stats.sent_cover += 1;
                    // Half the loops go home, where they blur the acknowledgements; the other
                    // half to one of the conversations' mailboxes, so that what lands in those
                    // is not only data (the gateway cannot tell a message from cover by where
                    // it lands).
                    let live: Vec<([u8; 32], [u8; 32])> = self
                        .threads
                        .values()
                        .filter(|t| t.state != ThreadState::Left)
                        .map(|t| (t.mailbox, t.seal))
                        .collect();
                    let (m, k) = if live.is_empty() || rng.next_u64() & 1 == 0 {
                        (self.settings.home_mailbox, self.settings.home_seal)
                    } else {
                        live[(rng.next_u64() % live.len() as u64) as usize]
                    };
                    sending::cover_packet(&net.sphinx, &net.view, Some((MailboxId(m), SealKey(k))), rng)
                        .ok()
                        .map(|p| p.packet)
                }
                sending::Slot::Drop => {
                    self.stats.sent_cover += 1;
                    sending::cover_packet(&net.sphinx, &net.view, None, rng).ok().map(|p| p.packet)
                }
            };
            // A cover packet fails only when the directory has an empty layer: the network
            // cannot carry anything then, and the slot stays empty (counted).
            match p {
                Some(p) => out.push(p),
                None => self.stats.unsendable += 1,
            }
        }
        self.outbox_events()?;
        // The blocks the next slots will carry, read and encoded now, after this slot's packets.
        let r = self.prepare_files();
        self.go_on("reading a file to send", r)?;
        Ok(out)
    }

    pub(super) fn outbox_events(&mut self) -> Result<(), EngineError> {
        let mut any = false;
        while let Some(OutboxEvent::State(id, state)) = self.outbox.poll_event() {
            let Some(rec) = self.out_recs.get(&id) else { continue };
            let history = rec.history.clone();
            if state == Delivery::Delivered {
                self.out_recs.remove(&id);
                self.writes.push(Write::Del(NS_OUT, id.0.to_vec()));
                any = true;
            }
            let Some(hkey) = history else { continue };
            if state == Delivery::Queued {
                continue;
            }
            let Some(raw) = self.profile.get(NS_HISTORY, &hkey)? else { continue };
            let mut e: HistoryEntry = decode(&raw)?;
            let before = e.delivery();
            match state {
                Delivery::Sent => e.sent = true,
                Delivery::Delivered => {
                    e.sent = true;
                    e.delivered = (e.delivered + 1).min(e.recipients);
                }
                Delivery::Queued => {}
            }
            // Apply pending updates of the same entry in this batch too.
            self.writes.push(Write::put(hkey.clone(), &e));
            any = true;
            let after = e.delivery();
            if after != before {
                self.events
                    .push_back(EngineEvent::Delivery { message: LocalMessageId(hkey.clone()), state: after });
            }
            // Write now: later events may read the same entry.
            self.flush()?;
        }
        if any {
            self.flush()?;
        }
        Ok(())
    }
}
