//! An authority fed arbitrary peer messages: never panics, and polling afterwards neither.
#![no_main]

use std::collections::BTreeSet;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use libfuzzer_sys::fuzz_target;
use qanat_packet::Scheme;
use qanat_pki::{Authority, AuthorityConfig, AuthoritySet, IdentitySecret, Parameters, UnixMillis};

fuzz_target!(|data: &[u8]| {
    let identity = IdentitySecret::from_bytes(&[1; 32]);
    let authorities = AuthoritySet::new((1..=3u8).map(|i| IdentitySecret::from_bytes(&[i; 32]).public()))
        .expect("valid set");
    let config = AuthorityConfig {
        identity,
        authorities,
        parameters: Parameters::default_for(Scheme::X25519Kem),
        allowed_nodes: BTreeSet::new(),
    };
    let mut auth = Authority::new(config, &mut ChaCha20Rng::seed_from_u64(0)).expect("valid config");
    // Mid-epoch, between the vote and tabulation, when peer messages are accepted.
    let now = UnixMillis::from_secs(1_767_225_600 + 20 * 60 * 1000 + 660);
    let _ = auth.handle_message(now, data);
    let _ = auth.poll(now);
    let _ = auth.handle_descriptor(now, data);
});
