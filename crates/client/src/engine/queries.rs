//! What the user reads: the engine's settings, its events, the contacts and groups, each one's
//! history and what is unread or undelivered.

use std::collections::HashMap;

use qanat_packet::NodeId;

use qanat_mixnet::sending::{Delivery, TrafficProfile};

use super::persist::Write;
use super::rows::{Kind, NS_HISTORY, decode};
use super::{Engine, EngineError, EngineEvent, HistoryEntry, LocalMessageId, ThreadInfo};

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

    /// Every contact and group.
    pub fn threads(&self) -> Result<Vec<ThreadInfo>, EngineError> {
        let history = self.profile.scan(NS_HISTORY)?;
        let mut unread: HashMap<[u8; 16], usize> = HashMap::new();
        for (k, v) in &history {
            let Ok(t) = <[u8; 16]>::try_from(&k[..16.min(k.len())]) else { continue };
            let e: HistoryEntry = decode(v)?;
            if !e.outgoing && !e.read {
                *unread.entry(t).or_default() += 1;
            }
        }
        self.threads
            .values()
            .map(|t| {
                Ok(ThreadInfo {
                    name: t.name.clone(),
                    group: t.kind == Kind::Group,
                    state: t.state.name(),
                    members: self.member_labels(t.id),
                    unread: unread.get(&t.id).copied().unwrap_or(0),
                    verified: self.contact_verified(t.id)?,
                })
            })
            .collect()
    }

    /// The history of `name` (oldest first).
    pub fn history(&self, name: &str) -> Result<Vec<(LocalMessageId, HistoryEntry)>, EngineError> {
        let t = self.thread_by_name(name)?;
        let mut out = Vec::new();
        for (k, v) in self.profile.scan(NS_HISTORY)? {
            if k.starts_with(&t) {
                out.push((LocalMessageId(k.clone()), decode(&v)?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The unread incoming messages of every thread (thread name, entry), oldest first per
    /// thread, and marks them read.
    pub fn take_unread(&mut self) -> Result<Vec<(String, HistoryEntry)>, EngineError> {
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
            out.push((name, e));
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
