//! Packet parse and unwrap: arbitrary bytes at a node never panic, and an accepted packet keeps
//! its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_packet::{Geometry, Scheme, SecretKey, Sphinx};
use std::sync::OnceLock;

struct Fixture {
    sphinx: Vec<(Sphinx, SecretKey)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        sphinx: Scheme::ALL
            .into_iter()
            .map(|s| {
                // Small geometries keep every length reachable by the fuzzer.
                let g = Geometry::new(s, 40, 2).expect("geometry");
                (Sphinx::new(g), SecretKey::from_bytes(s, &[7u8; 32]).expect("key"))
            })
            .collect(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let (sphinx, key) = &fixture().sphinx[sel as usize % 3];
    let mut pkt = rest.to_vec();
    let len = pkt.len();
    let _ = sphinx.replay_tag(&pkt);
    if let Ok(out) = sphinx.unwrap(key, &mut pkt) {
        assert_eq!(pkt.len(), len);
        if let Some(p) = out.payload(&pkt) {
            assert!(p.len() <= len);
        }
    }
});
