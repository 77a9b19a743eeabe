//! BLAKE2Xb, the extendable-output mode of BLAKE2b (Aumasson, Neves, Wilcox-O'Hearn, Winnerlein,
//! "BLAKE2X", 2016), exactly as `golang.org/x/crypto/blake2b.NewXOF` computes it: that is the PRF
//! of hpqc's NIKE-to-KEM adapter, so Katzenpost's X25519 KEM needs these bytes.
//!
//! BLAKE2Xb is two layers of plain BLAKE2b that differ from sequential BLAKE2b only in the
//! parameter block, which is why it is built here on `blake2b_simd`'s full parameter API rather
//! than on a hash of our own:
//!
//! - the **root** is keyed BLAKE2b-512 of the input, with the XOF length written into bytes
//!   12..16 of the parameter block (the upper half of BLAKE2b's 64-bit node-offset field);
//! - output block `i` (64 bytes, the last one shorter) is unkeyed BLAKE2b of the 64-byte root hash
//!   with digest length = the block's length, fanout 0, depth 0, leaf length 64, node offset
//!   `i` (bytes 8..12) with the XOF length again in bytes 12..16, node depth 0, inner length 64.
//!
//! Go's "length unknown" XOF (`OutputLengthUnknown`) writes `0xFFFF_FFFF` as the length.
//!
//! Why `blake2b_simd`: HACL*'s formally verified BLAKE2b (crate `libcrux-blake2`) and RustCrypto's
//! `blake2` expose only key, salt and personalization, not the tree fields (fanout, depth, leaf
//! length, node offset, inner length) BLAKE2X sets, and `aws-lc-rs` exposes no BLAKE2 at all. `blake2b_simd`
//! is the widely used implementation that does (runtime CPU detection, portable fallback); we know
//! of no published third-party audit of it. It is checked here against hpqc's BLAKE2Xb vectors,
//! and its plain keyed BLAKE2b against RustCrypto's on random inputs.
//!
//! Checked against hpqc's published `testvectors/primitives/blake2b_xof.json` below, and through
//! the adapter against `testvectors/kem/adapter_test_vectors.json` (in `scheme.rs`).
//!
//! Secret hygiene: the root hash is zeroized here, but `blake2b_simd` does not zeroize its own
//! `Params` and `State` (which hold the key block and the chaining value) when they are dropped;
//! they live on the stack for the duration of one call.

use zeroize::Zeroizing;

/// BLAKE2b's output (and chaining) size, and the size of one BLAKE2Xb output block.
const BLOCK: usize = 64;

/// The XOF length field of the parameter block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XofLength {
    /// A known output length in bytes (`1..=0xFFFF_FFFE`), part of every block's parameters.
    Known(u32),
    /// Go's `OutputLengthUnknown`: the length field holds `0xFFFF_FFFF`.
    #[cfg_attr(not(test), allow(dead_code))]
    Unknown,
}

impl XofLength {
    fn field(self) -> u64 {
        match self {
            Self::Known(n) => u64::from(n),
            Self::Unknown => u64::from(u32::MAX),
        }
    }
}

/// Fills `out` with BLAKE2Xb keyed with `key` (at most 64 bytes) over the concatenation of
/// `parts`, declared length `len`. Reading fewer bytes than `len` gives a prefix of the stream.
///
/// Callers pass constant key lengths of at most 64 bytes and, for a known length, an `out` no
/// longer than it; `blake2b_simd` panics on a key over 64 bytes.
pub(crate) fn blake2xb(key: &[u8], len: XofLength, parts: &[&[u8]], out: &mut [u8]) {
    let field = len.field();
    let mut root = blake2b_simd::Params::new();
    root.hash_length(BLOCK).key(key).node_offset(field << 32);
    let mut state = root.to_state();
    for p in parts {
        state.update(p);
    }
    let h0 = Zeroizing::new(*state.finalize().as_array());

    let mut node = blake2b_simd::Params::new();
    node.fanout(0).max_depth(0).max_leaf_length(BLOCK as u32).node_depth(0).inner_hash_length(BLOCK);
    for (i, chunk) in out.chunks_mut(BLOCK).enumerate() {
        // For a known length `out` is at most `len`, so every block but the last is full and the
        // last one's digest length is what remains; with an unknown length every block is 64.
        let block_len = match len {
            XofLength::Known(n) => (n as usize).saturating_sub(i * BLOCK).clamp(1, BLOCK),
            XofLength::Unknown => BLOCK,
        };
        node.hash_length(block_len).node_offset(field << 32 | i as u64);
        let block = node.hash(h0.as_ref());
        let take = chunk.len();
        chunk.copy_from_slice(&block.as_bytes()[..take]);
    }
}

/// The 32-byte BLAKE2Xb of hpqc's KEM adapter: declared length 32, keyed with a 32-byte secret.
pub(crate) fn blake2xb_32(key: &[u8; 32], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    blake2xb(key, XofLength::Known(32), parts, out.as_mut());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hpqc's published BLAKE2Xb vectors (katzenpost/hpqc, `testvectors/primitives/blake2b_xof.json`,
    /// made by its `testvectors/cmd/generate` from `golang.org/x/crypto/blake2b.NewXOF`):
    /// (key, message, declared XOF size with 0 = unknown, bytes read, output), all hex.
    const HPQC_BLAKE2B_XOF: &[(&str, &str, u32, usize, &str)] = &[
        ("", "", 32, 32, "1632e145f2e19726b6a9ef54bda8f2493d1147c00ab5b749572f27073e84ed07"),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\
             cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
            32,
            32,
            "199a4a7af829f2882f727eab0520b1b0fab9b0b6ebf0153a7c11815424179405",
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\
             cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
            64,
            32,
            "c94b1d61302d2425ba5e285b0fcb6ecd89cb8e6308928973621147ddbc8db7d7",
        ),
        (
            "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
            "6870716320786f6620756e6b6e6f776e206c656e677468",
            0,
            64,
            "0452d7256019b02abaac5cb8b002dcfc8b54c07a1aae2c2efe2ca09e71878edc\
             6d4a5d49dbab96937538fd64c5136da8a5270948a2c6241ee297f5a4d8ce818a",
        ),
        (
            "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            "6870716320786f662073747265616d696e67",
            200,
            200,
            "09c92152893e3e04b4a551bbec9f294d3bc2520f5ac01fa1cd01b2f5fe39c2a2\
             5974211caf3e6b480f8619ebf938a09dade70953ba57a493e76186b9a1c6de1b\
             4e5ed6f481ba7aa2823c7d5884ef4c94622893c2c526211da5489acf720537a7\
             135008a9f41089c7b013a8b5d9baa15942484456d09a3f5a8b23b7f485a654df\
             fb28fcffa9457468aa9fa9500b3e50bb7cf1ffdad6e20eccf69df4d9aac732ee\
             c1783d43bd75ec78f657ffcc2f3d5f46ce9034d967ecd9d603426bc762217c0c\
             540718c9b7af9d33",
        ),
    ];

    #[test]
    fn hpqc_blake2b_xof_vectors() {
        for (key, msg, size, read, want) in HPQC_BLAKE2B_XOF {
            let key = hex::decode(key).unwrap();
            let msg = hex::decode(msg).unwrap();
            let len = if *size == 0 { XofLength::Unknown } else { XofLength::Known(*size) };
            let mut out = vec![0u8; *read];
            // The message split in two parts hashes as one.
            let (a, b) = msg.split_at(msg.len() / 2);
            blake2xb(&key, len, &[a, b], &mut out);
            assert_eq!(hex::encode(&out), *want, "key {} size {size}", hex::encode(&key));
        }
    }

    /// `blake2b_simd`'s sequential keyed BLAKE2b-512 agrees with RustCrypto's `blake2` (an
    /// independent implementation) on pseudo-random keys and messages of every length up to 300.
    #[test]
    fn blake2b_simd_agrees_with_rustcrypto() {
        use blake2::digest::consts::U64;
        use blake2::digest::{KeyInit, Mac};
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in 0..300usize {
            let key: Vec<u8> = (0..1 + len % 64).map(|_| next()).collect();
            let msg: Vec<u8> = (0..len).map(|_| next()).collect();
            let ours = blake2b_simd::Params::new().hash_length(64).key(&key).hash(&msg);
            let mut m = <blake2::Blake2bMac<U64> as KeyInit>::new_from_slice(&key).unwrap();
            m.update(&msg);
            assert_eq!(ours.as_bytes(), m.finalize().into_bytes().as_slice(), "len {len}");
        }
    }

    /// The fixed-size helper is the general function at length 32.
    #[test]
    fn blake2xb_32_is_the_general_function() {
        let key = [0xaa; 32];
        let mut out = [0u8; 32];
        blake2xb(&key, XofLength::Known(32), &[&[0xbb; 32], &[0xcc; 32]], &mut out);
        assert_eq!(*blake2xb_32(&key, &[&[0xbb; 32], &[0xcc; 32]]), out);
        assert_eq!(hex::encode(out), "199a4a7af829f2882f727eab0520b1b0fab9b0b6ebf0153a7c11815424179405");
    }
}
