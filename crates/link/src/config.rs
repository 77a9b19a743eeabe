//! Link configuration: the frame size and the timers.

use std::time::Duration;

use crate::frame::FrameSize;

/// The default handshake timeout: 10 s, about three times what a whole handshake takes on a 2G
/// link.
///
/// On a link of 50 kbit/s (6,250 bytes/s) with a 500 ms round trip, the dialer sends 2,322 +
/// 1,266 bytes of handshake and its first transport frame (2,229 bytes at the default
/// geometry), the listener 2,322 + 1,122 bytes: 9,261 bytes, 1.5 s of serialisation, plus five
/// one-way trips (2.5 round trips, 1.25 s) and the TCP connect (one round trip, 0.5 s): 3.2 s.
/// Every message fits TCP's initial window (10 segments), so slow start adds no round trip, and
/// the key operations take milliseconds even on an old phone. 10 s leaves room for one lost SYN
/// (Linux retries after 1 s) or one lost segment, and for a link shared with other traffic at
/// half that rate (4.7 s). A longer timeout costs little: a handshake that holds its slot longer
/// is the first one abandoned when the table is full (see [`crate::Listener`]).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by listeners and dialers of one network. Build with [`LinkConfig::new`],
/// then adjust fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LinkConfig {
    /// The network's frame size. Both ends must agree: it is bound into the handshake.
    pub frame_size: FrameSize,
    /// Extra bytes bound into every handshake's prologue (for example the network's name), so
    /// links of different networks never complete a handshake.
    pub network: Vec<u8>,
    /// The whole handshake (connect included, for dialers) must finish within this.
    pub handshake_timeout: Duration,
    /// A connection on which nothing arrives for this long is closed.
    pub idle_timeout: Duration,
    /// A `KeepAlive` frame is sent when nothing else was sent for this long. Keep it well below
    /// the peer's `idle_timeout`.
    pub keepalive_interval: Duration,
    /// Writing one frame (or flushing) must finish within this, or the connection is closed.
    pub write_timeout: Duration,
    /// Frames buffered toward the socket before `send` waits and `try_send` returns `Full`.
    pub send_queue: usize,
    /// Received frames buffered before the link stops reading from the socket.
    pub recv_queue: usize,
    /// Listeners: handshakes in progress at once. When a new connection finds this many, the
    /// oldest handshake of the source address with the most in flight is abandoned to make room
    /// (see [`crate::Listener`]), so that a few flooding addresses cannot lock everyone out.
    pub max_pending_handshakes: usize,
    /// Listeners: handshakes in progress at once from one source address (an IPv4 address, or
    /// an IPv6 /64); a further connection from it is refused.
    pub max_pending_handshakes_per_ip: usize,
    /// Listeners: established connections at once; a connection beyond is refused (before its
    /// handshake, or at its end if others finished first).
    pub max_connections: usize,
    /// Listeners: connections (established and in handshake) at once from one source address;
    /// a further connection from it is refused.
    pub max_connections_per_ip: usize,
    /// Dialers: the first reconnection delay; doubled after each failure.
    pub reconnect_initial: Duration,
    /// Dialers: the largest reconnection delay.
    pub reconnect_max: Duration,
}

impl LinkConfig {
    /// Defaults for `frame_size`: 10 s handshakes ([`DEFAULT_HANDSHAKE_TIMEOUT`]), 90 s idle
    /// timeout, keepalives every 30 s, 30 s write timeout, queues of 1,024 frames, 256 pending
    /// handshakes of which 16 per source address, 4,096 connections of which 256 per source
    /// address, reconnection from 100 ms to 30 s.
    pub fn new(frame_size: FrameSize) -> Self {
        Self {
            frame_size,
            network: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Duration::from_secs(90),
            keepalive_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            send_queue: 1024,
            recv_queue: 1024,
            max_pending_handshakes: 256,
            max_pending_handshakes_per_ip: 16,
            max_connections: 4096,
            max_connections_per_ip: 256,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
        }
    }
}
