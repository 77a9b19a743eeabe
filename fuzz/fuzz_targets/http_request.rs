//! The metrics endpoint's request parser: never panics on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_link::http::{Route, route};

fuzz_target!(|data: &[u8]| {
    let r = route(data);
    // Only a well-formed GET request line reaches a page.
    if matches!(r, Route::Metrics | Route::Health) {
        assert!(data.starts_with(b"GET /"));
    }
});
