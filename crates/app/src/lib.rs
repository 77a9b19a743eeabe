//! The Qanat app's local web server (docs/APP.md): the page, served on 127.0.0.1 to the user's
//! own browser, and the one gate every request passes.
//!
//! - [`sessions`]: the start token, the cookie, the key (IO-free).
//! - `gate`: the checks of every request, in order (IO-free).
//! - `server`: the HTTP server (axum over hyper), one handler behind the gate: the page and
//!   its embedded files, `POST /api/call` (one command, JSON), `GET /api/events` (the event
//!   stream), `POST /api/strength` (a passphrase's strength, without the key).
//! - `strength`: zxcvbn's estimate as catalogue keys (IO-free).
//! - `qr`: the invitation link's QR code as an SVG path (IO-free).
//! - `assets`: the page's files, embedded in the binary.
//!
//! The server knows nothing of profiles or messages: a [`Backend`] answers the commands (the
//! client's control protocol, JSON in and out) and streams the events.

#![forbid(unsafe_code)]

mod assets;
pub use assets::EVAL_SUMMARY;
mod gate;
mod qr;
mod server;
pub mod sessions;
mod strength;

pub use server::{
    AppConfig, Backend, FREE_UNLOCK_FAILURES, LOCKED, MAX_BODY, MAX_CONNECTIONS, MAX_STRENGTH_BODY,
    PATH_COMMANDS, Running, serve,
};
