//! Client–gateway control messages: never panic; what decodes re-encodes to a prefix of the
//! input followed only by zero padding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_mixnet::client_proto::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        let e = r.encode().expect("a decoded request re-encodes");
        assert!(data.starts_with(&e) && data[e.len()..].iter().all(|&b| b == 0));
    }
    if let Ok(r) = Response::decode(data) {
        let e = r.encode().expect("a decoded response re-encodes");
        assert!(data.starts_with(&e) && data[e.len()..].iter().all(|&b| b == 0));
    }
});
