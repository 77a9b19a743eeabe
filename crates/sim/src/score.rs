//! A whole experiment: run the network, let the adversary analyse what it saw, score its
//! guesses against the ground truth.

use std::collections::HashMap;

use crate::adversary::{AdversaryError, Posterior, analyse};
use crate::gateways::analyse_gateways;
use crate::stats::Summary;
use crate::{Config, MessageRecord, SimError, run};

/// Why an experiment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The simulation failed.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The adversary failed.
    #[error(transparent)]
    Adversary(#[from] AdversaryError),
}

/// The figures of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Messages queued.
    pub messages: usize,
    /// Messages that reached their mailbox.
    pub delivered: usize,
    /// Link packets observed.
    pub observations: usize,
    /// Per delivered message: the entropy (bits) of the adversary's guess of its sender.
    pub entropy: Summary,
    /// Per delivered message: the probability the adversary gave the true sender.
    pub p_true: Summary,
    /// Fraction of delivered messages whose true sender was the adversary's top guess.
    pub top_correct: f64,
    /// log2 of the number of clients: the entropy of a perfect anonymity set.
    pub max_entropy: f64,
    /// Per delivered message: seconds from queueing at the sender to arrival in the mailbox.
    pub latency: Summary,
    /// λ/μ at each mix as the adversary observed it (arrivals per second × mean delay).
    pub lambda_over_mu: Vec<f64>,
    /// λ/μ at each mix as the mix measured it (mean number of packets held).
    pub pool_size: Vec<f64>,
    /// Fraction of delivered messages whose sender *and* recipient the global observer names:
    /// its top guess of the sender is right and, knowing only the recipient's gateway, its
    /// uniform guess among that gateway's clients is right (the expected rate).
    pub pair_linked: f64,
    /// The adversary running gateway 0 (and watching every link), over the messages stored there.
    pub one_gateway: LinkScores,
    /// The adversary running every gateway, over every message.
    pub all_gateways: LinkScores,
    /// The same, from the links and the recipient alone (without the home mailboxes' evidence):
    /// what acknowledgements and loops landing in a home mailbox add.
    pub all_gateways_recipient_only: LinkScores,
}

/// How well an adversary that knows each message's recipient (it runs the recipient's gateway)
/// names the sender: every such naming links two users who talk.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkScores {
    /// Messages it saw stored in a thread mailbox (first deliveries).
    pub messages: usize,
    /// The entropy (bits) of its guess of the sender.
    pub entropy: Summary,
    /// The probability it gave the true sender.
    pub p_true: Summary,
    /// Fraction whose true sender was its top guess: the pair linked.
    pub top_correct: f64,
    /// Chance: `1/(N − 1)`, a uniform guess among the other clients.
    pub chance: f64,
    /// Packets its gateways stored in home mailboxes (loops and acknowledgements alike).
    pub home: usize,
    /// Packets its gateways stored in thread mailboxes (messages, with resends).
    pub thread: usize,
    /// Packets its gateways received for no registered mailbox (drops).
    pub drops: usize,
}

fn link_scores<'a>(
    targets: impl Iterator<Item = (&'a MessageRecord, &'a Posterior)>,
    clients: u32,
    counts: (usize, usize, usize),
) -> LinkScores {
    let (mut entropy, mut p_true, mut top) = (Vec::new(), Vec::new(), 0usize);
    for (m, p) in targets {
        entropy.push(p.entropy());
        p_true.push(p.prob(m.sender));
        top += usize::from(p.top() == Some(m.sender));
    }
    let n = entropy.len();
    LinkScores {
        messages: n,
        entropy: Summary::of(&entropy),
        p_true: Summary::of(&p_true),
        top_correct: if n == 0 { f64::NAN } else { top as f64 / n as f64 },
        chance: 1.0 / f64::from(clients.saturating_sub(1).max(1)),
        home: counts.0,
        thread: counts.1,
        drops: counts.2,
    }
}

/// Runs `config` and scores the adversary.
pub fn evaluate(config: &Config) -> Result<Scores, EvalError> {
    let r = run(config)?;
    let delivered: Vec<_> = r.messages.iter().filter_map(|m| m.delivered.map(|d| (m, d))).collect();
    let targets: Vec<usize> = delivered.iter().map(|(_, d)| d.observation).collect();
    let a = analyse(&r.observations, &config.knowledge(), &targets)?;
    let mut entropy = Vec::new();
    let mut p_true = Vec::new();
    let mut top = 0usize;
    for ((m, _), p) in delivered.iter().zip(&a.posteriors) {
        entropy.push(p.entropy());
        p_true.push(p.prob(m.sender));
        if p.top() == Some(m.sender) {
            top += 1;
        }
    }
    let latency: Vec<f64> =
        delivered.iter().map(|(m, d)| d.time.saturating_since(m.queued).as_secs_f64()).collect();
    let elapsed = r.end.0 as f64 / 1e6;
    // The global observer's pair linking: its uniform guess of the recipient among the clients
    // of the gateway the message went to.
    let gateways = config.gateways.max(1);
    let per_gateway = |c: u32| {
        let g = c as usize % gateways;
        (0..config.clients).filter(|x| *x as usize % gateways == g).count().max(1) as f64
    };
    let pair: f64 = delivered
        .iter()
        .zip(&a.posteriors)
        .filter(|((m, _), p)| p.top() == Some(m.sender))
        .map(|((m, _), _)| 1.0 / per_gateway(m.recipient))
        .sum();
    // The gateway adversaries; scored on first deliveries.
    let first: HashMap<usize, &MessageRecord> = delivered.iter().map(|(m, d)| (d.observation, *m)).collect();
    let knowledge = config.knowledge();
    let all: Vec<u16> = (0..config.gateways as u16).collect();
    let one = analyse_gateways(&r.observations, &knowledge, &r.stores, &all[..1.min(all.len())])?;
    let every = analyse_gateways(&r.observations, &knowledge, &r.stores, &all)?;
    let scored = |g: &crate::GatewayAnalysis, full: bool| {
        link_scores(
            g.targets.iter().filter_map(|t| {
                first.get(&t.observation).map(|m| (*m, if full { &t.posterior } else { &t.recipient_only }))
            }),
            config.clients,
            (g.home, g.thread, g.drops),
        )
    };
    Ok(Scores {
        messages: r.messages.len(),
        delivered: delivered.len(),
        observations: r.observations.len(),
        entropy: Summary::of(&entropy),
        p_true: Summary::of(&p_true),
        top_correct: if delivered.is_empty() { f64::NAN } else { top as f64 / delivered.len() as f64 },
        max_entropy: f64::from(config.clients).log2(),
        latency: Summary::of(&latency),
        lambda_over_mu: a.lambda_over_mu,
        pool_size: r.mix_metrics.iter().map(|m| m.pool_packet_seconds / elapsed).collect(),
        pair_linked: if delivered.is_empty() { f64::NAN } else { pair / delivered.len() as f64 },
        one_gateway: scored(&one, true),
        all_gateways: scored(&every, true),
        all_gateways_recipient_only: scored(&every, false),
    })
}
