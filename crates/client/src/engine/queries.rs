//! What the user reads: the engine's settings, its events, the contacts and groups, each one's
//! history and what is unread or undelivered.

use std::collections::HashMap;

use qanat_packet::NodeId;

use qanat_mixnet::sending::{Delivery, TrafficProfile};

use super::persist::Write;
use super::rows::{Kind, NS_HISTORY, ThreadState, decode};
use super::{Engine, EngineError, EngineEvent, HistoryEntry, LocalMessageId, ThreadInfo};
use crate::invite;

impl Engine {
    /// The traffic profile.
    pub fn traffic(&self) -> TrafficProfile {
        self.traffic
    }

    /// The gateway this profile uses.
    pub fn gateway(&self) -> NodeId {
        NodeId(self.settings.gateway)
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// Every contact and group, most recently active first.
    pub fn threads(&self) -> Result<Vec<ThreadInfo>, EngineError> {
        let history = self.profile.scan(NS_HISTORY)?;
        let mut unread: HashMap<[u8; 16], usize> = HashMap::new();
        let mut last: HashMap<[u8; 16], (LocalMessageId, HistoryEntry)> = HashMap::new();
        for (k, v) in history {
            let Ok(t) = <[u8; 16]>::try_from(&k[..16.min(k.len())]) else { continue };
            let e: HistoryEntry = decode(&v)?;
            if !e.outgoing && !e.read {
                *unread.entry(t).or_default() += 1;
            }
            // History keys are thread id ‖ a counter: the greatest key is the newest message.
            if last.get(&t).is_none_or(|(id, _)| id.0 < k) {
                last.insert(t, (LocalMessageId(k), e));
            }
        }
        let mut out: Vec<ThreadInfo> = self
            .threads
            .values()
            .map(|t| {
                let verified = self.contact_verified(t.id)?;
                let last = last.remove(&t.id);
                // An invitation is made `invitation_validity` before it expires.
                let expires_at_ms = (t.state == ThreadState::Inviting)
                    .then(|| t.give_up_at_ms.map(|at| at.saturating_sub(invite::GRACE_MS)))
                    .flatten();
                let made_ms = expires_at_ms
                    .map(|at| at.saturating_sub(self.config.invitation_validity.as_millis() as u64));
                let activity_ms = last.as_ref().map(|(_, e)| e.at_ms).or(made_ms).unwrap_or(0);
                Ok(ThreadInfo {
                    name: t.name.clone(),
                    group: t.kind == Kind::Group,
                    state: t.state.name(),
                    members: self.member_labels(t.id),
                    unread: unread.get(&t.id).copied().unwrap_or(0),
                    last,
                    activity_ms,
                    expires_at_ms,
                    verified,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        out.sort_by(|a, b| b.activity_ms.cmp(&a.activity_ms).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The history of `name` (oldest first).
    pub fn history(&self, name: &str) -> Result<Vec<(LocalMessageId, HistoryEntry)>, EngineError> {
        self.history_page(name, None, None)
    }

    /// A page of the history of `name`, oldest first: the `limit` newest messages (all when
    /// `None`) older than `before` (any when `None`), so that an interface shows the newest
    /// and asks for older ones as the user scrolls back.
    pub fn history_page(
        &self,
        name: &str,
        before: Option<&LocalMessageId>,
        limit: Option<usize>,
    ) -> Result<Vec<(LocalMessageId, HistoryEntry)>, EngineError> {
        let t = self.thread_by_name(name)?;
        // Keys are listed without decrypting anything: only the page's rows are read.
        let mut keys: Vec<Vec<u8>> = self
            .profile
            .keys(NS_HISTORY)
            .into_iter()
            .filter(|k| k.starts_with(&t) && before.is_none_or(|b| *k < b.0))
            .collect();
        keys.sort();
        let skip = limit.map_or(0, |n| keys.len().saturating_sub(n));
        let mut out = Vec::with_capacity(keys.len() - skip);
        for k in keys.into_iter().skip(skip) {
            if let Some(v) = self.profile.get(NS_HISTORY, &k)? {
                out.push((LocalMessageId(k), decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Marks every incoming message of `name` read.
    pub fn mark_read(&mut self, name: &str) -> Result<(), EngineError> {
        let t = self.thread_by_name(name)?;
        for k in self.profile.keys(NS_HISTORY).into_iter().filter(|k| k.starts_with(&t)) {
            let Some(v) = self.profile.get(NS_HISTORY, &k)? else { continue };
            let mut e: HistoryEntry = decode(&v)?;
            if e.outgoing || e.read {
                continue;
            }
            e.read = true;
            self.writes.push(Write::put(k, &e));
        }
        self.flush()
    }

    /// The unread incoming messages of every thread (thread name, entry), oldest first per
    /// thread, and marks them read.
    pub fn take_unread(&mut self) -> Result<Vec<(String, LocalMessageId, HistoryEntry)>, EngineError> {
        let mut out = Vec::new();
        let mut rows = self.profile.scan(NS_HISTORY)?;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in rows {
            let mut e: HistoryEntry = decode(&v)?;
            if e.outgoing || e.read {
                continue;
            }
            let Ok(t) = <[u8; 16]>::try_from(&k[..16.min(k.len())]) else { continue };
            let name = self.threads.get(&t).map(|t| t.name.clone()).unwrap_or_default();
            e.read = true;
            self.writes.push(Write::put(k.clone(), &e));
            out.push((name, LocalMessageId(k), e));
        }
        self.flush()?;
        Ok(out)
    }

    /// The delivery state of one of our messages.
    pub fn delivery(&self, id: &LocalMessageId) -> Result<Option<Delivery>, EngineError> {
        Ok(match self.profile.get(NS_HISTORY, &id.0)? {
            Some(v) => Some(decode::<HistoryEntry>(&v)?.delivery()),
            None => None,
        })
    }

    /// How many of our messages are not yet delivered (in the outbox).
    pub fn undelivered(&self) -> usize {
        self.out_recs.len()
    }
}
