//! The values a store takes and returns: identifiers, credentials, time, limits and outcomes.
//!
//! Identifiers are newtypes whose `Debug` prints no bytes, so that a log line never names a
//! mailbox or a message.

use std::fmt;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A mailbox: a random 256-bit id chosen by its owner, the one a Sphinx packet's last hop names.
pub use qanat_packet::MailboxId;

/// A stored item's id, chosen by whoever appends it: a gateway uses the packet's replay tag, so a
/// retransmitted packet carries the same id, which is how a store recognises it. (Not the
/// end-to-end message id of `qanat_mixnet::sending`, of which an item holds one fragment.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub [u8; 32]);

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ItemId(..)")
    }
}

/// The secret that authorises fetching from, deleting from and unregistering a mailbox.
///
/// Zeroized on drop. A store never keeps it: it keeps only a [`CredentialHash`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Credential([u8; 32]);

impl Credential {
    /// Wraps 32 secret bytes (the owner draws them from a CSPRNG).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Credential(bytes)
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// What a store keeps of a [`Credential`]: `SHA-256(domain ‖ mailbox id ‖ credential)`.
///
/// The mailbox id is part of the hash so that an owner who reused one credential for many
/// mailboxes would still leave unrelated hashes on disk: hashes never link mailboxes.
/// Compared in constant time.
#[derive(Clone, Copy)]
pub struct CredentialHash(pub [u8; 32]);

impl CredentialHash {
    /// Domain separation for the hash; changing it invalidates every stored credential.
    const DOMAIN: &'static [u8] = b"qanat mailbox credential v1\0";

    /// Derives the hash a store keeps for `credential` on `mailbox`.
    pub fn derive(mailbox: &MailboxId, credential: &Credential) -> Self {
        let mut h = Sha256::new();
        h.update(Self::DOMAIN);
        h.update(mailbox.0);
        h.update(credential.0);
        CredentialHash(h.finalize().into())
    }

    /// Constant-time comparison with a hash read from storage (of any length; a wrong length
    /// never matches).
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == self.0.len() && bool::from(self.0.ct_eq(stored))
    }
}

impl fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialHash(..)")
    }
}

/// A message's position in its mailbox, assigned at append: strictly increasing per mailbox,
/// starting at 1, never reused (not even after deletion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(pub u64);

/// Whole seconds since the Unix epoch, 1970-01-01T00:00:00Z: when an item was stored and when it
/// expires. Stores never read a clock: callers pass `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixSeconds(pub u64);

impl UnixSeconds {
    /// The given system time, in whole seconds (times before the epoch become 0).
    pub fn from_system_time(t: SystemTime) -> Self {
        UnixSeconds(t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        UnixSeconds(self.0.saturating_add(d.as_secs()))
    }

    /// This time minus `d` (saturating at the epoch).
    pub fn minus(self, d: Duration) -> Self {
        UnixSeconds(self.0.saturating_sub(d.as_secs()))
    }
}

/// Per-mailbox quotas and retention. A store applies the limits it was opened with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most messages a mailbox holds at once (messages its owner deleted do not count).
    pub max_messages_per_mailbox: u64,
    /// Most payload bytes a mailbox holds at once.
    pub max_bytes_per_mailbox: u64,
    /// How long a message is kept (and its id remembered while it is).
    /// Whole seconds count; a message stored at `t` expires at `t + retention`.
    pub retention: Duration,
    /// How long the id of a message its owner deleted is remembered, counted from when the
    /// message was stored (whole seconds; capped by `retention`): [`expire`] forgets it at
    /// `t + remember_deleted_ids`. It only has to cover the time in which the same packet can
    /// still arrive again, resent by the last mix: the life of the packet key that unwrapped it
    /// (a gateway sets it to the epoch period plus twice the key grace, see the node's
    /// `service::epochs::dedup_window`). Past that a copy of the packet can no longer be
    /// unwrapped, so nothing but the id would be kept.
    ///
    /// [`expire`]: crate::MailboxStore::expire
    pub remember_deleted_ids: Duration,
    /// Largest payload accepted.
    pub max_payload_len: usize,
}

impl Limits {
    /// Thirty days, the design's default retention.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    /// One hour: twice what the default epoch period needs (20 minutes plus two key graces of 5).
    pub const DEFAULT_REMEMBER_DELETED_IDS: Duration = Duration::from_secs(60 * 60);

    /// How long after `stored_at` a deleted message's id is forgotten: the shorter of
    /// [`Limits::remember_deleted_ids`] and [`Limits::retention`], in whole seconds.
    pub fn deleted_id_lifetime(&self) -> u64 {
        self.remember_deleted_ids.min(self.retention).as_secs()
    }
}

impl Default for Limits {
    /// 10,000 messages and 32 MiB per mailbox, 30 days, deleted ids remembered for an hour,
    /// 64 KiB payloads (a packet payload is about 2 KiB, so a mailbox holds days of traffic from
    /// a busy contact).
    fn default() -> Self {
        Limits {
            max_messages_per_mailbox: 10_000,
            max_bytes_per_mailbox: 32 << 20,
            retention: Self::DEFAULT_RETENTION,
            remember_deleted_ids: Self::DEFAULT_REMEMBER_DELETED_IDS,
            max_payload_len: 64 << 10,
        }
    }
}

/// One message to store.
#[derive(Clone, PartialEq, Eq)]
pub struct Append {
    /// The recipient mailbox.
    pub mailbox: MailboxId,
    /// The id that identifies retransmissions.
    pub item_id: ItemId,
    /// Opaque bytes (an encrypted packet payload).
    pub payload: Vec<u8>,
}

impl fmt::Debug for Append {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Append").field("payload_len", &self.payload.len()).finish_non_exhaustive()
    }
}

/// What happened to one [`Append`].
///
/// Precedence, when several apply: `TooLarge`, then `UnknownMailbox`, then `Duplicate`, then
/// `QuotaExceeded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored durably at this sequence number.
    Stored(Seq),
    /// A message with this id is already in the mailbox (or was, and its owner deleted it less
    /// than [`Limits::remember_deleted_ids`] after it was stored): nothing was stored; the copy at
    /// this sequence number stands.
    Duplicate(Seq),
    /// No such mailbox is registered.
    UnknownMailbox,
    /// Storing it would exceed the mailbox's message or byte quota.
    QuotaExceeded,
    /// The payload is longer than [`Limits::max_payload_len`].
    TooLarge,
}

impl AppendOutcome {
    /// True when the message is durably held (`Stored` or `Duplicate`): the packet may be
    /// acknowledged.
    pub fn is_durable(&self) -> bool {
        matches!(self, AppendOutcome::Stored(_) | AppendOutcome::Duplicate(_))
    }
}

/// A message as fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its sequence number in the mailbox.
    pub seq: Seq,
    /// The id it was appended with.
    pub item_id: ItemId,
    /// The opaque bytes, as appended.
    pub payload: Vec<u8>,
    /// The `now` of the append that stored it.
    pub stored_at: UnixSeconds,
}

impl fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMessage")
            .field("seq", &self.seq)
            .field("payload_len", &self.payload.len())
            .field("stored_at", &self.stored_at)
            .finish_non_exhaustive()
    }
}

/// Totals over the whole store (for metrics; they name no mailbox).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Registered mailboxes.
    pub mailboxes: u64,
    /// Messages held (not deleted, not expired).
    pub messages: u64,
    /// Payload bytes held.
    pub payload_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_bytes() {
        let s = format!(
            "{:?} {:?} {:?} {:?}",
            MailboxId([0xab; 32]),
            ItemId([0xab; 32]),
            Credential::from_bytes([0xab; 32]),
            CredentialHash([0xab; 32])
        );
        assert!(!s.contains("ab") && !s.contains("171"), "{s}");
    }

    #[test]
    fn credential_hash_binds_the_mailbox() {
        let c = Credential::from_bytes([1; 32]);
        let a = CredentialHash::derive(&MailboxId([1; 32]), &c);
        let b = CredentialHash::derive(&MailboxId([2; 32]), &c);
        assert!(!a.matches(&b.0));
        assert!(a.matches(&a.0));
        assert!(!a.matches(&a.0[..31]));
    }
}
