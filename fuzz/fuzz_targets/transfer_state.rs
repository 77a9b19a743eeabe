//! A file sender's saved state (`TransferSend::save`, kept in the profile's `engine.xfer_state`
//! rows) read back on arbitrary bytes, for files of any size and one to three recipients: never
//! panics; what restores saves to bytes that restore to the same; the restored sender then
//! answers its timers without panicking.
#![no_main]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use qanat_mixnet::UnixMicros;
use qanat_mixnet::sending::transfer::{Plan, SendConfig, TransferSend};
use qanat_mixnet::sending::{Route, SealKey, TransferId};
use qanat_packet::{MailboxId, NodeId};
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, rest @ ..] = data else { return };
    // Up to 4 MiB, the largest file the directory allows by default.
    let size = u64::from(u16::from_be_bytes([*a, *b])) * 64;
    let Ok(plan) = Plan::new(size, 1450) else { return };
    let routes: Vec<(Route, MailboxId)> = (0..usize::from(*c % 3) + 1)
        .map(|i| {
            let r = Route { gateway: NodeId([i as u8; 32]), mailbox: MailboxId([i as u8; 32]), seal: SealKey([0; 32]) };
            (r, MailboxId([9; 32]))
        })
        .collect();
    let new = || {
        TransferSend::new(
            TransferId([1; 16]),
            plan.clone(),
            Zeroizing::new([0; 32]),
            SigningKey::from_bytes(&[1; 32]),
            &routes,
            SendConfig::default(),
        )
    };
    let mut t = new();
    if t.restore(rest, UnixMicros::ZERO).is_ok() {
        let saved = t.save();
        let mut u = new();
        u.restore(&saved, UnixMicros::ZERO).expect("a saved state restores");
        assert_eq!(u.save(), saved);
        let _ = t.poll_timeout();
        t.handle_timeout(UnixMicros::ZERO + Duration::from_secs(3600));
        let _ = (t.is_finished(), t.needs_prepare(), t.has_queued(), t.progress(0));
    }
});
