//! A gateway's mailbox store, in memory: the contract of `qanat-mailbox`'s `MailboxStore` as the
//! gateway runtime uses it, without its IO.
//!
//! A mailbox exists once registered, and only the holder of its credential reads, deletes or
//! unregisters it (an unknown mailbox and a wrong credential are one answer). A write to an
//! unknown mailbox is rejected for good; a write of a message id already stored there is a
//! duplicate (durable, not stored twice; ids are remembered after their item is deleted, until
//! the mailbox is unregistered). Items get increasing sequence numbers per mailbox.
//!
//! It can be made to fail ([`Store::set_failing`]), like a full disk: writes, reads and every
//! operation then fail with a transient error, so the gateway acknowledges nothing and the last
//! mix sends again; pulls answer with what they could read (nothing) and say more is waiting.

use std::collections::{BTreeMap, HashSet};

use qanat_mixnet::StoreResult;
use qanat_packet::MailboxId;

/// Why a store operation failed (the kinds a gateway tells its client apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// Unknown mailbox, or another credential.
    Unauthorized,
    /// The store cannot serve now (it is failing).
    Unavailable,
}

#[derive(Debug, Default)]
struct Mailbox {
    credential: [u8; 32],
    next_seq: u64,
    items: BTreeMap<u64, Vec<u8>>,
    ids: HashSet<[u8; 32]>,
}

/// One gateway's store.
#[derive(Debug, Default)]
pub struct Store {
    mailboxes: BTreeMap<MailboxId, Mailbox>,
    failing: bool,
}

impl Store {
    /// Whether every operation fails from now on (`true`) or works again (`false`).
    pub fn set_failing(&mut self, failing: bool) {
        self.failing = failing;
    }

    /// Whether the store fails.
    pub fn is_failing(&self) -> bool {
        self.failing
    }

    fn check(&self) -> Result<(), StoreFailure> {
        if self.failing { Err(StoreFailure::Unavailable) } else { Ok(()) }
    }

    fn owned(&mut self, mailbox: &MailboxId, credential: &[u8; 32]) -> Result<&mut Mailbox, StoreFailure> {
        self.check()?;
        match self.mailboxes.get_mut(mailbox) {
            Some(m) if m.credential == *credential => Ok(m),
            _ => Err(StoreFailure::Unauthorized),
        }
    }

    /// Registers `mailbox` (again with the same credential: nothing changes).
    pub fn register(&mut self, mailbox: MailboxId, credential: [u8; 32]) -> Result<(), StoreFailure> {
        self.check()?;
        let m = self.mailboxes.entry(mailbox).or_insert_with(|| Mailbox { credential, ..Mailbox::default() });
        if m.credential == credential { Ok(()) } else { Err(StoreFailure::Unauthorized) }
    }

    /// Removes `mailbox` with its items and ids.
    pub fn unregister(&mut self, mailbox: MailboxId, credential: [u8; 32]) -> Result<(), StoreFailure> {
        self.owned(&mailbox, &credential)?;
        self.mailboxes.remove(&mailbox);
        Ok(())
    }

    /// Writes `item` under `item_id` into `mailbox`: the gateway's [`StoreResult`], and the
    /// new item's sequence number when one was stored (not for a duplicate).
    pub fn append(
        &mut self,
        mailbox: MailboxId,
        item_id: [u8; 32],
        item: Vec<u8>,
    ) -> (StoreResult, Option<u64>) {
        if self.failing {
            return (StoreResult::Failed, None);
        }
        let Some(m) = self.mailboxes.get_mut(&mailbox) else { return (StoreResult::Rejected, None) };
        if !m.ids.insert(item_id) {
            return (StoreResult::Durable, None);
        }
        m.next_seq += 1;
        let seq = m.next_seq;
        m.items.insert(seq, item);
        (StoreResult::Durable, Some(seq))
    }

    /// Up to `max` items of `mailbox` after `after` (from the start when `None`), in order.
    pub fn fetch(
        &mut self,
        mailbox: MailboxId,
        credential: [u8; 32],
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreFailure> {
        let m = self.owned(&mailbox, &credential)?;
        let from = after.map_or(0, |a| a.saturating_add(1));
        Ok(m.items.range(from..).take(max).map(|(s, i)| (*s, i.clone())).collect())
    }

    /// Deletes the items of `mailbox` up to `up_to`; how many were.
    pub fn delete_up_to(
        &mut self,
        mailbox: MailboxId,
        credential: [u8; 32],
        up_to: u64,
    ) -> Result<usize, StoreFailure> {
        let m = self.owned(&mailbox, &credential)?;
        let keep = m.items.split_off(&up_to.saturating_add(1));
        let n = m.items.len();
        m.items = keep;
        Ok(n)
    }

    /// Removes item `seq` of `mailbox` whatever the credential (for the network without pulls,
    /// whose clients take each item the instant it is stored).
    pub(crate) fn take(&mut self, mailbox: MailboxId, seq: u64) -> Option<Vec<u8>> {
        self.mailboxes.get_mut(&mailbox)?.items.remove(&seq)
    }

    /// The items `mailbox` holds, in order (for tests and measurements).
    pub fn items(&self, mailbox: &MailboxId) -> Vec<&[u8]> {
        self.mailboxes.get(mailbox).map(|m| m.items.values().map(Vec::as_slice).collect()).unwrap_or_default()
    }

    /// Every item held, with its mailbox.
    pub fn all_items(&self) -> impl Iterator<Item = (MailboxId, &[u8])> {
        self.mailboxes.iter().flat_map(|(id, m)| m.items.values().map(move |i| (*id, i.as_slice())))
    }

    /// How many items the store holds.
    pub fn len(&self) -> usize {
        self.mailboxes.values().map(|m| m.items.len()).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_the_contract_the_gateway_relies_on() {
        let mut s = Store::default();
        let (m, c) = (MailboxId([1; 32]), [2; 32]);
        assert_eq!(s.append(m, [0; 32], vec![1]), (StoreResult::Rejected, None), "unknown mailbox");
        s.register(m, c).unwrap();
        assert_eq!(s.register(m, c), Ok(()), "again with the same credential");
        assert_eq!(s.register(m, [3; 32]), Err(StoreFailure::Unauthorized));
        assert_eq!(s.append(m, [7; 32], vec![1]), (StoreResult::Durable, Some(1)));
        assert_eq!(s.append(m, [7; 32], vec![1]), (StoreResult::Durable, None), "a duplicate");
        assert_eq!(s.append(m, [8; 32], vec![2]), (StoreResult::Durable, Some(2)));
        assert_eq!(s.fetch(m, [3; 32], None, 9), Err(StoreFailure::Unauthorized));
        let got = s.fetch(m, c, None, 9).unwrap();
        assert_eq!(got, [(1, vec![1]), (2, vec![2])]);
        assert_eq!(s.fetch(m, c, Some(1), 9).unwrap().len(), 1);
        assert_eq!(s.delete_up_to(m, c, 1), Ok(1));
        assert_eq!(s.append(m, [7; 32], vec![1]), (StoreResult::Durable, None), "ids outlive items");
        s.set_failing(true);
        assert_eq!(s.append(m, [9; 32], vec![3]), (StoreResult::Failed, None));
        assert_eq!(s.fetch(m, c, None, 9), Err(StoreFailure::Unavailable));
        assert_eq!(s.register(MailboxId([5; 32]), c), Err(StoreFailure::Unavailable));
        s.set_failing(false);
        assert_eq!(s.len(), 1);
        s.unregister(m, c).unwrap();
        assert!(s.is_empty());
    }
}
