//! IO-free node logic for Qanat's mix network: the mix node and the gateway.
//!
//! Every function takes bytes, the current [`Time`] and an RNG, and returns what to send; the
//! node process (the networking layer) owns sockets, clocks and storage. This makes every
//! behaviour testable on a deterministic simulated network with simulated time (see
//! `tests/sim.rs`).
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
pub use time::{Time, exponential};
pub use topology::{Destination, Hop, Position, Topology, path_hops};
