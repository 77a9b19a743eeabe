//! The clients on the network: their slots and messages, and what each does with an item it takes
//! from its mailbox.
//!
//! Clients `0..active` queue messages as a Poisson process of rate `message_rate` to a uniformly
//! random other client, into the thread mailbox the recipient keeps for the sender (made the
//! first time that sender writes, as an invitation would, and registered in the recipient's
//! gateway's store at once); a message is one DATA packet of a few bytes (MLS is not run). An
//! item taken from a mailbox is an acknowledgement for the owner's `Outbox`, or a DATA fragment
//! for its `Inbox`, which delivers each message once; every fragment taken is acknowledged
//! through its SURB in a later payload slot (after an Exp(`ack_delay`) wait, if set), as the
//! engine does.

use std::time::Duration;

use chacha20::rand_core::Rng;
use qanat_mixnet::sending::inbox::Received;
use qanat_mixnet::sending::{Payload, Route, ack_packet, seal};
use qanat_mixnet::{MailboxItem, UnixMicros, exponential};
use qanat_packet::MailboxId;

use super::{Event, Network};
use crate::Endpoint;
use crate::client::{access, credential, seal_key, slot_packet, source};
use crate::config::SimError;
use crate::run::{Delivered, MessageRecord};
use crate::setup::{Node, Setup};

impl Network {
    /// Client `c`'s messages that fell due and its slots at `t`.
    pub(super) fn client_wake(&mut self, c: u32, t: UnixMicros) -> Result<(), SimError> {
        let ci = c as usize;
        let (_, stop_msgs, _) = self.config.phases();
        let (clients, rate, cover) =
            (self.config.clients, self.config.message_rate, self.config.client_cover);
        while let Some(at) = self.s.clients[ci].next_message.filter(|at| *at <= t) {
            let to = if clients == 1 {
                0
            } else {
                let k = (self.s.rng.next_u64() % u64::from(clients - 1)) as u32;
                if k >= c { k + 1 } else { k }
            };
            let (mailbox, new) = self.s.thread(to, c);
            if new {
                self.new_thread(to, mailbox);
            }
            let route =
                Route { gateway: self.s.clients[to as usize].view.gateway, mailbox, seal: seal_key(mailbox) };
            let Setup { rng, sphinx, clients, .. } = &mut self.s;
            let client = &mut clients[ci];
            let text = (self.messages.len() as u64).to_be_bytes();
            let id = client
                .outbox
                .queue(sphinx.geometry(), route, client.mailbox, &text, rng)
                .map_err(|e| SimError::Packet(e.to_string()))?;
            self.by_id.insert(id, self.messages.len());
            self.messages.push(MessageRecord {
                sender: c,
                recipient: to,
                queued: at,
                delivered: None,
                deliveries: 0,
                copies: 0,
            });
            let gap = exponential(rng, Duration::from_secs_f64(1.0 / rate));
            client.next_message = Some(at + gap).filter(|n| *n < stop_msgs);
        }
        let Setup { rng, sphinx, clients, .. } = &mut self.s;
        let client = &mut clients[ci];
        client.outbox.handle_timeout(t);
        let mut out = Vec::new();
        for slot in client.schedule.poll(t, rng) {
            if let Some(p) = slot_packet(client, slot, cover, t, sphinx, rng)? {
                out.push(p);
            }
        }
        while client.outbox.poll_event().is_some() {}
        client.sent += out.len() as u64;
        let gateway = client.gateway;
        let wake = [client.schedule.poll_timeout(), client.next_message].into_iter().flatten().min();
        client.wake = wake;
        for p in out {
            self.transmit(t, Endpoint::Client(c), Node::Gateway(gateway), p, 0);
        }
        if let Some(w) = wake {
            self.push(w, Event::ClientWake(c));
        }
        Ok(())
    }

    /// A thread mailbox of client `owner` exists: in its gateway's store at once (an invitation
    /// made it long before), and on its pull session from its next pull.
    fn new_thread(&mut self, owner: u32, mailbox: MailboxId) {
        let client = &mut self.s.clients[owner as usize];
        let _ = self.stores[client.gateway].register(mailbox, credential(mailbox));
        if self.config.pulls.is_some() {
            client.pull.register(access(mailbox));
        }
    }

    /// Client `owner` takes an item of its mailbox `mailbox` at `t` (it came in the packet of
    /// `observation`): an acknowledgement for its outbox, or a DATA fragment for its inbox, which
    /// is acknowledged.
    pub(super) fn take_item(
        &mut self,
        owner: u32,
        mailbox: MailboxId,
        bytes: &[u8],
        t: UnixMicros,
        observation: usize,
    ) -> Result<(), SimError> {
        let Ok(item) = MailboxItem::decode(bytes) else { return Ok(()) };
        let Setup { rng, sphinx, clients, .. } = &mut self.s;
        let client = &mut clients[owner as usize];
        if client.outbox.handle_reply(sphinx, item.id, &item.body) {
            return Ok(());
        }
        let Ok(plain) = seal::open(&seal_key(mailbox), &item.id.0, &item.body) else { return Ok(()) };
        let Ok(Payload::Data { surb, message_id, index, count, data }) =
            Payload::decode(sphinx.geometry(), &plain)
        else {
            return Ok(());
        };
        let record = self.by_id.get(&message_id).and_then(|k| self.messages.get_mut(*k));
        match client.inbox.handle(t, source(mailbox), message_id, index, count, data) {
            Received::Message(id, _) => {
                client.inbox.commit(id, t);
                if let Some(m) = record {
                    m.copies += 1;
                    m.deliveries += 1;
                    m.delivered.get_or_insert(Delivered { time: t, observation });
                }
            }
            Received::Duplicate | Received::Partial => {
                if let Some(m) = record {
                    m.copies += 1;
                }
            }
            Received::Refused => return Ok(()),
        }
        let ack =
            ack_packet(sphinx, &surb, message_id, index, rng).map_err(|e| SimError::Packet(e.to_string()))?;
        let at =
            if self.config.ack_delay.is_zero() { t } else { t + exponential(rng, self.config.ack_delay) };
        client.acks.push_back((at, ack.packet));
        Ok(())
    }
}
