//! The adversary that runs gateways (A1 with A3): the global link view, plus what its gateways
//! see of the packets they store.
//!
//! # What it knows
//!
//! Everything the global passive adversary knows ([`Knowledge`], every [`Observation`]), and,
//! for each packet one of *its* gateways takes from the last mix layer, the mailbox it lands in
//! ([`Stored`]): items are sealed end to end, so that is a mailbox id and an arrival time, not
//! the packet's kind or message. Its gateways know which of their clients registered which
//! mailbox, and which one is a client's home mailbox (loops and acknowledgements) rather than a
//! thread mailbox (messages from one contact); a packet to a mailbox nobody registered is a drop.
//! [`analyse_gateways`] is given the stores of every gateway and keeps only those of the
//! gateways it is told it runs; it never sees the ground truth.
//!
//! # What it infers
//!
//! Its targets are the packets its gateways store in thread mailboxes: messages, whose
//! recipient `r` it therefore knows (the global observer knows only the recipient's gateway).
//! For each it asks who sent it:
//!
//! 1. The global adversary's posterior over senders ([`analyse`]), without `r` (a client does
//!    not write to its own thread mailbox).
//! 2. The acknowledgement. The recipient answers each message through its SURB in its next
//!    payload slot, and the answer lands in the *sender's* home mailbox at the sender's gateway.
//!    For every candidate sender `s` whose gateway it runs, it weighs the packets that reached
//!    `s`'s home mailbox after the message reached `r`: each by the density `f` of the
//!    acknowledgement's delay (an Exp(λ_P) wait for the slot, any deliberate Exp delay the
//!    protocol adds before acknowledging ([`Knowledge::ack_delay`]), then `L` Exp(μ) mix delays
//!    and the links) and by how much the global analysis of *that* packet points at `r`
//!    (`q_h(r)·N`, 1 for a packet that says nothing). Against a background of loops and other
//!    acknowledgements arriving at the rate `ρ_s` it measured, the likelihood ratio of "`s` sent
//!    it" is `(1 − a) + a·Σ_h f(t_h − t)·q_h(r)·N / ρ_s`, with `a = 0.9` allowing for an
//!    acknowledgement it does not see (one queued behind others, or past the end of the run).
//!    Candidates at gateways it does not run keep a ratio of 1.
//!
//! The posterior is the product, renormalised. Like the global adversary it scores each message
//! alone; it does not yet intersect the many messages that land in one thread mailbox (one
//! contact), which would only make it stronger.

use std::collections::HashMap;

use qanat_mixnet::UnixMicros;

use crate::adversary::{AdversaryError, Knowledge, Posterior, analyse};
use crate::{Endpoint, MailboxSeen, Observation, Stored};

/// The weight of "the acknowledgement is among the packets seen" in the likelihood ratio.
const ACK_SEEN: f64 = 0.9;

/// The adversary's guess for one message its gateways stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayTarget {
    /// The observation of the packet on the link into the gateway.
    pub observation: usize,
    /// The client that owns the thread mailbox: the recipient.
    pub recipient: u32,
    /// Its guess of the sender, from the links, the recipient and the acknowledgements.
    pub posterior: Posterior,
    /// Its guess from the links and the recipient alone (without the home mailboxes' evidence).
    pub recipient_only: Posterior,
}

/// What the adversary running some gateways worked out.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayAnalysis {
    /// One per packet its gateways stored in a thread mailbox, in observation order.
    pub targets: Vec<GatewayTarget>,
    /// Packets its gateways stored in home mailboxes (loops and acknowledgements, not told
    /// apart), in thread mailboxes, and in no mailbox (drops).
    pub home: usize,
    /// See `home`.
    pub thread: usize,
    /// See `home`.
    pub drops: usize,
}

fn secs(t: UnixMicros) -> f64 {
    t.0 as f64 / 1e6
}

/// The density of an acknowledgement's delay from the message's arrival at the recipient's
/// gateway to the acknowledgement's arrival at the sender's gateway, less the link latencies: a
/// sum of exponential stages (the wait for the recipient's payload slot, any deliberate delay
/// before the acknowledgement, each mix's delay), tabulated on a grid.
struct AckDelay {
    step: f64,
    density: Vec<f64>,
}

impl AckDelay {
    /// `rates`: the rate of each exponential stage (infinite: no delay).
    fn new(rates: &[f64]) -> Self {
        const N: usize = 20_000;
        let stages: Vec<f64> = rates.iter().copied().filter(|r| r.is_finite() && *r > 0.0).collect();
        let Some((&first, rest)) = stages.split_first() else {
            return Self { step: 1.0, density: Vec::new() };
        };
        let horizon = stages.iter().map(|r| 12.0 / r).sum::<f64>() + 1.0;
        let step = horizon / N as f64;
        let mut density: Vec<f64> = (0..N).map(|i| first * (-first * i as f64 * step).exp()).collect();
        // Convolution with Exp(r), h'(t) = ∫₀ᵗ h(x)·r·e^{−r(t−x)} dx, by its recurrence on the
        // grid (trapezoids).
        for &r in rest {
            let decay = (-r * step).exp();
            let mut next = vec![0.0; N];
            for i in 1..N {
                next[i] = decay * next[i - 1] + 0.5 * r * step * (density[i] + decay * density[i - 1]);
            }
            density = next;
        }
        Self { step, density }
    }

    fn at(&self, t: f64) -> f64 {
        if t < 0.0 {
            return 0.0;
        }
        let i = (t / self.step) as usize;
        self.density.get(i).copied().unwrap_or(0.0)
    }

    fn horizon(&self) -> f64 {
        self.step * self.density.len() as f64
    }
}

/// The adversary running the gateways `controlled`: for each packet those gateways stored in a
/// thread mailbox, its guess of the sender. `stores` may hold every gateway's view; only the
/// controlled gateways' entries are used.
pub fn analyse_gateways(
    observations: &[Observation],
    knowledge: &Knowledge,
    stores: &[Stored],
    controlled: &[u16],
) -> Result<GatewayAnalysis, AdversaryError> {
    let n = knowledge.clients;
    let mine: Vec<Stored> = stores.iter().copied().filter(|s| controlled.contains(&s.gateway)).collect();
    for s in &mine {
        if s.observation >= observations.len() {
            return Err(AdversaryError::BadTarget(s.observation));
        }
    }
    // Which gateway each client uses: visible on its link.
    let mut client_gateway: HashMap<u32, u16> = HashMap::new();
    for o in observations {
        if let (Endpoint::Client(c), Endpoint::Gateway(g)) = (o.from, o.to) {
            client_gateway.entry(c).or_insert(g);
        }
    }
    let watched = |c: u32| client_gateway.get(&c).is_some_and(|g| controlled.contains(g));
    let targets: Vec<usize> = mine
        .iter()
        .filter(|s| !matches!(s.mailbox, MailboxSeen::Unregistered))
        .map(|s| s.observation)
        .collect();
    let base = analyse(observations, knowledge, &targets)?;
    let by_obs: HashMap<usize, &Posterior> = targets.iter().copied().zip(&base.posteriors).collect();
    let arrival = |i: usize| secs(observations[i].time + knowledge.link_latency);
    // Each watched client's home arrivals: time and the global posterior of their source.
    let mut home: HashMap<u32, Vec<(f64, &Posterior)>> = HashMap::new();
    let (mut n_home, mut n_thread, mut n_drop) = (0, 0, 0);
    for s in &mine {
        match s.mailbox {
            MailboxSeen::Home { owner } => {
                n_home += 1;
                if let Some(p) = by_obs.get(&s.observation) {
                    home.entry(owner).or_default().push((arrival(s.observation), p));
                }
            }
            MailboxSeen::Thread { .. } => n_thread += 1,
            MailboxSeen::Unregistered => n_drop += 1,
        }
    }
    home.values_mut().for_each(|v| v.sort_by(|a, b| a.0.total_cmp(&b.0)));
    let span = match (observations.first(), observations.last()) {
        (Some(a), Some(b)) if b.time > a.time => secs(b.time) - secs(a.time),
        _ => 1.0,
    };
    let layers = knowledge.mix_layers.iter().copied().max().map_or(0, |l| l + 1);
    let mean = knowledge.mean_delay.as_secs_f64();
    let mu = if mean > 0.0 { 1.0 / mean } else { f64::INFINITY };
    let ack_rate = match knowledge.ack_delay.as_secs_f64() {
        d if d > 0.0 => 1.0 / d,
        _ => f64::INFINITY,
    };
    let mut stages = vec![knowledge.payload_rate, ack_rate];
    stages.extend(std::iter::repeat_n(mu, layers));
    let ack = AckDelay::new(&stages);
    let links = (layers + 2) as f64 * knowledge.link_latency.as_secs_f64();

    let mut out = Vec::new();
    for s in &mine {
        let MailboxSeen::Thread { owner: r, .. } = s.mailbox else { continue };
        let Some(p) = by_obs.get(&s.observation) else { continue };
        let mut dense = vec![0.0; n as usize];
        for (c, q) in &p.probs {
            if let Some(v) = dense.get_mut(*c as usize) {
                *v = *q;
            }
        }
        if let Some(v) = dense.get_mut(r as usize) {
            *v = 0.0;
        }
        let recipient_only = normalised(&dense, r);
        let t = arrival(s.observation) + links;
        for (c, v) in dense.iter_mut().enumerate() {
            let c = c as u32;
            if *v <= 0.0 || !watched(c) {
                continue;
            }
            let arrivals = home.get(&c).map(Vec::as_slice).unwrap_or(&[]);
            let rho = (arrivals.len() as f64 / span).max(1e-9);
            let from = arrivals.partition_point(|(th, _)| *th < t);
            let mut evidence = 0.0;
            for (th, q) in &arrivals[from..] {
                let d = th - t;
                if d > ack.horizon() {
                    break;
                }
                evidence += ack.at(d) * q.prob(r) * f64::from(n);
            }
            *v *= (1.0 - ACK_SEEN) + ACK_SEEN * evidence / rho;
        }
        out.push(GatewayTarget {
            observation: s.observation,
            recipient: r,
            posterior: normalised(&dense, r),
            recipient_only,
        });
    }
    Ok(GatewayAnalysis { targets: out, home: n_home, thread: n_thread, drops: n_drop })
}

/// `weights` over clients as a posterior; with no mass, uniform over everyone but `recipient`.
fn normalised(weights: &[f64], recipient: u32) -> Posterior {
    let z: f64 = weights
        .iter()
        .enumerate()
        .filter(|(c, w)| w.is_finite() && *c as u32 != recipient)
        .map(|(_, w)| w)
        .sum();
    let mut probs: Vec<(u32, f64)> = if z > 0.0 {
        weights
            .iter()
            .enumerate()
            .filter(|(c, w)| **w > 0.0 && *c as u32 != recipient)
            .map(|(c, w)| (c as u32, w / z))
            .collect()
    } else {
        let others = weights.len().saturating_sub(1).max(1) as f64;
        (0..weights.len() as u32).filter(|c| *c != recipient).map(|c| (c, 1.0 / others)).collect()
    };
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Posterior { probs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acknowledgement_delay_is_a_density() {
        for (a, b, l) in
            [(0.2, 2.0, 3), (0.2, 1.0, 3), (0.02, 2.0, 3), (0.2, f64::INFINITY, 3), (0.5, 0.5, 2)]
        {
            let mut stages = vec![a];
            stages.extend(std::iter::repeat_n(b, l));
            let d = AckDelay::new(&stages);
            let mass: f64 = d.density.iter().sum::<f64>() * d.step;
            assert!((mass - 1.0).abs() < 0.01, "{a} {b} {l}: {mass}");
            let mean: f64 =
                d.density.iter().enumerate().map(|(i, f)| i as f64 * d.step * f).sum::<f64>() * d.step;
            let want = 1.0 / a + if b.is_finite() { l as f64 / b } else { 0.0 };
            assert!((mean - want).abs() < 0.02 * want, "{a} {b} {l}: mean {mean}, want {want}");
        }
    }

    #[test]
    fn a_deliberate_acknowledgement_delay_adds_its_mean() {
        let d = AckDelay::new(&[0.2, 1.0 / 60.0, 1.0, 1.0, 1.0]);
        let mean: f64 =
            d.density.iter().enumerate().map(|(i, f)| i as f64 * d.step * f).sum::<f64>() * d.step;
        assert!((mean - 68.0).abs() < 1.0, "{mean}");
    }

    #[test]
    fn the_recipient_is_never_its_own_sender() {
        let p = normalised(&[0.5, 0.0, 0.5], 0);
        assert_eq!(p.probs, vec![(2, 1.0)]);
        let p = normalised(&[0.0, 0.0, 0.0], 1);
        assert_eq!(p.probs, vec![(0, 0.5), (2, 0.5)]);
    }
}
