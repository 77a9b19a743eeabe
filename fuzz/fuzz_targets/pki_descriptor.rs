//! Descriptor decoder: never panics; whatever decodes is canonical (re-encodes to the input)
//! and its signature verified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_pki::SignedDescriptor;

fuzz_target!(|data: &[u8]| {
    let Ok(d) = SignedDescriptor::decode(data) else { return };
    assert_eq!(d.as_bytes(), data);
    let again = SignedDescriptor::decode(d.as_bytes()).expect("a decoded descriptor decodes again");
    assert_eq!(again, d);
    let desc = d.descriptor();
    assert!(desc.packet_key(desc.epoch()).is_some());
});
