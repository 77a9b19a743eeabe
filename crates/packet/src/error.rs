//! Typed errors, one per operation.
//!
//! Errors separate "the peer sent garbage" ([`UnwrapError`], [`SurbError`]) from "the caller asked
//! for something impossible" ([`CreateError`], [`GeometryError`]). None carries key material or
//! any byte of a packet.

use thiserror::Error;

/// Why a [`crate::Geometry`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GeometryError {
    /// The number of hops must be between 1 and [`crate::geometry::MAX_HOPS`].
    #[error("number of hops {0} is out of range 1..={max}", max = crate::geometry::MAX_HOPS)]
    Hops(usize),
    /// The payload length is zero or absurdly large.
    #[error("user forward payload length {0} is out of range 1..={max}", max = crate::geometry::MAX_PAYLOAD)]
    PayloadLength(usize),
}

/// Why a packet or SURB could not be created (a caller error, never a network one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The path is empty or longer than the geometry allows.
    #[error("path has {got} hops, the geometry allows 1..={max}")]
    PathLength {
        /// Hops given.
        got: usize,
        /// Hops allowed.
        max: usize,
    },
    /// The payload is not exactly the forward payload length.
    #[error("payload is {got} bytes, the geometry needs exactly {want}")]
    PayloadLength {
        /// Bytes given.
        got: usize,
        /// Bytes required.
        want: usize,
    },
    /// The commands for a hop do not fit in its routing information slot.
    #[error("commands for hop {hop} do not fit in the per-hop routing information")]
    CommandsTooLong {
        /// Zero-based hop index.
        hop: usize,
    },
    /// A hop's commands are not allowed where they are (a `NextNodeHop`, which the header builder
    /// adds itself, or a terminal command on a non-terminal hop).
    #[error("invalid commands for hop {hop}")]
    InvalidCommands {
        /// Zero-based hop index.
        hop: usize,
    },
    /// A hop's public key is not a key of this geometry's scheme.
    #[error("public key of hop {hop} does not belong to the geometry's scheme or is malformed")]
    PublicKey {
        /// Zero-based hop index.
        hop: usize,
    },
    /// The key agreement produced the all-zero value (a low-order public key).
    #[error("public key of hop {hop} is a low-order point")]
    LowOrderKey {
        /// Zero-based hop index.
        hop: usize,
    },
}

/// Why a received packet was rejected. Every variant means: drop the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UnwrapError {
    /// The packet is not exactly the geometry's packet length.
    #[error("packet has the wrong length")]
    Length,
    /// The version field is unknown.
    #[error("packet has an unknown version")]
    Version,
    /// The node's key does not belong to the geometry's scheme.
    #[error("node key does not match the packet geometry's scheme")]
    KeyScheme,
    /// The group element or KEM ciphertext is invalid (for example a low-order point).
    #[error("invalid group element or KEM ciphertext")]
    KeyAgreement,
    /// The header MAC does not verify: the packet was forged, modified or is not for this node.
    #[error("header MAC mismatch")]
    Mac,
    /// The decrypted routing commands are malformed.
    #[error("malformed routing commands")]
    Commands,
    /// The payload tag is not zero: the payload was modified in transit.
    #[error("payload authentication failed")]
    PayloadTag,
}

/// Why a SURB could not be used or its reply decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SurbError {
    /// The SURB is not exactly the geometry's SURB length.
    #[error("SURB has the wrong length")]
    Length,
    /// The reply payload is not the geometry's forward payload length.
    #[error("reply payload has the wrong length")]
    PayloadLength,
    /// The SURB decryption keys are malformed.
    #[error("malformed SURB decryption keys")]
    Keys,
    /// The reply's payload tag is not zero: it was modified or is not for these keys.
    #[error("reply payload authentication failed")]
    PayloadTag,
}

/// Why key material could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The encoding has the wrong length for the scheme.
    #[error("key has the wrong length for its scheme")]
    Length,
    /// The encoding is not a valid key.
    #[error("key is malformed")]
    Malformed,
}
