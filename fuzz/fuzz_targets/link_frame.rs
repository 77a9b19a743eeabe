//! Link frame decoder: never panics; whatever decodes re-encodes to exactly the same bytes
//! (one encoding per frame), and frames of the wrong length are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_link::{Frame, FrameSize};

fuzz_target!(|data: &[u8]| {
    let Some((len, bytes)) = data.split_first_chunk::<2>() else { return };
    // Packet lengths 32..=2_079 keep inputs small while covering every size class.
    let Ok(size) = FrameSize::for_packet_len(32 + usize::from(u16::from_be_bytes(*len)) % 2_048) else {
        return;
    };
    // Use the input as a whole frame, zero-extended or cut to F; and as given.
    let mut frame = bytes.to_vec();
    frame.resize(size.frame_len(), 0);
    for candidate in [&frame[..], bytes] {
        match Frame::decode(size, candidate) {
            Ok(f) => {
                assert_eq!(candidate.len(), size.frame_len());
                let mut again = vec![0xa5; size.frame_len()];
                f.encode(size, &mut again).unwrap();
                assert_eq!(again, candidate);
            }
            Err(_) => {}
        }
    }
});
