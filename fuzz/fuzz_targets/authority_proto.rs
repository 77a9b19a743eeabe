//! The authorities' control protocol: messages and their chunked transport. Never panics;
//! what decodes re-encodes to the same bytes; the reassembler, fed any sequence of chunks,
//! errs or yields messages within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_link::FrameSize;
use qanat_node::runtime::authority_proto::{MAX_REQUEST_LEN, Message, Reassembler, to_chunks};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data, MAX_REQUEST_LEN) {
        assert_eq!(m.encode(), data);
    }
    let Ok(size) = FrameSize::for_packet_len(2204) else { return };
    let Ok(mut r) = Reassembler::new(size, MAX_REQUEST_LEN) else { return };
    // Split the input into chunks at 0xff bytes (a cheap way to get several chunks).
    for chunk in data.split(|b| *b == 0xff) {
        match r.push(chunk) {
            Ok(Some(m)) => {
                // A message that came out goes back into chunks that reassemble to it.
                let mut again = Reassembler::new(size, MAX_REQUEST_LEN).unwrap();
                let mut out = None;
                for c in to_chunks(&m, size).unwrap() {
                    out = again.push(&c).unwrap();
                }
                assert_eq!(out.as_ref(), Some(&m));
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
