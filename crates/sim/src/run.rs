//! One run from start to end ([`run`]) and what it returns ([`Run`]): what the adversary sees,
//! apart from the ground truth used only for scoring.

use qanat_mixnet::{GatewayMetrics, MixMetrics, UnixMicros};

use crate::config::{Config, SimError};
use crate::network::Network;
use crate::{Observation, Stored};

/// When a message reached its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// When the recipient took it: when its gateway stored it, or, with pulls, when the
    /// recipient's pull brought it.
    pub time: UnixMicros,
    /// The index of the observation of its packet on the last link (last mix → gateway).
    pub observation: usize,
}

/// Ground truth about one message (for scoring; never shown to the adversary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRecord {
    /// The sending client.
    pub sender: u32,
    /// The receiving client.
    pub recipient: u32,
    /// When the sender queued it.
    pub queued: UnixMicros,
    /// Its first delivery to the recipient.
    pub delivered: Option<Delivered>,
    /// How many times the recipient's inbox delivered it (once, or never).
    pub deliveries: u32,
    /// How many of its packets the recipient took from its mailbox (the sender's resends
    /// included; each acknowledged, only the first delivered).
    pub copies: u32,
}

/// Counters of the links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames lost (packets, link acknowledgements, pull requests and answers).
    pub lost: u64,
    /// Link acknowledgements gateways sent to mixes.
    pub acks: u64,
    /// Packets mixes sent to gateways again, unacknowledged.
    pub resent: u64,
    /// Packets mixes gave up on, never acknowledged.
    pub gave_up: u64,
}

/// Counters of the pulls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Pulls sent.
    pub pulls: u64,
    /// Pulls skipped because the one before had no answer yet.
    pub skipped: u64,
    /// Answers taken.
    pub answers: u64,
    /// Items pulled.
    pub items: u64,
    /// Items pulled again (an answer lost before their deletion).
    pub repeats: u64,
    /// Sessions started again after an unanswered pull.
    pub sessions: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the adversary sees of packets, in time order.
    pub observations: Vec<Observation>,
    /// Ground truth: every message queued.
    pub messages: Vec<MessageRecord>,
    /// Each mix's own counters (its pool integral gives λ/μ as the mix measured it).
    pub mix_metrics: Vec<MixMetrics>,
    /// Simulated time at the end.
    pub end: UnixMicros,
    /// Packets each client sent.
    pub client_packets: Vec<u64>,
    /// What every gateway learned of each packet it took from the last mix layer (an adversary
    /// running some gateways is given only theirs).
    pub stores: Vec<Stored>,
    /// What the adversary sees of pulls, in time order: each frame of each request
    /// (client → gateway) and answer (gateway → client). Empty without pulls.
    pub pull_frames: Vec<Observation>,
    /// Each gateway's own counters.
    pub gateway_metrics: Vec<GatewayMetrics>,
    /// The links' counters.
    pub links: LinkStats,
    /// The pulls' counters.
    pub pulls: PullStats,
    /// Items still in the stores at the end.
    pub left_in_stores: usize,
}

/// Runs the network of `config` to the end and returns what the adversary saw and the truth.
pub fn run(config: &Config) -> Result<Run, SimError> {
    if config.clients == 0 {
        return Err(SimError::Config("clients, layers, mixes per layer and gateways must be positive"));
    }
    let (_, _, end) = config.phases();
    let mut net = Network::new(config.clone())?;
    net.run_until(end)?;
    Ok(net.finish())
}
