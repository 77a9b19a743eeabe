//! How to run a gateway: [`GatewayRuntimeConfig`], the budgets of its client listener and of each
//! client session ([`ClientBudgets`]), and the fixed delay of every answer to a client
//! ([`PULL_ANSWER_DELAY`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qanat_link::{LinkConfig, LinkSecretKey};
use qanat_mixnet::UnixMicros;
#[cfg(doc)]
use qanat_mixnet::client_proto::PULL_OPS;
use qanat_packet::NodeId;

use super::DocumentCache;
#[cfg(doc)]
use super::{GatewayHandle, GatewayRuntimeMetrics};
use crate::runtime::peers::Peer;

/// How to run a gateway.
#[derive(Debug)]
pub struct GatewayRuntimeConfig {
    /// Where nodes connect.
    pub listen: SocketAddr,
    /// Where clients connect.
    pub client_listen: SocketAddr,
    /// This node's link key.
    pub link_key: Arc<LinkSecretKey>,
    /// Link settings.
    pub link: LinkConfig,
    /// Nodes that may connect here or that packets may go to, whatever the directory says
    /// (more come with [`GatewayHandle::update`]).
    pub peers: HashMap<NodeId, Peer>,
    /// Most store writes in one append call.
    pub max_batch: usize,
    /// What the core's clock reads when the runtime starts (see
    /// [`MixRuntimeConfig::clock`](crate::runtime::MixRuntimeConfig::clock)).
    pub clock: UnixMicros,
    /// Fault injection for tests: the fraction of packets from clients and from mixes dropped as
    /// if lost on the link (those from mixes are acknowledged first). 0 on a real network.
    pub fault_drop_rate: f64,
    /// The verified directory documents served to clients in their pulls (filled by the
    /// directory loop).
    pub documents: DocumentCache,
    /// How long after a client's request arrives its answer leaves ([`PULL_ANSWER_DELAY`] on a
    /// real network): the answer's timing then shows nothing of the store's work (how many
    /// mailboxes the session holds, what waited, what a registration cost).
    pub pull_answer_delay: Duration,
    /// The budgets of the client listener and of each client session.
    pub clients: ClientBudgets,
}

/// The budgets of a gateway's client listener and of each client session (see
/// `runtime::budget` for how they are applied and why their defaults).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientBudgets {
    /// Client connections at once (the client listener's
    /// [`LinkConfig::max_connections`]; its handshake budgets are the node listener's).
    pub max_connections: usize,
    /// Client connections at once from one address (an IPv4 address, or an IPv6 /64). Clients
    /// behind one carrier-grade NAT share this.
    pub max_connections_per_ip: usize,
    /// Frames queued per client connection, each way (instead of [`LinkConfig::send_queue`] and
    /// [`LinkConfig::recv_queue`], which are sized for node links).
    pub queue_frames: usize,
    /// A session's packet budget is this many times the directory's client rate
    /// (`fast_factor_max·λ_P + λ_L + λ_D` per second,
    /// [`Parameters::max_client_rate`](qanat_pki::Parameters::max_client_rate)).
    pub packet_slack: f64,
    /// Packets a session may send at once above its rate (the bucket's size).
    pub packet_burst: u32,
    /// The packet rate per session before the directory sets one (tests give it; `None`: no
    /// limit until the first document, the gateway forwards nothing before it anyway).
    pub packet_rate: Option<f64>,
    /// Registrations per second per session.
    pub registrations_per_second: f64,
    /// Registrations a session may make at once above that rate.
    pub registration_burst: u32,
    /// Most mailboxes one session may hold (each costs a store read every few pulls).
    pub max_mailboxes: usize,
}

impl Default for ClientBudgets {
    /// 4,096 connections, 64 per address, queues of 128 frames, a packet budget of 4 × the
    /// directory's rate with a burst of 32, 2 registrations a second with a burst of 256, 4,096
    /// mailboxes per session.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 64,
            queue_frames: 128,
            packet_slack: 4.0,
            packet_burst: 32,
            packet_rate: None,
            registrations_per_second: 2.0,
            registration_burst: 256,
            max_mailboxes: MAX_SESSION_MAILBOXES,
        }
    }
}

/// The delay of every answer to a client's request: above the store work of a pull (at most [`MAX_PULL_READS`](qanat_mixnet::pull::MAX_PULL_READS) reads and [`PULL_OPS`] operations; a few milliseconds on SQLite
/// or a Redis Cluster on the same network). An answer that is later still leaves at once and is
/// counted ([`GatewayRuntimeMetrics::client_answers_late`]).
///
/// Short, because the client keeps one pull in flight: a delay plus round trip longer than the
/// pull interval would skip pulls and halve what the client can receive (seen on a lossy devnet
/// with 100 ms pulls, where the acknowledgement backlog then grew without end).
pub const PULL_ANSWER_DELAY: Duration = Duration::from_millis(25);

/// Most mailboxes one client connection may register by default (each costs a store read every
/// `len / MAX_PULL_READS` pulls).
pub const MAX_SESSION_MAILBOXES: usize = 4096;
