//! The replay filter: a Bloom filter of the replay tags a mix has accepted under one epoch's key.
//!
//! **Memory is bounded and stated**: a filter sized for `capacity` tags at false-positive rate `p`
//! uses `-capacity · ln p / ln² 2` bits, fixed at creation (`memory_bytes`). At the defaults
//! (4 million tags per epoch key, p = 10⁻⁶) that is 14.4 MB per key, and a mix holds at most three
//! keys at once (previous epoch during the grace period, current, next), so at most 43 MB. A false
//! positive drops an honest packet (rate p while under capacity, counted separately from replays);
//! a replay is never accepted while its epoch key is live, and once the key is erased a replay
//! cannot be unwrapped at all. Past `capacity` the false-positive rate grows; `is_saturated`
//! lets the node report it.
//!
//! Replay tags are SHA-512/256 outputs, already uniform, so the k bit positions come from the tag
//! itself by double hashing (Kirsch–Mitzenmacher); no secret key is needed because an adversary
//! who can choose tags can only do so by making valid packets, which costs it a hash preimage.

use qanat_packet::ReplayTag;

/// Default number of tags one epoch key's filter is sized for.
pub const DEFAULT_CAPACITY: u64 = 4_000_000;
/// Default false-positive rate.
pub const DEFAULT_FALSE_POSITIVE_RATE: f64 = 1e-6;

/// A Bloom filter of replay tags.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    bits: Vec<u64>,
    nbits: u64,
    k: u32,
    capacity: u64,
    inserted: u64,
}

impl ReplayFilter {
    /// A filter for `capacity` tags at false-positive rate `p` (clamped to sane ranges).
    pub fn new(capacity: u64, p: f64) -> Self {
        let capacity = capacity.max(1);
        let p = if p.is_finite() { p.clamp(1e-12, 0.5) } else { DEFAULT_FALSE_POSITIVE_RATE };
        let ln2 = core::f64::consts::LN_2;
        let nbits = ((capacity as f64) * (-p.ln()) / (ln2 * ln2)).ceil().max(64.0) as u64;
        let words = nbits.div_ceil(64);
        let k = ((nbits as f64 / capacity as f64) * ln2).round().clamp(1.0, 32.0) as u32;
        Self { bits: vec![0; words as usize], nbits: words * 64, k, capacity, inserted: 0 }
    }

    /// Memory used by the bit array.
    pub fn memory_bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// Whether more tags were inserted than the filter was sized for.
    pub fn is_saturated(&self) -> bool {
        self.inserted > self.capacity
    }

    /// The two hashes of double hashing: the tag's first two little-endian words, the second
    /// made odd.
    fn hashes(tag: &ReplayTag) -> (u64, u64) {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&tag.0[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        (w(0), w(1) | 1)
    }

    /// The word index and bit mask of the `i`-th position: `h1 + i·h2` (mod 2⁶⁴) scaled to
    /// `[0, nbits)` by a multiply and shift (Lemire's reduction) rather than a division, which
    /// would cost more than the memory access on a mix's hot path.
    fn position(h1: u64, h2: u64, i: u64, nbits: u64) -> (usize, u64) {
        let g = h1.wrapping_add(i.wrapping_mul(h2));
        let bit = ((u128::from(g) * u128::from(nbits)) >> 64) as u64;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn positions(&self, tag: &ReplayTag) -> impl Iterator<Item = (usize, u64)> + '_ {
        let (h1, h2) = Self::hashes(tag);
        (0..u64::from(self.k)).map(move |i| Self::position(h1, h2, i, self.nbits))
    }

    /// Whether `tag` may have been inserted (false positives at the stated rate).
    pub fn contains(&self, tag: &ReplayTag) -> bool {
        self.positions(tag).all(|(w, m)| self.bits.get(w).is_some_and(|x| x & m != 0))
    }

    /// Inserts `tag`; returns `false` if it (probably) was already there.
    pub fn insert(&mut self, tag: &ReplayTag) -> bool {
        let mut fresh = false;
        let (h1, h2) = Self::hashes(tag);
        let (k, nbits) = (self.k, self.nbits);
        for i in 0..u64::from(k) {
            let (w, m) = Self::position(h1, h2, i, nbits);
            if let Some(x) = self.bits.get_mut(w) {
                fresh |= *x & m == 0;
                *x |= m;
            }
        }
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
        for i in 0..100_000 {
            assert!(f.insert(&tag(i)));
        }
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
        assert!((14.0..15.0).contains(&mb), "{mb} MB");
    }
}
