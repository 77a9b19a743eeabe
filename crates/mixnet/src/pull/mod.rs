//! The pull exchange without IO, both sides: what a gateway does with a client's
//! [`Request::Pull`](crate::client_proto::Request::Pull) ([`PullServer`], in `server.rs`), what a
//! client puts in each pull and reads from its answer ([`PullClient`], with the
//! [`MailboxAccess`] it registers, in `client.rs`), and how a client puts a directory document
//! back together from the chunks that ride in the answers ([`DocAssembler`], in `document.rs`).
//!
//! The gateway's runtime owns the store; per pull it asks the core which operations to carry
//! out ([`PullServer::admit`]), reports each outcome ([`PullServer::handle_op_result`]), carries
//! out the store reads the core plans ([`PullServer::reads`]: which mailboxes, how many items
//! from each, when to stop) and lets the core build the answer ([`PullServer::answer`]): always
//! one head and `limit` slots, whatever the store held, whatever the client asked. A single
//! [`Request::Fetch`](crate::client_proto::Request::Fetch) is planned and answered here too
//! ([`fetch_reads`], [`fetch_answer`]).
//!
//! Slots: items first, but when the client lacks a document at most half the slots carry items,
//! so a client with a backlog still gets the directory it needs to send anything; and when the
//! document it lacks is that of the epoch in progress (or an older one), none do until it has it:
//! it holds only keys the network is about to refuse, or already refuses, so nothing of its own
//! can leave (its messages wait for the document) while its items are safe in the store. Then
//! chunks of the wanted document from the chunk the client asked for; then padding.
//!
//! Why the document of the epoch in progress goes first: the authorities publish the next
//! epoch's document only `P/8` before it begins, and the client uses its keys until `P/8` after
//! (half the key grace). A document of five chunks at one chunk per pull (a backlog taking the
//! other slot) then took five pulls: on 20-second epochs, with a pull every 2 s, it came 6 to
//! 10 s into its epoch, and for 3 to 7 s of every 20 the client could send nothing of its own
//! (its payload slots fell to about 70%, below what a steady conversation needs).

mod client;
mod document;
mod server;

pub use client::{AnswerError, MAX_QUEUED_OPS, MailboxAccess, PullClient, PullClientMetrics, PullOutcome};
pub use document::{ChunkError, DocAssembler};
pub use server::{
    MAX_FETCH_LIMIT, MAX_PULL_READS, PullMetrics, PullRead, PullReads, PullServer, PulledItem, ReadFailed,
    chunk_count, fetch_answer, fetch_reads,
};
