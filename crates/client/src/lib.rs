//! The Qanat client: what a person's device runs.
//!
//! - [`store`]: the profile and all local state, in an embedded database encrypted under a key
//!   derived from the passphrase (Argon2id); one process at a time per profile.
//! - [`invite`]: one-time invitation links (and QR codes) that carry a gateway, a fresh mailbox
//!   and keys, and never an identifier.
//! - [`mls`]: conversations as MLS groups (openmls, hybrid post-quantum ciphersuite), with
//!   concurrent commits converging without a server.
//! - [`gateway`]: the session with the user's own gateway (send packets; register, fetch and
//!   delete mailboxes), the client's only network connection.
//! - [`engine`]: contacts and groups: ties the profile, invitations, MLS and the sending layer
//!   together, IO-free but for the profile.
//! - [`open`]: opening a profile as every front end does, a duress passphrase included (wipe,
//!   then a fresh profile under it).
//!
//! The sending layer the engine drives is IO-free and lives with the node cores, in
//! [`qanat_mixnet::sending`]: messages split into packets sealed end to end to the mailbox's
//! owner, one packet every Exp(λ_P) (real if queued, cover otherwise), loops, SURB
//! acknowledgements, resends with randomized backoff, reassembly and de-duplication.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod control;
pub mod engine;
pub mod gateway;
pub mod host;
pub mod invite;
pub mod mls;
pub mod open;
pub mod pull;
pub mod runtime;
pub mod store;
