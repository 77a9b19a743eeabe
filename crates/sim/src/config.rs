//! What to simulate: [`Config`], with its optional parts ([`Links`]: loss and link-level
//! acknowledgements; [`Pulls`]: mailbox pulls; [`Epochs`]: key rotation) off by default, so that
//! a configuration made before they existed gives the same run for the same seed.

use std::time::Duration;

use qanat_mixnet::ResendConfig;
use qanat_mixnet::client_proto::MAX_CHUNK_LEN;
use qanat_mixnet::sending::{PULL_BATCH, PULL_FIRST, Rates};
use qanat_packet::Scheme;

use crate::Knowledge;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Clients online (every one sends cover traffic).
    pub clients: u32,
    /// How many of them (the first ones) send messages.
    pub active: u32,
    /// Messages per second queued by each active client (Poisson).
    pub message_rate: f64,
    /// Mean per-hop delay 1/μ (zero: mixes forward at once).
    pub mean_delay: Duration,
    /// The clients' λ_P, λ_L, λ_D.
    pub rates: Rates,
    /// Whether clients send cover: drops in empty payload slots, loops and drops. Without it a
    /// client sends only real packets (messages and acknowledgements), in payload slots.
    pub client_cover: bool,
    /// Each mix's loop rate λ_M (0: none).
    pub mix_loop_rate: f64,
    /// Mix layers.
    pub layers: usize,
    /// Mixes in each layer.
    pub mixes_per_layer: usize,
    /// The mean of an exponential delay a recipient waits before queueing the acknowledgement of
    /// a DATA packet (zero: it goes in the next payload slot, as the engine does today).
    pub ack_delay: Duration,
    /// Gateways (clients are spread over them round-robin).
    pub gateways: usize,
    /// UnixMicros before the first message (cover traffic only), so that mixes are in steady state.
    pub warmup: Duration,
    /// UnixMicros during which messages are queued.
    pub duration: Duration,
    /// UnixMicros after the last message is queued, for it to arrive.
    pub tail: Duration,
    /// One-way latency of every link.
    pub link_latency: Duration,
    /// The packet scheme (the timing does not depend on it; X25519 is the cheapest to simulate).
    pub scheme: Scheme,
    /// The seed of the run's only RNG.
    pub seed: u64,
    /// Loss on the links and the link-level acknowledgement of packets to gateways (default:
    /// neither).
    pub links: Links,
    /// Mailbox pulls (`None`, the default: a client takes what lands in its mailbox at the
    /// instant it is stored, and nothing travels between gateway and client but packets).
    pub pulls: Option<Pulls>,
    /// Key rotation (`None`, the default: one key per node covers the whole run).
    pub epochs: Option<Epochs>,
}

/// The links' loss and acknowledgements. The default is a perfect network: nothing lost, no
/// acknowledgement frames, no retransmission (what the evaluation's figures assume).
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// The probability that a frame between nodes (a packet gateway → mix, mix → mix or
    /// mix → gateway, or a link acknowledgement) is lost.
    pub loss: f64,
    /// The probability that a client's packet to its gateway is lost.
    pub client_loss: f64,
    /// The probability that a pull's request or its answer is lost (the client's session then
    /// times out and starts again, as the client runtime's does).
    pub pull_loss: f64,
    /// Link-level acknowledgement of packets from the last mix layer to gateways: each mix keeps
    /// what it sends to a gateway in the real [`Resends`](qanat_mixnet::Resends) table under
    /// this configuration, sends it again until the gateway acknowledges it (which it does only
    /// once the store's write is durable) and gives up after `give_up_after`. `None`: packets are
    /// sent once and acknowledgements dropped.
    pub resend: Option<ResendConfig>,
}

/// How clients pull their mailboxes from their gateway: as the client runtime does, one pull of
/// fixed size at a time on a fixed cadence, through the real client–gateway messages
/// ([`qanat_mixnet::client_proto`]) and the gateway's real pull core ([`qanat_mixnet::pull`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Pulls {
    /// UnixMicros between two pulls (the client runtime's default is one mean payload slot, 1/λ_P).
    pub interval: Duration,
    /// Slots of each answer after its head ([`PULL_BATCH`]).
    pub limit: u16,
    /// Slots of the first answer of a session ([`PULL_FIRST`]).
    pub first_limit: u16,
    /// How long after a request arrives its answer leaves the gateway (the gateway runtime's
    /// fixed answer delay, 25 ms).
    pub answer_delay: Duration,
    /// How long a client waits for an answer before it gives the session up and starts a new
    /// one (the client's request timeout, 15 s).
    pub timeout: Duration,
    /// Most mailboxes one session may register (the gateway's default, 4,096).
    pub max_mailboxes: usize,
    /// The longest document chunk of an answer (the sim serves no directory documents, so it
    /// only bounds the answer's room for items as in the runtime).
    pub chunk_len: usize,
}

impl Pulls {
    /// The client runtime's defaults for a client at `rates`: one pull per mean payload slot
    /// (between 50 ms and 600 s), [`PULL_BATCH`] slots, [`PULL_FIRST`] in a session's first.
    pub fn for_rates(rates: Rates) -> Self {
        let interval = if rates.payload > 0.0 {
            Duration::from_secs_f64((1.0 / rates.payload).clamp(0.05, 600.0))
        } else {
            Duration::from_secs(1)
        };
        Self {
            interval,
            limit: PULL_BATCH,
            first_limit: PULL_FIRST,
            answer_delay: Duration::from_millis(25),
            timeout: Duration::from_secs(15),
            max_mailboxes: 4096,
            chunk_len: MAX_CHUNK_LEN,
        }
    }
}

/// Epochs of `period`: each node's key of epoch `e` is accepted from `e·period − grace` to
/// `(e + 1)·period + grace`. The network starts with epoch 0's keys; more are installed with
/// [`Network::install_epoch`](crate::Network::install_epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    /// The epoch's length.
    pub period: Duration,
    /// How long a key is accepted on either side of its epoch.
    pub grace: Duration,
}

impl Config {
    /// The directory's parameters (mean delay, λ_P, λ_L, λ_D, λ_M, layers) with `clients`
    /// clients, all active at 1 message per 20 s, 2 mixes per layer, 2 gateways, 20 ms links,
    /// 60 s of warm-up, 600 s of messages and a tail of 60 s; a perfect network, no pulls, one
    /// key per node.
    pub fn from_parameters(params: &qanat_pki::Parameters, clients: u32, seed: u64) -> Self {
        Self {
            clients,
            active: clients,
            message_rate: 0.05,
            mean_delay: Duration::from_millis(u64::from(params.mean_delay_ms())),
            rates: Rates {
                payload: params.lambda_p().per_second(),
                loops: params.lambda_l().per_second(),
                drops: params.lambda_d().per_second(),
            },
            client_cover: true,
            mix_loop_rate: params.lambda_m().per_second(),
            layers: params.mix_layers(),
            mixes_per_layer: 2,
            ack_delay: Duration::ZERO,
            gateways: 2,
            warmup: Duration::from_secs(60),
            duration: Duration::from_secs(600),
            tail: Duration::from_secs(60),
            link_latency: Duration::from_millis(20),
            scheme: Scheme::X25519Nike,
            seed,
            links: Links::default(),
            pulls: None,
            epochs: None,
        }
    }

    /// What the adversary is told: everything public about this network.
    pub fn knowledge(&self) -> Knowledge {
        Knowledge {
            clients: self.clients,
            gateways: self.gateways as u16,
            mix_layers: (0..self.layers * self.mixes_per_layer)
                .map(|i| i / self.mixes_per_layer.max(1))
                .collect(),
            mean_delay: self.mean_delay,
            mix_loop_rate: self.mix_loop_rate,
            link_latency: self.link_latency,
            payload_rate: self.rates.payload,
            ack_delay: self.ack_delay,
        }
    }

    /// When messages start, stop, and the run ends.
    pub(crate) fn phases(
        &self,
    ) -> (qanat_mixnet::UnixMicros, qanat_mixnet::UnixMicros, qanat_mixnet::UnixMicros) {
        let start = qanat_mixnet::UnixMicros::ZERO + self.warmup;
        let stop = start + self.duration;
        (start, stop, stop + self.tail)
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration cannot be simulated.
    #[error("invalid simulation: {0}")]
    Config(&'static str),
    /// Building a packet failed (a bug in the setup).
    #[error("building a packet: {0}")]
    Packet(String),
}
