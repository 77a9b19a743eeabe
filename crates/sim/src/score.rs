//! A whole experiment: run the network, let the adversary analyse what it saw, score its
//! guesses against the ground truth.

use crate::adversary::{AdversaryError, analyse};
use crate::net::{Config, SimError, run};
use crate::stats::Summary;

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
    })
}
