//! The pull exchange's readers: a client's `PullClient` fed any answer frames (responses that
//! decode, document chunks of any shape) never panics, and a document it hands out is never
//! longer than its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_client::pull::PullClient;
use qanat_mixnet::client_proto::Response;

const MAX_DOC: usize = 20_000;

fuzz_target!(|data: &[u8]| {
    let mut c = PullClient::new(MAX_DOC);
    let epoch = data.first().map_or(1, |&b| u64::from(b));
    // Frames of up to 64 bytes each, answered to successive pulls.
    for answer in data.chunks(512) {
        let _ = c.poll_pull(3, epoch);
        let frames: Vec<Response> = answer.chunks(64).filter_map(|f| Response::decode(f).ok()).collect();
        if let Ok(out) = c.handle_answer(frames) {
            if let Some((_, doc)) = out.document {
                assert!(doc.len() <= MAX_DOC);
            }
        }
    }
});
