//! What Qanat's clients and nodes share about a network: the network file and `[network]` table
//! ([`config`]), the link settings of a geometry ([`link_config`]), the authorities' chunked
//! control protocol ([`authority_proto`]), fetching and verifying their documents
//! ([`directory`]), the wall clock ([`wall_now`]) and durable atomic file writes
//! ([`file`](mod@file)).
//!
//! This crate exists so that the client core (`qanat-client`) needs no node code: no mailbox
//! store, no Redis, no node runtime. A phone build takes `qanat-client` and, through it, only
//! this crate, the IO-free cores and `qanat-link`.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod authority_proto;
pub mod config;
pub mod directory;
pub mod file;

use std::time::SystemTime;

use qanat_link::{FrameSize, LinkConfig};
use qanat_packet::Geometry;
use qanat_pki::UnixMillis;

pub use config::{AuthorityPeer, ClientGateway, ClientNetwork, ConfigError, NetworkConfig};

/// The current wall-clock time: the one place nodes and clients read the clock as a
/// [`UnixMillis`]. A clock before 1970 reads as 0.
pub fn wall_now() -> UnixMillis {
    UnixMillis::from_system_time(SystemTime::now())
}

/// No link frame size carries the network's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no link frame size fits the network's packets; check [network] nr_hops and forward_payload_len")]
pub struct NoFrameSize;

/// The link settings of a network of `geometry`.
pub fn link_config(geometry: &Geometry) -> Result<LinkConfig, NoFrameSize> {
    let size = FrameSize::for_packet_len(geometry.packet_len()).map_err(|_| NoFrameSize)?;
    let mut c = LinkConfig::new(size);
    c.send_queue = c.send_queue.max(4096);
    c.recv_queue = c.recv_queue.max(4096);
    Ok(c)
}
