//! Vote and reveal decoders: never panic; whatever decodes is canonical; a vote's version is
//! its parameters' (1 without file limits, 2 with them, each in range).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_pki::{FileLimits, SignedReveal, SignedVote};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = SignedVote::decode(data) {
        assert_eq!(v.as_bytes(), data);
        for d in v.descriptors() {
            assert_eq!(d.descriptor().epoch(), v.epoch());
        }
        let p = v.parameters();
        assert_eq!(data.first(), Some(&p.version()));
        assert!((1..=FileLimits::MAX_FAST_FACTOR).contains(&p.fast_factor_max()));
        assert!((1..=FileLimits::MAX_FILE_BYTES).contains(&p.max_file_bytes()));
    }
    if let Ok(r) = SignedReveal::decode(data) {
        assert_eq!(r.as_bytes(), data);
    }
});
