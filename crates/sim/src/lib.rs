//! A deterministic simulated Qanat network, and the global passive adversary that watches it.
//!
//! - [`net`]: a discrete-event simulation with simulated [`UnixMicros`](qanat_mixnet::UnixMicros) and one
//!   seeded RNG that drives the **real** cores: [`qanat_mixnet::Mix`] (Sphinx unwrap, replay
//!   filters, the sender's exponential delays, loop cover at λ_M) and [`qanat_mixnet::Gateway`]
//!   (ingress into layer 1, egress into mailboxes), and simulated clients built from the
//!   **real** sending layer of [`qanat_mixnet::sending`] (`Schedule` of Poisson payload, loop
//!   and drop slots; `Outbox` with SURB acknowledgements and resends; `cover_packet`). A run
//!   returns what a global passive adversary sees ([`Observation`]: time and endpoints of every
//!   packet on every link, nothing else) apart from the ground truth used only for scoring.
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
pub mod gateways;
pub mod net;
pub mod score;
pub mod stats;
pub mod timing;

pub use adversary::{Analysis, Knowledge, Posterior, analyse};
pub use gateways::{GatewayAnalysis, analyse_gateways};
pub use net::{Config, Delivered, MessageRecord, Run, SimError, run};
pub use score::{EvalError, LinkScores, Scores, evaluate};

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
