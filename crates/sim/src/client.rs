//! A simulated client: the real sending layer of [`qanat_mixnet::sending`] (its Poisson
//! [`Schedule`], the [`Outbox`] with SURB acknowledgements and resends, cover packets, the
//! [`Inbox`] that delivers each message once), the acknowledgements it owes, and its side of the
//! pull exchange (the real [`PullClient`] of `qanat-client`, which lives in
//! [`qanat_mixnet::pull`]). What goes in each slot is decided as the engine decides it.

use std::collections::VecDeque;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::Rng;
use qanat_mixnet::UnixMicros;
use qanat_mixnet::sending::seal::SealKey;
use qanat_mixnet::sending::{Inbox, NetworkView, Outbox, Schedule, Slot, cover_packet};
use qanat_packet::{MailboxId, Sphinx};

pub(crate) use qanat_mixnet::pull::{MailboxAccess, PullClient};

use crate::config::SimError;

/// A simulated client.
pub(crate) struct Client {
    pub(crate) view: NetworkView,
    pub(crate) gateway: usize,
    /// Its home mailbox: its loops and the acknowledgements of what it sends land here.
    pub(crate) mailbox: MailboxId,
    /// The thread mailboxes this client keeps (one per contact who wrote to it).
    pub(crate) threads: Vec<MailboxId>,
    pub(crate) schedule: Schedule,
    pub(crate) outbox: Outbox,
    pub(crate) inbox: Inbox,
    /// Acknowledgements owed, each with the time from which it may be sent.
    pub(crate) acks: VecDeque<(UnixMicros, Vec<u8>)>,
    pub(crate) next_message: Option<UnixMicros>,
    pub(crate) wake: Option<UnixMicros>,
    pub(crate) sent: u64,
    /// Its side of the pull exchange (unused without pulls). It never wants a document: none
    /// travel in the simulation.
    pub(crate) pull: PullClient,
    /// Whether its pull session has pulled yet (the first pull of a session is larger).
    pub(crate) pulled: bool,
}

impl Client {
    /// Every mailbox it owns, with its credential.
    pub(crate) fn mailboxes(&self) -> impl Iterator<Item = MailboxAccess> + '_ {
        std::iter::once(self.mailbox).chain(self.threads.iter().copied()).map(access)
    }
}

/// What one payload, loop or drop slot puts on the wire (`None`: nothing, without cover).
pub(crate) fn slot_packet(
    c: &mut Client,
    slot: Slot,
    cover: bool,
    now: UnixMicros,
    sphinx: &Sphinx,
    rng: &mut ChaCha20Rng,
) -> Result<Option<Vec<u8>>, SimError> {
    let err = |e: qanat_mixnet::sending::RouteError| SimError::Packet(e.to_string());
    Ok(match slot {
        Slot::Payload => {
            if let Some(a) = c.acks.iter().position(|(at, _)| *at <= now).and_then(|i| c.acks.remove(i)) {
                Some(a.1)
            } else if let Some(p) = c.outbox.next_packet(now, sphinx, &c.view, rng) {
                Some(p.packet)
            } else if cover {
                Some(cover_packet(sphinx, &c.view, None, rng).map_err(err)?.packet)
            } else {
                None
            }
        }
        Slot::Loop if cover => {
            // As the engine does: half the loops home, half to one of the thread mailboxes.
            let to = if c.threads.is_empty() || rng.next_u64() & 1 == 0 {
                c.mailbox
            } else {
                c.threads[(rng.next_u64() % c.threads.len() as u64) as usize]
            };
            Some(cover_packet(sphinx, &c.view, Some((to, seal_key(to))), rng).map_err(err)?.packet)
        }
        Slot::Drop if cover => Some(cover_packet(sphinx, &c.view, None, rng).map_err(err)?.packet),
        Slot::Loop | Slot::Drop => None,
    })
}

/// A mailbox's seal key in the simulation: derived from the mailbox id (the seal's secrecy plays
/// no part in what the simulation measures; its cost and the items' form do).
pub(crate) fn seal_key(mailbox: MailboxId) -> SealKey {
    SealKey(mailbox.0)
}

/// A mailbox's credential in the simulation: derived from the mailbox id, as the seal key is.
pub(crate) fn credential(mailbox: MailboxId) -> [u8; 32] {
    let mut c = mailbox.0;
    c.iter_mut().for_each(|b| *b ^= 0x5c);
    c
}

/// A mailbox with its credential, as the pull exchange carries it.
pub(crate) fn access(mailbox: MailboxId) -> MailboxAccess {
    MailboxAccess { mailbox, credential: credential(mailbox) }
}

/// The inbox's source of a fragment: the mailbox it arrived in.
pub(crate) fn source(mailbox: MailboxId) -> [u8; 16] {
    let mut s = [0u8; 16];
    s.copy_from_slice(&mailbox.0[..16]);
    s
}
