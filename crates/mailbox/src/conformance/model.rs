//! The reference model: the simplest store that meets the contract, in memory, not durable.
//! Backends are checked against it by [`super::check_against_model`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::{
    Append, AppendOutcome, Credential, CredentialHash, ItemId, Limits, MailboxId, MailboxStore, Seq,
    StoreError, StoreStats, StoredMessage, UnixSeconds,
};

/// An in-memory [`MailboxStore`] written for clarity, used as the reference for every backend.
#[derive(Debug)]
pub struct ModelStore {
    limits: Limits,
    mailboxes: Mutex<BTreeMap<MailboxId, Mailbox>>,
}

#[derive(Debug)]
struct Mailbox {
    hash: CredentialHash,
    next_seq: u64,
    /// By sequence number; `payload` is `None` once the owner deleted the message.
    messages: BTreeMap<u64, Message>,
}

#[derive(Debug)]
struct Message {
    item_id: ItemId,
    stored_at: UnixSeconds,
    payload: Option<Vec<u8>>,
}

impl Mailbox {
    fn live(&self) -> impl Iterator<Item = (&u64, &Message)> {
        self.messages.iter().filter(|(_, m)| m.payload.is_some())
    }

    fn live_bytes(&self) -> u64 {
        self.live().map(|(_, m)| m.payload.as_ref().map_or(0, |p| p.len() as u64)).sum()
    }
}

impl ModelStore {
    /// An empty model applying `limits`.
    pub fn new(limits: Limits) -> Self {
        ModelStore { limits, mailboxes: Mutex::new(BTreeMap::new()) }
    }

    fn state(&self) -> MutexGuard<'_, BTreeMap<MailboxId, Mailbox>> {
        self.mailboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorized<'a>(
        state: &'a mut BTreeMap<MailboxId, Mailbox>,
        mailbox: &MailboxId,
        credential: &Credential,
    ) -> Result<&'a mut Mailbox, StoreError> {
        match state.get_mut(mailbox) {
            Some(m) if m.hash.matches(&CredentialHash::derive(mailbox, credential).0) => Ok(m),
            _ => Err(StoreError::Unauthorized),
        }
    }
}

// Written apart from the backends on purpose: each operation opens as theirs do (the trait's
// signature, the credential's hash), but the model shares no code with what it checks, so a bug
// in shared code could not hide from the conformance suite.
impl MailboxStore for ModelStore {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn register(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        _now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let mut state = self.state();
        match state.get(&mailbox) {
            Some(m) if m.hash.matches(&hash.0) => Ok(()),
            Some(_) => Err(StoreError::Unauthorized),
            None => {
                state.insert(mailbox, Mailbox { hash, next_seq: 1, messages: BTreeMap::new() });
                Ok(())
            }
        }
    }

    async fn unregister(&self, mailbox: MailboxId, credential: &Credential) -> Result<(), StoreError> {
        let mut state = self.state();
        Self::authorized(&mut state, &mailbox, credential)?;
        state.remove(&mailbox);
        Ok(())
    }

    async fn append(&self, batch: Vec<Append>, now: UnixSeconds) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut state = self.state();
        let mut out = Vec::with_capacity(batch.len());
        for item in batch {
            if item.payload.len() > self.limits.max_payload_len {
                out.push(AppendOutcome::TooLarge);
                continue;
            }
            let Some(m) = state.get_mut(&item.mailbox) else {
                out.push(AppendOutcome::UnknownMailbox);
                continue;
            };
            if let Some((seq, _)) = m.messages.iter().find(|(_, msg)| msg.item_id == item.item_id) {
                out.push(AppendOutcome::Duplicate(Seq(*seq)));
                continue;
            }
            let count = m.live().count() as u64;
            if count >= self.limits.max_messages_per_mailbox
                || m.live_bytes() + item.payload.len() as u64 > self.limits.max_bytes_per_mailbox
            {
                out.push(AppendOutcome::QuotaExceeded);
                continue;
            }
            let seq = m.next_seq;
            m.next_seq += 1;
            m.messages
                .insert(seq, Message { item_id: item.item_id, stored_at: now, payload: Some(item.payload) });
            out.push(AppendOutcome::Stored(Seq(seq)));
        }
        Ok(out)
    }

    async fn fetch(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut state = self.state();
        let m = Self::authorized(&mut state, &mailbox, credential)?;
        let after = after.map_or(0, |s| s.0);
        Ok(m.live()
            .filter(|(seq, _)| **seq > after)
            .take(limit)
            .map(|(seq, msg)| StoredMessage {
                seq: Seq(*seq),
                item_id: msg.item_id,
                payload: msg.payload.clone().unwrap_or_default(),
                stored_at: msg.stored_at,
            })
            .collect())
    }

    async fn delete_up_to(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        up_to: Seq,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let m = Self::authorized(&mut state, &mailbox, credential)?;
        let mut n = 0;
        for (_, msg) in m.messages.range_mut(..=up_to.0) {
            if msg.payload.take().is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn delete(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        seqs: &[Seq],
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let m = Self::authorized(&mut state, &mailbox, credential)?;
        let mut n = 0;
        for seq in seqs {
            if let Some(msg) = m.messages.get_mut(&seq.0)
                && msg.payload.take().is_some()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn expire(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut n = 0;
        let forget_deleted = Duration::from_secs(self.limits.deleted_id_lifetime());
        for m in state.values_mut() {
            m.messages.retain(|_, msg| {
                let expired = msg.stored_at.plus(self.limits.retention) <= now
                    || (msg.payload.is_none() && msg.stored_at.plus(forget_deleted) <= now);
                if expired && msg.payload.is_some() {
                    n += 1;
                }
                !expired
            });
        }
        Ok(n)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let state = self.state();
        Ok(StoreStats {
            mailboxes: state.len() as u64,
            messages: state.values().map(|m| m.live().count() as u64).sum(),
            payload_bytes: state.values().map(Mailbox::live_bytes).sum(),
        })
    }
}
