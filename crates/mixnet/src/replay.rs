//! The replay filter: a cache-line-blocked Bloom filter of the replay tags a mix has accepted
//! under one epoch's key.
//!
//! **Blocked**: the bit array is cut into 64-byte blocks (one cache line each) and all `k` bits
//! of a tag lie in one block, so a check or an insert touches one cache line instead of `k`
//! random ones (Putze, Sanders, Singler, "Cache-, hash- and space-efficient Bloom filters",
//! 2007). The price is space: blocks receive unequal numbers of tags (Poisson-distributed), so
//! for the same false-positive rate a blocked filter needs more bits than a classic one.
//!
//! **Memory is bounded and stated**: the filter for `capacity` tags at false-positive rate `p` is
//! the smallest number of blocks whose false-positive rate at `capacity` tags, computed exactly
//! for the blocked layout (`Σ_j Poisson(j; λ) · (1 − (1 − 1/512)^{k·j})^k` with `λ` tags per block
//! on average, at the best `k ≤ 21`), is at most `p`; it is fixed at creation (`memory_bytes`).
//! At the defaults (4 million tags per epoch key, p = 10⁻⁶) that is 39 bits per tag and `k` = 16,
//! 19.5 MB per key (a classic Bloom filter would need 14.4 MB but twenty random memory accesses
//! per packet), and a mix holds at most three keys at once (previous epoch during the grace
//! period, current, next), so at most 59 MB. The array is written (zeroed block by block) when
//! the filter is created, so the memory is resident from then on and the kernel's first-touch
//! page faults (about 4,800 per key) are paid when the epoch key is added, not on packets. A false positive drops an honest packet (rate p
//! while under capacity, counted separately from replays); a replay is never accepted while its
//! epoch key is live, and once the key is erased a replay cannot be unwrapped at all. Past
//! `capacity` the false-positive rate grows; `is_saturated` lets the node report it.
//!
//! Replay tags are SHA-512/256 outputs, already uniform, so the bit positions are read from the
//! tag itself: its first 64 bits choose the block (multiply-shift), and each of the `k` positions
//! in the block is an independent 9-bit field of the remaining 192 bits (hence `k ≤ 21`). No
//! secret key is needed because an adversary who can choose tags can only do so by making valid
//! packets, which costs it a hash preimage.

use qanat_packet::ReplayTag;

/// Default number of tags one epoch key's filter is sized for.
pub const DEFAULT_CAPACITY: u64 = 4_000_000;
/// Default false-positive rate.
pub const DEFAULT_FALSE_POSITIVE_RATE: f64 = 1e-6;

/// Bits in one block: one 64-byte cache line.
const BLOCK_BITS: u32 = 512;
/// The most bits per tag: 9-bit fields of the tag's last 192 bits, 7 per 64-bit word.
const MAX_K: u32 = 21;

/// One cache line of the bit array.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

/// A cache-line-blocked Bloom filter of replay tags.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    blocks: Vec<Block>,
    k: u32,
    capacity: u64,
    inserted: u64,
}

/// The false-positive rate of a blocked filter holding `lambda` tags per block on average, `k`
/// bits per tag: the block loads are Poisson(`lambda`), and a block holding `j` tags answers a
/// fresh tag wrongly with probability `(1 − (1 − 1/512)^{k·j})^k`.
fn blocked_fp_rate(lambda: f64, k: u32) -> f64 {
    let miss = 1.0 - 1.0 / f64::from(BLOCK_BITS);
    let last = (lambda + 20.0 * lambda.sqrt() + 50.0).ceil() as u32;
    let mut pmf = (-lambda).exp();
    let mut rate = 0.0;
    for j in 0..=last {
        if j > 0 {
            pmf *= lambda / f64::from(j);
        }
        rate += pmf * (1.0 - miss.powf(f64::from(k) * f64::from(j))).powi(k as i32);
    }
    rate
}

/// The best `k` for `blocks` blocks holding `capacity` tags, and the false-positive rate it gives.
fn best_k(capacity: u64, blocks: u64) -> (u32, f64) {
    let lambda = capacity as f64 / blocks as f64;
    (1..=MAX_K)
        .map(|k| (k, blocked_fp_rate(lambda, k)))
        .fold((1, f64::INFINITY), |b, c| if c.1 < b.1 { c } else { b })
}

impl ReplayFilter {
    /// A filter for `capacity` tags at false-positive rate `p` (clamped to sane ranges).
    pub fn new(capacity: u64, p: f64) -> Self {
        let capacity = capacity.max(1);
        let p = if p.is_finite() { p.clamp(1e-12, 0.5) } else { DEFAULT_FALSE_POSITIVE_RATE };
        let ln2 = core::f64::consts::LN_2;
        // A blocked filter needs at least the bits of a classic one: start the search there.
        let classic_bits = (capacity as f64) * (-p.ln()) / (ln2 * ln2);
        let mut lo = ((classic_bits / f64::from(BLOCK_BITS)).ceil() as u64).max(1);
        let mut hi = lo;
        while best_k(capacity, hi).1 > p && hi < u64::MAX / 4 {
            lo = hi + 1;
            hi *= 2;
        }
        // The smallest block count in [lo, hi] that meets p (the rate falls as blocks grow).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if best_k(capacity, mid).1 > p {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let (k, _) = best_k(capacity, lo);
        let mut blocks = vec![Block::default(); lo as usize];
        // Write every block with a value the compiler cannot see is zero, so the allocation is
        // not left as lazily mapped zero pages (faulted in one by one on the packet path).
        for b in &mut blocks {
            *b = std::hint::black_box(Block::default());
        }
        Self { blocks, k, capacity, inserted: 0 }
    }

    /// Memory used by the bit array.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * core::mem::size_of::<Block>()
    }

    /// Bits of the array per tag of capacity.
    pub fn bits_per_tag(&self) -> f64 {
        self.memory_bytes() as f64 * 8.0 / self.capacity as f64
    }

    /// Bits set per tag.
    pub fn hashes_per_tag(&self) -> u32 {
        self.k
    }

    /// Whether more tags were inserted than the filter was sized for.
    pub fn is_saturated(&self) -> bool {
        self.inserted > self.capacity
    }

    /// The tag's block index and the mask of its `k` bits in that block.
    fn locate(&self, tag: &ReplayTag) -> (usize, [u64; 8]) {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&tag.0[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        // Lemire's multiply-shift maps the first word onto [0, blocks) without a division.
        let block = ((u128::from(w(0)) * self.blocks.len() as u128) >> 64) as usize;
        let words = [w(1), w(2), w(3)];
        let mut mask = [0u64; 8];
        for i in 0..self.k as usize {
            let bit = (words[i / 7] >> ((i % 7) * 9)) & u64::from(BLOCK_BITS - 1);
            mask[(bit / 64) as usize] |= 1u64 << (bit % 64);
        }
        (block, mask)
    }

    /// Whether `tag` may have been inserted (false positives at the stated rate).
    pub fn contains(&self, tag: &ReplayTag) -> bool {
        let (b, mask) = self.locate(tag);
        self.blocks
            .get(b)
            .is_some_and(|block| block.0.iter().zip(&mask).fold(0, |acc, (x, m)| acc | (m & !x)) == 0)
    }

    /// Inserts `tag`; returns `false` if it (probably) was already there.
    pub fn insert(&mut self, tag: &ReplayTag) -> bool {
        let (b, mask) = self.locate(tag);
        let Some(block) = self.blocks.get_mut(b) else { return false };
        let mut missing = 0;
        for (x, m) in block.0.iter_mut().zip(&mask) {
            missing |= m & !*x;
            *x |= m;
        }
        let fresh = missing != 0;
        if fresh {
            self.inserted += 1;
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(i: u64) -> ReplayTag {
        // Spread like a hash output.
        let mut t = [0u8; 32];
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        for c in t.chunks_mut(8) {
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            c.copy_from_slice(&x.to_le_bytes());
        }
        ReplayTag(t)
    }

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = ReplayFilter::new(100_000, 1e-4);
        // A fresh tag refused on insert is a false positive against the tags before it: rare,
        // but more frequent in a blocked filter (crowded blocks) than in a classic one.
        let refused = (0..100_000).filter(|&i| !f.insert(&tag(i))).count();
        assert!(refused < 10, "{refused} fresh tags refused");
        for i in 0..100_000 {
            assert!(f.contains(&tag(i)));
            assert!(!f.insert(&tag(i)));
        }
        let fp = (100_000..300_000).filter(|&i| f.contains(&tag(i))).count();
        assert!(fp < 200_000 / 1000, "false positives {fp}"); // expected about 20
        assert!(!f.is_saturated());
    }

    #[test]
    fn default_memory_is_as_documented() {
        let f = ReplayFilter::new(DEFAULT_CAPACITY, DEFAULT_FALSE_POSITIVE_RATE);
        let mb = f.memory_bytes() as f64 / 1e6;
        assert!((19.0..20.0).contains(&mb), "{mb} MB");
        assert_eq!(f.hashes_per_tag(), 16);
        assert!((38.0..40.0).contains(&f.bits_per_tag()), "{} bits per tag", f.bits_per_tag());
    }

    /// Fills a filter to its capacity at the default rate and counts false positives among fresh
    /// tags: the rate measured at capacity is at most the stated one (with statistical slack).
    #[test]
    fn false_positive_rate_at_capacity_is_as_sized() {
        // 500,000 tags at 10⁻⁶ have the default filter's density (bits per tag and k do not
        // depend on capacity once blocks hold many tags), then 10⁷ fresh queries: about 10
        // expected if the rate is exactly 10⁻⁶. The tags are fixed, so the count is too.
        let capacity = 500_000;
        let mut f = ReplayFilter::new(capacity, DEFAULT_FALSE_POSITIVE_RATE);
        for i in 0..capacity {
            f.insert(&tag(i));
        }
        assert!(!f.is_saturated());
        let queries = 10_000_000;
        let fp = (capacity..capacity + queries).filter(|&i| f.contains(&tag(i))).count();
        assert!(fp <= 20, "{fp} false positives in {queries} queries at capacity");

        // A rate large enough to measure well: 10⁻³ at capacity, 10⁶ queries (about 1,000
        // expected); the measured rate must be within 20% of or below the stated one.
        let mut f = ReplayFilter::new(capacity, 1e-3);
        for i in 0..capacity {
            f.insert(&tag(i));
        }
        let fp = (capacity..capacity + 1_000_000).filter(|&i| f.contains(&tag(i))).count();
        assert!(fp <= 1_200, "{fp} false positives in 10⁶ queries at capacity, sized for 10⁻³");
        assert!(fp >= 500, "{fp}: the filter is much larger than it needs to be");
    }
}
