//! The links and the nodes on them: every packet is put on a link and recorded; with loss some
//! never arrive; with link-level acknowledgements the last mix sends a packet to a gateway again
//! until the gateway, having made the write durable, acknowledges it.

use chacha20::rand_core::Rng;
use qanat_mixnet::{AckToken, UnixMicros};

use super::{Event, Network};
use crate::config::SimError;
use crate::setup::{Node, node_id};
use crate::{Endpoint, MailboxSeen, Observation, Stored};

impl Network {
    /// Whether a frame is lost, with probability `p` (no draw when `p` is zero).
    pub(super) fn lost(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let lost = ((self.s.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p;
        self.link_stats.lost += u64::from(lost);
        lost
    }

    /// Puts a packet on the link `from → to` at `t`: recorded, and (unless lost) delivered a
    /// latency later.
    pub(super) fn transmit(&mut self, t: UnixMicros, from: Endpoint, to: Node, packet: Vec<u8>, token: u64) {
        let observation = self.observations.len();
        self.observations.push(Observation { time: t, from, to: to.endpoint() });
        let loss = match from {
            Endpoint::Client(_) => self.config.links.client_loss,
            _ => self.config.links.loss,
        };
        if self.lost(loss) {
            return;
        }
        self.push(t + self.config.link_latency, Event::Arrive { from, to, observation, packet, token });
    }

    pub(super) fn drain_mix(&mut self, m: usize, t: UnixMicros) {
        while let Some(tx) = self.s.mixes[m].poll_transmit(t) {
            let Some(to) = self.s.ids.get(&tx.to).copied() else { continue };
            let token = match (to, self.resends.get_mut(m)) {
                (Node::Gateway(_), Some(r)) => r.send(t, tx.to, true, &tx.packet),
                _ => 0,
            };
            self.transmit(t, crate::Endpoint::Mix(m as u16), to, tx.packet, token);
        }
        self.reschedule_mix(m, t);
        self.reschedule_resend(m, t);
    }

    pub(super) fn reschedule_mix(&mut self, m: usize, t: UnixMicros) {
        if let Some(next) = self.s.mixes[m].poll_timeout() {
            let next = next.max(t);
            if self.mix_wake[m].is_none_or(|w| next < w || w < t) {
                self.mix_wake[m] = Some(next);
                self.push(next, Event::MixWake(m));
            }
        }
    }

    pub(super) fn reschedule_gateway(&mut self, g: usize, t: UnixMicros) {
        if let Some(next) = self.s.gateways[g].poll_timeout() {
            let next = next.max(t);
            if self.gateway_wake[g].is_none_or(|w| next < w || w < t) {
                self.gateway_wake[g] = Some(next);
                self.push(next, Event::GatewayWake(g));
            }
        }
    }

    fn reschedule_resend(&mut self, m: usize, t: UnixMicros) {
        let Some(next) = self.resends.get(m).and_then(|r| r.poll_timeout()) else { return };
        let next = next.max(t);
        if self.resend_wake[m].is_none_or(|w| next < w || w < t) {
            self.resend_wake[m] = Some(next);
            self.push(next, Event::ResendWake(m));
        }
    }

    /// Mix `m` sends again what its gateways have not acknowledged in time (same link id).
    pub(super) fn resend_due(&mut self, m: usize, t: UnixMicros) {
        while let Some(r) = self.resends.get_mut(m).and_then(|x| x.poll_resend(t)) {
            if let Some(to) = self.s.ids.get(&r.to).copied() {
                self.transmit(t, crate::Endpoint::Mix(m as u16), to, r.packet, r.id);
            }
        }
        self.reschedule_resend(m, t);
    }

    /// What gateway `g` owes: acknowledgements on its links to mixes (dropped without link
    /// acknowledgements), and the packets it forwards.
    pub(super) fn drain_gateway(&mut self, g: usize, t: UnixMicros) {
        while let Some(ack) = self.s.gateways[g].poll_ack() {
            if self.resends.is_empty() {
                continue;
            }
            let Some(&Node::Mix(mix)) = self.s.ids.get(&ack.to) else { continue };
            self.link_stats.acks += 1;
            if !self.lost(self.config.links.loss) {
                let token = ack.token.0;
                self.push(t + self.config.link_latency, Event::LinkAck { mix, gateway: g, token });
            }
        }
        while let Some(tx) = self.s.gateways[g].poll_transmit(t) {
            if let Some(to) = self.s.ids.get(&tx.to).copied() {
                self.transmit(t, Endpoint::Gateway(g as u16), to, tx.packet, 0);
            }
        }
        self.reschedule_gateway(g, t);
    }

    /// A packet from a mix reaches gateway `g`: into the store (or forwarded), then acknowledged.
    pub(super) fn packet_from_mix(
        &mut self,
        g: usize,
        t: UnixMicros,
        from: Endpoint,
        observation: usize,
        packet: Vec<u8>,
        token: u64,
    ) -> Result<(), SimError> {
        let from_id = match from {
            Endpoint::Mix(m) => node_id(1, usize::from(m)),
            _ => node_id(2, 0),
        };
        let _ = self.s.gateways[g].handle_mix_packet(t, from_id, AckToken(token), packet);
        self.store_writes(g, t, observation)?;
        self.drain_gateway(g, t);
        Ok(())
    }

    /// The gateway's store writes, reported back to it as the store answers (durable, rejected
    /// for an unknown mailbox, failed while the store fails). What the gateway learns of each is
    /// recorded ([`Stored`]). Without pulls, a client takes a new item of its own the instant it
    /// is stored.
    fn store_writes(&mut self, g: usize, t: UnixMicros, observation: usize) -> Result<(), SimError> {
        while let Some(req) = self.s.gateways[g].poll_store() {
            let (result, seq) = self.stores[g].append(req.mailbox, req.item_id, req.item);
            self.s.gateways[g].handle_store_result(req.token, result);
            let owner = self.s.mailboxes.get(&req.mailbox).copied();
            let seen = owner.map_or(MailboxSeen::Unregistered, |m| m.1);
            self.stored.push(Stored { observation, gateway: g as u16, mailbox: seen });
            let (Some(seq), Some((owner, _))) = (seq, owner) else { continue };
            if self.config.pulls.is_some() {
                self.truth.insert((req.mailbox, seq), observation);
                continue;
            }
            if let Some(item) = self.stores[g].take(req.mailbox, seq) {
                self.take_item(owner, req.mailbox, &item, t, observation)?;
            }
        }
        Ok(())
    }
}
