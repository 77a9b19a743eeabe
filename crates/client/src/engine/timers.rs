//! What time does: resends, MLS decisions whose window is over, invitations and replaced
//! mailboxes that expire, and what is forgotten of received messages.

use std::time::{Duration, SystemTime};

use qanat_mixnet::UnixMicros;
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use crate::invite;
use crate::mls::Conversation;
use qanat_mixnet::sending::{self, MessageId, Schedule};

use super::persist::Write;
use super::rows::{self, NS_GROUP_INVITES, NS_OUT, NS_SEEN, NS_THREAD, SeenAt, ThreadState};
use super::{Engine, EngineError, EngineEvent, GROUP_INVITATION_TTL};

/// How often expired invitation records are dropped.
pub(super) const FORGET_EVERY: Duration = Duration::from_secs(3600);

impl Engine {
    /// Lets time pass: resends overdue fragments and decides MLS epochs whose window is over.
    pub fn handle_timeout<R: CryptoRng>(&mut self, now: SystemTime, rng: &mut R) -> Result<(), EngineError> {
        self.outbox.handle_timeout(UnixMicros::from_system_time(now));
        let r = self.files_timeout(now, rng);
        self.go_on("the files' timers", r)?;
        let r = self.expire_invitations(now);
        self.go_on("expiring invitations", r)?;
        self.expire_farewells(now);
        let due: Vec<[u8; 16]> = self
            .convs
            .iter()
            .filter(|(_, c)| c.next_deadline().is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            let Some(c) = self.convs.get_mut(&t) else { continue };
            let ticked = c.tick(now);
            // Not fatal: a conversation we are out of, or a commit that failed to apply.
            let Some(out) = self.or_rejected(ticked)? else { continue };
            self.dirty_convs.push(t);
            let r = self.dispatch(t, out, now, rng);
            self.go_on("a conversation's deadline", r)?;
        }
        self.flush()
    }

    /// When [`Engine::handle_timeout`] or [`Engine::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        [
            self.schedule.as_ref().and_then(Schedule::poll_timeout).map(UnixMicros::to_system_time),
            self.outbox.poll_timeout().map(UnixMicros::to_system_time),
            self.convs.values().filter_map(Conversation::next_deadline).min(),
            self.files_poll_timeout().map(UnixMicros::to_system_time),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Drops our invitations that can no longer be answered (their thread, mailbox and cursor),
    /// and once an hour the expired invitation records.
    pub(super) fn expire_invitations(&mut self, now: SystemTime) -> Result<(), EngineError> {
        let now_ms = UnixMillis::from_system_time(now).as_millis();
        let gone: Vec<[u8; 16]> = self
            .threads
            .values()
            .filter(|t| t.state == ThreadState::Inviting && t.give_up_at_ms.is_some_and(|at| now_ms >= at))
            .map(|t| t.id)
            .collect();
        for id in gone {
            let Some(t) = self.threads.remove(&id) else { continue };
            self.writes.push(Write::Del(NS_THREAD, id.to_vec()));
            self.retire(t.mailbox, t.credential);
            self.events.push_back(EngineEvent::InvitationExpired { name: t.name });
        }
        // Group invitations left unanswered.
        let ttl = GROUP_INVITATION_TTL.as_millis() as u64;
        let stale: Vec<[u8; 16]> = self
            .group_invites
            .iter()
            .filter(|(_, r)| now_ms.saturating_sub(r.received_ms) >= ttl)
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.group_invites.remove(&t);
            self.writes.push(Write::Del(NS_GROUP_INVITES, t.to_vec()));
        }
        // Replaced mailboxes whose grace is over.
        let done: Vec<[u8; 16]> = self
            .threads
            .values()
            .filter(|t| t.replaced.iter().any(|o| now_ms >= o.retire_at_ms))
            .map(|t| t.id)
            .collect();
        for id in done {
            let Some(th) = self.threads.get_mut(&id) else { continue };
            let (over, kept) =
                std::mem::take(&mut th.replaced).into_iter().partition(|o| now_ms >= o.retire_at_ms);
            th.replaced = kept;
            self.save_thread(id);
            for o in over {
                self.retire(o.mailbox, o.credential);
            }
        }
        self.flush()?;
        if self.last_forget.is_none_or(|at| now.duration_since(at).unwrap_or_default() >= FORGET_EVERY) {
            self.last_forget = Some(now);
            self.profile.transaction(|tx| invite::forget_expired(tx, UnixMillis::from_millis(now_ms)))?;
            self.forget_received(now)?;
        }
        Ok(())
    }

    /// Drops the commits to members who left that are still unacknowledged [`FAREWELL`] after
    /// the departure (counted in [`EngineStats::farewells_dropped`]).
    ///
    /// [`FAREWELL`]: super::FAREWELL
    /// [`EngineStats::farewells_dropped`]: super::EngineStats::farewells_dropped
    pub(super) fn expire_farewells(&mut self, now: SystemTime) {
        let now_ms = UnixMillis::from_system_time(now).as_millis();
        let over: Vec<MessageId> = self
            .out_recs
            .iter()
            .filter(|(_, r)| r.farewell_until_ms.is_some_and(|at| now_ms >= at))
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            self.outbox.cancel(&id);
            self.out_recs.remove(&id);
            self.writes.push(Write::Del(NS_OUT, id.0.to_vec()));
            self.stats.farewells_dropped += 1;
        }
    }

    /// Drops what is remembered of received messages past [`sending::REMEMBER_DELIVERED`]: the
    /// ids of delivered messages (kept so that resent copies are only acknowledged; their
    /// senders have long stopped) and partly received messages that never completed.
    pub(super) fn forget_received(&mut self, now: SystemTime) -> Result<(), EngineError> {
        for (id, count) in self.inbox.expire(UnixMicros::from_system_time(now)) {
            self.forget_fragments(id, count);
        }
        let cutoff = UnixMillis::from_system_time(now)
            .as_millis()
            .saturating_sub(sending::REMEMBER_DELIVERED.as_millis() as u64);
        for (k, v) in self.profile.scan(NS_SEEN)? {
            // A row that does not read is dropped with the old ones.
            let at = rows::decode::<SeenAt>(&v).map_or(0, |s| s.0);
            if at < cutoff {
                self.writes.push(Write::Del(NS_SEEN, k));
            }
        }
        self.flush()
    }
}
