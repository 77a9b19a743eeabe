//! SURB use and SURB reply decryption on arbitrary SURBs, payloads and keys: never panics, and a
//! reply packet always has the geometry's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_packet::{Geometry, Scheme, Sphinx, SurbKeys};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let scheme = Scheme::ALL[sel as usize % 3];
    let sphinx = Sphinx::new(Geometry::new(scheme, 40, 2).expect("geometry"));
    let g = sphinx.geometry();
    let split = (sel as usize * 7) % (rest.len() + 1);
    let (a, b) = rest.split_at(split);
    // As a SURB, with a payload of the right length and of the wrong one.
    let payload = vec![0x5a; g.forward_payload_len()];
    if let Ok((pkt, _)) = sphinx.new_packet_from_surb(rest, &payload) {
        assert_eq!(pkt.len(), g.packet_len());
    }
    let _ = sphinx.new_packet_from_surb(a, b);
    // As a reply payload and its keys.
    if let Ok(keys) = SurbKeys::from_bytes(a) {
        if let Ok(p) = sphinx.decrypt_surb_payload(b, &keys) {
            assert_eq!(p.len(), g.forward_payload_len());
        }
    }
});
