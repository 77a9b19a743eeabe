//! IO-free logic of Qanat's mix network, in the order a message travels: the client's sending
//! layer, the gateway, the mix node, and the gateway again up to the mailbox pulls.
//!
//! - [`sending`]: the client's end: the Poisson schedule, payloads, the seal, packets and SURBs,
//!   the outbox that resends until acknowledged; and, for the recipient, the inbox and the
//!   acknowledgements it owes.
//! - [`gateway`]: a client's packets into the first mix layer (ingress); last hops into the
//!   mailbox store, acknowledged once durable (egress).
//! - [`mix`]: unwrap, replay filters ([`replay`]), the sender's delays, loop cover; [`resend`]:
//!   the last mix's packets kept until their gateway acknowledges them.
//! - [`client_proto`] and [`pull`]: the client–gateway control messages and both sides of the
//!   fixed-length pulls from the mailboxes (the gateway's and the client's).
//! - [`time`] and [`topology`]: what they all share: simulated time, exponential sampling, the
//!   epoch's layers and gateways, and paths through them.
//!
//! Every function takes bytes, the current [`UnixMicros`] and an RNG, and returns what to send; the
//! node and client processes own sockets, clocks and storage. This makes every behaviour testable
//! on a deterministic simulated network with simulated time: `qanat-sim`'s, whose
//! `tests/nodes.rs` drives the mixes and gateways on lossy links and a failing store.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod client_proto;
pub mod gateway;
mod keyring;
pub mod mix;
pub mod pull;
pub mod replay;
pub mod resend;
pub mod sending;
pub mod time;
pub mod topology;

pub use gateway::{
    Ack, AckToken, Egress, Gateway, GatewayConfig, GatewayMetrics, MailboxItem, Refusal, StoreRequest,
    StoreResult, StoreToken,
};
pub use keyring::{EpochWindow, ReplayBatch, Transmit};
pub use mix::{Dropped, Mix, MixConfig, MixMetrics, Received};
pub use replay::ReplayFilter;
pub use resend::{Resend, ResendConfig, ResendMetrics, Resends};
pub use time::{UnixMicros, exponential};
pub use topology::{Destination, Hop, Topology, path_hops};
