//! What Qanat's clients and nodes share about a network: the network file and `[network]` table
//! ([`config`]), the link settings of a geometry ([`link_config`]), the authorities' chunked
//! control protocol ([`authority_proto`]), fetching and verifying their documents
//! ([`directory`]), the routes of a document ([`topology_of`]), the wall clock ([`wall_now`]) and
//! durable atomic file writes ([`file`](mod@file)).
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
use qanat_mixnet::{Hop, Topology};
use qanat_packet::{Geometry, NodeId};
use qanat_pki::{Document, UnixTime};

pub use config::{AuthorityPeer, ClientGateway, ClientNetwork, ConfigError, NetworkConfig};

/// The current wall-clock time: the one place nodes and clients read the clock as a
/// [`UnixTime`]. A clock before 1970 reads as 0.
pub fn wall_now() -> UnixTime {
    UnixTime::from_system_time(SystemTime::now())
}

/// The routes a verified directory document gives for its epoch: its layers and gateways, each
/// node with its packet key for the epoch (nodes without one are left out). The one conversion
/// from the directory to the cores' [`Topology`], for nodes and clients alike.
pub fn topology_of(doc: &Document) -> Topology {
    let epoch = doc.epoch();
    let hop = |id: NodeId| doc.packet_key(&id, epoch).map(|k| Hop { id, key: k.clone() });
    let layers = (0..doc.layer_count()).map(|l| doc.layer(l).filter_map(|n| hop(n.id())).collect()).collect();
    let gateways = doc.gateways().filter_map(|n| hop(n.id())).collect();
    Topology { epoch: epoch.0, layers, gateways }
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
