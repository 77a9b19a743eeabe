//! The user's mailboxes at the gateway: which to register and fetch, the rotation to a fresh
//! mailbox and seal key (see the module `engine`'s "Mailbox rotation"), and the retirement of
//! mailboxes given up.

use std::time::SystemTime;

use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::gateway::MailboxAccess;
use crate::invite;
use qanat_mixnet::sending::seal::SealKey;
use qanat_packet::MailboxId;

use super::persist::Write;
use super::rows::{NS_CURSOR, NS_RETIRED, NS_THREAD, OldMailbox, RetiredCredential, ThreadState};
use super::wire::{Content, RouteEntry};
use super::{Engine, EngineError, EngineEvent};

/// How long a thread's mailbox is still read after it was replaced (see the module's "Mailbox
/// rotation"): what the others sent before they learned the new one still
/// arrives there. The same grace as an expired invitation's.
pub const ROTATION_GRACE_MS: u64 = invite::GRACE_MS;

/// How many replaced mailboxes a thread still reads. A group rotates at each departure, so a
/// busy group could pile up a month's; past this bound the oldest is given up early (counted in
/// [`EngineStats::replaced_given_up`](super::EngineStats::replaced_given_up)). A member still
/// writing there moves its messages to our newest mailbox when our ROUTE reaches it
/// (`Outbox::reroute`), so nothing is lost, only delayed.
pub const MAX_REPLACED: usize = 8;

impl Engine {
    /// Every mailbox to register (all of them after [`Engine::open`], then each new one once).
    pub fn take_registrations(&mut self) -> Vec<MailboxAccess> {
        std::mem::take(&mut self.registrations)
    }

    /// Every mailbox to fetch, with the sequence number already processed.
    pub fn mailboxes(&self) -> Vec<(MailboxAccess, u64)> {
        let mut out = vec![(
            MailboxAccess {
                mailbox: MailboxId(self.settings.home_mailbox),
                credential: self.settings.home_credential,
            },
            self.cursors.get(&self.settings.home_mailbox).copied().unwrap_or(0),
        )];
        for t in self.threads.values().filter(|t| t.state != ThreadState::Left) {
            let old = t.replaced.iter().map(|o| (o.mailbox, o.credential));
            for (mailbox, credential) in std::iter::once((t.mailbox, t.credential)).chain(old) {
                out.push((
                    MailboxAccess { mailbox: MailboxId(mailbox), credential },
                    self.cursors.get(&mailbox).copied().unwrap_or(0),
                ));
            }
        }
        out
    }

    /// The gateway refused to register `mailbox` for good (another credential holds it). Only
    /// that mailbox fails: an invitation's makes the invitation dead (reported); a conversation's
    /// is replaced by a fresh one, announced to the others; the home mailbox's is counted.
    pub fn registration_refused<R: CryptoRng>(
        &mut self,
        mailbox: MailboxId,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        self.stats.registrations_refused += 1;
        let mailbox = mailbox.0;
        let Some(t) = self.threads.values().find(|t| t.mailbox == mailbox).map(|t| (t.id, t.state)) else {
            return Ok(());
        };
        match t.1 {
            ThreadState::Inviting => {
                let Some(th) = self.threads.remove(&t.0) else { return Ok(()) };
                self.writes.push(Write::Del(NS_THREAD, t.0.to_vec()));
                self.writes.push(Write::Del(invite::NS_PENDING, mailbox.to_vec()));
                self.cursors.remove(&mailbox);
                self.writes.push(Write::Del(NS_CURSOR, mailbox.to_vec()));
                self.events.push_back(EngineEvent::InvitationRefused { name: th.name });
            }
            // The refused mailbox was never ours: nothing to read there.
            ThreadState::Active => self.rotate_mailbox(t.0, false, now, rng)?,
            _ => {}
        }
        self.flush()
    }

    /// Gives thread `t` a fresh mailbox and seal key and tells the other members (a ROUTE inside
    /// the conversation); the mailbox it replaces is still read for [`ROTATION_GRACE_MS`], as
    /// are those replaced before (at most [`MAX_REPLACED`]: past it the oldest is given up).
    /// `keep_old`: whether the replaced mailbox may hold anything (not when the gateway refused
    /// to register it).
    pub(super) fn rotate_mailbox<R: CryptoRng>(
        &mut self,
        t: [u8; 16],
        keep_old: bool,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let Some(own) = self.convs.get(&t).filter(|c| c.can_send()).map(|c| *c.own_id().as_bytes()) else {
            return Ok(());
        };
        let mut mailbox = [0u8; 32];
        let mut credential = [0u8; 32];
        rng.fill_bytes(&mut mailbox);
        rng.fill_bytes(&mut credential);
        let seal = SealKey::random(rng).0;
        let oldest = {
            let Some(th) = self.threads.get_mut(&t) else { return Ok(()) };
            if th.state != ThreadState::Active {
                return Ok(());
            }
            if keep_old {
                th.replaced.push(OldMailbox {
                    mailbox: th.mailbox,
                    credential: th.credential,
                    seal: th.seal,
                    retire_at_ms: UnixMillis::from_system_time(now)
                        .as_millis()
                        .saturating_add(ROTATION_GRACE_MS),
                });
            } else {
                self.cursors.remove(&th.mailbox);
                self.writes.push(Write::Del(NS_CURSOR, th.mailbox.to_vec()));
            }
            (th.mailbox, th.credential, th.seal) = (mailbox, credential, seal);
            let over = th.replaced.len().saturating_sub(MAX_REPLACED);
            th.replaced.drain(..over).collect::<Vec<_>>()
        };
        for o in oldest {
            self.stats.replaced_given_up += 1;
            self.retire(o.mailbox, o.credential);
        }
        self.registrations.push(MailboxAccess { mailbox: MailboxId(mailbox), credential });
        self.save_thread(t);
        let announce =
            Content::Route(RouteEntry { member: own, gateway: self.settings.gateway, mailbox, seal });
        self.send_content(t, &announce, None, now, rng)?;
        Ok(())
    }

    /// Gives up `mailbox`: it is no longer fetched, and is unregistered at the gateway (see
    /// [`Engine::retired`]). Saved with the next flush.
    pub(super) fn retire(&mut self, mailbox: [u8; 32], credential: [u8; 32]) {
        self.retired.insert(mailbox, credential);
        self.cursors.remove(&mailbox);
        self.writes.push(Write::put(mailbox, &RetiredCredential(credential)));
        self.writes.push(Write::Del(NS_CURSOR, mailbox.to_vec()));
    }

    /// Mailboxes given up (a group left, an invitation expired) that the gateway should forget,
    /// with everything in them; report each with [`Engine::unregistered`].
    pub fn retired(&self) -> Vec<MailboxAccess> {
        self.retired.iter().map(|(m, c)| MailboxAccess { mailbox: MailboxId(*m), credential: *c }).collect()
    }

    /// The gateway forgot `mailbox` (or refused to: it did not know it).
    pub fn unregistered(&mut self, mailbox: MailboxId) -> Result<(), EngineError> {
        let mailbox = mailbox.0;
        if self.retired.remove(&mailbox).is_some() {
            self.writes.push(Write::Del(NS_RETIRED, mailbox.to_vec()));
        }
        self.flush()
    }
}
