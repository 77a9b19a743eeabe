//! The client's end of the mix network: what goes into each packet, when packets leave, and what
//! makes delivery reliable.
//!
//! IO-free like the node cores: it takes bytes, the current [`UnixMicros`](crate::UnixMicros) and an RNG,
//! and returns packets and events. The client (`qanat-client`: its engine, profile and runtime)
//! owns the clock, the storage and the link to the gateway; `qanat-sim` runs clients made of the
//! same code. In the order a message travels:
//!
//! 1. [`outbox`]: the sender queues a message; it is cut into fragments, each sent again until
//!    its acknowledgement comes back.
//! 2. [`payload`]: each fragment becomes a DATA payload, with a SURB for its acknowledgement.
//! 3. [`seal`]: the payload is sealed end to end to the owner of the recipient's mailbox.
//! 4. [`packets`]: the sealed body goes into a Sphinx packet through one mix per layer to the
//!    recipient's gateway and mailbox.
//! 5. [`schedule`]: the packet leaves in the next payload slot of the client's Poisson schedule;
//!    loops and drops leave in their own slots.
//!
//! The gateways and mixes of this crate carry it ([`crate::gateway`], [`crate::mix`]) into the
//! mailbox, which the recipient pulls from its own gateway ([`crate::pull`]). There:
//!
//! 6. [`inbox`]: the recipient opens the item, reassembles the message and delivers it once.
//! 7. [`acks`]: the recipient owes an acknowledgement of each fragment; many go in one reply
//!    through a SURB, back to the sender's [`Outbox::handle_reply`].
//!
//! # What each party learns
//!
//! | party | learns | not |
//! |---|---|---|
//! | an observer of a client's link | packets of one size at the profile's rates | whether a packet is real, a resend, an acknowledgement or cover |
//! | the sender's gateway | the same, and which of its clients sends | where a packet goes |
//! | a mix | the hop before and the hop after | the sender, the mailbox, the kind |
//! | the recipient's gateway | the mailbox and arrival time of each item, `identifier ‖ body` of one length | the sender, the kind, message ids, fragment counts |
//! | the recipient | the message, its id, fragment count and indices | the way back (the SURB's path) |
//! | the sender | that each fragment arrived | nothing more of the recipient than the route it was given |
//!
//! Each module's documentation says what its part shows, and to whom.

pub mod acks;
pub mod inbox;
pub mod outbox;
pub mod packets;
pub mod payload;
pub mod schedule;
pub mod seal;
pub mod transfer;

pub use acks::{AckGroup, AckQueue, AckStats};
pub use inbox::{
    Inbox, MAX_PARTIAL_BYTES, MAX_PARTIAL_BYTES_PER_SOURCE, MAX_PARTIAL_MESSAGES,
    MAX_PARTIAL_MESSAGES_PER_SOURCE, REMEMBER_DELIVERED, Received, Source,
};
pub use outbox::{Delivery, Outbox, OutboxEvent, ResendPolicy, SURB_LIFETIME};
pub use packets::{
    NetworkView, OutPacket, Route, RouteError, ack_packet, acks_packet, cover_packet, reply_surb, route_hops,
    sealed_packet,
};
pub use payload::{
    AckEntry, MAX_FRAGMENTS, MessageId, Payload, PayloadError, TransferId, ack_capacity, fragment_capacity,
    shard_capacity,
};
pub use schedule::{PULL_BATCH, PULL_FIRST, Rates, Schedule, Slot, TrafficProfile};
pub use seal::SealKey;

#[cfg(test)]
mod tests;
