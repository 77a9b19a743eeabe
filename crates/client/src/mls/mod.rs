//! Conversations as MLS groups (RFC 9420, `openmls`), hybrid post-quantum, converging without a
//! server.
//!
//! A [`Conversation`] is one MLS group seen by one member; a chat between two people is a group of
//! two. The module does no IO and reads no clock: every method takes bytes (and `now`) and returns
//! an [`Output`]: [`Event`]s for the user interface and [`Outgoing`] messages, each with the
//! [`MemberId`]s it must reach, for the sending layer to carry through the mixnet. Randomness comes
//! from the `openmls` crypto provider (operating-system seeded).
//!
//! # Choices
//! - Ciphersuite [`CIPHERSUITE`], `MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519` (0x004F, the
//!   X-Wing KEM of the IETF draft): ML-KEM-768 and X25519 together protect content recorded today
//!   against a quantum computer tomorrow (A6); signatures stay Ed25519 (forging needs a quantum
//!   computer *during* the conversation).
//! - Every handshake (commit, proposal) and application message is a `PrivateMessage` (pure
//!   ciphertext wire format), padded to a multiple of [`Config::padding`] bytes. A member cannot
//!   decrypt its own messages, so it keeps its own commit as openmls' pending commit.
//! - **No identifiers (P4).** Each conversation gets a fresh Ed25519 signature key, made for it
//!   alone, and the MLS credential is a basic credential whose identity *is* that public key. A
//!   [`MemberId`] is this key: it names a member inside one conversation and means nothing in any
//!   other, so two contacts comparing their groups cannot tell that they share a member. Key
//!   packages, welcomes and commits whose credentials are anything else are refused.
//!
//! # Convergence without a server
//! Members commit whenever they like; nobody orders the commits. Each commit carries its proposals
//! inline (no proposals by reference), and includes a path update (post-compromise security).
//! For each epoch *n*:
//! 1. every member *stages* every commit for epoch *n* it receives (its own included), merging
//!    none; application messages keep flowing meanwhile (epoch *n* keys stay usable);
//! 2. [`Config::decision_window`] after it first saw a commit for epoch *n*, it ranks the candidates
//!    deterministically (module `rank`) and merges the winner; the members whose commit lost
//!    re-check what they wanted against the new state and commit again in epoch *n+1*;
//! 3. a Welcome is sent only by the member whose commit won, so a newcomer joins only the epoch
//!    that everyone else reaches;
//! 4. a member creates a commit for epoch *n* only while it has seen no commit for epoch *n*, so
//!    concurrent commits are those created before their authors saw each other's.
//!
//! Hence if every message reaches every online member within *D*, a window of at least 2*D*
//! guarantees that all members see the same candidates and pick the same winner: every candidate
//! of an epoch is created less than *D* after the first one and arrives less than 2*D* after it.
//! A member that was offline fetches the epoch's commits together from its mailbox and decides
//! the same way; messages for later epochs wait in a buffer and count as seen when they arrived,
//! so catching up on many epochs does not wait a window per epoch.
//!
//! A commit that arrives after its epoch was decided is reported as [`Event::StaleCommit`]. If it
//! would have won, the member that saw it late has diverged from the others (it then cannot read
//! their later messages, which fail with [`MlsError::Rejected`]); the decision window is the knob
//! that makes this as unlikely as the network requires. Rolling back to the snapshot of the
//! previous epoch is not implemented.
//!
//! Leaving: [`Conversation::leave`] sends a Remove proposal for oneself (a `SelfRemove` is refused
//! with encrypted handshakes). Other members treat it as a request: the member with the lowest
//! leaf index that is not leaving commits the removal at once, and any member does so after
//! [`Config::leave_fallback`]; any commit also carries every known leave request.
//!
//! # Persistence
//! [`Conversation::export`] returns the whole state of the conversation (openmls' key/value
//! storage, the signature key, the staged candidates and queued operations) as one byte string for
//! the encrypted profile store, and [`Conversation::import`] resumes from it, after a restart or
//! days offline. The string is rewritten whole after each change: tens of kilobytes for two people,
//! growing linearly with the group (about 0.1 MB after some epochs, 29 MB at 1,000 members: see
//! `docs/BENCHMARKS.md`; saving only the changed storage keys is a follow-up).
//!
//! # Where things are
//! One `impl Conversation` block per concern:
//!
//! | module | what it holds |
//! |---|---|
//! | `config`, `error`, `ids`, `output` | what callers see: [`Config`], [`MlsError`], [`MemberId`] and [`ConversationId`], [`Output`] |
//! | `provider`, `state`, `blob` | a conversation's openmls storage and keys; what it keeps beside them; its saved form |
//! | `conversation` | creating, the user's operations, time ([`Conversation::tick`]), saving |
//! | `pending` | [`PendingJoin`]: an invitee until its Welcome |
//! | `receive` | an incoming message: buffered, stale, or processed |
//! | `commit`, `rank` | this member's commit for an epoch, and the decision among the epoch's candidates |

mod blob;
mod commit;
mod config;
mod conversation;
mod error;
mod ids;
mod output;
mod pending;
mod provider;
pub(crate) mod rank;
mod receive;
mod state;
#[cfg(test)]
mod tests;

use std::time::Duration;

use openmls::prelude::{Ciphersuite, MlsGroup};
use openmls_basic_credential::SignatureKeyPair;

pub use config::Config;
pub use error::MlsError;
pub use ids::{ConversationId, MemberId, conversation_of, key_package_member};
pub use output::{Event, Outgoing, OutgoingKind, Output};
pub use pending::PendingJoin;

use provider::Provider;
use state::State;

/// The ciphersuite of every conversation: hybrid ML-KEM-768 + X25519 (X-Wing), AES-128-GCM,
/// SHA-256, Ed25519.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519;

/// One conversation (MLS group) as seen by this member. (Its `impl` blocks are in the modules of
/// each concern: see the table above.)
pub struct Conversation {
    provider: Provider,
    signer: SignatureKeyPair,
    group: MlsGroup,
    config: Config,
    state: State,
}

/// `d` in milliseconds, saturating.
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
