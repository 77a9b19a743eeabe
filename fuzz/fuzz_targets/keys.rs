//! Public and secret key decoders: never panic; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_packet::{PublicKey, Scheme, SecretKey};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let scheme = Scheme::ALL[sel as usize % 3];
    if let Ok(k) = PublicKey::from_bytes(scheme, rest) {
        assert_eq!(k.to_bytes(), rest);
    }
    if let Ok(k) = SecretKey::from_bytes(scheme, rest) {
        assert_eq!(&k.to_bytes()[..], rest);
    }
    if let Ok(name) = std::str::from_utf8(rest) {
        if let Some(s) = Scheme::from_name(name) {
            assert_eq!(s.name(), name);
        }
    }
});
