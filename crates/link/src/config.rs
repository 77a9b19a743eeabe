//! Link configuration: the frame size and the timers.

use std::time::Duration;

use crate::frame::FrameSize;

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
    /// Listeners: handshakes in progress at once; further connections are dropped.
    pub max_pending_handshakes: usize,
    /// Dialers: the first reconnection delay; doubled after each failure.
    pub reconnect_initial: Duration,
    /// Dialers: the largest reconnection delay.
    pub reconnect_max: Duration,
}

impl LinkConfig {
    /// Defaults for `frame_size`: 10 s handshakes, 90 s idle timeout, keepalives every 30 s,
    /// 30 s write timeout, queues of 1,024 frames, 256 pending handshakes, reconnection from
    /// 100 ms to 30 s.
    pub fn new(frame_size: FrameSize) -> Self {
        Self {
            frame_size,
            network: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            keepalive_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            send_queue: 1024,
            recv_queue: 1024,
            max_pending_handshakes: 256,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
        }
    }
}
