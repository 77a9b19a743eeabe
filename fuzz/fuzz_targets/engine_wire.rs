//! The client engine's formats: what a mailbox message carries (`Outer`) and the plaintext of an
//! MLS application message (`Content`). Never panics; what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_client::engine::wire::{Content, Outer};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Content::decode(data) {
        assert_eq!(c.encode().as_deref(), Ok(data));
    }
    if let Ok(o) = Outer::decode(data) {
        assert_eq!(o.encode(), data);
    }
});
