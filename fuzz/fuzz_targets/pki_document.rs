//! Document decoder and verifier: never panic; whatever decodes is canonical and of version 1
//! or 2 (the body's first byte, after its length); verification against an unrelated authority
//! set never succeeds.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qanat_pki::{AuthoritySet, IdentitySecret, UnverifiedDocument};

fn set() -> &'static AuthoritySet {
    static SET: OnceLock<AuthoritySet> = OnceLock::new();
    SET.get_or_init(|| {
        AuthoritySet::new((1..=3u8).map(|i| IdentitySecret::from_bytes(&[i; 32]).public())).expect("valid set")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = UnverifiedDocument::decode(data) else { return };
    assert_eq!(doc.to_bytes(), data);
    assert!(matches!(data.get(4), Some(1 | 2)));
    let epoch = doc.epoch();
    assert!(doc.verify(set(), epoch).is_err());
});
