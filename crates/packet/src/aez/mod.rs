//! AEZ v5 (Hoang, Krovetz, Rogaway), used as a tweakable wide-block cipher.
//!
//! Only the subset needed as a Sphinx payload SPRP is exposed: a 48-byte key
//! (for which `Extract` is the identity), a 16-byte nonce, no associated data
//! and `tau = 0`, so the ciphertext has the same length as the plaintext. The
//! output is byte-for-byte identical to `aez.Encrypt(key, nonce, nil, 0, msg,
//! nil)` of `gitlab.com/yawning/aez`.
//!
//! Notation follows the specification: the extracted key is `I || J || L`,
//! `E^{j,i}(X) = AES4(X ^ jJ ^ 2^ceil(i/8) I ^ (i mod 8) L)` for `j >= 0`,
//! `E^{-1,i}(X) = AES10(X ^ iL)`, where `AES4` uses the round keys
//! `(J, I, L, 0)` and `AES10` the round keys `(I, J, L, I, J, L, I, J, L, I)`,
//! every round being a full AES round (the `AESENC` instruction) and the
//! initial whitening key being zero.
//!
//! All key-derived material held in [`Aez`] is zeroized on drop; transient
//! per-call values on the stack are not explicitly wiped.

use aes::Block;
use aes::hazmat::{Block8, cipher_round, cipher_round_par};
use zeroize::Zeroize;

/// One 128-bit block.
type B = [u8; 16];

/// Number of blocks processed per call to `cipher_round_par`.
const LANES: usize = 8;

/// Bytes of AEZ-core input handled per pipelined group (`LANES` block pairs).
const GROUP: usize = 32 * LANES;

#[inline(always)]
fn xor(a: &B, b: &B) -> B {
    core::array::from_fn(|k| a[k] ^ b[k])
}

#[inline(always)]
fn xor3(a: &B, b: &B, c: &B) -> B {
    core::array::from_fn(|k| a[k] ^ b[k] ^ c[k])
}

#[inline(always)]
fn xor_into(acc: &mut B, b: &B) {
    for (a, b) in acc.iter_mut().zip(b) {
        *a ^= b;
    }
}

/// [`xor`] through `u128`, for the key setup: there the compiler kept the byte-wise form as
/// sixteen byte xors (about 90 ns per key), while in AEZ-core it makes it one vector xor.
#[inline(always)]
fn xor_wide(a: &B, b: &B) -> B {
    (u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

/// Doubling in GF(2^128) with the AEZ (big-endian, x^128 + x^7 + x^2 + x + 1)
/// convention, in constant time.
#[inline(always)]
fn dbl(a: &B) -> B {
    let x = u128::from_be_bytes(*a);
    ((x << 1) ^ (0u128.wrapping_sub(x >> 127) & 0x87)).to_be_bytes()
}

#[inline(always)]
fn block_at(data: &[u8], off: usize) -> B {
    let mut b = [0u8; 16];
    b.copy_from_slice(&data[off..off + 16]);
    b
}

#[inline(always)]
fn put_block(data: &mut [u8], off: usize, b: &B) {
    data[off..off + 16].copy_from_slice(b);
}

/// `src || 1 || 0*` as one block; `src` must be shorter than 16 bytes.
#[inline(always)]
fn pad10(src: &[u8]) -> B {
    let mut b = [0u8; 16];
    b[..src.len()].copy_from_slice(src);
    b[src.len()] = 0x80;
    b
}

/// How the AEZ-hash value `Delta` is supplied to [`Aez::encipher`].
#[derive(Clone, Copy)]
enum Delta<'a> {
    /// Given directly.
    #[cfg_attr(not(test), allow(dead_code))]
    Value(&'a B),
    /// AEZ-hash of `([0]_128, nonce)`, computed alongside the first AES
    /// calls of AEZ-core.
    Nonce(&'a [u8; 16]),
}

/// AEZ v5 keyed with a 48-byte key (Extract is the identity for 48-byte keys;
/// other lengths are not needed).
pub(crate) struct Aez {
    /// `I`.
    i1: B,
    /// `2I`.
    i2: B,
    /// `J`.
    j1: B,
    /// `0L, 1L, ..., 7L`.
    l: [B; 8],
    /// Tweak of `E^{3,1}` (the `tau` block): `3J ^ 2I ^ L`.
    tw_tau: B,
    /// Tweak of `E^{4,1}` (the nonce block): `4J ^ 2I ^ L`.
    tw_nonce: B,
    /// AEZ-core pass tweaks of `E^{1,i}` without the `I` term, lane `k`
    /// handling `i = 8q + k + 1`: `J ^ ((k + 1) mod 8) L`.
    tw1: Block8,
    /// Same for `E^{2,i}`: `2J ^ ((k + 1) mod 8) L`.
    tw2: Block8,
    /// Round key `I` broadcast to all lanes.
    rk_i: Block8,
    /// Round key `J` broadcast to all lanes.
    rk_j: Block8,
    /// Round key `L` broadcast to all lanes.
    rk_l: Block8,
    /// All-zero round keys (not secret).
    rk_0: Block8,
}

impl Drop for Aez {
    fn drop(&mut self) {
        // Through slices: `zeroize` wipes a `[u8]` with one fill and an optimization barrier, but
        // an array byte by byte with volatile stores (this drop runs once per hop).
        for b in [&mut self.i1, &mut self.i2, &mut self.j1, &mut self.tw_tau, &mut self.tw_nonce] {
            b.as_mut_slice().zeroize();
        }
        self.l.as_flattened_mut().zeroize();
        for b8 in [&mut self.tw1, &mut self.tw2, &mut self.rk_i, &mut self.rk_j, &mut self.rk_l] {
            for b in b8.iter_mut() {
                b.0.as_mut_slice().zeroize();
            }
        }
    }
}

impl Aez {
    /// Creates an AEZ instance from a 48-byte key (`I || J || L`).
    pub(crate) fn new(key: &[u8; 48]) -> Self {
        let i1 = block_at(key, 0);
        let j1 = block_at(key, 16);
        let l1 = block_at(key, 32);

        let mut l = [[0u8; 16]; 8];
        l[1] = l1;
        l[2] = dbl(&l[1]);
        l[3] = xor_wide(&l[2], &l[1]);
        l[4] = dbl(&l[2]);
        l[5] = xor_wide(&l[4], &l[1]);
        l[6] = dbl(&l[3]);
        l[7] = xor_wide(&l[6], &l[1]);

        let i2 = dbl(&i1);
        let j2 = dbl(&j1);
        let j3 = xor_wide(&j2, &j1);
        let j4 = dbl(&j2);

        let mut tw1 = Block8::default();
        let mut tw2 = Block8::default();
        let mut rk_i = Block8::default();
        let mut rk_j = Block8::default();
        let mut rk_l = Block8::default();
        for k in 0..LANES {
            tw1[k].0 = xor_wide(&j1, &l[(k + 1) % 8]);
            tw2[k].0 = xor_wide(&j2, &l[(k + 1) % 8]);
            rk_i[k].0 = i1;
            rk_j[k].0 = j1;
            rk_l[k].0 = l1;
        }

        Aez {
            i1,
            i2,
            j1,
            l,
            tw_tau: xor_wide(&xor_wide(&j3, &i2), &l1),
            tw_nonce: xor_wide(&xor_wide(&j4, &i2), &l1),
            tw1,
            tw2,
            rk_i,
            rk_j,
            rk_l,
            rk_0: Block8::default(),
        }
    }

    /// Enciphers `data` in place with nonce `nonce`, no associated data,
    /// tau = 0 (AEZ is then a pure tweakable wide-block cipher: output length
    /// == input length). Handles every length; the empty message is left
    /// unchanged, as AEZ-prf with tau = 0 outputs nothing.
    pub(crate) fn encrypt_in_place(&self, nonce: &[u8; 16], data: &mut [u8]) {
        self.encipher(Delta::Nonce(nonce), data, false);
    }

    /// Inverse of [`Aez::encrypt_in_place`].
    pub(crate) fn decrypt_in_place(&self, nonce: &[u8; 16], data: &mut [u8]) {
        self.encipher(Delta::Nonce(nonce), data, true);
    }

    /// AEZ-hash of `([0]_128, nonce)` for a 16-byte nonce:
    /// `E^{3,1}([0]_128) ^ E^{4,1}(N)`.
    fn hash_nonce(&self, nonce: &[u8; 16]) -> B {
        let [t, n] = self.aes4_lanes([self.tw_tau, xor(nonce, &self.tw_nonce)]);
        xor(&t, &n)
    }

    /// Encipher (`inverse == false`) or decipher `data` in place under the
    /// AEZ-hash value `delta`.
    fn encipher(&self, delta: Delta<'_>, data: &mut [u8], inverse: bool) {
        match data.len() {
            0 => {}
            1..=31 => {
                let delta = match delta {
                    Delta::Value(d) => *d,
                    Delta::Nonce(n) => self.hash_nonce(n),
                };
                self.tiny(&delta, data, inverse);
            }
            _ => self.core(delta, data, inverse),
        }
    }

    /// `AES4` with round keys `(J, I, L, 0)`; `x` already includes the tweak.
    #[inline]
    fn aes4(&self, x: &B) -> B {
        let mut b = Block::from(*x);
        cipher_round(&mut b, &self.rk_j[0]);
        cipher_round(&mut b, &self.rk_i[0]);
        cipher_round(&mut b, &self.rk_l[0]);
        cipher_round(&mut b, &self.rk_0[0]);
        b.0
    }

    /// `AES10` with round keys `(I, J, L, I, J, L, I, J, L, I)`.
    #[inline]
    fn aes10(&self, x: &B) -> B {
        let mut b = Block::from(*x);
        for _ in 0..3 {
            cipher_round(&mut b, &self.rk_i[0]);
            cipher_round(&mut b, &self.rk_j[0]);
            cipher_round(&mut b, &self.rk_l[0]);
        }
        cipher_round(&mut b, &self.rk_i[0]);
        b.0
    }

    /// Eight independent `AES4` computations.
    #[inline]
    fn aes4_par(&self, st: &mut Block8) {
        cipher_round_par(st, &self.rk_j);
        cipher_round_par(st, &self.rk_i);
        cipher_round_par(st, &self.rk_l);
        cipher_round_par(st, &self.rk_0);
    }

    /// `N <= 8` independent `AES4` computations, in one parallel pass.
    #[inline]
    fn aes4_lanes<const N: usize>(&self, xs: [B; N]) -> [B; N] {
        const { assert!(N <= LANES) };
        let mut st = Block8::default();
        for (lane, x) in st.iter_mut().zip(&xs) {
            lane.0 = *x;
        }
        self.aes4_par(&mut st);
        core::array::from_fn(|k| st[k].0)
    }

    /// `N <= 8` independent `AES10` computations, in one parallel pass.
    #[inline]
    fn aes10_lanes<const N: usize>(&self, xs: [B; N]) -> [B; N] {
        const { assert!(N <= LANES) };
        let mut st = Block8::default();
        for (lane, x) in st.iter_mut().zip(&xs) {
            lane.0 = *x;
        }
        for _ in 0..3 {
            cipher_round_par(&mut st, &self.rk_i);
            cipher_round_par(&mut st, &self.rk_j);
            cipher_round_par(&mut st, &self.rk_l);
        }
        cipher_round_par(&mut st, &self.rk_i);
        core::array::from_fn(|k| st[k].0)
    }

    /// `E^{0,i}(x)` for `1 <= i <= 8`.
    #[inline]
    fn e0(&self, i: usize, x: &B) -> B {
        self.aes4(&xor3(x, &self.i2, &self.l[i % 8]))
    }

    /// AEZ-tiny, for messages of 1 to 31 bytes.
    fn tiny(&self, delta: &B, data: &mut [u8], inverse: bool) {
        let len = data.len();
        debug_assert!((1..32).contains(&len));
        // Each half is n = 4 * len bits (4..=124), so it fits in a u128. The
        // message is handled as a 256-bit big-endian string (hi, lo).
        let n = 4 * len as u32;
        let mut buf = [0u8; 32];
        buf[..len].copy_from_slice(data);
        let mut hi = u128::from_be_bytes(block_at(&buf, 0));
        let lo = u128::from_be_bytes(block_at(&buf, 16));

        let (rounds, j) = match len {
            1 => (24u32, 7),
            2 => (16, 7),
            3..=15 => (10, 7),
            _ => (8, 6),
        };
        let dlt = u128::from_be_bytes(*delta);
        let short = len < 16;
        let top = 1u128 << 127;

        // For messages under 128 bits the first bit is additionally masked
        // by E^{0,3}; the mask does not depend on that bit, so this is an
        // involution applied after enciphering / before deciphering.
        let first_bit = |hi: u128| -> u128 {
            let t = (dlt ^ (hi | top)).to_be_bytes();
            u128::from_be_bytes(self.e0(3, &t)) & top
        };
        if inverse && short {
            hi ^= first_bit(hi);
        }

        let mask = !0u128 << (128 - n);
        let pad = 1u128 << (127 - n);
        let mut l = hi & mask;
        let mut r = ((hi << n) | (lo >> (128 - n))) & mask;
        for step in 0..rounds {
            let ctr = if inverse { rounds - 1 - step } else { step };
            let x = (dlt ^ r ^ pad ^ u128::from(ctr)).to_be_bytes();
            let f = u128::from_be_bytes(self.e0(j, &x)) & mask;
            let new_r = l ^ f;
            l = r;
            r = new_r;
        }
        // Output R || L.
        let mut out_hi = r | (l >> n);
        let out_lo = l << (128 - n);
        if !inverse && short {
            out_hi ^= first_bit(out_hi);
        }
        buf[..16].copy_from_slice(&out_hi.to_be_bytes());
        buf[16..].copy_from_slice(&out_lo.to_be_bytes());
        data.copy_from_slice(&buf[..len]);
        buf.zeroize();
    }

    /// AEZ-core, for messages of at least 32 bytes.
    ///
    /// The message is `M_1 M'_1 ... M_m M'_m || M_uv || M_x M_y` with
    /// `|M_uv| < 32` bytes. The single-block `E` calls that do not depend on
    /// each other are batched into one parallel AES computation each.
    fn core(&self, delta: Delta<'_>, data: &mut [u8], inverse: bool) {
        let len = data.len();
        debug_assert!(len >= 32);
        let frag = len % 32;
        let body = len - frag - 32;
        let (blocks, rest) = data.split_at_mut(body);
        let (fragment, tail) = rest.split_at_mut(frag);
        // M_uv splits into M_u (up to one block) and M_v (the rest, if any).
        let has_v = frag >= 16;
        let u_len = frag.min(16);
        // M_u (or M_u 10* if short) and M_v 10*; unused ones are ignored.
        let padded_u = |f: &[u8]| {
            if has_v { block_at(f, 0) } else { pad10(&f[..u_len]) }
        };
        let padded_v = |f: &[u8]| pad10(&f[u_len..]);
        let tw = |k: usize| xor(&self.i2, &self.l[k]);

        // Deciphering swaps the tweaks 1 and 2 of the last two blocks.
        let (t1, t2) = if inverse { (2, 1) } else { (1, 2) };
        let mx = block_at(tail, 0);
        let my = block_at(tail, 16);

        // E^{0,4}(M_u), E^{0,5}(M_v 10*), E^{0,t1}(M_y) and, if needed for
        // the AEZ-hash, E^{4,1}(N) and E^{3,1}([0]_128); all independent of
        // pass 1.
        let nonce_in = match delta {
            Delta::Value(_) => [0u8; 16],
            Delta::Nonce(n) => xor(n, &self.tw_nonce),
        };
        let ea = self.aes4_lanes([
            xor(&padded_u(fragment), &tw(4)),
            xor(&padded_v(fragment), &tw(5)),
            xor(&my, &tw(t1)),
            nonce_in,
            self.tw_tau,
        ]);
        let delta = &match delta {
            Delta::Value(d) => *d,
            Delta::Nonce(_) => xor(&ea[4], &ea[3]),
        };
        // Pass 1: (W_i, X_i) replace (M_i, M'_i); X = xor of all X_i.
        let mut x = self.run_groups(blocks, None);
        if frag > 0 {
            xor_into(&mut x, &ea[0]);
        }
        if has_v {
            xor_into(&mut x, &ea[1]);
        }
        let sx = xor3(&xor(&mx, delta), &x, &ea[2]);
        let sy = xor(&my, &self.aes10(&xor(&sx, &self.l[t1])));
        let s = xor(&sx, &sy);

        // Pass 2: final C_i, C'_i; Y = xor of all Y_i.
        let mut y = self.run_groups(blocks, Some(&s));

        // E^{-1,4}(S), E^{-1,5}(S), E^{-1,t2}(S_y).
        let ec = self.aes10_lanes([xor(&s, &self.l[4]), xor(&s, &self.l[5]), xor(&sy, &self.l[t2])]);
        let cy = xor(&sx, &ec[2]);
        for (c, p) in fragment[..u_len].iter_mut().zip(&ec[0]) {
            *c ^= p;
        }
        if has_v {
            for (c, p) in fragment[16..].iter_mut().zip(&ec[1]) {
                *c ^= p;
            }
        }
        // E^{0,4}(C_u), E^{0,5}(C_v 10*), E^{0,t2}(C_y).
        let ed = self.aes4_lanes([
            xor(&padded_u(fragment), &tw(4)),
            xor(&padded_v(fragment), &tw(5)),
            xor(&cy, &tw(t2)),
        ]);

        if frag > 0 {
            xor_into(&mut y, &ed[0]);
        }
        if has_v {
            xor_into(&mut y, &ed[1]);
        }
        let cx = xor3(&xor(&sy, delta), &y, &ed[2]);
        put_block(tail, 0, &cx);
        put_block(tail, 16, &cy);
    }

    /// `G` independent groups of eight `AES4` computations, the rounds of
    /// the groups interleaved so that their latencies overlap.
    #[inline(always)]
    fn aes4_groups<const G: usize>(&self, st: &mut [Block8; G]) {
        for rk in [&self.rk_j, &self.rk_i, &self.rk_l, &self.rk_0] {
            for s in st.iter_mut() {
                cipher_round_par(s, rk);
            }
        }
    }

    /// Runs pass 1 (`s == None`) or pass 2 (with `S`) over the block pairs,
    /// two groups of `LANES` pairs at a time with their AES rounds
    /// interleaved; a final partial group is processed in a zero-padded copy
    /// (the padding lanes are computed and discarded). Returns the checksum
    /// (`X` or `Y`).
    #[inline(always)]
    fn run_groups(&self, blocks: &mut [u8], s: Option<&B>) -> B {
        let mut acc = [0u8; 16];
        // 2^ceil(i/8) I, constant within a group of eight pairs: 2I for the
        // first group, doubled for each next one.
        let mut ipow = self.i2;
        let mut next_ipow = || {
            let this = ipow;
            ipow = dbl(&ipow);
            this
        };
        let (groups, rem) = blocks.as_chunks_mut::<GROUP>();
        let (pairs, single) = groups.as_chunks_mut::<2>();
        for [g0, g1] in pairs.iter_mut().map(<[_; 2]>::each_mut) {
            let ips = [next_ipow(), next_ipow()];
            xor_into(&mut acc, &self.pass([g0, g1], [LANES; 2], ips, s));
        }
        // Zero-padded copy of the partial group, 32 bytes per pair.
        let n_rem = rem.len() / 32;
        if n_rem == 0 {
            if let Some(g0) = single.first_mut() {
                xor_into(&mut acc, &self.pass([g0], [LANES], [next_ipow()], s));
            }
            return acc;
        }
        let mut pad = [0u8; GROUP];
        for (d, c) in pad.as_chunks_mut::<32>().0.iter_mut().zip(rem.as_chunks::<32>().0) {
            *d = *c;
        }
        match (single.first_mut(), n_rem) {
            (Some(g0), 0) => {
                xor_into(&mut acc, &self.pass([g0], [LANES], [next_ipow()], s));
            }
            (Some(g0), _) => {
                let ips = [next_ipow(), next_ipow()];
                xor_into(&mut acc, &self.pass([g0, &mut pad], [LANES, n_rem], ips, s));
            }
            (None, 0) => {}
            (None, _) => {
                xor_into(&mut acc, &self.pass([&mut pad], [n_rem], [next_ipow()], s));
            }
        }
        for (d, c) in rem.as_chunks_mut::<32>().0.iter_mut().zip(pad.as_chunks::<32>().0) {
            *d = *c;
        }
        acc
    }

    /// Pass 1 (`s == None`) or pass 2 over `G` groups, of which the first
    /// `ns[g]` pairs are real.
    #[inline(always)]
    fn pass<const G: usize>(
        &self,
        gs: [&mut [u8; GROUP]; G],
        ns: [usize; G],
        ipows: [B; G],
        s: Option<&B>,
    ) -> B {
        match s {
            None => self.pass1(gs, ns, ipows),
            Some(s) => self.pass2(gs, ns, ipows, s),
        }
    }

    /// First AEZ-core pass over `G` groups of eight block pairs.
    /// `(M_i, M'_i)` is replaced by `(W_i, X_i)` with
    /// `W_i = M_i ^ E^{1,i}(M'_i)`, `X_i = M'_i ^ E^{0,0}(W_i)`; returns
    /// the xor of the `X_i` of the first `ns[g]` pairs of each group.
    #[inline(always)]
    fn pass1<const G: usize>(&self, mut gs: [&mut [u8; GROUP]; G], ns: [usize; G], ipows: [B; G]) -> B {
        let mut x = [0u8; 16];
        let mut st: [Block8; G] = core::array::from_fn(|_| Block8::default());
        for ((st, grp), ip) in st.iter_mut().zip(&gs).zip(&ipows) {
            for (k, lane) in st.iter_mut().enumerate() {
                lane.0 = xor3(&block_at(*grp, 32 * k + 16), &self.tw1[k].0, ip);
            }
        }
        self.aes4_groups(&mut st);
        for (st, grp) in st.iter_mut().zip(&mut gs) {
            for (k, lane) in st.iter_mut().enumerate() {
                let w = xor(&block_at(*grp, 32 * k), &lane.0);
                put_block(*grp, 32 * k, &w);
                lane.0 = xor(&w, &self.i1);
            }
        }
        self.aes4_groups(&mut st);
        for ((st, grp), &n) in st.iter().zip(&mut gs).zip(&ns) {
            for (k, lane) in st.iter().enumerate() {
                let xi = xor(&block_at(*grp, 32 * k + 16), &lane.0);
                put_block(*grp, 32 * k + 16, &xi);
                // Padding lanes must not enter the checksum.
                if k < n {
                    xor_into(&mut x, &xi);
                }
            }
        }
        x
    }

    /// Second AEZ-core pass over `G` groups of eight block pairs: with
    /// `S'_i = E^{2,i}(S)`, `Y_i = W_i ^ S'_i`, `Z_i = X_i ^ S'_i`,
    /// `C'_i = Y_i ^ E^{0,0}(Z_i)`, `C_i = Z_i ^ E^{1,i}(C'_i)`; `(W_i, X_i)`
    /// is replaced by `(C_i, C'_i)`. Returns the xor of the `Y_i` of the
    /// first `ns[g]` pairs of each group.
    #[inline(always)]
    fn pass2<const G: usize>(
        &self,
        mut gs: [&mut [u8; GROUP]; G],
        ns: [usize; G],
        ipows: [B; G],
        s: &B,
    ) -> B {
        let mut y = [0u8; 16];
        let mut st: [Block8; G] = core::array::from_fn(|_| Block8::default());
        let mut zs = [[[0u8; 16]; LANES]; G];
        for (st, ip) in st.iter_mut().zip(&ipows) {
            let s_ipow = xor(s, ip);
            for (lane, tw) in st.iter_mut().zip(self.tw2.iter()) {
                lane.0 = xor(&s_ipow, &tw.0);
            }
        }
        self.aes4_groups(&mut st);
        for (((st, grp), zs), &n) in st.iter_mut().zip(&mut gs).zip(&mut zs).zip(&ns) {
            for (k, (lane, z)) in st.iter_mut().zip(zs).enumerate() {
                let sp = lane.0;
                let yi = xor(&block_at(*grp, 32 * k), &sp);
                *z = xor(&block_at(*grp, 32 * k + 16), &sp);
                if k < n {
                    xor_into(&mut y, &yi);
                }
                put_block(*grp, 32 * k + 16, &yi);
                lane.0 = xor(z, &self.i1);
            }
        }
        self.aes4_groups(&mut st);
        for ((st, grp), ip) in st.iter_mut().zip(&mut gs).zip(&ipows) {
            for (k, lane) in st.iter_mut().enumerate() {
                let cp = xor(&block_at(*grp, 32 * k + 16), &lane.0);
                put_block(*grp, 32 * k + 16, &cp);
                lane.0 = xor3(&cp, &self.tw1[k].0, ip);
            }
        }
        self.aes4_groups(&mut st);
        for ((st, grp), zs) in st.iter().zip(&mut gs).zip(&zs) {
            for (k, (lane, z)) in st.iter().zip(zs).enumerate() {
                put_block(*grp, 32 * k, &xor(z, &lane.0));
            }
        }
        y
    }
}

#[cfg(test)]
mod tests;
