//! Qanat's links: mutually authenticated, encrypted channels over TCP between nodes, and from
//! clients to gateways, carrying fixed-size frames only. This is the only Qanat crate that
//! opens sockets.
//!
//! # Pieces
//!
//! - [`LinkSecretKey`] / [`LinkPublicKey`]: a hybrid static key (X25519 + ML-KEM-768). A node's
//!   public link key is what the directory publishes for it.
//! - [`Listener`]: binds, runs handshakes, asks an [`Authorizer`] about each dialer's key, and
//!   yields [`Connection`]s tagged with what the authorizer returned.
//! - [`PeerLink`]: keeps one outgoing connection to one peer (address and expected key),
//!   reconnecting with jittered exponential backoff; its bounded queue outlives connections
//!   and pushes back on the producer. [`connect`] dials once.
//! - [`Frame`] / [`FrameSize`]: the frames (`Packet`, `Ack`, `KeepAlive`, `Control`, `Close`),
//!   each padded to the network's frame size, with a strict decoder (pure functions on
//!   bytes).
//! - [`LinkMetrics`]: counters (frames, handshakes, rejections, bad frames, timeouts,
//!   reconnects) as plain atomics.
//! - [`http`]: the operator's metrics endpoint (`/metrics`, `/health`) and address resolution.
//!
//! # The handshake, and why Clatter
//!
//! Links use `Noise_hybridXK_25519+MLKEM768_ChaChaPoly_BLAKE2b` from the
//! [`clatter`](https://crates.io/crates/clatter) crate: every step of the classic Noise XK
//! pattern (X25519) runs alongside the PQNoise KEM steps (ML-KEM-768) and both feed one
//! symmetric state, so the session keys stay secret unless *both* X25519 and ML-KEM-768 are
//! broken. That answers the adversary who records links today and decrypts them with a quantum
//! computer later (threat A6).
//!
//! `snow`, the most used Rust Noise crate, implements only classic patterns (its old
//! `hfs` Kyber1024 extension is an unmaintained pre-standard Kyber, and it does not
//! authenticate statics by KEM). Clatter is maintained (2.x releases through 2025), tracks
//! Noise revision 34, implements the PQNoise paper's patterns (Angel et al., CCS 2022), is
//! tested against Cacophony and snow vectors, forbids nothing we need and uses RustCrypto's
//! ML-KEM. It has had no formal audit; neither has snow's PQ path. The hybrid construction
//! limits the damage of a flaw in either half.
//!
//! XK rather than XX or IK: the dialer always knows the listener's key (from the directory,
//! or the client's chosen gateway), so the listener never has to reveal it; the dialer's own
//! static key travels in message 3 under keys from both ephemeral exchanges, so a passive
//! observer never learns it and a later compromise of the listener's key does not reveal it
//! either (IK would send it in message 1, protected only by the listener's static keys).
//! The cost is two round trips, paid once per long-lived connection.
//!
//! See [`handshake`] for the messages and `docs/LINK.md` for what each side and the wire
//! observer learn.
//!
//! # Invariants
//!
//! - After the handshake every transport message on the wire is exactly
//!   [`FrameSize::wire_len`] bytes; nothing else is ever written.
//! - A frame that fails authentication or decoding closes its connection and is counted in
//!   [`LinkMetrics::bad_frames`]; it never panics and never touches another connection.
//! - A frame handed to `send`/`try_send` is queued or handed back in the error, never
//!   dropped silently.
//! - Logs never contain keys, addresses, peer identities or frame contents.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod authorizer;
mod budget;
mod cipher;
mod config;
mod conn;
mod dialer;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http;
mod keys;
mod listener;
mod metrics;
mod mlkem;
mod session;

pub use authorizer::{AcceptAnyKey, Authorizer};
pub use config::{DEFAULT_HANDSHAKE_TIMEOUT, LinkConfig};
pub use conn::{Connection, FrameReceiver, FrameSender, connect};
pub use dialer::PeerLink;
pub use error::{ConfigError, FrameError, HandshakeError, KeyError, SendError, TrySendError};
pub use frame::{Frame, FrameSize, PacketId};
pub use keys::{LinkPublicKey, LinkSecretKey};
pub use listener::Listener;
pub use metrics::{LinkMetrics, MetricsSnapshot};
