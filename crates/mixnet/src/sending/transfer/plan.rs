//! The shape of a transfer: its size bucket, its blocks, and the bytes each shard carries.
//!
//! A file of `size` bytes is padded with zeros to `n_data` whole shards of `S` bytes
//! ([`shard_capacity`](crate::sending::shard_capacity)). Its *bucket* is the next power of two
//! of at least [`MIN_BUCKET`] bytes; the bucket alone fixes how many blocks there are and how
//! many shards the first round of each block sends ([`BlockShape::target`]). The file's own data
//! shards are spread evenly over those blocks, and what the bucket has beyond them is sent as
//! parity: so a file sends as many first-round packets as any other file of its bucket, and the
//! padding buys loss tolerance instead of carrying zeros.

use sha2::{Digest, Sha256};

use crate::sending::payload::{MessageId, TransferId};

/// Data shards in a block, at most.
pub const BLOCK_DATA: u16 = 64;

/// Parity shards the code makes for every block (indices `data..data + PARITY`). With at most
/// [`BLOCK_DATA`] data shards, every index is below [`REPORT_BIT`].
pub const PARITY: u16 = 191;

/// The bit every block acknowledgement sets: its bitmap is never empty (a block of which nothing
/// arrived can be reported) and always 256 bits long, so replies do not vary in length.
pub const REPORT_BIT: u16 = 255;

/// The smallest bucket.
pub const MIN_BUCKET: u64 = 32 * 1024;

/// The largest file the format describes (a network's limit is smaller).
pub const MAX_FILE_FORMAT: u64 = 64 << 20;

/// Why a transfer cannot be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Larger than [`MAX_FILE_FORMAT`].
    #[error("the file is larger than any network takes")]
    TooLarge,
    /// The shard length is zero or odd.
    #[error("this network's packets cannot carry file shards")]
    Shard,
}

/// One block's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockShape {
    /// Its first data shard's index in the file.
    pub first: u32,
    /// Its data shards (1 to [`BLOCK_DATA`]).
    pub data: u16,
    /// The shards the bucket gives it (at least `data`): the first round sends this many and
    /// its parity share on top.
    pub target: u16,
}

/// A transfer's shape, computed the same way by both ends from the size and the shard length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    size: u64,
    shard: usize,
    bucket: u64,
    blocks: Vec<BlockShape>,
}

/// The bucket of a file of `size` bytes.
pub fn bucket(size: u64) -> u64 {
    size.max(1).next_power_of_two().max(MIN_BUCKET)
}

impl Plan {
    /// The plan of a file of `size` bytes in shards of `shard` bytes.
    pub fn new(size: u64, shard: usize) -> Result<Self, PlanError> {
        if size > MAX_FILE_FORMAT {
            return Err(PlanError::TooLarge);
        }
        if shard == 0 || !shard.is_multiple_of(2) {
            return Err(PlanError::Shard);
        }
        let s = shard as u64;
        let bucket = bucket(size);
        let n_data = size.div_ceil(s).max(1);
        let bucket_shards = bucket.div_ceil(s).max(n_data);
        let n_blocks = bucket_shards.div_ceil(u64::from(BLOCK_DATA));
        if n_blocks > u64::from(u16::MAX) {
            return Err(PlanError::TooLarge);
        }
        // Both spread evenly, larger blocks first: block b's data ≤ its target (n_data ≤
        // bucket_shards), its target ≤ BLOCK_DATA, and its data ≥ 1 (n_data ≥ n_blocks, since a
        // file fills more than half its bucket or the bucket is the smallest, of one block).
        let share = |total: u64, b: u64| total / n_blocks + u64::from(b < total % n_blocks);
        let mut blocks = Vec::with_capacity(n_blocks as usize);
        let mut first = 0u64;
        for b in 0..n_blocks {
            let data = share(n_data, b);
            let target = share(bucket_shards, b);
            if data == 0 {
                return Err(PlanError::Shard);
            }
            // All three are bounded: data ≤ target ≤ BLOCK_DATA, first < n_data ≤ 2^26.
            blocks.push(BlockShape { first: first as u32, data: data as u16, target: target as u16 });
            first += data;
        }
        Ok(Self { size, shard, bucket, blocks })
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The shard length.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The bucket.
    pub fn bucket(&self) -> u64 {
        self.bucket
    }

    /// The blocks.
    pub fn blocks(&self) -> &[BlockShape] {
        &self.blocks
    }

    /// Block `b`'s shape.
    pub fn block(&self, b: u16) -> Option<&BlockShape> {
        self.blocks.get(usize::from(b))
    }

    /// The blocks' count (below 2^16 by construction).
    pub fn block_count(&self) -> u16 {
        self.blocks.len() as u16
    }

    /// Where block `b`'s data starts in the padded file, and its length (`data · S`).
    pub fn block_range(&self, b: &BlockShape) -> (u64, usize) {
        (u64::from(b.first) * self.shard as u64, usize::from(b.data) * self.shard)
    }

    /// The file's bytes block `b` holds (its range cut at the size).
    pub fn block_file_bytes(&self, b: &BlockShape) -> u64 {
        let (start, len) = self.block_range(b);
        self.size.saturating_sub(start).min(len as u64)
    }

    /// Packets of the first round when the parity ratio is `rho`, SURBS packets included.
    pub fn first_round_packets(&self, rho: f64) -> u64 {
        self.blocks.iter().map(|b| u64::from(first_round(b, rho)) + 1).sum()
    }
}

/// The shards of block `b`'s first round at parity ratio `rho` (of its target): at least its
/// data, at most every shard it has.
pub fn first_round(b: &BlockShape, rho: f64) -> u16 {
    let extra = (f64::from(b.target) * rho.clamp(0.0, 4.0)).ceil() as u16;
    (b.target + extra).clamp(b.data, b.data + PARITY)
}

/// The message id a block's acknowledgement carries: `SHA-256("qanat-block v1" ‖ transfer ‖
/// block)[..16]`. Only the two ends know the transfer, so no one else can tell which transfer
/// or block a reply is for.
pub fn block_id(transfer: &TransferId, block: u16) -> MessageId {
    let mut h = Sha256::new();
    h.update(b"qanat-block v1");
    h.update(transfer.0);
    h.update(block.to_be_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    MessageId(id)
}

/// The smallest number of shards `n ≥ need` such that at least `need` of them arrive with
/// probability `success` when each is lost with probability `loss` (at most `cap`).
pub fn shards_for(need: u16, loss: f64, success: f64, cap: u16) -> u16 {
    let q = 1.0 - loss.clamp(0.0, 0.95);
    let mut n = need;
    while n < cap && prob_at_least(n, need, q) < success {
        n += 1;
    }
    n.max(need).min(cap.max(need))
}

/// P[Bin(n, q) ≥ m].
fn prob_at_least(n: u16, m: u16, q: f64) -> f64 {
    if m == 0 {
        return 1.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    let ln_q = q.ln();
    let ln_p = (1.0 - q).ln();
    let mut ln_fact = vec![0.0f64; usize::from(n) + 1];
    for i in 1..=usize::from(n) {
        ln_fact[i] = ln_fact[i - 1] + (i as f64).ln();
    }
    let nn = usize::from(n);
    (usize::from(m)..=nn)
        .map(|j| {
            (ln_fact[nn] - ln_fact[j] - ln_fact[nn - j] + j as f64 * ln_q + (nn - j) as f64 * ln_p).exp()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn buckets_fix_the_first_round() {
        assert_eq!(bucket(0), MIN_BUCKET);
        assert_eq!(bucket(100_000), 128 * 1024);
        assert_eq!(bucket(1 << 20), 1 << 20);
        assert_eq!(bucket((1 << 20) + 1), 2 << 20);
        let a = Plan::new(70_000, 1450).unwrap();
        let b = Plan::new(131_072, 1450).unwrap();
        assert_eq!(a.bucket(), b.bucket());
        assert_eq!(a.block_count(), b.block_count());
        assert_eq!(a.first_round_packets(0.125), b.first_round_packets(0.125));
        let mb = Plan::new(1 << 20, 1450).unwrap();
        assert_eq!(mb.block_count(), 12);
        assert_eq!(mb.blocks().iter().map(|b| u64::from(b.data)).sum::<u64>(), 724);
        assert_eq!(Plan::new(MAX_FILE_FORMAT + 1, 1450), Err(PlanError::TooLarge));
        assert_eq!(Plan::new(10, 1451), Err(PlanError::Shard));
    }

    #[test]
    fn parity_follows_loss() {
        assert_eq!(shards_for(64, 0.0, 0.95, 255), 64);
        let at5 = shards_for(64, 0.05, 0.95, 255);
        let at10 = shards_for(64, 0.10, 0.95, 255);
        let at20 = shards_for(64, 0.20, 0.95, 255);
        assert!(64 < at5 && at5 < at10 && at10 < at20, "{at5} {at10} {at20}");
        assert!((70..=74).contains(&at5), "{at5}");
        assert_eq!(shards_for(64, 0.9, 0.95, 100), 100);
    }

    proptest! {
        #[test]
        fn every_plan_covers_the_file_once(size in 0u64..(16 << 20), shard in (500usize..1000).prop_map(|s| s * 2)) {
            let p = Plan::new(size, shard).unwrap();
            let mut next = 0u32;
            for b in p.blocks() {
                prop_assert_eq!(b.first, next);
                prop_assert!(b.data >= 1 && b.data <= b.target && b.target <= BLOCK_DATA);
                next += u32::from(b.data);
            }
            let n_data = size.div_ceil(shard as u64).max(1);
            prop_assert_eq!(u64::from(next), n_data);
            prop_assert_eq!(p.blocks().iter().map(|b| p.block_file_bytes(b)).sum::<u64>(), size);
            // The same bucket, the same first round, whatever the size within it.
            let q = Plan::new(p.bucket(), shard).unwrap();
            prop_assert_eq!(p.first_round_packets(0.125), q.first_round_packets(0.125));
        }
    }
}
