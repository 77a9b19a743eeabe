//! A client packet's payload (DATA with its SURB, COVER, ACKS, CHUNK, SURBS): never panics;
//! what decodes (other than cover, and the one-fragment ACK of before, which is written as ACKS)
//! re-encodes to the same bytes.
#![no_main]

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use libfuzzer_sys::fuzz_target;
use qanat_mixnet::sending::Payload;
use qanat_packet::{Geometry, Scheme};

fuzz_target!(|data: &[u8]| {
    let g = Geometry::default_for(Scheme::X25519Kem);
    let mut b = vec![0u8; g.forward_payload_len()];
    let n = data.len().min(b.len());
    b[..n].copy_from_slice(&data[..n]);
    if let Ok(p) = Payload::decode(&g, &b)
        && p != Payload::Cover
        && b[0] != 3
    {
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        assert_eq!(p.encode(&g, &mut rng).expect("a decoded payload re-encodes"), b);
    }
});
