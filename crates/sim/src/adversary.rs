//! The global passive adversary: from the link observations alone, the probability that each
//! client sent a given packet.
//!
//! # Model
//!
//! The adversary knows the public facts in [`Knowledge`]: which endpoint is a client, a gateway
//! or a mix of which layer; that gateways forward without delay; that every mix delays each
//! packet by an exponential time of mean 1/μ; each mix's loop rate λ_M; the link latency. It
//! walks the observations in time order and gives every packet on every link a distribution
//! over its *source*: one of the clients, or "cover made by a mix".
//!
//! - A packet a client puts on its link is that client's (probability 1).
//! - A gateway forwards at the instant a packet arrives, so a packet leaving a gateway at `t`
//!   is one of the packets that reached it at `t` (in practice exactly one). The same holds for
//!   a mix when the mean delay is zero.
//! - A packet leaving a mix at `t` is the mixture of the packets that entered that mix before
//!   `t`, each weighted by the density of its delay, `μ·e^{−μ(t − t_in)}`, and of a fresh loop
//!   of the mix itself, weighted by λ_M (the rate at which the mix starts loops). This is the
//!   standard approximation for a Poisson mix (Loopix §4; Danezis's pool-mix analyses): it
//!   treats inputs independently and ignores that each input leaves only once, and it also
//!   counts the mix's own returning loops (which end there) as inputs. Both make the adversary
//!   slightly less certain than an exact (and exponentially costly) Bayesian one could be.
//!
//! The mixture is kept per mix as one dense vector over sources, decayed lazily: entries are
//! stored scaled by `e^{μ(t_in − t₀)}` and rebased when the exponent grows, so each packet costs
//! one pass over the sources. Probabilities below 10⁻⁹ are dropped from each packet's
//! distribution to bound memory; that changes entropies by far less than the digits reported.
//!
//! For a packet of interest (a message delivered into a mailbox: its packet on the link from
//! the last mix to the gateway) the distribution is renormalised over clients, giving the
//! adversary's guess of its sender.

use std::collections::HashMap;
use std::time::Duration;

use qanat_mixnet::UnixMicros;

use crate::stats::entropy_bits;
use crate::{Endpoint, Observation};

/// What the adversary knows besides the observations: the public facts of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Knowledge {
    /// Clients (`Endpoint::Client(0..clients)`).
    pub clients: u32,
    /// Gateways.
    pub gateways: u16,
    /// The layer of each mix (`mix_layers[i]` for `Endpoint::Mix(i)`).
    pub mix_layers: Vec<usize>,
    /// Mean per-hop delay 1/μ.
    pub mean_delay: Duration,
    /// Each mix's loop rate λ_M.
    pub mix_loop_rate: f64,
    /// One-way link latency.
    pub link_latency: Duration,
    /// The clients' payload rate λ_P (a recipient acknowledges in its next payload slot).
    pub payload_rate: f64,
    /// The mean of the exponential delay recipients wait before queueing an acknowledgement
    /// (zero: none), a protocol constant.
    pub ack_delay: Duration,
}

/// The adversary's guess of who sent one packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Posterior {
    /// `(client, probability)`, probabilities summing to 1, largest first.
    pub probs: Vec<(u32, f64)>,
}

impl Posterior {
    /// Shannon entropy in bits.
    pub fn entropy(&self) -> f64 {
        entropy_bits(self.probs.iter().map(|(_, p)| *p))
    }

    /// The probability given to `client`.
    pub fn prob(&self, client: u32) -> f64 {
        self.probs.iter().find(|(c, _)| *c == client).map_or(0.0, |(_, p)| *p)
    }

    /// The most likely sender.
    pub fn top(&self) -> Option<u32> {
        self.probs.first().map(|(c, _)| *c)
    }
}

/// What the adversary worked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// One posterior per target, in the order given.
    pub posteriors: Vec<Posterior>,
    /// Per mix: the packets per second that entered it, times the mean delay: λ/μ as observed
    /// from outside (by Little's law, the mean number of packets it holds).
    pub lambda_over_mu: Vec<f64>,
}

/// Why the adversary could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdversaryError {
    /// An observation names an endpoint the knowledge does not have.
    #[error("observation {0} names an unknown endpoint")]
    UnknownEndpoint(usize),
    /// A target is not an observation.
    #[error("target {0} is not an observation")]
    BadTarget(usize),
}

/// A distribution over sources `0..clients` and `clients` (mix cover), sparse.
type Dist = Vec<(u32, f64)>;

const KEEP: f64 = 1e-9;
const REBASE: f64 = 200.0;

/// One mix's mixture of what entered it.
struct Pool {
    /// Σ over inputs of `e^{μ(t_in − t₀)} · d_in`, densely over sources.
    mass: Vec<f64>,
    /// Σ over inputs of `e^{μ(t_in − t₀)}`.
    total: f64,
    t0: UnixMicros,
}

fn secs(t: UnixMicros) -> f64 {
    t.0 as f64 / 1e6
}

/// Packets waiting at a zero-delay node, by arrival time.
type Waiting = HashMap<UnixMicros, Vec<Dist>>;

/// Computes, for each observation index in `targets`, the adversary's posterior over senders;
/// and λ/μ at each mix. Observations must be in time order (as a run records them).
pub fn analyse(
    observations: &[Observation],
    knowledge: &Knowledge,
    targets: &[usize],
) -> Result<Analysis, AdversaryError> {
    let n_src = knowledge.clients as usize + 1;
    let cover = knowledge.clients;
    let n_mix = knowledge.mix_layers.len();
    let mean = knowledge.mean_delay.as_secs_f64();
    let instant = mean <= 0.0;
    let mu = if instant { f64::INFINITY } else { 1.0 / mean };
    for &t in targets {
        if t >= observations.len() {
            return Err(AdversaryError::BadTarget(t));
        }
    }
    for (i, o) in observations.iter().enumerate() {
        for e in [o.from, o.to] {
            let ok = match e {
                Endpoint::Client(c) => c < knowledge.clients,
                Endpoint::Gateway(g) => g < knowledge.gateways,
                Endpoint::Mix(m) => usize::from(m) < n_mix,
            };
            if !ok {
                return Err(AdversaryError::UnknownEndpoint(i));
            }
        }
    }
    // Events: each observation leaves its sender at `time` and enters its receiver a latency
    // later. Arrivals sort before departures at the same instant (a zero-delay node forwards a
    // packet at the instant it arrives).
    let mut events: Vec<(UnixMicros, bool, usize)> = Vec::with_capacity(2 * observations.len());
    for (i, o) in observations.iter().enumerate() {
        events.push((o.time, true, i));
        events.push((o.time + knowledge.link_latency, false, i));
    }
    events.sort_unstable();
    let mut is_target = vec![false; observations.len()];
    for &t in targets {
        is_target[t] = true;
    }
    let mut found: HashMap<usize, Dist> = HashMap::new();
    let mut dists: HashMap<usize, Dist> = HashMap::new();
    let mut pools: Vec<Pool> =
        (0..n_mix).map(|_| Pool { mass: vec![0.0; n_src], total: 0.0, t0: UnixMicros::ZERO }).collect();
    let mut waiting: Vec<Waiting> = vec![HashMap::new(); usize::from(knowledge.gateways) + n_mix];
    let mut arrivals = vec![0u64; n_mix];
    let lm = knowledge.mix_loop_rate.max(0.0);
    let wait_index = |e: Endpoint| match e {
        Endpoint::Gateway(g) => usize::from(g),
        Endpoint::Mix(m) => usize::from(knowledge.gateways) + usize::from(m),
        Endpoint::Client(_) => 0,
    };
    for (t, departure, i) in events {
        let o = observations[i];
        if departure {
            let d: Dist = match o.from {
                Endpoint::Client(c) => vec![(c, 1.0)],
                Endpoint::Gateway(_) => take_waiting(&mut waiting[wait_index(o.from)], t, cover),
                Endpoint::Mix(_) if instant => take_waiting(&mut waiting[wait_index(o.from)], t, cover),
                Endpoint::Mix(m) => {
                    let p = &pools[usize::from(m)];
                    let decay = (-mu * (secs(t) - secs(p.t0))).exp() * mu;
                    let z = decay * p.total + lm;
                    if z <= 0.0 {
                        vec![(cover, 1.0)]
                    } else {
                        let mut d: Dist = p
                            .mass
                            .iter()
                            .enumerate()
                            .map(|(s, x)| (s as u32, x * decay / z))
                            .filter(|(_, x)| *x > KEEP)
                            .collect();
                        if lm > 0.0 {
                            match d.iter_mut().find(|(s, _)| *s == cover) {
                                Some(e) => e.1 += lm / z,
                                None => d.push((cover, lm / z)),
                            }
                        }
                        d
                    }
                }
            };
            if is_target[i] {
                found.insert(i, d.clone());
            }
            dists.insert(i, d);
        } else {
            let d = dists.remove(&i).unwrap_or_else(|| vec![(cover, 1.0)]);
            match o.to {
                Endpoint::Client(_) => {}
                Endpoint::Mix(m) if !instant => {
                    arrivals[usize::from(m)] += 1;
                    let p = &mut pools[usize::from(m)];
                    let mut x = mu * (secs(t) - secs(p.t0));
                    if x > REBASE {
                        let f = (-x).exp();
                        p.mass.iter_mut().for_each(|v| *v *= f);
                        p.total *= f;
                        p.t0 = t;
                        x = 0.0;
                    }
                    let w = x.exp();
                    for (s, q) in d {
                        if let Some(v) = p.mass.get_mut(s as usize) {
                            *v += w * q;
                        }
                    }
                    p.total += w;
                }
                Endpoint::Mix(m) => {
                    arrivals[usize::from(m)] += 1;
                    waiting[wait_index(o.to)].entry(t).or_default().push(d);
                }
                Endpoint::Gateway(_) => {
                    waiting[wait_index(o.to)].entry(t).or_default().push(d);
                }
            }
        }
    }
    let span = match (observations.first(), observations.last()) {
        (Some(a), Some(b)) if b.time > a.time => secs(b.time) - secs(a.time),
        _ => 1.0,
    };
    let lambda_over_mu = arrivals.iter().map(|a| *a as f64 / span * mean).collect();
    let posteriors = targets
        .iter()
        .map(|i| posterior(found.get(i).map(Vec::as_slice).unwrap_or(&[]), knowledge.clients))
        .collect();
    Ok(Analysis { posteriors, lambda_over_mu })
}

/// The packet leaving a zero-delay node at `t`: one of those that reached it at `t`, which
/// cannot be told apart (their mixture; one of them is used up). With none, a mix's own fresh
/// loop (or, at a gateway, which never happens, unknown).
fn take_waiting(w: &mut Waiting, t: UnixMicros, cover: u32) -> Dist {
    let Some(list) = w.get_mut(&t).filter(|l| !l.is_empty()) else { return vec![(cover, 1.0)] };
    let k = list.len() as f64;
    let mut acc: HashMap<u32, f64> = HashMap::new();
    for d in list.iter() {
        for (s, p) in d {
            *acc.entry(*s).or_default() += p / k;
        }
    }
    list.pop();
    if list.is_empty() {
        w.remove(&t);
    }
    let mut d: Dist = acc.into_iter().collect();
    d.sort_by_key(|(s, _)| *s);
    d
}

/// Renormalises a source distribution over clients; with no mass on any client, uniform.
fn posterior(d: &[(u32, f64)], clients: u32) -> Posterior {
    let mut probs: Vec<(u32, f64)> = d.iter().copied().filter(|(s, p)| *s < clients && *p > 0.0).collect();
    let z: f64 = probs.iter().map(|(_, p)| p).sum();
    if z <= 0.0 {
        let u = 1.0 / f64::from(clients.max(1));
        probs = (0..clients).map(|c| (c, u)).collect();
    } else {
        probs.iter_mut().for_each(|(_, p)| *p /= z);
    }
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Posterior { probs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> UnixMicros {
        UnixMicros(ms * 1000)
    }

    fn obs(ms: u64, from: Endpoint, to: Endpoint) -> Observation {
        Observation { time: at(ms), from, to }
    }

    fn knowledge(mean_ms: u64) -> Knowledge {
        Knowledge {
            clients: 2,
            gateways: 1,
            mix_layers: vec![0],
            mean_delay: Duration::from_millis(mean_ms),
            mix_loop_rate: 0.0,
            link_latency: Duration::from_millis(1),
            payload_rate: 0.2,
            ack_delay: Duration::ZERO,
        }
    }

    #[test]
    fn one_mix_weights_inputs_by_the_delay_density() {
        use Endpoint::*;
        // Client 0 at 0 ms, client 1 at 1000 ms, through the gateway into one mix (mean 1 s);
        // a packet leaves the mix at 1002 ms.
        let o = vec![
            obs(0, Client(0), Gateway(0)),
            obs(1, Gateway(0), Mix(0)),
            obs(1000, Client(1), Gateway(0)),
            obs(1001, Gateway(0), Mix(0)),
            obs(1010, Mix(0), Gateway(0)),
        ];
        let a = analyse(&o, &knowledge(1000), &[4]).unwrap();
        let p = &a.posteriors[0];
        // Weights e^{-1.008} and e^{-0.008}: client 1 has 1/(1+e^{-1}) ≈ 0.731.
        assert!((p.prob(1) - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-3, "{p:?}");
        assert_eq!(p.top(), Some(1));
    }

    #[test]
    fn without_delay_the_sender_is_certain() {
        use Endpoint::*;
        let o = vec![
            obs(0, Client(0), Gateway(0)),
            obs(0, Client(1), Gateway(0)),
            obs(1, Gateway(0), Mix(0)),
            obs(1, Gateway(0), Mix(0)),
            obs(5, Client(1), Gateway(0)),
            obs(6, Gateway(0), Mix(0)),
            obs(7, Mix(0), Gateway(0)),
        ];
        let a = analyse(&o, &knowledge(0), &[6]).unwrap();
        assert_eq!(a.posteriors[0].probs, vec![(1, 1.0)]);
        assert!(analyse(&o, &knowledge(0), &[99]).is_err());
    }
}
