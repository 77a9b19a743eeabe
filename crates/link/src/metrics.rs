//! Counters a node exports (to Prometheus, later). Plain atomics, shared by `Arc`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Link counters. Every field only grows, except the gauges `connections_open` and
/// `handshakes_in_flight`.
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// Frames received and decoded (keepalives included).
    pub frames_in: AtomicU64,
    /// Frames encrypted and written (keepalives included).
    pub frames_out: AtomicU64,
    /// Handshakes completed and authorized.
    pub handshakes: AtomicU64,
    /// Handshakes that failed: garbage, truncation, wrong key, timeout, socket error.
    pub handshake_failures: AtomicU64,
    /// Peers whose static key the authorizer refused.
    pub auth_rejections: AtomicU64,
    /// Connections closed because a frame failed authentication or decoding.
    pub bad_frames: AtomicU64,
    /// Connections closed because the peer sent nothing within the idle timeout, or a write
    /// did not finish within the write timeout.
    pub timeouts: AtomicU64,
    /// Dial attempts after the first, by [`crate::PeerLink`]s.
    pub reconnects: AtomicU64,
    /// Listener handshakes that did not finish within the handshake timeout (also counted in
    /// `handshake_failures`): silent or slow (slowloris) dialers, or very slow links.
    pub handshake_timeouts: AtomicU64,
    /// Listener handshakes abandoned to make room for a new connection when
    /// [`LinkConfig::max_pending_handshakes`](crate::LinkConfig::max_pending_handshakes) were in
    /// flight (the oldest of the source with the most in flight).
    pub handshake_evictions: AtomicU64,
    /// Incoming connections refused because their source address already had
    /// [`LinkConfig::max_pending_handshakes_per_ip`](crate::LinkConfig::max_pending_handshakes_per_ip)
    /// handshakes in flight.
    pub refused_handshakes_per_ip: AtomicU64,
    /// Incoming connections refused because their source address already held
    /// [`LinkConfig::max_connections_per_ip`](crate::LinkConfig::max_connections_per_ip)
    /// connections.
    pub refused_connections_per_ip: AtomicU64,
    /// Incoming connections refused because
    /// [`LinkConfig::max_connections`](crate::LinkConfig::max_connections) were established.
    pub refused_connections: AtomicU64,
    /// Authenticated connections currently open.
    pub connections_open: AtomicU64,
    /// Listener handshakes currently in flight.
    pub handshakes_in_flight: AtomicU64,
}

/// A copy of [`LinkMetrics`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MetricsSnapshot {
    pub frames_in: u64,
    pub frames_out: u64,
    pub handshakes: u64,
    pub handshake_failures: u64,
    pub auth_rejections: u64,
    pub bad_frames: u64,
    pub timeouts: u64,
    pub reconnects: u64,
    pub handshake_timeouts: u64,
    pub handshake_evictions: u64,
    pub refused_handshakes_per_ip: u64,
    pub refused_connections_per_ip: u64,
    pub refused_connections: u64,
    pub connections_open: u64,
    pub handshakes_in_flight: u64,
}

impl LinkMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            frames_in: r(&self.frames_in),
            frames_out: r(&self.frames_out),
            handshakes: r(&self.handshakes),
            handshake_failures: r(&self.handshake_failures),
            auth_rejections: r(&self.auth_rejections),
            bad_frames: r(&self.bad_frames),
            timeouts: r(&self.timeouts),
            reconnects: r(&self.reconnects),
            handshake_timeouts: r(&self.handshake_timeouts),
            handshake_evictions: r(&self.handshake_evictions),
            refused_handshakes_per_ip: r(&self.refused_handshakes_per_ip),
            refused_connections_per_ip: r(&self.refused_connections_per_ip),
            refused_connections: r(&self.refused_connections),
            connections_open: r(&self.connections_open),
            handshakes_in_flight: r(&self.handshakes_in_flight),
        }
    }
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}
