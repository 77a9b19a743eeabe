//! Mailbox pulls on the network ([`Pulls`](crate::Pulls)): each client pulls its mailboxes from
//! its gateway on a fixed cadence, as the client runtime does, whatever it expects.
//!
//! - A pull is due every `interval` from a phase drawn per client (clients do not start
//!   together). One pull at a time: a pull due while one is unanswered is skipped.
//! - The request (encoded by `client_proto`) crosses the client's link; the gateway serves it on
//!   its store at once (`crate::pull::serve`: the session's operations, the planned reads, the
//!   answer) and its `1 + limit` frames leave `answer_delay` later. Each frame is recorded, in
//!   [`Run::pull_frames`](crate::Run::pull_frames), as an observation of the client's link.
//! - The client's side is the real pull core ([`PullClient`](qanat_mixnet::pull::PullClient)),
//!   which never wants a document here (`want_epoch` 0). It decodes the answer and takes each
//!   item ([`Network::take_item`]): a message is delivered when the recipient's pull returns it.
//!   The items' deletions ride in later pulls.
//! - A lost request or answer leaves the pull unanswered; after `timeout` the client starts a new
//!   session (the gateway's session is new too): every mailbox registered again, and the first
//!   pull of the session larger (`first_limit`), as after a reconnection.

use chacha20::rand_core::Rng;
use qanat_mixnet::UnixMicros;
use qanat_mixnet::client_proto::Response;
use qanat_mixnet::pull::{PullOutcome, PullServer};
use qanat_packet::MailboxId;

use super::{Event, Network};
use crate::client::access;
use crate::config::SimError;
use crate::{Endpoint, Observation};

impl Network {
    /// Every client's first session, and its first pull at a random phase of the cadence.
    pub(super) fn start_pulls(&mut self) {
        let Some(p) = self.config.pulls.clone() else { return };
        let every = p.interval.as_micros().max(1) as u64;
        for c in 0..self.s.clients.len() {
            let client = &mut self.s.clients[c];
            let mailboxes: Vec<_> = client.mailboxes().collect();
            client.pull.start_session(mailboxes);
            client.pulled = false;
            let phase = self.s.rng.next_u64() % every;
            self.push(UnixMicros(phase), Event::PullDue(c as u32));
        }
    }

    /// Client `c`'s pull is due at `t`.
    pub(super) fn pull_due(&mut self, c: u32, t: UnixMicros) -> Result<(), SimError> {
        let Some(p) = self.config.pulls.clone() else { return Ok(()) };
        self.push(t + p.interval, Event::PullDue(c));
        let client = &mut self.s.clients[c as usize];
        if client.pull.in_flight().is_some() {
            self.pull_stats.skipped += 1;
            return Ok(());
        }
        let limit = if client.pulled { p.limit } else { p.first_limit };
        // Want epoch 0: no document is wanted, so the answers carry items and padding only.
        let request = client.pull.poll_pull(limit, 0);
        client.pulled = true;
        let id = client.pull.in_flight().unwrap_or(0);
        let bytes = request.encode().map_err(|e| SimError::Packet(e.to_string()))?;
        let g = client.gateway;
        self.pull_stats.pulls += 1;
        self.pull_frames.push(Observation {
            time: t,
            from: Endpoint::Client(c),
            to: Endpoint::Gateway(g as u16),
        });
        self.push(t + p.timeout, Event::PullTimeout { client: c, id });
        if !self.lost(self.config.links.pull_loss) {
            self.push(t + self.config.link_latency, Event::PullArrive { client: c, request: bytes });
        }
        Ok(())
    }

    /// Client `c`'s request reaches its gateway: served on the store now, answered later.
    pub(super) fn pull_arrive(&mut self, c: u32, t: UnixMicros, request: &[u8]) {
        let Some(p) = &self.config.pulls else { return };
        let (delay, chunk_len, max) = (p.answer_delay, p.chunk_len, p.max_mailboxes);
        let g = self.s.clients[c as usize].gateway;
        let session = self.sessions[g].entry(c).or_insert_with(|| PullServer::new(max));
        let answer = crate::pull::serve(&mut self.stores[g], session, request, chunk_len);
        let frames = answer.into_iter().filter_map(|r| r.encode().ok()).collect();
        self.push(t + delay, Event::AnswerLeave { client: c, frames });
    }

    /// The answer leaves the gateway: every frame on the client's link.
    pub(super) fn answer_leave(&mut self, c: u32, t: UnixMicros, frames: Vec<Vec<u8>>) {
        let g = self.s.clients[c as usize].gateway as u16;
        for _ in &frames {
            self.pull_frames.push(Observation {
                time: t,
                from: Endpoint::Gateway(g),
                to: Endpoint::Client(c),
            });
        }
        if !self.lost(self.config.links.pull_loss) {
            self.push(t + self.config.link_latency, Event::AnswerArrive { client: c, frames });
        }
    }

    /// The answer reaches client `c`: each item taken, each pulled item's deletion queued.
    pub(super) fn answer_arrive(
        &mut self,
        c: u32,
        t: UnixMicros,
        frames: Vec<Vec<u8>>,
    ) -> Result<(), SimError> {
        let responses: Result<Vec<Response>, _> = frames.iter().map(|f| Response::decode(f)).collect();
        let Ok(responses) = responses else { return Ok(()) };
        let Ok(out) = self.s.clients[c as usize].pull.handle_answer(responses) else { return Ok(()) };
        // The rest of the outcome asks nothing of the simulation: no document is wanted, no
        // mailbox is unregistered, a refused registration (none: every credential is right) is
        // counted by the client's metrics, and `more` waits for the next pull on the cadence.
        let PullOutcome { items, more: _, unregistered: _, refused: _, document: _ } = out;
        self.pull_stats.answers += 1;
        let mut last: Vec<(MailboxId, u64)> = Vec::new();
        for (mailbox, seq, item) in items {
            self.pull_stats.items += 1;
            if !self.pulled.insert((mailbox, seq)) {
                self.pull_stats.repeats += 1;
            }
            let observation = self.truth.get(&(mailbox, seq)).copied().unwrap_or(usize::MAX);
            self.take_item(c, mailbox, &item, t, observation)?;
            match last.iter_mut().find(|(m, _)| *m == mailbox) {
                Some(e) => e.1 = e.1.max(seq),
                None => last.push((mailbox, seq)),
            }
        }
        let client = &mut self.s.clients[c as usize];
        for (mailbox, up_to) in last {
            client.pull.delete(access(mailbox), up_to);
        }
        Ok(())
    }

    /// Client `c`'s pull `id` went unanswered: a new session, on both sides.
    pub(super) fn pull_timeout(&mut self, c: u32, id: u32) {
        let Some(max) = self.config.pulls.as_ref().map(|p| p.max_mailboxes) else { return };
        let client = &mut self.s.clients[c as usize];
        if client.pull.in_flight() != Some(id) {
            return;
        }
        let mailboxes: Vec<_> = client.mailboxes().collect();
        client.pull.start_session(mailboxes);
        client.pulled = false;
        self.sessions[client.gateway].insert(c, PullServer::new(max));
        self.pull_stats.sessions += 1;
    }
}
