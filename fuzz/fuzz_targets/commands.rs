//! Routing-command decoder: never panics; whatever decodes re-encodes and decodes to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qanat_packet::{Commands, RoutingCommand};

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Commands::decode(data) else { return };
    let mut again = Vec::new();
    if let Some(d) = c.delay {
        RoutingCommand::NodeDelay(d).encode(&mut again);
    }
    if let Some(n) = c.next_hop {
        RoutingCommand::NextNodeHop(n).encode(&mut again);
    }
    if let Some(r) = c.recipient {
        RoutingCommand::Recipient(r).encode(&mut again);
    }
    if let Some(s) = c.surb_reply {
        RoutingCommand::SurbReply(s).encode(&mut again);
    }
    assert_eq!(Commands::decode(&again), Ok(c));
});
