//! The directory of a Qanat network: epochs, node descriptors, the authorities' vote, and the
//! per-epoch network document that every node and client uses.
//!
//! This crate does no IO: it never opens a socket, reads a clock or a file, or uses a global
//! random number generator. Functions take bytes, the time ([`UnixMillis`]) and an RNG
//! (`rand_core::CryptoRng`) and return values, typed errors, or [`Action`]s for the caller.
//!
//! - [`time`]: [`Epoch`], [`EpochPeriod`] (default 20 minutes), the genesis instant
//!   (2026-01-01T00:00:00Z) and the [`Schedule`] of each epoch.
//! - [`identity`]: Ed25519 identity keys ([`IdentityKey`], [`IdentitySecret`]) and node ids.
//! - [`descriptor`]: what a node publishes about itself ([`NodeDescriptor`],
//!   [`SignedDescriptor`]).
//! - [`params`]: the network [`Parameters`] (geometry, delays, rates, layers, epoch period, and
//!   from version 2 the [`FileLimits`] of file transfers).
//! - [`vote`]: votes, shared-random reveals, and the deterministic tabulation.
//! - [`document`]: the [`Document`] clients and nodes verify ([`Document::verify`]) and the
//!   [`AuthoritySet`] that signs it.
//! - [`authority`]: the [`Authority`] state machine (`handle_descriptor`, `handle_message`,
//!   `poll`, `next_timeout`), in the style of quinn-proto.
//!
//! # Encoding
//!
//! Every message has one canonical binary encoding, written and read by hand: integers are
//! big-endian and fixed-width; variable-length fields carry a length prefix of a stated width
//! and a maximum; lists carry a count and are sorted strictly (no duplicates, one order); every
//! message starts with a version byte and must be consumed exactly. A decoder accepts only that
//! encoding, so `encode(decode(b)) == b` for every `b` that decodes (the fuzz targets check
//! it), and it never panics. Signatures are over exact bytes, prefixed with a per-message-type
//! domain string ([`identity`]). Size limits: [`MAX_DESCRIPTOR_LEN`], [`MAX_NODES`],
//! [`MAX_AUTHORITIES`], [`document::MAX_DOCUMENT_LEN`], [`vote::MAX_VOTE_LEN`],
//! [`authority::MAX_PEER_MESSAGE_LEN`]. The formats are given in [`descriptor`], [`vote`] and
//! [`document`].
//!
//! # Relation to Katzenpost's PKI specification
//!
//! The protocol follows Katzenpost's `pki.md` (schedule §2.1, voting §3, shared random value
//! §4.3) with these simplifications, each for a stated reason:
//!
//! - **Encoding.** A small hand-written canonical binary encoding (below) replaces JWS and
//!   CBOR: one encoding per value, so "the same descriptor" and "the same document" are
//!   byte comparisons, signatures are over exact bytes with a per-message-type prefix, and the
//!   decoders are small enough to fuzz to the bottom.
//! - **Descriptors carry no layer.** Katzenpost's descriptor has a `Layer` field; here a node
//!   only says mix or gateway and the consensus deals mixes to layers from the shared random
//!   value, so no node can choose its position.
//! - **The shared random value does not chain the previous one.** Katzenpost hashes in the
//!   previous epoch's value; an authority that missed the previous document would then compute
//!   a different value and split the vote. Commit-and-reveal within the round is what stops any
//!   single party from choosing the value.
//! - **Layers are re-dealt every epoch**, not kept stable across epochs: the rule is a pure
//!   function of the round's votes, so authorities cannot diverge through history they saw
//!   differently. Stable topology is a later refinement (the document format has a version).
//! - **The cert exchange relays rather than re-votes.** Katzenpost §3.4 has authorities vote a
//!   second time with the reveals they saw. Here each authority relays every signed vote and
//!   reveal it holds to every peer at the cert point; as everything relayed is signed by its
//!   author, this gives the same "everyone tabulates over the same inputs" under message loss
//!   without a second vote format.
//! - **Adoption of a peer's document.** An authority whose own tabulation did not collect a
//!   majority (it missed votes, or was down) publishes a majority-signed document received from
//!   a peer after verifying it as a client would, so that every honest authority serves the
//!   same document.
//! - **No descriptor supersession across epochs, no downtime scheduling, no families or
//!   nicknames.** A node uploads one descriptor per epoch (for the next epoch), holding its
//!   packet keys for that epoch and the next two or three; a node that stops uploading drops
//!   out of the next document. Within an epoch a later upload replaces an earlier one until
//!   the vote. An authority refuses an upload that would change a key it already published.
//!
//! Like Katzenpost's, this protocol is not Byzantine fault tolerant: a malicious authority (a
//! minority, in the threat model) can make a round fail, for example by equivocating or by
//! sending its reveal to only some peers, but it cannot make clients accept anything a majority
//! did not sign. A failed round is reported ([`Action::ConsensusFailed`]); clients keep using
//! the previous document, whose descriptors carry packet keys for the next two epochs, while
//! operators intervene. The last authority to reveal can also abort instead of revealing (one
//! bit of bias on the shared random value), the known limit of commit-and-reveal.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod authority;
pub mod descriptor;
pub mod document;
pub mod error;
pub mod identity;
pub mod params;
pub mod time;
pub mod vote;
mod wire;

#[cfg(test)]
mod testutil;

pub use authority::{Action, Authority, AuthorityConfig, LIVENESS_HEARTBEATS, heartbeat};
pub use descriptor::{
    LinkAddress, MAX_DESCRIPTOR_LEN, MAX_LINK_KEY_LEN, MAX_PACKET_KEYS, MIN_PACKET_KEYS, NodeDescriptor,
    Role, SignedDescriptor,
};
pub use document::{AuthoritySet, Document, MAX_AUTHORITIES, MAX_NODES, Node, Position, UnverifiedDocument};
pub use error::{
    AddressError, BuildError, ConfigError, ConsensusFailure, DecodeError, DescriptorRejected,
    PeerMessageError, VerifyError,
};
pub use identity::{IdentityKey, IdentitySecret, InvalidKey};
pub use params::{FileLimits, Parameters, ParametersConfig, Rate};
pub use time::{Epoch, EpochPeriod, GENESIS, Phase, Schedule, UnixMillis};
pub use vote::{SignedReveal, SignedVote};
