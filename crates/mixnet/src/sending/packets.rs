//! The Sphinx packet around a payload: its path through the network, its seal, its SURB back.
//!
//! A client hands every packet to its own gateway ([`NetworkView::gateway`]), which forwards it
//! into the first mix layer; the path goes through one random mix per layer ([`route_hops`]) to
//! the destination's gateway, with an exponential delay at each mix whose mean
//! ([`NetworkView::mean_delay`]) the sender writes into the header. Every packet to a mailbox is
//! opaque at its last hop ([`Sphinx::new_opaque_packet`]): a SURB-reply command with a fresh
//! random identifier, and a body sealed under the mailbox's key ([`sealed_packet`],
//! [`super::seal`]). The kinds:
//!
//! - a DATA fragment, to a contact's [`Route`], carrying a SURB ([`reply_surb`]) from the
//!   contact's gateway back to ours and to our mailbox (built by the [`Outbox`](super::Outbox));
//! - a loop: a COVER payload sealed to our own mailbox at our gateway ([`cover_packet`] with
//!   `loop_to`);
//! - a drop: random bytes to a random mailbox at a random gateway ([`cover_packet`] without);
//! - acknowledgements: an ACKS payload in a reply built from the SURB a DATA packet carried
//!   ([`ack_packet`], [`acks_packet`]).
//!
//! # What each hop learns
//!
//! Our gateway learns that its client sent a packet, not where it goes. Each mix learns the hop
//! before and the hop after it. The last gateway learns the mailbox and the arrival time, and
//! holds `identifier ‖ body`, random bytes of one length whatever the kind. Whoever replies
//! through a SURB learns only the hop the reply enters at, not where it leads.

use std::time::Duration;

use qanat_packet::{CreateError, MailboxId, NodeId, PathHop, Sphinx, SurbError, SurbId, SurbKeys};
use rand_core::CryptoRng;

use super::payload::{AckEntry, MessageId, Payload, PayloadError};
use super::seal::{self, SealKey};
use crate::{Destination, Hop, Topology, path_hops};

/// Where packets for a contact go: their gateway, the mailbox they made for us there, and the
/// key that seals what we write into it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The gateway.
    pub gateway: NodeId,
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The mailbox's seal key.
    pub seal: SealKey,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route(..)")
    }
}

/// Why a packet could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// A gateway is not in the epoch's topology.
    #[error("the gateway is not in the current directory")]
    UnknownGateway,
    /// A layer has no mix.
    #[error("a mix layer is empty in the current directory")]
    EmptyLayer,
    /// The packet layer refused the path or payload.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// The SURB could not be used.
    #[error(transparent)]
    Surb(#[from] SurbError),
    /// The payload could not be built.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// The hops from gateway `from` through one random mix per layer to gateway `to`.
pub fn route_hops<R: CryptoRng + ?Sized>(
    topology: &Topology,
    from: &NodeId,
    to: &NodeId,
    rng: &mut R,
) -> Result<Vec<Hop>, RouteError> {
    let gw = |id: &NodeId| {
        topology.gateways.iter().find(|h| h.id == *id).cloned().ok_or(RouteError::UnknownGateway)
    };
    let mut hops = vec![gw(from)?];
    for l in 0..topology.layers.len() {
        hops.push(topology.random_mix(l, rng).cloned().ok_or(RouteError::EmptyLayer)?);
    }
    hops.push(gw(to)?);
    Ok(hops)
}

fn sphinx_path<R: CryptoRng + ?Sized>(
    topology: &Topology,
    hops: &[Hop],
    mean_delay: Duration,
    destination: Destination,
    rng: &mut R,
) -> Vec<PathHop> {
    let refs: Vec<&Hop> = hops.iter().collect();
    let is_gw = |id: &NodeId| topology.gateways.iter().any(|g| g.id == *id);
    path_hops(&refs, is_gw, mean_delay, destination, rng)
}

/// What a client knows of the network for the current epoch, to build packets.
#[derive(Debug, Clone)]
pub struct NetworkView {
    /// The epoch's topology.
    pub topology: Topology,
    /// The mean per-hop delay.
    pub mean_delay: Duration,
    /// This client's gateway.
    pub gateway: NodeId,
}

/// A packet ready to leave: hand it to the client's gateway.
#[derive(Clone)]
pub struct OutPacket {
    /// The packet.
    pub packet: Vec<u8>,
}

impl std::fmt::Debug for OutPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutPacket({} bytes)", self.packet.len())
    }
}

/// A SURB for a packet to a mailbox at gateway `from`: back from there through one mix per layer
/// to our gateway and our mailbox `reply_to`. Returns its bytes, its id (the SURB-reply id the
/// reply will carry) and the keys that decrypt the reply.
pub fn reply_surb<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    from: &NodeId,
    reply_to: MailboxId,
    rng: &mut R,
) -> Result<(Vec<u8>, SurbId, SurbKeys), RouteError> {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let back = route_hops(&view.topology, from, &view.gateway, rng)?;
    let back = sphinx_path(
        &view.topology,
        &back,
        view.mean_delay,
        Destination::SurbReply(reply_to, SurbId(id)),
        rng,
    );
    let (surb, keys) = sphinx.new_surb(rng, &back)?;
    Ok((surb, SurbId(id), keys))
}

/// A packet from our gateway to `route`'s mailbox carrying `payload` (one forward payload of the
/// geometry) sealed under the route's key, with a fresh SURB-reply identifier.
pub fn sealed_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    route: &Route,
    payload: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, RouteError> {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let body = seal::seal(&route.seal, &id, payload, rng).map_err(|_| PayloadError::Malformed)?;
    opaque_packet(sphinx, view, route.gateway, route.mailbox, id, &body, rng)
}

fn opaque_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    gateway: NodeId,
    mailbox: MailboxId,
    id: [u8; 16],
    body: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, RouteError> {
    let hops = route_hops(&view.topology, &view.gateway, &gateway, rng)?;
    let path =
        sphinx_path(&view.topology, &hops, view.mean_delay, Destination::SurbReply(mailbox, SurbId(id)), rng);
    Ok(sphinx.new_opaque_packet(rng, &path, body)?)
}

/// Builds a cover packet: a loop to our own mailbox (`loop_to`, sealed under its key, so that it
/// is an item like any other there), or a drop: random bytes to a random mailbox at a random
/// gateway.
pub fn cover_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    view: &NetworkView,
    loop_to: Option<(MailboxId, SealKey)>,
    rng: &mut R,
) -> Result<OutPacket, RouteError> {
    let g = sphinx.geometry();
    match loop_to {
        Some((mailbox, key)) => {
            let payload = Payload::Cover.encode(g, rng)?;
            let route = Route { gateway: view.gateway, mailbox, seal: key };
            Ok(OutPacket { packet: sealed_packet(sphinx, view, &route, &payload, rng)? })
        }
        None => {
            let to = view.topology.random_gateway(rng).ok_or(RouteError::UnknownGateway)?.id;
            let mut m = [0u8; 32];
            rng.fill_bytes(&mut m);
            let mut id = [0u8; 16];
            rng.fill_bytes(&mut id);
            let mut body = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
            rng.fill_bytes(&mut body);
            Ok(OutPacket { packet: opaque_packet(sphinx, view, to, MailboxId(m), id, &body, rng)? })
        }
    }
}

/// The acknowledgement of a received DATA packet, sent back through its SURB (hand it to our
/// gateway like any packet).
pub fn ack_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    surb: &[u8],
    message_id: MessageId,
    index: u16,
    rng: &mut R,
) -> Result<OutPacket, RouteError> {
    acks_packet(sphinx, surb, vec![AckEntry { message_id, indices: vec![index] }], rng)
}

/// Acknowledgements of several fragments (see [`AckEntry`]; they must fit
/// [`ack_capacity`](super::payload::ack_capacity)), sent back through one SURB.
pub fn acks_packet<R: CryptoRng + ?Sized>(
    sphinx: &Sphinx,
    surb: &[u8],
    entries: Vec<AckEntry>,
    rng: &mut R,
) -> Result<OutPacket, RouteError> {
    let payload = Payload::Ack(entries).encode(sphinx.geometry(), rng)?;
    let (packet, _first_hop) = sphinx.new_packet_from_surb(surb, &payload)?;
    Ok(OutPacket { packet })
}
