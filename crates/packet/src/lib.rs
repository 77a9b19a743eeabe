//! Sphinx packets as specified by Katzenpost (`sphinx.md`, `kemsphinx.md`): pure functions on
//! bytes.
//!
//! This crate never touches the network, a clock, a file or a global random number generator:
//! callers pass the packet bytes and an RNG, and get bytes and typed results back.
//!
//! - [`Geometry`]: every length of a network's packets, from the scheme, hop count and payload.
//! - [`Sphinx::new_packet`] builds a forward packet; [`Sphinx::unwrap`] removes one layer in
//!   place and returns the hop's [`Commands`] and [`ReplayTag`].
//! - [`Sphinx::new_surb`], [`Sphinx::new_packet_from_surb`], [`Sphinx::decrypt_surb_payload`]:
//!   single-use reply blocks.
//! - [`Scheme`]: X25519 NIKE (classic Sphinx), X25519 KEM, or hybrid X-Wing KEM (KEMSphinx).
//!
//! Packets of every scheme reproduce Katzenpost's vectors byte for byte, creation and every hop
//! (see `tests/katzenpost.rs`).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod aez;
mod blake2x;
pub mod commands;
mod crypto;
pub mod error;
pub mod geometry;
pub mod primitives;
pub mod scheme;
mod sphinx;

pub use commands::{Commands, MailboxId, NextNodeHop, NodeDelay, NodeId, RoutingCommand, SurbId};
pub use error::{CreateError, GeometryError, KeyError, SurbError, UnwrapError};
pub use geometry::Geometry;
pub use scheme::{PublicKey, Scheme, SecretKey};
pub use sphinx::{PathHop, ReplayTag, Sphinx, SurbKeys, Unwrapped};
