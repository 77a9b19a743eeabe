//! Vote and reveal decoders: never panic; whatever decodes is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_pki::{SignedReveal, SignedVote};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = SignedVote::decode(data) {
        assert_eq!(v.as_bytes(), data);
        for d in v.descriptors() {
            assert_eq!(d.descriptor().epoch(), v.epoch());
        }
    }
    if let Ok(r) = SignedReveal::decode(data) {
        assert_eq!(r.as_bytes(), data);
    }
});
