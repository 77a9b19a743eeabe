//! A valid packet modified anywhere (the fuzzer chooses where and how) is rejected by some hop or
//! arrives as noise: the original payload never comes out of a modified packet.
#![no_main]

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use libfuzzer_sys::fuzz_target;
use qanat_packet::{Geometry, NodeDelay, NodeId, PathHop, MailboxId, RoutingCommand, Scheme, SecretKey, Sphinx};
use std::sync::OnceLock;

// The packets are built as `crates/packet/benches/common` builds its own, on purpose: the fuzz
// crate is outside the workspace and cannot import a bench module, and the two choose their
// geometry (here a small one, so that the fuzzer reaches every byte) and commands apart.
struct Fixture {
    cases: Vec<(Sphinx, Vec<SecretKey>, Vec<u8>, Vec<u8>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let cases = Scheme::ALL
            .into_iter()
            .map(|s| {
                let sphinx = Sphinx::new(Geometry::new(s, 64, 3).expect("geometry"));
                let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate(s, &mut rng)).collect();
                let path: Vec<PathHop> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| PathHop {
                        id: NodeId([i as u8; 32]),
                        public_key: k.public_key(),
                        commands: if i == 2 {
                            vec![RoutingCommand::Recipient(MailboxId([9; 32]))]
                        } else {
                            vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 5 })]
                        },
                    })
                    .collect();
                let payload: Vec<u8> = (0..64u8).collect();
                let pkt = sphinx.new_packet(&mut rng, &path, &payload).expect("packet");
                (sphinx, keys, payload, pkt)
            })
            .collect();
        Fixture { cases }
    })
}

fuzz_target!(|data: &[u8]| {
    // data = scheme selector, then (offset: u16, xor byte) pairs.
    let Some((&sel, edits)) = data.split_first() else { return };
    let (sphinx, keys, payload, pkt) = &fixture().cases[sel as usize % 3];
    let mut p = pkt.clone();
    for e in edits.chunks_exact(3) {
        let off = u16::from_le_bytes([e[0], e[1]]) as usize % p.len();
        p[off] ^= e[2];
    }
    let modified = p != *pkt;
    for (i, k) in keys.iter().enumerate() {
        match sphinx.unwrap(k, &mut p) {
            Err(_) => return,
            Ok(out) if i == 2 => {
                if modified {
                    assert_ne!(out.payload(&p), Some(&payload[..]), "modified packet delivered its payload");
                }
            }
            Ok(_) => {}
        }
    }
});
