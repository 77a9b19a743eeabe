//! The invitation decoders: never panic; what decodes re-encodes to the input (bytes and link),
//! and a stored pending invitation decodes only if its secret matches its public key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_client::invite::{Invitation, LINK_PREFIX, PendingInvitation};

fuzz_target!(|data: &[u8]| {
    if let Ok(inv) = Invitation::decode(data) {
        assert_eq!(inv.encode(), data);
        assert_eq!(Invitation::parse(&inv.to_link()).ok().as_ref(), Some(&inv));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(inv) = Invitation::parse(text) {
            let link = inv.to_link();
            let trimmed = text.trim();
            assert!(trimmed == link || format!("{LINK_PREFIX}{trimmed}") == link);
        }
    }
    if let Ok(p) = PendingInvitation::decode(data) {
        assert_eq!(p.encode().as_slice(), data);
    }
});
