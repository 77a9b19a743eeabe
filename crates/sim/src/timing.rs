//! Unobservability: one client's packet departures (its link to the gateway, all an observer of
//! that link sees) when idle and when busy.
//!
//! The client is the real sending layer ([`Schedule`],
//! [`Outbox`], real Sphinx packets) on the topology of a
//! simulated network; what happens to its packets after they leave cannot change when they
//! leave, so the rest of the network is not run. *Busy* keeps a real packet queued for every
//! payload slot (a new message whenever the outbox runs dry); *idle* queues nothing.
//!
//! The control, [`Sender::Naive`], sends cover at the same total rate but sends each message
//! at once, as it is written (Poisson, at λ_P when busy): a sender without payload slots.

use std::time::Duration;

#[cfg(doc)]
use qanat_mixnet::sending::Outbox;
use qanat_mixnet::sending::{Rates, Route, Schedule, Slot};
use qanat_mixnet::{UnixMicros, exponential};

use crate::client::{seal_key, slot_packet};
use crate::config::{Config, SimError};
use crate::setup::Setup;

/// How the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Qanat's sender: payload slots at λ_P (real packet or drop), loops at λ_L, drops at λ_D.
    Qanat,
    /// A control without payload slots: cover at λ_P + λ_L + λ_D, and each message sent at once.
    Naive,
}

/// The inter-departure times (seconds) of client 0's first `packets + 1` packets, busy or idle,
/// on the network of `config`.
pub fn inter_departures(
    config: &Config,
    sender: Sender,
    busy: bool,
    packets: usize,
) -> Result<Vec<f64>, SimError> {
    if config.clients == 0 {
        return Err(SimError::Config("clients, layers, mixes per layer and gateways must be positive"));
    }
    let mut s = Setup::new(config)?;
    let route = Route {
        gateway: s.clients[s.clients.len() - 1].view.gateway,
        mailbox: s.clients[s.clients.len() - 1].mailbox,
        seal: seal_key(s.clients[s.clients.len() - 1].mailbox),
    };
    let Setup { rng, sphinx, clients, .. } = &mut s;
    let client = &mut clients[0];
    let r = config.rates;
    if sender == Sender::Naive {
        client.schedule = Schedule::new(Rates { payload: 0.0, loops: r.loops, drops: r.payload + r.drops });
    }
    let mut next_message =
        UnixMicros::ZERO + exponential(rng, Duration::from_secs_f64(1.0 / r.payload.max(1e-6)));
    let mut departures: Vec<UnixMicros> = Vec::with_capacity(packets + 1);
    let mut t = UnixMicros::ZERO;
    let mut guard = 0u64;
    while departures.len() <= packets {
        guard += 1;
        if guard > 100 * packets as u64 + 1000 {
            return Err(SimError::Config("the client sends nothing"));
        }
        let mut out = 0usize;
        if busy && sender == Sender::Naive && next_message <= t {
            client
                .outbox
                .queue(sphinx.geometry(), route, client.mailbox, b"x", rng)
                .map_err(|e| SimError::Packet(e.to_string()))?;
            if slot_packet(client, Slot::Payload, false, t, sphinx, rng)?.is_some() {
                out += 1;
            }
            next_message = t + exponential(rng, Duration::from_secs_f64(1.0 / r.payload.max(1e-6)));
        }
        if busy && sender == Sender::Qanat && !client.outbox.has_queued() {
            client
                .outbox
                .queue(sphinx.geometry(), route, client.mailbox, b"x", rng)
                .map_err(|e| SimError::Packet(e.to_string()))?;
        }
        for slot in client.schedule.poll(t, rng) {
            if slot_packet(client, slot, true, t, sphinx, rng)?.is_some() {
                out += 1;
            }
        }
        while client.outbox.poll_event().is_some() {}
        departures.extend(std::iter::repeat_n(t, out));
        let mut next = client.schedule.poll_timeout().unwrap_or(t);
        if busy && sender == Sender::Naive {
            next = next.min(next_message);
        }
        t = next.max(t);
    }
    Ok(departures.windows(2).map(|w| w[1].saturating_since(w[0]).as_secs_f64()).collect())
}
