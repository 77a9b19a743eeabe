//! Error types, one per operation. "The peer sent garbage" ([`FrameError`],
//! [`HandshakeError::Protocol`]) is kept apart from local failures.

use std::io;

use thiserror::Error;

use crate::frame::Frame;

/// A link key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The encoding has the wrong length.
    #[error("link key has {got} bytes, expected {expected}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The ML-KEM part fails FIPS 203's key checks.
    #[error("invalid ML-KEM-768 key")]
    InvalidMlKemKey,
}

/// A configuration value is out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No frame size can carry packets of this length (32 to 65,510 bytes).
    #[error("packet length {0} does not fit a link frame")]
    PacketLength(usize),
}

/// A frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer is not exactly one frame long.
    #[error("frame buffer of {0} bytes")]
    FrameLength(usize),
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A packet of the wrong length.
    #[error("packet of {0} bytes")]
    PacketLength(usize),
    /// An ack frame with no ids or more than fit.
    #[error("ack frame with {0} ids")]
    AckCount(usize),
    /// A control frame longer than fits.
    #[error("control frame of {0} bytes")]
    ControlLength(usize),
    /// Non-zero padding.
    #[error("non-zero padding")]
    Padding,
}

/// Why a handshake failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The handshake did not finish within the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// The peer sent a malformed or unauthentic handshake message (or holds another key).
    #[error("handshake protocol failure")]
    Protocol,
    /// The peer's static key was refused by the authorizer.
    #[error("peer not authorized")]
    Unauthorized,
    /// Local failure inside the Noise implementation (a bug, not the peer's doing).
    #[error("internal handshake error")]
    Internal,
}

/// [`crate::FrameSender::send`] failed; the frame is handed back.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection (or link) is closed.
    #[error("link closed")]
    Closed(Frame),
    /// The frame cannot be encoded at this link's frame size.
    #[error("invalid frame: {1}")]
    Invalid(Frame, FrameError),
}

/// [`crate::FrameSender::try_send`] failed; the frame is handed back.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrySendError {
    /// The send queue is full: back off and retry (or `send().await`).
    #[error("send queue full")]
    Full(Frame),
    /// The connection (or link) is closed.
    #[error("link closed")]
    Closed(Frame),
    /// The frame cannot be encoded at this link's frame size.
    #[error("invalid frame: {1}")]
    Invalid(Frame, FrameError),
}
