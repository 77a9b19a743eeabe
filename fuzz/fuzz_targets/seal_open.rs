//! Opening a sealed mailbox item (`qanat_mixnet::sending::seal::open`) on any bytes: never
//! panics, and what `seal` makes of the input opens back to it.
#![no_main]

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use libfuzzer_sys::fuzz_target;
use qanat_mixnet::sending::seal::{SealKey, open, seal};

fuzz_target!(|data: &[u8]| {
    let key = SealKey([7; 32]);
    let id = [9u8; 16];
    let _ = open(&key, &id, data);
    let mut rng = ChaCha20Rng::seed_from_u64(data.len() as u64);
    let body = seal(&key, &id, data, &mut rng).expect("a packet-sized payload seals");
    assert_eq!(open(&key, &id, &body).expect("a sealed body opens"), data);
});
