//! Key names and hash slots.
//!
//! Mailboxes are spread over [`BUCKETS`] buckets by the first two bytes of their (random) id.
//! Every key of a bucket — each of its mailboxes' four keys and the bucket's two bookkeeping keys
//! (totals for [`stats`](crate::MailboxStore::stats), the expiry index for
//! [`expire`](crate::MailboxStore::expire)) — carries the bucket's hash tag, so one hash slot, one
//! master, and one Lua script can touch them all atomically. Bucket `b`'s tag is a short decimal
//! string chosen so that its slot is `16·b + 8`: the 1,024 buckets sit on evenly spaced slots,
//! and a cluster whose masters own equal slot ranges holds equal shares of them.
//!
//! ```text
//! <prefix>:{<tag>}:<mailbox id hex>:m | :d | :i | :t     a mailbox (see `scripts`)
//! <prefix>:{<tag>}:stats | :due                          its bucket
//! ```
//!
//! The layout is part of the stored format: `tests` pins it with known answers.

use std::sync::OnceLock;

use crate::MailboxId;

/// Buckets of mailboxes (each one hash slot). Part of the stored format: never change it for an
/// existing store.
pub(crate) const BUCKETS: u16 = 1024;

/// Redis Cluster's hash slots.
const SLOTS: u16 = 16_384;

/// CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
pub(crate) fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The hash slot of a key (honouring a `{hash tag}` as Redis does).
#[cfg(test)]
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// Each bucket's hash tag and its slot.
fn tags() -> &'static [(String, u16)] {
    static TAGS: OnceLock<Vec<(String, u16)>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let spacing = SLOTS / BUCKETS;
        let mut tags: Vec<Option<(String, u16)>> = vec![None; usize::from(BUCKETS)];
        let mut missing = usize::from(BUCKETS);
        // Decimal strings hash to every slot well within this bound (a unit test checks it).
        for i in 0u32..4_000_000 {
            if missing == 0 {
                break;
            }
            let tag = i.to_string();
            let slot = crc16(tag.as_bytes()) % SLOTS;
            if slot % spacing == spacing / 2 {
                let entry = &mut tags[usize::from(slot / spacing)];
                if entry.is_none() {
                    *entry = Some((tag, slot));
                    missing -= 1;
                }
            }
        }
        tags.into_iter()
            .enumerate()
            .map(|(b, t)| {
                // Unreachable (see above); a tag that is not a decimal number keeps buckets distinct.
                t.unwrap_or_else(|| {
                    let tag = format!("b{b}");
                    let slot = crc16(tag.as_bytes()) % SLOTS;
                    (tag, slot)
                })
            })
            .collect()
    })
}

/// A bucket: an index below [`BUCKETS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Bucket(u16);

impl Bucket {
    /// Every bucket.
    pub(crate) fn all() -> impl Iterator<Item = Bucket> {
        (0..BUCKETS).map(Bucket)
    }

    /// The bucket of a mailbox.
    pub(crate) fn of(mailbox: &MailboxId) -> Bucket {
        Bucket(u16::from_be_bytes([mailbox.0[0], mailbox.0[1]]) % BUCKETS)
    }

    fn tag(self) -> &'static (String, u16) {
        // `Bucket` values are below BUCKETS and `tags()` has BUCKETS entries.
        &tags()[usize::from(self.0 % BUCKETS)]
    }

    /// The hash slot of every key of this bucket.
    pub(crate) fn slot(self) -> u16 {
        self.tag().1
    }
}

/// Builds key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` must not contain `{` or `}` (checked by the caller).
    pub(crate) fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    /// The prefix of every key.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn bucket_key(&self, bucket: Bucket, suffix: &str) -> Vec<u8> {
        format!("{}:{{{}}}:{suffix}", self.prefix, bucket.tag().0).into_bytes()
    }

    /// The bucket's totals (`m`, `k`, `b`).
    pub(crate) fn stats(&self, bucket: Bucket) -> Vec<u8> {
        self.bucket_key(bucket, "stats")
    }

    /// The bucket's expiry index.
    pub(crate) fn due(&self, bucket: Bucket) -> Vec<u8> {
        self.bucket_key(bucket, "due")
    }

    /// The six keys every script takes, for `mailbox` (see `scripts`).
    pub(crate) fn mailbox(&self, mailbox: &MailboxId) -> [Vec<u8>; 6] {
        let bucket = Bucket::of(mailbox);
        let mut hex = String::with_capacity(64);
        for b in mailbox.0 {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        let base = format!("{}:{{{}}}:{hex}", self.prefix, bucket.tag().0);
        let k = |s: &str| format!("{base}:{s}").into_bytes();
        [k("m"), k("d"), k("i"), k("t"), self.stats(bucket), self.due(bucket)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        // `CLUSTER KEYSLOT` answers of a Redis 7 server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"x{foo}y"), 12182);
        assert_eq!(key_slot(b"{}foo"), key_slot(b"{}foo"));
        assert_eq!(key_slot(b"{}foo"), crc16(b"{}foo") % SLOTS);
    }

    #[test]
    fn every_bucket_has_its_own_evenly_spaced_slot() {
        let tags = tags();
        assert_eq!(tags.len(), usize::from(BUCKETS));
        for (b, (tag, slot)) in tags.iter().enumerate() {
            assert!(tag.bytes().all(|c| c.is_ascii_digit()), "bucket {b}: fallback tag {tag}");
            assert_eq!(usize::from(*slot), 16 * b + 8);
            assert_eq!(key_slot(format!("q:{{{tag}}}:x").as_bytes()), *slot);
        }
    }

    /// The stored layout, pinned.
    #[test]
    fn key_layout_known_answer() {
        let keys = Keys::new("qanat");
        let mut id = [0xab; 32];
        id[0] = 0x01;
        id[1] = 0x02;
        let mb = MailboxId(id);
        let bucket = Bucket::of(&mb);
        assert_eq!(bucket, Bucket(0x0102 % BUCKETS));
        let tag = &bucket.tag().0;
        let hex = format!("0102{}", "ab".repeat(30));
        let want: Vec<String> = ["m", "d", "i", "t"]
            .iter()
            .map(|s| format!("qanat:{{{tag}}}:{hex}:{s}"))
            .chain([format!("qanat:{{{tag}}}:stats"), format!("qanat:{{{tag}}}:due")])
            .collect();
        let got: Vec<String> =
            keys.mailbox(&mb).iter().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
        assert_eq!(got, want);
        for k in keys.mailbox(&mb) {
            assert_eq!(key_slot(&k), bucket.slot());
        }
        // The first tags, pinned: a change would strand every stored mailbox.
        let first: Vec<&str> = tags()[..4].iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(first, FIRST_TAGS);
    }

    /// The tags of buckets 0..4 (slots 8, 24, 40, 56; `CLUSTER KEYSLOT` agrees).
    const FIRST_TAGS: [&str; 4] = ["46920", "50482", "40792", "108747"];
}
