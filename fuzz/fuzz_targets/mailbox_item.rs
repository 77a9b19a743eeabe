//! The gateway's stored mailbox item decoder: never panics; what decodes re-encodes to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_mixnet::MailboxItem;

fuzz_target!(|data: &[u8]| {
    if let Ok(item) = MailboxItem::decode(data) {
        assert_eq!(item.encode(), data);
    }
});
