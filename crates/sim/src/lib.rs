//! A deterministic simulated Qanat network, and the global passive adversary that watches it.
//!
//! One network ([`Network`], run whole by [`run`]) carries a message the whole way round: from
//! its sender's payload slot through the sender's gateway and the mix layers into the
//! recipient's mailbox, out of it by the recipient's pull, and its acknowledgement back the same
//! way. It is a discrete-event simulation in simulated [`UnixMicros`](qanat_mixnet::UnixMicros) with one
//! seeded RNG that drives the **real** IO-free cores:
//!
//! - [`qanat_mixnet::Mix`] (Sphinx unwrap, replay filters, the sender's exponential delays, loop
//!   cover at λ_M) and [`qanat_mixnet::Gateway`] (ingress into layer 1; egress into its
//!   [`Store`], acknowledged on the link only once the write is durable);
//! - the last mix's [`qanat_mixnet::Resends`] table (link-level acknowledgement and
//!   retransmission of packets to gateways), when [`Links::resend`] is set;
//! - both sides of the pull exchange, when [`Config::pulls`] is set: the gateway's pull core
//!   ([`qanat_mixnet::pull::PullServer`]), the client's ([`qanat_mixnet::pull::PullClient`], the
//!   one `qanat-client` runs; the simulation never wants a document from it) and the
//!   client–gateway messages ([`qanat_mixnet::client_proto`]);
//! - clients built from the real sending layer of [`qanat_mixnet::sending`] (`Schedule` of
//!   Poisson payload, loop and drop slots; `Outbox` with SURB acknowledgements and resends;
//!   `Inbox`; `cover_packet`).
//!
//! What is simulated rather than real: links (a fixed latency, loss drawn per frame, no
//! congestion), the store (in memory, [`Store`]: durable at once, or failing at will), directory
//! documents (none travel: one topology per epoch is installed in every node and client), the
//! gateway's per-session budgets, and MLS (a message is one DATA packet of a few bytes).
//!
//! A run returns what a global passive adversary sees ([`Observation`]: time and endpoints of
//! every packet on every link, and apart, of every pull frame) apart from the ground truth used
//! only for scoring ([`Run`]).
//!
//! Loss, link acknowledgements and pulls are off by default ([`Config::from_parameters`]): a
//! seed then gives, packet for packet, the run it gave before they existed, so the figures of
//! `docs/EVALUATION.md` stand (`tests/pinned.rs`). With pulls on, a message is delivered when the
//! recipient's pull brings it, so latencies grow by up to a pull interval, and the RNG is drawn
//! in another order: the same seed gives another (equally valid) run.
//!
//! The modules:
//!
//! - `config`: [`Config`] and its optional parts ([`Links`], [`Pulls`], [`Epochs`]).
//! - `setup`: the nodes, their keys and topology, the clients; `client`: one client.
//! - `network/`: [`Network`]: the event loop (`mod.rs`), the links and nodes (`links.rs`), the
//!   clients' slots and items (`clients.rs`), the pulls (`pulls.rs`).
//! - `store`, `pull`: a gateway's [`Store`], and the gateway's side of the pull exchange on it
//!   (`serve`, as the gateway runtime serves a request).
//! - `run`: a whole run ([`run()`]) and what it returns ([`Run`]).
//! - [`adversary`]: the adversary. Its entry point [`adversary::analyse`] takes only the
//!   observations and [`Knowledge`] (public facts: the topology, the delay distribution, λ_M,
//!   the link latency), so it cannot peek at the ground truth.
//! - [`gateways`]: the adversary that also runs one gateway or all of them
//!   ([`gateways::analyse_gateways`]): besides the link view it sees, for each packet its
//!   gateways take from the last mix layer, the mailbox it lands in ([`Stored`]): which of its
//!   own clients owns it and whether it is that client's home mailbox (loops and
//!   acknowledgements) or a thread mailbox (messages), or that nobody does (a drop).
//! - [`score`]: one experiment: run, analyse, score the adversary's guesses against the truth.
//! - [`stats`]: Shannon entropy, summaries, and the two-sample Kolmogorov–Smirnov test.
//! - [`timing`]: one client's departure times when idle and when busy (unobservability).
//!
//! Nothing here touches a socket, a clock or a file; `qanat eval` (in the binary) runs it and
//! writes the report.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod adversary;
mod client;
mod config;
pub mod gateways;
mod network;
mod pull;
mod run;
pub mod score;
mod setup;
pub mod stats;
mod store;
pub mod timing;

pub use adversary::{Analysis, Knowledge, Posterior, analyse};
pub use config::{Config, Epochs, Links, Pulls, SimError};
pub use gateways::{GatewayAnalysis, analyse_gateways};
pub use network::Network;
pub use run::{Delivered, LinkStats, MessageRecord, PullStats, Run, run};
pub use score::{EvalError, LinkScores, Scores, evaluate};
pub use store::{Store, StoreFailure};

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// Client `i` (its address: the adversary sees which client a link belongs to).
    Client(u32),
    /// Gateway `i`.
    Gateway(u16),
    /// Mix `i` (its layer is public: [`Knowledge::mix_layers`]).
    Mix(u16),
}

/// One packet on one link, as a global passive adversary records it: when it left `from`
/// (it reaches `to` one link latency later) and the two ends. Packets all have one size and are
/// encrypted per link, so this is everything the adversary learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// When the packet left `from`.
    pub time: qanat_mixnet::UnixMicros,
    /// Sender of the frame.
    pub from: Endpoint,
    /// Receiver of the frame.
    pub to: Endpoint,
}

/// The mailbox a packet from the last mix layer lands in, as the gateway that stores it sees it.
/// Items are sealed end to end, so this is all the gateway learns about the packet besides its
/// arrival (the [`Observation`] of the link it came on): not its kind, message or fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailboxSeen {
    /// The home mailbox of the gateway's client `owner`: its loops and the acknowledgements of
    /// what it sent arrive here (the gateway can tell it from the owner's other mailboxes by when
    /// it was registered and by its steady loop traffic, so the adversary is told).
    Home {
        /// The client that registered it.
        owner: u32,
    },
    /// A thread mailbox of the gateway's client `owner` (one per contact): messages arrive here.
    Thread {
        /// The client that registered it.
        owner: u32,
        /// An opaque serial of the mailbox (the gateway sees the same id every time).
        mailbox: u64,
    },
    /// No client of this gateway registered the mailbox: a drop.
    Unregistered,
}

/// What a gateway learns from one packet it takes from the last mix layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The observation of the packet on the link from the last mix to the gateway.
    pub observation: usize,
    /// The gateway.
    pub gateway: u16,
    /// The mailbox, as the gateway sees it.
    pub mailbox: MailboxSeen,
}
