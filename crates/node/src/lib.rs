//! Qanat's node runtime: what turns the IO-free cores (`qanat-pki`'s authority, `qanat-mixnet`'s
//! mix and gateway) into a running authority, mix node or gateway, for `qanat node run --config
//! FILE`.
//!
//! This crate holds the runtime's foundations, both light on IO:
//!
//! - [`config`]: the node's TOML configuration. [`NodeConfig::load`] reads and validates one file
//!   into parsed types (addresses, keys, durations, [`qanat_pki::Parameters`]); every
//!   [`ConfigError`] names the field and says how to fix it. [`NodeConfig::render`] writes a
//!   typed config back as a commented file that reads back equal (`qanat node example-config`
//!   and `qanat devnet` write their configs with it).
//! - [`keys`]: the node's key store in its data directory ([`NodeKeys`]): the Ed25519 identity,
//!   the link key, and one packet key per epoch for the current epoch and the next few, so a
//!   restarted node keeps every key it already published. Files are written atomically with mode
//!   0600 in a small versioned format with a checksum; the clock and the RNG are passed in.
//! - [`replay_log`]: the per-packet-key logs of accepted replay tags ([`ReplayLog`]) that let a
//!   restarted mix or gateway rebuild its replay filters, so a crash does not reopen replays.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
mod data_files;
pub mod keys;
pub mod replay_log;
pub mod runtime;
pub mod service;

pub use config::{ConfigError, NodeConfig};
pub use data_files::FileError;
pub use keys::{KeyStoreError, KeyWindow, NodeKeys};
pub use replay_log::{ReplayLog, ReplayLogError};
