//! Runtimes: the IO around the IO-free cores. Each runtime owns one core, the link listener and
//! the outgoing links it needs, and the clock; it feeds the core what arrives and sends what the
//! core emits.

pub mod authority;
mod budget;
/// The authorities' control protocol (shared with clients).
pub use qanat_network::authority_proto;
pub mod gateway;
mod handle;
mod links;
pub mod mix;
mod node_core;
pub mod peers;

pub use authority::{
    AuthorityHandle, AuthorityLink, AuthorityProbe, AuthorityRuntimeConfig, spawn_authority,
};
pub use gateway::{
    ClientBudgets, DocumentCache, GatewayHandle, GatewayProbe, GatewayRuntimeConfig, MAX_SESSION_MAILBOXES,
    PULL_ANSWER_DELAY, spawn_gateway, spawn_gateway_with_replay_log,
};
pub use handle::{RuntimeHandle, Stopped};
pub use mix::{MixHandle, MixProbe, MixRuntimeConfig, spawn_mix, spawn_mix_with_replay_log};
pub use peers::{EpochUpdate, Peer, PeerTable, Probe, Updater};
